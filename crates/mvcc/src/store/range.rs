//! Range reads shared by read and write transactions (etcd's `rangeKeys`).

use storage_api::{Bucket, ReadTx};

use super::Inner;
use crate::error::{MvccError, Result};
use crate::request::{RangeOptions, RangeResult};
use crate::tree_index::KeySpan;
use crate::{KeyValue, Revision};

/// Fails if `rev` is below the store's compaction revision as it is now.
fn check_compacted(inner: &Inner, rev: i64) -> Result<()> {
    let compacted = inner.revs().compact;
    if rev < compacted {
        return Err(MvccError::Compacted {
            requested: rev,
            compacted,
        });
    }
    Ok(())
}

/// Reads the key-value stored at `rev` through `tx`.
pub(crate) fn read_kv(tx: &dyn ReadTx, rev: Revision) -> Result<KeyValue> {
    let bytes = tx.get(Bucket::KEY, &rev.to_bytes())?.ok_or_else(|| {
        MvccError::Corrupted(format!(
            "revision {rev} is in the index but not in the key bucket"
        ))
    })?;
    Ok(KeyValue::decode(&bytes)?)
}

/// Reads `[key, end)` at `opts.rev` (or `cur_rev`) through `tx`, whose view holds every
/// revision up to `cur_rev`.
pub(crate) fn range_keys(
    inner: &Inner,
    tx: &dyn ReadTx,
    key: &[u8],
    end: Option<&[u8]>,
    cur_rev: i64,
    opts: &RangeOptions,
) -> Result<RangeResult> {
    inner.counts.range();
    if opts.rev > cur_rev {
        return Err(MvccError::FutureRev {
            requested: opts.rev,
            current: cur_rev,
        });
    }
    let rev = if opts.rev <= 0 { cur_rev } else { opts.rev };
    check_compacted(inner, rev)?;
    let span = KeySpan::new(key, end);
    if opts.count_only {
        let count = inner.index.count_revisions(span, rev);
        check_compacted(inner, rev)?;
        return Ok(RangeResult {
            kvs: Vec::new(),
            rev: cur_rev,
            count: count as i64,
            more: false,
        });
    }
    let limit = usize::try_from(opts.limit).unwrap_or(0);
    let (revs, total) = inner.index.revisions(span, rev, limit);
    // A compaction that began after the first check may have changed what the index returned
    // for `rev`: checking again (the compaction revision is set before the index is compacted)
    // makes such a read fail instead of returning a partial view.
    check_compacted(inner, rev)?;
    let mut kvs = Vec::with_capacity(revs.len());
    for r in revs {
        let mut kv = read_kv(tx, r)?;
        if opts.keys_only {
            kv.value = Vec::new();
        }
        kvs.push(kv);
    }
    Ok(RangeResult {
        more: limit > 0 && total > kvs.len(),
        kvs,
        rev: cur_rev,
        count: total as i64,
    })
}
