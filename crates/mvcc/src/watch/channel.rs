//! A stream's channel of responses: bounded, never blocking the sender (the hub only ever
//! `try_send`s), and received either by a thread (`recv`, `recv_timeout`) or by an async task
//! (`recv_async`), so that a server can serve thousands of watch streams on a few threads.
//!
//! A crossbeam channel carries the responses; a [`Notify`] wakes an async receiver after every
//! send and when a sender goes away (so that it sees the disconnection).

use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TryRecvError, TrySendError};
use tokio::sync::Notify;

use super::WatchResponse;

/// A channel holding at most `cap` (at least 1) responses.
pub(crate) fn bounded(cap: usize) -> (ResponseSender, ResponseReceiver) {
    let (tx, rx) = crossbeam_channel::bounded(cap.max(1));
    let ready = Arc::new(Notify::new());
    (
        ResponseSender {
            tx,
            wake: Wake(Arc::clone(&ready)),
        },
        ResponseReceiver { rx, ready },
    )
}

/// The sending end; clones share the channel.
#[derive(Clone, Debug)]
pub(crate) struct ResponseSender {
    // Dropped before `wake` (fields drop in order): the receiver woken by `wake` then sees the
    // channel disconnected if this was the last sender.
    tx: Sender<WatchResponse>,
    wake: Wake,
}

/// Wakes the receiver when dropped.
#[derive(Clone, Debug)]
struct Wake(Arc<Notify>);

impl Drop for Wake {
    fn drop(&mut self) {
        self.0.notify_one();
    }
}

impl ResponseSender {
    /// Queues `resp` without blocking, and wakes the receiver.
    pub(crate) fn try_send(&self, resp: WatchResponse) -> Result<(), TrySendError<WatchResponse>> {
        self.tx.try_send(resp)?;
        self.wake.0.notify_one();
        Ok(())
    }
}

/// The receiving end.
#[derive(Debug)]
pub(crate) struct ResponseReceiver {
    rx: Receiver<WatchResponse>,
    ready: Arc<Notify>,
}

impl ResponseReceiver {
    /// Waits for the next response; `None` once every sender is gone.
    pub(crate) fn recv(&self) -> Option<WatchResponse> {
        self.rx.recv().ok()
    }

    /// Waits at most `timeout` for the next response.
    pub(crate) fn recv_timeout(
        &self,
        timeout: Duration,
    ) -> Result<WatchResponse, RecvTimeoutError> {
        self.rx.recv_timeout(timeout)
    }

    /// The next response, if one is queued.
    pub(crate) fn try_recv(&self) -> Result<WatchResponse, TryRecvError> {
        self.rx.try_recv()
    }

    /// Waits, without blocking the thread, for the next response; `None` once every sender is
    /// gone. Cancel safe: a response is taken only when the future completes.
    pub(crate) async fn recv_async(&self) -> Option<WatchResponse> {
        loop {
            match self.rx.try_recv() {
                Ok(resp) => return Some(resp),
                Err(TryRecvError::Disconnected) => return None,
                // A send or a drop between this check and the wait leaves a permit in
                // `ready`, so the wait returns at once: no wake-up is lost.
                Err(TryRecvError::Empty) => self.ready.notified().await,
            }
        }
    }

    /// Responses queued.
    pub(crate) fn len(&self) -> usize {
        self.rx.len()
    }

    /// Every queued response, without waiting.
    #[cfg(test)]
    pub(crate) fn try_iter(&self) -> crossbeam_channel::TryIter<'_, WatchResponse> {
        self.rx.try_iter()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::task::{Context, Poll, Waker};

    use super::*;

    fn resp(id: i64) -> WatchResponse {
        WatchResponse {
            watch_id: id,
            ..WatchResponse::default()
        }
    }

    /// Polls `fut` once with a waker that does nothing.
    fn poll_once<F: Future>(fut: std::pin::Pin<&mut F>) -> Poll<F::Output> {
        fut.poll(&mut Context::from_waker(Waker::noop()))
    }

    #[test]
    fn an_async_receiver_gets_what_was_sent_before_and_after_it_waited() {
        let (tx, rx) = bounded(4);
        tx.try_send(resp(1)).unwrap();
        let mut first = std::pin::pin!(rx.recv_async());
        assert!(matches!(poll_once(first.as_mut()), Poll::Ready(Some(r)) if r.watch_id == 1));
        let mut second = std::pin::pin!(rx.recv_async());
        assert!(poll_once(second.as_mut()).is_pending());
        tx.try_send(resp(2)).unwrap();
        assert!(matches!(poll_once(second.as_mut()), Poll::Ready(Some(r)) if r.watch_id == 2));
    }

    #[test]
    fn the_last_sender_going_away_ends_an_async_wait() {
        let (tx, rx) = bounded(4);
        let other = tx.clone();
        let mut wait = std::pin::pin!(rx.recv_async());
        assert!(poll_once(wait.as_mut()).is_pending());
        drop(other);
        assert!(poll_once(wait.as_mut()).is_pending(), "one sender is left");
        drop(tx);
        assert!(matches!(poll_once(wait.as_mut()), Poll::Ready(None)));
    }

    #[test]
    fn a_full_channel_refuses_without_blocking() {
        let (tx, rx) = bounded(1);
        tx.try_send(resp(1)).unwrap();
        assert!(matches!(tx.try_send(resp(2)), Err(TrySendError::Full(_))));
        assert_eq!(rx.len(), 1);
        drop(rx);
        assert!(matches!(
            tx.try_send(resp(3)),
            Err(TrySendError::Disconnected(_))
        ));
    }

    #[test]
    fn a_thread_sending_wakes_a_task_waiting_on_another() {
        let (tx, rx) = bounded(64);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let sender = std::thread::spawn(move || {
            for i in 0..1000 {
                while tx.try_send(resp(i)).is_err() {
                    std::thread::yield_now();
                }
            }
        });
        let got = rt.block_on(async {
            let mut got = Vec::new();
            while let Some(r) = tokio::time::timeout(Duration::from_secs(30), rx.recv_async())
                .await
                .unwrap()
            {
                got.push(r.watch_id);
            }
            got
        });
        sender.join().unwrap();
        assert_eq!(got, (0..1000).collect::<Vec<_>>());
    }
}
