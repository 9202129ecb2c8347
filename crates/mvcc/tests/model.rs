//! Model-based test: random puts, deletes, transactions, compactions and reopens run against the
//! store and against a plain in-memory model of the whole history; after every step, every
//! revision must read the same in both (and fail as compacted below the compaction revision).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use mvcc::{
    Compare, CompareResult, CompareTarget, DeleteRangeRequest, DeleteRangeResponse, KeyValue,
    KvStore, MvccError, PutRequest, PutResponse, RangeOptions, RangeRequest, RangeResult,
    RequestOp, ResponseOp, StoreConfig, TxnRequest, TxnResponse,
};
use proptest::prelude::*;
use storage_api::Backend;

use common::EngineKind;

const KEYS: u8 = 5;

fn key(k: u8) -> Vec<u8> {
    vec![b'a' + k]
}

/// A key range: `end == None` is the single key, `end == KEYS` every key from `key` on.
fn range_end(k: u8, end: Option<u8>) -> Option<Vec<u8>> {
    end.map(|e| if e >= KEYS { vec![0] } else { key(e.max(k)) })
}

#[derive(Clone, Debug)]
enum SubOp {
    Put(u8, u8),
    Delete(u8, Option<u8>),
    Range(u8, Option<u8>),
}

#[derive(Clone, Debug)]
enum Op {
    Put(u8, u8),
    Delete(u8, Option<u8>),
    Txn {
        key: u8,
        result: u8,
        version: i64,
        then: Vec<SubOp>,
        otherwise: Vec<SubOp>,
    },
    /// Compact at `current - back` (`back < 0`: in the future).
    Compact {
        back: i64,
        wait: bool,
    },
    Reopen,
}

fn sub_op() -> impl Strategy<Value = SubOp> {
    prop_oneof![
        3 => (0..KEYS, any::<u8>()).prop_map(|(k, v)| SubOp::Put(k, v % 4)),
        1 => (0..KEYS, proptest::option::of(0..=KEYS)).prop_map(|(k, e)| SubOp::Delete(k, e)),
        2 => (0..KEYS, proptest::option::of(0..=KEYS)).prop_map(|(k, e)| SubOp::Range(k, e)),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..KEYS, any::<u8>()).prop_map(|(k, v)| Op::Put(k, v % 4)),
        2 => (0..KEYS, proptest::option::of(0..=KEYS)).prop_map(|(k, e)| Op::Delete(k, e)),
        3 => (
            0..KEYS,
            0..4u8,
            0..4i64,
            proptest::collection::vec(sub_op(), 0..4),
            proptest::collection::vec(sub_op(), 0..3),
        )
            .prop_map(|(key, result, version, then, otherwise)| Op::Txn {
                key,
                result,
                version,
                then,
                otherwise
            }),
        2 => (-1..6i64, any::<bool>()).prop_map(|(back, wait)| Op::Compact { back, wait }),
        1 => Just(Op::Reopen),
    ]
}

/// The whole history: `states[rev]` is the key space at `rev` (`states[0]` and `states[1]` are
/// empty: the first write gets revision 2).
struct Model {
    states: Vec<BTreeMap<Vec<u8>, KeyValue>>,
    compact: i64,
}

fn in_span(k: &[u8], start: &[u8], end: Option<&[u8]>) -> bool {
    match end {
        None => k == start,
        Some(e) if e.is_empty() || e == [0] => k >= start,
        Some(e) => k >= start && k < e,
    }
}

fn model_range(
    state: &BTreeMap<Vec<u8>, KeyValue>,
    start: &[u8],
    end: Option<&[u8]>,
) -> Vec<KeyValue> {
    state
        .values()
        .filter(|kv| in_span(&kv.key, start, end))
        .cloned()
        .collect()
}

impl Model {
    fn current(&self) -> i64 {
        self.states.len() as i64 - 1
    }

    fn latest(&self) -> &BTreeMap<Vec<u8>, KeyValue> {
        &self.states[self.states.len() - 1]
    }

    fn commit(&mut self, state: BTreeMap<Vec<u8>, KeyValue>) {
        self.states.push(state);
    }
}

/// A write transaction of the model: the working state and how many changes it made.
struct ModelTxn {
    state: BTreeMap<Vec<u8>, KeyValue>,
    begin: i64,
    changes: usize,
}

impl ModelTxn {
    fn rev(&self) -> i64 {
        self.begin + 1
    }

    fn cur_rev(&self) -> i64 {
        if self.changes > 0 {
            self.begin + 1
        } else {
            self.begin
        }
    }

    fn put(&mut self, k: &[u8], v: &[u8]) -> PutResponse {
        let rev = self.rev();
        let prev = self.state.get(k);
        let kv = KeyValue {
            key: k.to_vec(),
            create_revision: prev.map_or(rev, |p| p.create_revision),
            mod_revision: rev,
            version: prev.map_or(0, |p| p.version) + 1,
            value: v.to_vec(),
            lease: 0,
        };
        self.state.insert(k.to_vec(), kv);
        self.changes += 1;
        PutResponse {
            revision: rev,
            prev_kv: None,
        }
    }

