//! The backend hash etcd uses to detect diverging replicas.

use crate::{Bucket, ReadTx, ReadTxn, Result};

/// CRC-32C (Castagnoli) over each bucket's name, then each of its keys and values, buckets in name
/// order and keys in key order, skipping the pairs `ignore` selects (etcd's `backend.Hash`).
pub(crate) fn hash(tx: &ReadTxn, ignore: &dyn Fn(Bucket, &[u8]) -> bool) -> Result<u32> {
    let mut crc = 0u32;
    for bucket in tx.buckets() {
        crc = crc32c::crc32c_append(crc, bucket.name().as_bytes());
        tx.for_each(bucket, &mut |k, v| {
            if !ignore(bucket, k) {
                crc = crc32c::crc32c_append(crc, k);
                crc = crc32c::crc32c_append(crc, v);
            }
            Ok(())
        })?;
    }
    Ok(crc)
}
