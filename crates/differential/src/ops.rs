//! The operations a sequence is made of, and their seeded random generation.
//!
//! Each operation is a raw etcd v3 request (the generated protobuf message), so that both servers
//! receive byte-identical requests, invalid ones included. Any sub-sequence of a sequence is again
//! a valid sequence (no operation depends on an earlier one's result), which is what shrinking
//! needs.

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use server::proto::etcdserverpb::{
    CompactionRequest, Compare, DeleteRangeRequest, LeaseGrantRequest, LeaseRevokeRequest,
    LeaseTimeToLiveRequest, PutRequest, RangeRequest, RequestOp, TxnRequest, WatchCreateRequest,
    compare, request_op,
};

/// etcd's default `--max-request-bytes` (1.5 MiB).
pub const MAX_REQUEST_BYTES: usize = 1_572_864;
/// etcd's default `--max-txn-ops`.
pub const MAX_TXN_OPS: usize = 128;

/// The small key space, so that operations interact (ranges, prefixes, txn compares).
const KEYS: [&[u8]; 8] = [b"a", b"a/1", b"a/2", b"b", b"b/1", b"c", b"d", b"e"];

/// One request.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// KV.Range.
    Range(RangeRequest),
    /// KV.Put.
    Put(PutRequest),
    /// KV.DeleteRange.
    DeleteRange(DeleteRangeRequest),
    /// KV.Txn.
    Txn(TxnRequest),
    /// KV.Compact.
    Compact(CompactionRequest),
    /// Lease.LeaseGrant.
    LeaseGrant(LeaseGrantRequest),
    /// Lease.LeaseRevoke.
    LeaseRevoke(LeaseRevokeRequest),
    /// Lease.LeaseTimeToLive.
    LeaseTimeToLive(LeaseTimeToLiveRequest),
    /// Lease.LeaseLeases.
    LeaseLeases,
    /// Watch: a create request on the sequence's watch stream.
    WatchCreate(WatchCreateRequest),
    /// Watch: a cancel request for this watch id.
    WatchCancel(i64),
    /// Watch: a progress request.
    WatchProgress,
}

impl Op {
    /// The operation's kind, for signatures and summaries.
    pub fn kind(&self) -> &'static str {
        match self {
            Op::Range(_) => "Range",
            Op::Put(_) => "Put",
            Op::DeleteRange(_) => "DeleteRange",
            Op::Txn(_) => "Txn",
            Op::Compact(_) => "Compact",
            Op::LeaseGrant(_) => "LeaseGrant",
            Op::LeaseRevoke(_) => "LeaseRevoke",
            Op::LeaseTimeToLive(_) => "LeaseTimeToLive",
            Op::LeaseLeases => "LeaseLeases",
            Op::WatchCreate(_) => "WatchCreate",
            Op::WatchCancel(_) => "WatchCancel",
            Op::WatchProgress => "WatchProgress",
        }
    }

    /// Whether the operation can change what watchers see (so watch streams are drained after).
    pub fn may_notify(&self) -> bool {
        !matches!(
            self,
            Op::Range(_) | Op::LeaseTimeToLive(_) | Op::LeaseLeases | Op::LeaseGrant(_)
        )
    }

    /// Whether the operation is a request on the watch stream.
    pub fn is_watch(&self) -> bool {
        matches!(
            self,
            Op::WatchCreate(_) | Op::WatchCancel(_) | Op::WatchProgress
        )
    }
}

/// An operation and the member it is sent to (index into the cluster, 0 for a single member).
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    /// The step's index in the generated sequence (kept through shrinking, for `--only-steps`).
    pub origin: usize,
    /// The member the request goes to.
    pub member: usize,
    /// The request.
    pub op: Op,
}

/// A seeded sequence of steps, run against fresh clusters.
#[derive(Clone, Debug, PartialEq)]
pub struct Sequence {
    /// The seed it was generated from.
    pub seed: u64,
    /// The member the sequence's single watch stream is opened on.
    pub watch_member: usize,
    /// The steps, in order.
    pub steps: Vec<Step>,
}