    fn delete(&mut self, start: &[u8], end: Option<&[u8]>) -> DeleteRangeResponse {
        let doomed: Vec<Vec<u8>> = self
            .state
            .keys()
            .filter(|k| in_span(k, start, end))
            .cloned()
            .collect();
        for k in &doomed {
            self.state.remove(k);
        }
        self.changes += doomed.len();
        DeleteRangeResponse {
            revision: self.cur_rev(),
            deleted: doomed.len() as i64,
            prev_kvs: Vec::new(),
        }
    }

    fn range(&self, start: &[u8], end: Option<&[u8]>) -> RangeResult {
        let kvs = model_range(&self.state, start, end);
        RangeResult {
            count: kvs.len() as i64,
            kvs,
            rev: self.cur_rev(),
            more: false,
        }
    }
}

fn to_request(op: &SubOp) -> RequestOp {
    match *op {
        SubOp::Put(k, v) => RequestOp::Put(PutRequest::new(key(k), vec![v])),
        SubOp::Delete(k, e) => RequestOp::DeleteRange(DeleteRangeRequest {
            key: key(k),
            range_end: range_end(k, e),
            prev_kv: false,
        }),
        SubOp::Range(k, e) => RequestOp::Range(RangeRequest {
            key: key(k),
            range_end: range_end(k, e),
            options: RangeOptions::default(),
        }),
    }
}

/// etcd's duplicate check for one flat branch: a key put twice, or put and deleted.
fn duplicates(ops: &[SubOp]) -> bool {
    let puts: Vec<Vec<u8>> = ops
        .iter()
        .filter_map(|o| match o {
            SubOp::Put(k, _) => Some(key(*k)),
            _ => None,
        })
        .collect();
    let twice = puts.iter().enumerate().any(|(i, k)| puts[..i].contains(k));
    let deleted = ops.iter().any(|o| match o {
        SubOp::Delete(k, e) => {
            let (start, end) = (key(*k), range_end(*k, *e));
            puts.iter().any(|p| in_span(p, &start, end.as_deref()))
        }
        _ => false,
    });
    twice || deleted
}

fn compare_result(r: u8) -> CompareResult {
    match r {
        0 => CompareResult::Equal,
        1 => CompareResult::Greater,
        2 => CompareResult::Less,
        _ => CompareResult::NotEqual,
    }
}

fn holds(result: CompareResult, field: i64, operand: i64) -> bool {
    match result {
        CompareResult::Equal => field == operand,
        CompareResult::Greater => field > operand,
        CompareResult::Less => field < operand,
        CompareResult::NotEqual => field != operand,
    }
}

/// The model's answer to a transaction.
fn model_txn(
    model: &mut Model,
    k: u8,
    result: CompareResult,
    version: i64,
    then: &[SubOp],
    otherwise: &[SubOp],
) -> Result<TxnResponse, &'static str> {
    if duplicates(then) || duplicates(otherwise) {
        return Err("duplicate");
    }
    let field = model.latest().get(&key(k)).map_or(0, |kv| kv.version);
    let succeeded = holds(result, field, version);
    let ops = if succeeded { then } else { otherwise };
    let mut txn = ModelTxn {
        state: model.latest().clone(),
        begin: model.current(),
        changes: 0,
    };
    let mut responses = Vec::new();
    for op in ops {
        responses.push(match *op {
            SubOp::Put(k, v) => ResponseOp::Put(txn.put(&key(k), &[v])),
            SubOp::Delete(k, e) => {
                ResponseOp::DeleteRange(txn.delete(&key(k), range_end(k, e).as_deref()))
            }
            SubOp::Range(k, e) => ResponseOp::Range(txn.range(&key(k), range_end(k, e).as_deref())),
        });
    }
    let revision = txn.cur_rev();
    if txn.changes > 0 {
        model.commit(txn.state);
    }
    Ok(TxnResponse {
        revision,
        succeeded,
        responses,
    })
}

struct Harness {
    kind: EngineKind,
    dir: tempfile::TempDir,
    backend: Option<Arc<Backend>>,
    store: Option<KvStore>,
}

fn config() -> StoreConfig {
    StoreConfig {
        compaction_batch_limit: 2,
        compaction_pause: Duration::from_millis(1),
        ..Default::default()
    }
}

impl Harness {
    fn open(kind: EngineKind) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let mut h = Harness {
            kind,
            dir,
            backend: None,
            store: None,
        };
        h.start();
        h
    }

    fn start(&mut self) {
        let backend = self.kind.open_backend(self.dir.path());
        self.store = Some(KvStore::open(Arc::clone(&backend), config()).unwrap());
        self.backend = Some(backend);
    }

    fn reopen(&mut self) {
        // Close the store (interrupting any compaction) and the backend, then open both again.
        self.store.take();
        if let Some(b) = self.backend.take() {
            b.close().unwrap();
        }
        self.start();
    }

    fn store(&self) -> &KvStore {
        self.store.as_ref().unwrap()
    }
}

