//! Requests and responses of the store's operations, in plain Rust (etcd's `etcdserverpb` range,
//! put, delete-range and txn messages, minus what belongs to the server: headers, sorting, auth).
//!
//! Range ends follow etcd: `None` is the single key `key`, `Some([0])` (or an empty end) every key
//! from `key` on, `Some(end)` the keys in `[key, end)`. A gRPC layer maps an empty `range_end` to
//! `None`.

use crate::KeyValue;

/// How to read a range (etcd's `mvcc.RangeOptions` plus `keys_only`).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RangeOptions {
    /// Return at most this many key-values (`<= 0`: all).
    pub limit: i64,
    /// The revision to read at (`<= 0`: the current one).
    pub rev: i64,
    /// Return only the count, no key-values.
    pub count_only: bool,
    /// Return key-values without their values.
    pub keys_only: bool,
}

/// The result of a range.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RangeResult {
    /// The key-values, in key order (empty with `count_only`).
    pub kvs: Vec<KeyValue>,
    /// The revision of the store (of the transaction) the range was served from.
    pub rev: i64,
    /// How many keys the range held at the revision read, regardless of the limit.
    pub count: i64,
    /// Whether the limit left key-values out.
    pub more: bool,
}

/// A range read inside a transaction.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RangeRequest {
    /// The first key.
    pub key: Vec<u8>,
    /// The end of the range (see the module documentation).
    pub range_end: Option<Vec<u8>>,
    /// Limit, revision, count-only, keys-only.
    pub options: RangeOptions,
}

/// A put (etcd's `PutRequest`).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PutRequest {
    /// The key.
    pub key: Vec<u8>,
    /// The value.
    pub value: Vec<u8>,
    /// The lease to attach (0: none).
    pub lease: i64,
    /// Return the key-value before the put.
    pub prev_kv: bool,
    /// Keep the current value (the key must exist and `value` be empty).
    pub ignore_value: bool,
    /// Keep the current lease (the key must exist and `lease` be 0).
    pub ignore_lease: bool,
}

impl PutRequest {
    /// A put of `value` at `key`, without lease or options.
    pub fn new(key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> PutRequest {
        PutRequest {
            key: key.into(),
            value: value.into(),
            ..PutRequest::default()
        }
    }
}

/// The result of a put.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PutResponse {
    /// The revision of the put.
    pub revision: i64,
    /// The key-value before the put, when asked for and present.
    pub prev_kv: Option<KeyValue>,
}

/// A delete of a key or range (etcd's `DeleteRangeRequest`).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DeleteRangeRequest {
    /// The first key.
    pub key: Vec<u8>,
    /// The end of the range (see the module documentation).
    pub range_end: Option<Vec<u8>>,
    /// Return the deleted key-values.
    pub prev_kv: bool,
}

impl DeleteRangeRequest {
    /// A delete of the single key `key`.
    pub fn key(key: impl Into<Vec<u8>>) -> DeleteRangeRequest {
        DeleteRangeRequest {
            key: key.into(),
            ..DeleteRangeRequest::default()
        }
    }
}

/// The result of a delete.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DeleteRangeResponse {
    /// The store's revision after the delete (unchanged when nothing was deleted and the
    /// transaction changed nothing before).
    pub revision: i64,
    /// How many keys were deleted.
    pub deleted: i64,
    /// The deleted key-values, when asked for.
    pub prev_kvs: Vec<KeyValue>,
}

/// What a comparison looks at, with the operand.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum CompareTarget {
    /// The key's version (0 for a missing key).
    Version(i64),
    /// The key's creation revision (0 for a missing key).
    CreateRevision(i64),
    /// The key's last modification revision (0 for a missing key).
    ModRevision(i64),
    /// The key's value (a missing key fails every value comparison).
    Value(Vec<u8>),
    /// The key's lease (0 for a missing key or no lease).
    Lease(i64),
}

