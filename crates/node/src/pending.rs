//! [`Pending`]: the answer to a request that goes through raft (decision 0002).
//!
//! A wrapper around a `tokio::sync::oneshot::Receiver` (tokio's `sync` module only, no runtime):
//! the server awaits it as a `Future`, threads and tests block on [`Pending::wait`]. The node's
//! threads complete it with a non-blocking send.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::error::NodeError;

/// The eventual result of a request: `await` it, or [`wait`](Pending::wait) for it.
#[derive(Debug)]
#[must_use = "a Pending does nothing unless awaited or waited for"]
pub struct Pending<T> {
    rx: oneshot::Receiver<Result<T, NodeError>>,
}

/// The completing side of a [`Pending`].
pub(crate) type Completer<T> = oneshot::Sender<Result<T, NodeError>>;

impl<T> Pending<T> {
    /// A new pending result and the sender that completes it.
    pub(crate) fn new() -> (Completer<T>, Pending<T>) {
        let (tx, rx) = oneshot::channel();
        (tx, Pending { rx })
    }

    /// A result known at once.
    pub(crate) fn ready(result: Result<T, NodeError>) -> Pending<T> {
        let (tx, pending) = Pending::new();
        let _ = tx.send(result);
        pending
    }

    /// Blocks the calling thread until the result arrives or `timeout` passes
    /// ([`NodeError::Timeout`]). A request the node dropped (it stopped) is
    /// [`NodeError::Stopped`]. Do not call it on an async runtime's worker.
    pub fn wait(mut self, timeout: Duration) -> Result<T, NodeError> {
        let deadline = Instant::now() + timeout;
        let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
        let mut cx = Context::from_waker(&waker);
        loop {
            if let Poll::Ready(result) = Pin::new(&mut self).poll(&mut cx) {
                return result;
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(NodeError::Timeout);
            }
            std::thread::park_timeout(deadline - now);
        }
    }
}

impl<T> Future for Pending<T> {
    type Output = Result<T, NodeError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match Pin::new(&mut self.rx).poll(cx) {
            Poll::Ready(Ok(result)) => Poll::Ready(result),
            Poll::Ready(Err(_)) => Poll::Ready(Err(NodeError::Stopped)),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Wakes a thread parked in [`Pending::wait`].
struct ThreadWaker(std::thread::Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}
