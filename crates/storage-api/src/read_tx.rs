//! Read transactions: a consistent view of the engine's last commit overlaid with the read
//! buffer (and, inside a write transaction, with that transaction's own writes).

use std::collections::BTreeSet;
use std::iter::Peekable;
use std::sync::Arc;

use crate::read_buffer::{ReadBuffer, Slot};
use crate::{Bucket, EngineView, Result, StorageError};

/// Called by [`ReadTx::for_each`] for each key-value; an error stops the visit.
pub type ForEachVisitor<'a> = dyn FnMut(&[u8], &[u8]) -> Result<()> + 'a;

/// Called by a scan for each merged key-value; `Ok(false)` stops it.
pub(crate) type ScanVisitor<'a> = dyn FnMut(&[u8], &[u8]) -> Result<bool> + 'a;

/// A key and its value, as ranges return them.
pub type KeyValue = (Vec<u8>, Vec<u8>);

/// Reads of the backend contract, served by [`ReadTxn`] and by [`crate::BatchTx`].
pub trait ReadTx {
    /// The value of `key` in `bucket`, if present.
    fn get(&self, bucket: Bucket, key: &[u8]) -> Result<Option<Vec<u8>>>;

    /// The key-values of `bucket` with `start <= key < end` (to the bucket's end when `end` is
    /// `None`), in ascending key order, at most `limit` of them (`0`: no limit).
    fn range(
        &self,
        bucket: Bucket,
        start: &[u8],
        end: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<KeyValue>>;

    /// Calls `visit` for every key-value of `bucket` in key order; stops at the first error and
    /// returns it.
    fn for_each(&self, bucket: Bucket, visit: &mut ForEachVisitor<'_>) -> Result<()>;
}

/// The layers a read sees, bottom to top: the engine's view, the read buffer, and (inside a write
/// transaction) the transaction's own buffer. Upper layers win.
pub(crate) struct Layers<'a> {
    pub(crate) buckets: &'a BTreeSet<Bucket>,
    pub(crate) view: &'a dyn EngineView,
    pub(crate) read_buffer: &'a ReadBuffer,
    pub(crate) tx_buffer: Option<&'a ReadBuffer>,
}

impl Layers<'_> {
    fn check_bucket(&self, bucket: Bucket) -> Result<()> {
        if self.buckets.contains(&bucket) {
            Ok(())
        } else {
            Err(StorageError::UnknownBucket(bucket.name().to_owned()))
        }
    }

    pub(crate) fn get(&self, bucket: Bucket, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.check_bucket(bucket)?;
        let buffered = self
            .tx_buffer
            .and_then(|b| b.get(bucket, key))
            .or_else(|| self.read_buffer.get(bucket, key));
        if let Some(slot) = buffered {
            return Ok(slot.as_deref().map(<[u8]>::to_vec));
        }
        let mut found = None;
        let mut end = key.to_vec();
        end.push(0);
        self.view.visit(bucket, key, Some(&end), &mut |k, v| {
            if k == key {
                found = Some(v.to_vec());
            }
            false
        })?;
        Ok(found)
    }

    /// Visits the merged key-values of `[start, end)` in key order until `visit` returns
    /// `Ok(false)` or an error.
    pub(crate) fn scan(
        &self,
        bucket: Bucket,
        start: &[u8],
        end: Option<&[u8]>,
        visit: &mut ScanVisitor<'_>,
    ) -> Result<()> {
        self.check_bucket(bucket)?;
        if end.is_some_and(|end| end < start) {
            return Err(StorageError::InvalidRange(bucket));
        }
        let empty = ReadBuffer::default();
        let top = self.tx_buffer.unwrap_or(&empty).range(bucket, start, end);
        let bottom = self.read_buffer.range(bucket, start, end);
        let mut overlay = Overlay {
            top: top.peekable(),
            bottom: bottom.peekable(),
        }
        .peekable();

        // Merge the engine's entries with the overlay as the engine pushes them.
        let mut sink = Sink {
            visit,
            stopped: false,
            failure: None,
        };
        self.view.visit(bucket, start, end, &mut |ek, ev| {
            while let Some((ok, slot)) = overlay.next_if(|(ok, _)| &**ok < ek) {
                if let Some(value) = slot
                    && !sink.emit(&ok, value)
                {
                    return false;
                }
            }
            if let Some((_, slot)) = overlay.next_if(|(ok, _)| &**ok == ek) {
                return match slot {
                    Some(value) => sink.emit(ek, value),
                    None => true,
                };
            }
            sink.emit(ek, ev)
        })?;
        if !sink.stopped {
            for (ok, slot) in overlay {
                if let Some(value) = slot
                    && !sink.emit(&ok, value)
                {
                    break;
                }
            }
        }
        sink.failure.map_or(Ok(()), Err)
    }

