//! Rebuilding the store's memory from the backend on open (etcd's `store.restore`).

use std::collections::BTreeMap;

use storage_api::{Bucket, ReadTx};

use super::Inner;
use super::meta::{
    CONSISTENT_INDEX, ConsistentIndex, FINISHED_COMPACT, SCHEDULED_COMPACT, TERM,
    decode_compact_rev, decode_u64,
};
use crate::error::{MvccError, Result};
use crate::{KeyValue, Revision, RevisionKey};

/// Revisions read per backend range while rebuilding the index.
const RESTORE_CHUNK: usize = 10_000;

/// Rebuilds the index, the revisions, the consistent index and the lease attachments; returns
/// the revision of a compaction to resume, if one was scheduled but did not finish.
pub(crate) fn restore(inner: &Inner) -> Result<Option<i64>> {
    let tx = inner.backend.read_tx()?;
    let finished = tx
        .get(Bucket::META, FINISHED_COMPACT)?
        .map(|b| decode_compact_rev(&b))
        .transpose()?;
    let scheduled = tx
        .get(Bucket::META, SCHEDULED_COMPACT)?
        .map(|b| decode_compact_rev(&b))
        .transpose()?;
    let compact = finished.unwrap_or(-1);

    let mut key_to_lease: BTreeMap<Vec<u8>, i64> = BTreeMap::new();
    let mut current = 1;
    let mut min = Revision::new(1, 0).to_bytes().to_vec();
    let mut previous: Option<Revision> = None;
    loop {
        let chunk = tx.range(Bucket::KEY, &min, None, RESTORE_CHUNK)?;
        for (k, v) in &chunk {
            let rk = RevisionKey::from_bytes(k)?;
            // The store writes each revision once (a put or a tombstone): the same revision
            // twice is damage, which the index must not be rebuilt from.
            if previous.is_some_and(|p| rk.revision <= p) {
                return Err(MvccError::Corrupted(format!(
                    "key bucket holds revision {} more than once",
                    rk.revision
                )));
            }
            previous = Some(rk.revision);
            let kv = KeyValue::decode(v)?;
            if rk.tombstone {
                key_to_lease.remove(&kv.key);
            } else if kv.lease != 0 {
                key_to_lease.insert(kv.key.clone(), kv.lease);
            } else {
                key_to_lease.remove(&kv.key);
            }
            inner.index.restore(
                &kv.key,
                rk.revision,
                rk.tombstone,
                kv.create_revision,
                kv.version,
            );
            current = rk.revision.main;
        }
        let Some((last, _)) = chunk.last() else { break };
        if chunk.len() < RESTORE_CHUNK {
            break;
        }
        let last = RevisionKey::from_bytes(last)?.revision;
        min = Revision::new(last.main, last.sub.saturating_add(1))
            .to_bytes()
            .to_vec();
    }
    // Compaction may have deleted every revision up to the compaction revision.
    let current = current.max(compact);
    {
        let mut revs = inner.revs.lock();
        revs.current = current;
        revs.compact = compact;
    }

    let index = tx.get(Bucket::META, CONSISTENT_INDEX)?;
    let term = tx.get(Bucket::META, TERM)?;
    *inner.consistent.lock() = ConsistentIndex {
        index: index
            .map(|b| decode_u64(CONSISTENT_INDEX, &b))
            .transpose()?
            .unwrap_or(0),
        term: term.map(|b| decode_u64(TERM, &b)).transpose()?.unwrap_or(0),
    };

    match &inner.leases {
        Some(leases) => {
            for (key, lease) in &key_to_lease {
                leases.attach(*lease, key);
            }
        }
        None if !key_to_lease.is_empty() => tracing::warn!(
            keys = key_to_lease.len(),
            "keys carry leases but the store has no lease registry to attach them to"
        ),
        None => {}
    }
    tracing::info!(
        current_rev = current,
        compact_rev = compact,
        keys = inner.index.len(),
        "kv store restored"
    );
    Ok(scheduled.filter(|&s| s > compact))
}