/// Requests not to generate, to look past known (reported) mismatches that would otherwise end
/// most sequences early. Every one is off by default; the same seed with other settings is a
/// different sequence.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Avoid {
    /// DeleteRange with range end `"\0"` inside a txn.
    pub from_key_delete_in_txn: bool,
    /// Requests over gRPC's message limit.
    pub over_grpc_limit: bool,
    /// Client-chosen watch ids.
    pub explicit_watch_ids: bool,
    /// Compaction at revision 0 or below.
    pub compact_at_zero: bool,
    /// Watches with a negative start revision.
    pub negative_watch_start: bool,
    /// Puts with ignore_value and a lease (the order of the key and lease checks).
    pub ignore_value_with_lease: bool,
    /// Ranges that are keys_only and sorted by value.
    pub keys_only_by_value: bool,
    /// Ranges at a revision other than 0 inside txns. etcd 3.4 with several members applies
    /// the writes of a txn it answers with "required revision is a future revision" or "has
    /// been compacted" (the next write gets a revision one higher than on a single member, and
    /// the txn's puts are visible to watchers), so with several members this is always
    /// avoided: not ferrocd's to match.
    pub revision_in_txn: bool,
}

/// Generates sequence `seed`: `ops` steps over `members` members.
pub fn generate(seed: u64, ops: usize, members: usize) -> Sequence {
    generate_avoiding(seed, ops, members, Avoid::default())
}

/// [`generate`], without what `avoid` names.
pub fn generate_avoiding(seed: u64, ops: usize, members: usize, avoid: Avoid) -> Sequence {
    let mut g = Gen {
        rng: ChaCha8Rng::seed_from_u64(seed),
        avoid,
        in_txn: 0,
        rev_estimate: 1,
    };
    let members = members.max(1);
    let watch_member = g.rng.random_range(0..members);
    let steps = (0..ops)
        .map(|origin| {
            let member = g.rng.random_range(0..members);
            let op = g.op();
            if op.may_notify() && !op.is_watch() {
                g.rev_estimate += 1;
            }
            Step { origin, member, op }
        })
        .collect();
    Sequence {
        seed,
        watch_member,
        steps,
    }
}

struct Gen {
    rng: ChaCha8Rng,
    avoid: Avoid,
    /// How deep in txns the request being generated is.
    in_txn: u32,
    /// A rough guess of the store's revision (one per write generated), so that revisions
    /// generated land around it: some compacted, some current, some in the future.
    rev_estimate: i64,
}

