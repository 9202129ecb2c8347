//! Cluster membership: members, their ids, and their records in the `members` bucket.
//!
//! Ids are derived like etcd's (`computeMemberId`: a hash of the sorted peer URLs, the cluster
//! token and, for members added at runtime, the time), but with 64-bit FNV-1a instead of SHA-1
//! (no SHA-1 in the dependency set): ids are stable for a configuration, not etcd's values.

use std::collections::BTreeMap;

use mvcc::WriteTxn;
use serde::{Deserialize, Serialize};
use storage_api::{Backend, Bucket, ReadTx};

/// A cluster member.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// The member id.
    pub id: u64,
    /// Its name (empty until it publishes it).
    pub name: String,
    /// The URLs peers reach it at.
    pub peer_urls: Vec<String>,
    /// The URLs clients reach it at (published by the member).
    pub client_urls: Vec<String>,
    /// Whether it is a non-voting learner.
    pub is_learner: bool,
}

/// The context of a replicated configuration change: who waits for it and the member concerned.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ConfChangeContext {
    pub(crate) request_id: u64,
    pub(crate) member: Member,
}

impl ConfChangeContext {
    pub(crate) fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(self)
            .unwrap_or_else(|e| panic!("postcard failed to encode a conf change context: {e}"))
    }

    pub(crate) fn decode(data: &[u8]) -> Option<ConfChangeContext> {
        postcard::from_bytes(data).ok()
    }
}

fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for &b in *part {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

/// A member's id: a hash of its sorted peer URLs, the cluster token and `time` (unix seconds
/// for members added at runtime, `None` for initial members), never 0.
pub fn member_id(peer_urls: &[String], cluster_token: &str, time: Option<u64>) -> u64 {
    let mut urls = peer_urls.to_vec();
    urls.sort();
    let joined = urls.concat();
    let time = time.map(|t| t.to_be_bytes()).unwrap_or_default();
    let t: &[u8] = if time == [0; 8] { &[] } else { &time };
    fnv1a(&[joined.as_bytes(), cluster_token.as_bytes(), t]).max(1)
}

/// The cluster id: a hash of the initial members' ids in ascending order (etcd's `genID`).
pub fn cluster_id(member_ids: &[u64]) -> u64 {
    let mut ids = member_ids.to_vec();
    ids.sort_unstable();
    let bytes: Vec<u8> = ids.iter().flat_map(|id| id.to_be_bytes()).collect();
    fnv1a(&[&bytes]).max(1)
}

fn member_key(id: u64) -> Vec<u8> {
    format!("{id:016x}").into_bytes()
}

/// The members as the applied log says (plus the removed ids, which may not come back).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Cluster {
    /// The members by id.
    pub members: BTreeMap<u64, Member>,
    /// Ids removed from the cluster.
    pub removed: Vec<u64>,
}

impl Cluster {
    /// Loads the `members` and `members_removed` buckets.
    pub fn load(backend: &Backend) -> Result<Cluster, storage_api::StorageError> {
        let tx = backend.read_tx()?;
        let mut cluster = Cluster::default();
        if tx.buckets().any(|b| b == Bucket::MEMBERS) {
            for (_, v) in tx.range(Bucket::MEMBERS, &[], None, 0)? {
                if let Ok(m) = postcard::from_bytes::<Member>(&v) {
                    cluster.members.insert(m.id, m);
                }
            }
        }
        if tx.buckets().any(|b| b == Bucket::MEMBERS_REMOVED) {
            for (k, _) in tx.range(Bucket::MEMBERS_REMOVED, &[], None, 0)? {
                if let Some(id) = std::str::from_utf8(&k)
                    .ok()
                    .and_then(|s| u64::from_str_radix(s, 16).ok())
                {
                    cluster.removed.push(id);
                }
            }
        }
        Ok(cluster)
    }

    /// Writes `member` in `txn`.
    pub(crate) fn save_member(txn: &mut WriteTxn<'_>, member: &Member) -> mvcc::Result<()> {
        txn.create_bucket(Bucket::MEMBERS)?;
        let value = postcard::to_allocvec(member)
            .unwrap_or_else(|e| panic!("postcard failed to encode a member: {e}"));
        txn.raw_put(Bucket::MEMBERS, &member_key(member.id), &value)
    }

    /// Deletes member `id` in `txn` and records it as removed.
    pub(crate) fn remove_member(txn: &mut WriteTxn<'_>, id: u64) -> mvcc::Result<()> {
        txn.create_bucket(Bucket::MEMBERS)?;
        txn.create_bucket(Bucket::MEMBERS_REMOVED)?;
        txn.raw_delete(Bucket::MEMBERS, &member_key(id))?;
        txn.raw_put(Bucket::MEMBERS_REMOVED, &member_key(id), b"removed")
    }

    /// Whether some member other than `except` uses one of `urls`.
    pub fn peer_url_taken(&self, urls: &[String], except: u64) -> bool {
        self.members
            .values()
            .filter(|m| m.id != except)
            .any(|m| m.peer_urls.iter().any(|u| urls.contains(u)))
    }
}
