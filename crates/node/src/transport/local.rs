//! An in-process [`Transport`]: a [`LocalNetwork`] hub connecting the nodes of one process
//! through crossbeam channels, with links that tests can cut and heal.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use raft_core::raftpb::{Message, MessageType};

use super::{PeerEvent, Transport};

/// The capacity of each node's inbox; beyond it messages are dropped (as a real network would).
const INBOX_CAPACITY: usize = 4096;

#[derive(Default)]
struct Hub {
    /// Each registered node's inbox.
    inboxes: HashMap<u64, Sender<PeerEvent>>,
    /// Directed links `(from, to)` that drop every message.
    cut: HashSet<(u64, u64)>,
}

/// A hub connecting in-process nodes. Cloning shares the hub.
#[derive(Clone, Default)]
pub struct LocalNetwork {
    hub: Arc<Mutex<Hub>>,
}

impl LocalNetwork {
    /// An empty network.
    pub fn new() -> Self {
        Self::default()
    }

    fn hub(&self) -> MutexGuard<'_, Hub> {
        self.hub.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Connects node `id` (replacing an earlier registration, e.g. after a restart): returns
    /// its transport and the receiver of its [`PeerEvent`]s.
    pub fn join(&self, id: u64) -> (Arc<LocalTransport>, Receiver<PeerEvent>) {
        let (tx, rx) = crossbeam_channel::bounded(INBOX_CAPACITY);
        self.hub().inboxes.insert(id, tx.clone());
        let transport = Arc::new(LocalTransport {
            id,
            network: self.clone(),
            own: tx,
        });
        (transport, rx)
    }

    /// Disconnects node `id`: messages to it are dropped (and reported unreachable).
    pub fn leave(&self, id: u64) {
        self.hub().inboxes.remove(&id);
    }

    /// Drops every message between `a` and `b`, both ways.
    pub fn cut(&self, a: u64, b: u64) {
        let mut hub = self.hub();
        hub.cut.insert((a, b));
        hub.cut.insert((b, a));
    }

    /// Cuts every link of `id`.
    pub fn isolate(&self, id: u64) {
        let mut hub = self.hub();
        let others: Vec<u64> = hub.inboxes.keys().copied().filter(|&o| o != id).collect();
        for o in others {
            hub.cut.insert((id, o));
            hub.cut.insert((o, id));
        }
    }

    /// Restores the link between `a` and `b`.
    pub fn heal(&self, a: u64, b: u64) {
        let mut hub = self.hub();
        hub.cut.remove(&(a, b));
        hub.cut.remove(&(b, a));
    }

    /// Restores every link.
    pub fn heal_all(&self) {
        self.hub().cut.clear();
    }
}

/// One node's end of a [`LocalNetwork`].
pub struct LocalTransport {
    id: u64,
    network: LocalNetwork,
    /// The node's own inbox, for delivery reports.
    own: Sender<PeerEvent>,
}

impl Transport for LocalTransport {
    fn send(&self, msgs: Vec<Message>) {
        let mut reports = Vec::new();
        {
            let hub = self.network.hub();
            for m in msgs {
                let to = m.to;
                let is_snap = m.msg_type == MessageType::MsgSnap;
                let delivered = !hub.cut.contains(&(self.id, to))
                    && match hub.inboxes.get(&to) {
                        Some(tx) => match tx.try_send(PeerEvent::Message(m)) {
                            Ok(()) => true,
                            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => false,
                        },
                        None => false,
                    };
                if !delivered {
                    reports.push(PeerEvent::Unreachable(to));
                }
                if is_snap {
                    reports.push(PeerEvent::SnapshotStatus {
                        to,
                        failed: !delivered,
                    });
                }
            }
        }
        for r in reports {
            // Our own inbox may be full or gone (stopping): the report is best effort.
            let _ = self.own.try_send(r);
        }
    }

    fn add_peer(&self, _id: u64, _peer_urls: &[String]) {}

    fn remove_peer(&self, _id: u64) {}

    fn update_peer(&self, _id: u64, _peer_urls: &[String]) {}
}