impl Gen {
    fn chance(&mut self, percent: u32) -> bool {
        self.rng.random_range(0..100) < percent
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.rng.random_range(0..items.len())]
    }

    fn key(&mut self) -> Vec<u8> {
        if self.chance(3) {
            return Vec::new(); // invalid: empty key
        }
        self.pick(&KEYS).to_vec()
    }

    /// A key and a range end: a single key, a prefix, from-key (`\0`), an interval, everything.
    fn key_range(&mut self) -> (Vec<u8>, Vec<u8>) {
        let key = self.key();
        match self.rng.random_range(0..10) {
            0..=3 => (key, Vec::new()),
            4 | 5 => {
                let end = prefix_end(&key);
                (key, end)
            }
            6 => (key, vec![0]),
            7 => (vec![0], vec![0]),
            8 => {
                let end = self.pick(&KEYS).to_vec();
                (key, end)
            }
            _ => (b"a/".to_vec(), b"a0".to_vec()),
        }
    }

    fn value(&mut self) -> Vec<u8> {
        match self.rng.random_range(0..1000) {
            // invalid: over --max-request-bytes but under gRPC's limit (max-request-bytes +
            // 512 KiB in etcd): rejected by the server with "request is too large".
            0..=4 => vec![b'x'; MAX_REQUEST_BYTES + 1024],
            // invalid: over gRPC's receive limit too.
            5 | 6 if !self.avoid.over_grpc_limit => vec![b'y'; MAX_REQUEST_BYTES + 600 * 1024],
            5 | 6 => vec![b'x'; MAX_REQUEST_BYTES + 1024],
            // valid, large.
            7..=11 => vec![b'z'; 100 * 1024],
            12..=80 => Vec::new(),
            _ => {
                let n = self.rng.random_range(1..8);
                (0..n).map(|_| self.rng.random_range(b'a'..=b'f')).collect()
            }
        }
    }

    fn lease_id(&mut self) -> i64 {
        match self.rng.random_range(0..20) {
            0 => -7,
            1..=14 => self.rng.random_range(1..=5),
            15 => 6, // never granted
            _ => 0,
        }
    }

    fn revision(&mut self) -> i64 {
        match self.rng.random_range(0..10) {
            0..=5 => 0,
            6 => -1,
            _ => self.rng.random_range(1..=self.rev_estimate + 3),
        }
    }

    fn op(&mut self) -> Op {
        match self.rng.random_range(0..100) {
            0..=19 => Op::Range(self.range()),
            20..=39 => Op::Put(self.put()),
            40..=46 => Op::DeleteRange(self.delete_range()),
            47..=59 => Op::Txn(self.txn(0)),
            60..=63 => Op::Compact(CompactionRequest {
                revision: match self.revision() {
                    r if r <= 0 && self.avoid.compact_at_zero => 1,
                    r => r,
                },
                physical: self.chance(50),
            }),
            64..=70 => Op::LeaseGrant(LeaseGrantRequest {
                ttl: match self.rng.random_range(0..20) {
                    0 => 9_000_000_001, // invalid: over etcd's MaxLeaseTTL
                    _ => self.rng.random_range(100..=1000),
                },
                // Never 0: the server would choose a random id, which cannot compare.
                id: match self.lease_id() {
                    0 => 1,
                    id => id,
                },
            }),
            71..=74 => Op::LeaseRevoke(LeaseRevokeRequest {
                id: self.lease_id(),
            }),
            75..=78 => Op::LeaseTimeToLive(LeaseTimeToLiveRequest {
                id: self.lease_id(),
                keys: self.chance(70),
            }),
            79 | 80 => Op::LeaseLeases,
            81..=91 => Op::WatchCreate(self.watch_create()),
            92..=95 => Op::WatchCancel(self.rng.random_range(-1..5)),
            _ => Op::WatchProgress,
        }
    }

    fn range(&mut self) -> RangeRequest {
        let (key, range_end) = self.key_range();
        let mut r = RangeRequest {
            key,
            range_end,
            ..RangeRequest::default()
        };
        if self.chance(30) {
            r.limit = self.rng.random_range(-1..4);
        }
        if self.chance(30) {
            r.revision = self.revision();
            if self.in_txn > 0 && self.avoid.revision_in_txn {
                // Negative revisions too: below the first revision after a compaction, etcd's
                // txn check fails ("compacted") the same way.
                r.revision = 0;
            }
        }
        if self.chance(30) {
            r.sort_order = self.rng.random_range(0..3);
            r.sort_target = self.rng.random_range(0..5);
        }
        r.keys_only = self.chance(15);
        if self.avoid.keys_only_by_value && r.sort_target == 4 {
            r.keys_only = false;
        }
        r.count_only = self.chance(10);
        if self.chance(10) {
            r.min_mod_revision = self.revision();
            r.max_mod_revision = self.revision();
        }
        if self.chance(10) {
            r.min_create_revision = self.revision();
            r.max_create_revision = self.revision();
        }
        r
    }

    fn put(&mut self) -> PutRequest {
        let mut p = PutRequest {
            key: self.key(),
            value: self.value(),
            prev_kv: self.chance(40),
            ..PutRequest::default()
        };
        if self.chance(25) {
            p.lease = self.lease_id();
        }
        if self.chance(8) {
            p.ignore_value = true;
            if self.chance(60) {
                p.value.clear();
            }
        }
        if self.chance(8) {
            p.ignore_lease = true;
            if self.chance(60) {
                p.lease = 0;
            }
        }
        if self.avoid.ignore_value_with_lease && p.ignore_value {
            p.lease = 0;
        }
        p
    }

    fn delete_range(&mut self) -> DeleteRangeRequest {
        let (key, mut range_end) = self.key_range();
        if self.in_txn > 0 && self.avoid.from_key_delete_in_txn && range_end == [0] {
            range_end = prefix_end(&key);
        }
        DeleteRangeRequest {
            key,
            range_end,
            prev_kv: self.chance(50),
        }
    }

    fn compare(&mut self) -> Compare {
        let target = self.rng.random_range(0..5);
        let union = match target {
            0 => compare::TargetUnion::Version(self.rng.random_range(0..4)),
            1 => compare::TargetUnion::CreateRevision(self.revision()),
            2 => compare::TargetUnion::ModRevision(self.revision()),
            3 => compare::TargetUnion::Value(self.value_small()),
            _ => compare::TargetUnion::Lease(self.lease_id()),
        };
        let (key, range_end) = if self.chance(20) {
            self.key_range()
        } else {
            (self.key(), Vec::new())
        };
        Compare {
            result: self.rng.random_range(0..4),
            target,
            key,
            range_end,
            target_union: Some(union),
        }
    }

    fn value_small(&mut self) -> Vec<u8> {
        if self.chance(20) {
            return Vec::new();
        }
        let n = self.rng.random_range(1..4);
        (0..n).map(|_| self.rng.random_range(b'a'..=b'f')).collect()
    }

    fn request_op(&mut self, depth: u32) -> RequestOp {
        let request = match self.rng.random_range(0..10) {
            0..=2 => request_op::Request::RequestRange(self.range()),
            3..=6 => request_op::Request::RequestPut(self.put()),
            7 | 8 => request_op::Request::RequestDeleteRange(self.delete_range()),
            _ if depth < 2 => request_op::Request::RequestTxn(self.txn(depth + 1)),
            _ => request_op::Request::RequestRange(self.range()),
        };
        RequestOp {
            request: Some(request),
        }
    }

    fn txn(&mut self, depth: u32) -> TxnRequest {
        if depth == 0 && self.chance(3) {
            // invalid: more than --max-txn-ops operations.
            let success = (0..=MAX_TXN_OPS)
                .map(|i| RequestOp {
                    request: Some(request_op::Request::RequestRange(RangeRequest {
                        key: format!("k{i}").into_bytes(),
                        ..RangeRequest::default()
                    })),
                })
                .collect();
            return TxnRequest {
                compare: Vec::new(),
                success,
                failure: Vec::new(),
            };
        }
        let compares = self.rng.random_range(0..3);
        let success = self.rng.random_range(0..4);
        let failure = self.rng.random_range(0..3);
        self.in_txn += 1;
        let txn = TxnRequest {
            compare: (0..compares).map(|_| self.compare()).collect(),
            success: (0..success).map(|_| self.request_op(depth)).collect(),
            failure: (0..failure).map(|_| self.request_op(depth)).collect(),
        };
        self.in_txn -= 1;
        txn
    }

    fn watch_create(&mut self) -> WatchCreateRequest {
        let (key, range_end) = self.key_range();
        let mut filters = Vec::new();
        if self.chance(15) {
            filters.push(0); // NOPUT
        }
        if self.chance(15) {
            filters.push(1); // NODELETE
        }
        WatchCreateRequest {
            key,
            range_end,
            start_revision: match self.chance(50) {
                true if self.avoid.negative_watch_start => self.revision().max(0),
                true => self.revision(),
                false => 0,
            },
            progress_notify: false, // periodic: timing-dependent
            filters,
            prev_kv: self.chance(40),
            watch_id: if self.chance(10) && !self.avoid.explicit_watch_ids {
                self.rng.random_range(0..3)
            } else {
                0
            },
            fragment: false,
        }
    }
}

/// The range end of all keys with prefix `key` (etcd's `clientv3.GetPrefixRangeEnd`).
fn prefix_end(key: &[u8]) -> Vec<u8> {
    let mut end = key.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_is_deterministic() {
        assert_eq!(generate(7, 50, 3), generate(7, 50, 3));
        assert_ne!(generate(7, 50, 1), generate(8, 50, 1));
    }

    #[test]
    fn prefix_ends() {
        assert_eq!(prefix_end(b"a"), b"b");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b""), vec![0]);
    }
}