fn check(store: &KvStore, model: &Model) -> Result<(), TestCaseError> {
    let current = model.current();
    prop_assert_eq!(store.rev(), current);
    prop_assert_eq!(store.compact_rev(), model.compact);
    for rev in 1..=current {
        let at = |start: &[u8], end: Option<&[u8]>, limit| {
            store.range(
                start,
                end,
                &RangeOptions {
                    rev,
                    limit,
                    ..Default::default()
                },
            )
        };
        if rev < model.compact {
            prop_assert!(
                matches!(at(&[0], Some(&[0]), 0), Err(MvccError::Compacted { .. })),
                "rev {} below compaction {} must fail",
                rev,
                model.compact
            );
            continue;
        }
        let state = &model.states[rev as usize];
        let all = at(&[0], Some(&[0]), 0).unwrap();
        prop_assert_eq!(
            &all.kvs,
            &model_range(state, &[0], Some(&[0])),
            "rev {}",
            rev
        );
        prop_assert_eq!(all.count, state.len() as i64);
        prop_assert_eq!(all.rev, current);
        let some = at(b"b", Some(b"d"), 1).unwrap();
        let want = model_range(state, b"b", Some(b"d"));
        prop_assert_eq!(some.count, want.len() as i64);
        prop_assert_eq!(&some.kvs, &want.iter().take(1).cloned().collect::<Vec<_>>());
        prop_assert_eq!(some.more, want.len() > 1);
        let single = at(b"c", None, 0).unwrap();
        prop_assert_eq!(&single.kvs, &model_range(state, b"c", None));
    }
    let future = store.range(
        b"a",
        None,
        &RangeOptions {
            rev: current + 1,
            ..Default::default()
        },
    );
    prop_assert!(
        matches!(future, Err(MvccError::FutureRev { .. })),
        "{:?}",
        future
    );
    Ok(())
}

fn run_model(kind: EngineKind, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mut h = Harness::open(kind);
    let mut model = Model {
        states: vec![BTreeMap::new(), BTreeMap::new()],
        compact: -1,
    };
    for op in &ops {
        match op {
            Op::Put(k, v) => {
                let resp = h.store().put(&PutRequest::new(key(*k), vec![*v])).unwrap();
                let mut txn = ModelTxn {
                    state: model.latest().clone(),
                    begin: model.current(),
                    changes: 0,
                };
                let want = txn.put(&key(*k), &[*v]);
                model.commit(txn.state);
                prop_assert_eq!(resp, want);
            }
            Op::Delete(k, e) => {
                let end = range_end(*k, *e);
                let resp = h
                    .store()
                    .delete_range(&DeleteRangeRequest {
                        key: key(*k),
                        range_end: end.clone(),
                        prev_kv: false,
                    })
                    .unwrap();
                let mut txn = ModelTxn {
                    state: model.latest().clone(),
                    begin: model.current(),
                    changes: 0,
                };
                let want = txn.delete(&key(*k), end.as_deref());
                if txn.changes > 0 {
                    model.commit(txn.state);
                }
                prop_assert_eq!(resp, want);
            }
            Op::Txn {
                key: k,
                result,
                version,
                then,
                otherwise,
            } => {
                let result = compare_result(*result);
                let req = TxnRequest {
                    compare: vec![Compare::new(
                        key(*k),
                        result,
                        CompareTarget::Version(*version),
                    )],
                    success: then.iter().map(to_request).collect(),
                    failure: otherwise.iter().map(to_request).collect(),
                };
                let got = h.store().txn(&req);
                match model_txn(&mut model, *k, result, *version, then, otherwise) {
                    Ok(want) => prop_assert_eq!(got.unwrap(), want),
                    Err(_) => {
                        prop_assert!(matches!(got, Err(MvccError::DuplicateKey)), "{:?}", got)
                    }
                }
            }
            Op::Compact { back, wait } => {
                let rev = model.current() - back;
                let got = h.store().compact(rev);
                if rev <= model.compact {
                    prop_assert!(matches!(got, Err(MvccError::Compacted { .. })), "{:?}", got);
                } else if rev > model.current() {
                    prop_assert!(matches!(got, Err(MvccError::FutureRev { .. })), "{:?}", got);
                } else {
                    model.compact = rev;
                    let handle = got.unwrap();
                    if *wait {
                        handle.wait().unwrap();
                    }
                }
            }
            Op::Reopen => h.reopen(),
        }
        check(h.store(), &model)?;
    }
    // Every compaction finishes, and the history still reads the same after a last reopen.
    h.store().compaction_barrier().wait().unwrap();
    h.reopen();
    h.store().compaction_barrier().wait().unwrap();
    check(h.store(), &model)?;
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn store_matches_model_on_lmdb(ops in proptest::collection::vec(op(), 1..40)) {
        run_model(EngineKind::Lmdb, ops)?;
    }
}

#[cfg(feature = "rocks")]
proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    #[test]
    fn store_matches_model_on_rocks(ops in proptest::collection::vec(op(), 1..40)) {
        run_model(EngineKind::Rocks, ops)?;
    }
}
