//! Linearizable reads (etcd's `linearizableReadLoop`): concurrent reads are batched behind one
//! ReadIndex round; once raft confirms the read index and the apply thread has applied up to
//! it, every read of the batch is served from the local store.

use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender, select};

use crate::error::NodeError;
use crate::node::Shared;
use crate::raft_loop::Command;

/// A read waiting for the read index: `serve` runs once the store is up to date.
pub(crate) type ReadJob = Box<dyn FnOnce(Result<(), NodeError>) + Send>;

pub(crate) struct ReadLoop {
    pub(crate) shared: Arc<Shared>,
    pub(crate) jobs: Receiver<ReadJob>,
    pub(crate) raft: Sender<Command>,
    pub(crate) stop: Receiver<()>,
    pub(crate) next_ctx: u64,
}

impl ReadLoop {
    pub(crate) fn run(mut self) {
        loop {
            let first = select! {
                recv(self.jobs) -> j => match j { Ok(j) => j, Err(_) => break },
                recv(self.stop) -> _ => break,
            };
            let mut batch = vec![first];
            while let Ok(j) = self.jobs.try_recv() {
                batch.push(j);
            }
            let result = self.read_index();
            for job in batch {
                job(result.clone());
            }
        }
        while let Ok(job) = self.jobs.try_recv() {
            job(Err(NodeError::Stopped));
        }
    }

    /// One ReadIndex round, then waits until the store has applied the read index.
    fn read_index(&mut self) -> Result<(), NodeError> {
        self.next_ctx += 1;
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.raft
            .send(Command::ReadIndex {
                ctx: self.next_ctx,
                reply: tx,
            })
            .map_err(|_| NodeError::Stopped)?;
        let deadline = Instant::now() + self.shared.tuning.request_timeout;
        let index = select! {
            recv(rx) -> r => r.map_err(|_| NodeError::Stopped)??,
            recv(self.stop) -> _ => return Err(NodeError::Stopped),
            recv(crossbeam_channel::at(deadline)) -> _ => return Err(NodeError::Timeout),
        };
        if self.shared.wait_applied(index, deadline) {
            Ok(())
        } else {
            Err(NodeError::Timeout)
        }
    }
}