    pub(crate) fn range(
        &self,
        bucket: Bucket,
        start: &[u8],
        end: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<KeyValue>> {
        let mut out = Vec::new();
        self.scan(bucket, start, end, &mut |k, v| {
            out.push((k.to_vec(), v.to_vec()));
            Ok(limit == 0 || out.len() < limit)
        })?;
        Ok(out)
    }

    pub(crate) fn for_each(&self, bucket: Bucket, visit: &mut ForEachVisitor<'_>) -> Result<()> {
        self.scan(bucket, &[], None, &mut |k, v| visit(k, v).map(|()| true))
    }
}

/// Where a scan's merged key-values go; remembers why it stopped.
struct Sink<'v> {
    visit: &'v mut ScanVisitor<'v>,
    stopped: bool,
    failure: Option<StorageError>,
}

impl Sink<'_> {
    /// Passes one key-value on; `false` once the scan must stop.
    fn emit(&mut self, k: &[u8], v: &[u8]) -> bool {
        match (self.visit)(k, v) {
            Ok(true) => true,
            Ok(false) => {
                self.stopped = true;
                false
            }
            Err(e) => {
                self.failure = Some(e);
                self.stopped = true;
                false
            }
        }
    }
}

/// Two sorted buffers merged into one sorted stream; on equal keys the top one wins.
struct Overlay<'a, T, B>
where
    T: Iterator<Item = (&'a Arc<[u8]>, &'a Slot)>,
    B: Iterator<Item = (&'a Arc<[u8]>, &'a Slot)>,
{
    top: Peekable<T>,
    bottom: Peekable<B>,
}

impl<'a, T, B> Iterator for Overlay<'a, T, B>
where
    T: Iterator<Item = (&'a Arc<[u8]>, &'a Slot)>,
    B: Iterator<Item = (&'a Arc<[u8]>, &'a Slot)>,
{
    type Item = (Arc<[u8]>, &'a Slot);

    fn next(&mut self) -> Option<Self::Item> {
        let order = match (self.top.peek(), self.bottom.peek()) {
            (None, None) => return None,
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (Some((t, _)), Some((b, _))) => t.cmp(b),
        };
        if order == std::cmp::Ordering::Equal {
            // The top layer shadows the bottom one's change of the same key.
            self.bottom.next();
        }
        let take_top = order != std::cmp::Ordering::Greater;
        let (k, slot) = if take_top {
            self.top.next()?
        } else {
            self.bottom.next()?
        };
        Some((Arc::clone(k), slot))
    }
}

/// A consistent read transaction: everything committed or ended when it began, nothing after.
///
/// Cheap to open (an O(1) snapshot of the read buffer and a shared engine view) and usable from
/// any thread while the writer goes on. Engines may keep the pages of the view alive while it is
/// open (LMDB does), so keep read transactions short.
#[derive(Clone)]
pub struct ReadTxn {
    pub(crate) buckets: Arc<BTreeSet<Bucket>>,
    pub(crate) view: Arc<dyn EngineView>,
    pub(crate) buffer: ReadBuffer,
}

impl ReadTxn {
    fn layers(&self) -> Layers<'_> {
        Layers {
            buckets: &self.buckets,
            view: &*self.view,
            read_buffer: &self.buffer,
            tx_buffer: None,
        }
    }

    /// The buckets that existed when the transaction began, in name order.
    pub fn buckets(&self) -> impl Iterator<Item = Bucket> + '_ {
        self.buckets.iter().copied()
    }
}

impl ReadTx for ReadTxn {
    fn get(&self, bucket: Bucket, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.layers().get(bucket, key)
    }

    fn range(
        &self,
        bucket: Bucket,
        start: &[u8],
        end: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<KeyValue>> {
        self.layers().range(bucket, start, end, limit)
    }

    fn for_each(&self, bucket: Bucket, visit: &mut ForEachVisitor<'_>) -> Result<()> {
        self.layers().for_each(bucket, visit)
    }
}