/// How the key's field must relate to the operand.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum CompareResult {
    /// field == operand.
    Equal,
    /// field > operand.
    Greater,
    /// field < operand.
    Less,
    /// field != operand.
    NotEqual,
}

/// One guard of a transaction (etcd's `Compare`); over a range, every key must satisfy it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Compare {
    /// The key compared.
    pub key: Vec<u8>,
    /// Compare every key of `[key, range_end)` instead (see the module documentation).
    pub range_end: Option<Vec<u8>>,
    /// The field and operand.
    pub target: CompareTarget,
    /// The relation required.
    pub result: CompareResult,
}

impl Compare {
    /// A comparison of the single key `key`.
    pub fn new(key: impl Into<Vec<u8>>, result: CompareResult, target: CompareTarget) -> Compare {
        Compare {
            key: key.into(),
            range_end: None,
            target,
            result,
        }
    }
}

/// One operation of a transaction.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum RequestOp {
    /// A range read.
    Range(RangeRequest),
    /// A put.
    Put(PutRequest),
    /// A delete.
    DeleteRange(DeleteRangeRequest),
    /// A nested transaction.
    #[serde(deserialize_with = "nested_txn")]
    Txn(TxnRequest),
}

/// The deepest nesting of transactions a decoded request may have. etcd's checks bound it by
/// `--max-txn-ops` (128: each level holds at least one operation); decoding refuses deeper
/// requests before they can overflow the decoder's stack (a request from a peer or a damaged
/// log is untrusted input).
pub const MAX_TXN_DEPTH: usize = 128;

thread_local! {
    /// How many transactions the decoder on this thread is inside.
    static TXN_DECODE_DEPTH: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Leaves one level of [`TXN_DECODE_DEPTH`] when dropped (also when decoding fails).
struct DepthGuard;

impl Drop for DepthGuard {
    fn drop(&mut self) {
        TXN_DECODE_DEPTH.with(|d| d.set(d.get().saturating_sub(1)));
    }
}

fn nested_txn<'de, D: serde::Deserializer<'de>>(d: D) -> Result<TxnRequest, D::Error> {
    let depth = TXN_DECODE_DEPTH.with(|c| {
        let depth = c.get() + 1;
        c.set(depth);
        depth
    });
    let _leave = DepthGuard;
    if depth > MAX_TXN_DEPTH {
        return Err(serde::de::Error::custom(format!(
            "transactions nested more than {MAX_TXN_DEPTH} deep"
        )));
    }
    <TxnRequest as serde::Deserialize>::deserialize(d)
}

/// The result of one operation of a transaction.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ResponseOp {
    /// A range read's result.
    Range(RangeResult),
    /// A put's result.
    Put(PutResponse),
    /// A delete's result.
    DeleteRange(DeleteRangeResponse),
    /// A nested transaction's result (its `revision` is 0, as in etcd).
    Txn(TxnResponse),
}

/// A transaction: if every comparison holds, the success operations run, else the failure ones;
/// all in one write transaction at one revision (etcd's `TxnRequest`).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TxnRequest {
    /// The guards.
    pub compare: Vec<Compare>,
    /// Run when every guard holds.
    pub success: Vec<RequestOp>,
    /// Run otherwise.
    pub failure: Vec<RequestOp>,
}

impl TxnRequest {
    /// Whether no operation on either branch, nested ones included, writes.
    pub fn is_read_only(&self) -> bool {
        self.success.iter().chain(&self.failure).all(|op| match op {
            RequestOp::Range(_) => true,
            RequestOp::Put(_) | RequestOp::DeleteRange(_) => false,
            RequestOp::Txn(t) => t.is_read_only(),
        })
    }
}

/// The result of a transaction.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TxnResponse {
    /// The store's revision after the transaction (0 for nested transactions).
    pub revision: i64,
    /// Whether the guards held (the success branch ran).
    pub succeeded: bool,
    /// One result per operation of the branch that ran.
    pub responses: Vec<ResponseOp>,
}
