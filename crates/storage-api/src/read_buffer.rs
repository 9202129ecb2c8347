//! The read buffer: writes of ended write transactions that the engine has not committed yet
//! (etcd's `txReadBuffer`), as a persistent ordered map so that readers snapshot it in O(1).

use std::ops::Bound;
use std::sync::Arc;

use imbl::OrdMap;

use crate::{Bucket, WriteBatch, WriteOp};

/// A buffered change: `Some(value)` for a put, `None` for a delete.
pub(crate) type Slot = Option<Arc<[u8]>>;

/// Per-bucket ordered changes. Cloning is O(1); clones share structure.
#[derive(Clone, Default)]
pub(crate) struct ReadBuffer {
    buckets: OrdMap<Bucket, OrdMap<Arc<[u8]>, Slot>>,
}

impl ReadBuffer {
    /// Records a change, replacing any earlier change of the same key.
    pub(crate) fn insert(&mut self, bucket: Bucket, key: Arc<[u8]>, slot: Slot) {
        self.buckets.entry(bucket).or_default().insert(key, slot);
    }

    /// The buckets with buffered changes.
    pub(crate) fn buckets(&self) -> Vec<Bucket> {
        self.buckets.keys().copied().collect()
    }

    /// The buffered change of one key, if any.
    pub(crate) fn get(&self, bucket: Bucket, key: &[u8]) -> Option<&Slot> {
        self.buckets.get(&bucket)?.get(key)
    }

    /// Buffered changes of `bucket` in `[start, end)`, in key order.
    pub(crate) fn range<'a>(
        &'a self,
        bucket: Bucket,
        start: &'a [u8],
        end: Option<&'a [u8]>,
    ) -> impl Iterator<Item = (&'a Arc<[u8]>, &'a Slot)> + 'a {
        let upper = end.map_or(Bound::Unbounded, Bound::Excluded);
        self.buckets
            .get(&bucket)
            .into_iter()
            .flat_map(move |m| m.range::<_, [u8]>((Bound::Included(start), upper)))
    }

    /// Every buffered change as one engine batch, bucket by bucket in key order.
    pub(crate) fn to_write_batch(&self) -> WriteBatch {
        let mut ops = Vec::new();
        for (bucket, entries) in &self.buckets {
            for (key, slot) in entries {
                ops.push(match slot {
                    Some(value) => WriteOp::Put {
                        bucket: *bucket,
                        key: key.to_vec(),
                        value: value.to_vec(),
                    },
                    None => WriteOp::Delete {
                        bucket: *bucket,
                        key: key.to_vec(),
                    },
                });
            }
        }
        WriteBatch { ops }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(s: &str) -> Arc<[u8]> {
        Arc::from(s.as_bytes())
    }

    #[test]
    fn later_changes_replace_earlier_ones_and_clones_are_isolated() {
        let mut buf = ReadBuffer::default();
        buf.insert(Bucket::KEY, bytes("a"), Some(bytes("1")));
        let snapshot = buf.clone();
        buf.insert(Bucket::KEY, bytes("a"), None);
        buf.insert(Bucket::KEY, bytes("b"), Some(bytes("2")));
        assert_eq!(snapshot.get(Bucket::KEY, b"a"), Some(&Some(bytes("1"))));
        assert_eq!(snapshot.get(Bucket::KEY, b"b"), None);
        assert_eq!(buf.get(Bucket::KEY, b"a"), Some(&None));
        let keys: Vec<_> = buf
            .range(Bucket::KEY, b"a", Some(b"c"))
            .map(|(k, _)| k.clone())
            .collect();
        assert_eq!(keys, vec![bytes("a"), bytes("b")]);
        assert_eq!(buf.to_write_batch().ops.len(), 2);
    }
}
