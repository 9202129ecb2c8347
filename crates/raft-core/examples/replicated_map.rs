//! A replicated key-value map: three in-memory Raft nodes, one message queue, no threads or IO.
//!
//! Each node is a [`RawNode`] over a [`MemStorage`]. The loop drives every node through the
//! Ready/Advance cycle: persist entries, apply committed `set key value` commands to the node's
//! `BTreeMap`, and queue outgoing messages, which are then delivered in order.
//!
//! Run with `cargo run -p raft-core --example replicated_map`.

use std::collections::{BTreeMap, VecDeque};

use raft_core::raftpb::{ConfState, EntryType, Message, Snapshot, SnapshotMetadata};
use raft_core::storage::MemStorage;
use raft_core::{Config, RaftError, RawNode, StateRole};

type Error = Box<dyn std::error::Error>;

/// One member of the group: its Raft node and the state machine it replicates.
struct Node {
    raft: RawNode<MemStorage>,
    map: BTreeMap<String, String>,
}

impl Node {
    /// A node of the group `voters`, bootstrapped from a snapshot naming them.
    fn new(id: u64, voters: &[u64]) -> Result<Node, Error> {
        let mut storage = MemStorage::new();
        storage.apply_snapshot(Snapshot {
            data: Vec::new(),
            metadata: SnapshotMetadata {
                conf_state: ConfState {
                    voters: voters.to_vec(),
                    ..ConfState::default()
                },
                index: 1,
                term: 1,
            },
        })?;
        let config = Config {
            election_tick: 10,
            heartbeat_tick: 1,
            // The caller provides the randomness of election timeouts.
            random_seed: id,
            ..Config::new(id)
        };
        Ok(Node {
            raft: RawNode::new(&config, storage)?,
            map: BTreeMap::new(),
        })
    }

    /// Handles one Ready: persists, applies, and hands back the messages to send.
    fn process_ready(&mut self) -> Result<Vec<Message>, Error> {
        let rd = self.raft.ready();
        let store = self.raft.store_mut();
        if !rd.snapshot.is_empty() {
            store.apply_snapshot(rd.snapshot.clone())?;
        }
        store.append(&rd.entries);
        if !rd.hard_state.is_empty() {
            store.set_hard_state(rd.hard_state);
        }
        for entry in &rd.committed_entries {
            if entry.entry_type != EntryType::Normal || entry.data.is_empty() {
                continue; // A new leader's empty entry, or a conf change (none here).
            }
            let command = String::from_utf8_lossy(&entry.data);
            if let Some(("set", rest)) = command.split_once(' ')
                && let Some((key, value)) = rest.split_once(' ')
            {
                self.map.insert(key.to_owned(), value.to_owned());
            }
        }
        self.raft.advance();
        Ok(rd.messages)
    }
}

/// The cluster: the nodes (node `i` has id `i + 1`) and the messages in flight.
struct Cluster {
    nodes: Vec<Node>,
    queue: VecDeque<Message>,
}

impl Cluster {
    /// Runs Ready cycles and delivers messages until nothing is left to do.
    fn stabilize(&mut self) -> Result<(), Error> {
        loop {
            let mut idle = true;
            for node in &mut self.nodes {
                if node.raft.has_ready() {
                    idle = false;
                    self.queue.extend(node.process_ready()?);
                }
            }
            while let Some(m) = self.queue.pop_front() {
                idle = false;
                let to = usize::try_from(m.to)? - 1;
                // Stepping may fail for messages that are no longer relevant; that is fine.
                let _ = self.nodes[to].raft.step(m);
            }
            if idle {
                return Ok(());
            }
        }
    }

    /// The id of the node every node agrees is the leader, if any.
    fn leader(&self) -> Option<u64> {
        self.nodes
            .iter()
            .map(|n| n.raft.basic_status())
            .find(|s| s.soft_state.raft_state == StateRole::Leader)
            .map(|s| s.id)
    }

    fn node(&mut self, id: u64) -> &mut Node {
        &mut self.nodes[(id - 1) as usize]
    }

    fn propose(&mut self, id: u64, command: &str) -> Result<(), RaftError> {
        self.node(id).raft.propose(command.as_bytes().to_vec())
    }
}

fn main() -> Result<(), Error> {
    let voters = [1, 2, 3];
    let nodes = voters
        .iter()
        .map(|&id| Node::new(id, &voters))
        .collect::<Result<_, _>>()?;
    let mut cluster = Cluster {
        nodes,
        queue: VecDeque::new(),
    };

    // Node 1 campaigns and wins.
    cluster.node(1).raft.campaign()?;
    cluster.stabilize()?;
    println!("leader: {:?}", cluster.leader());

    // Proposals on the leader, and one on a follower (forwarded to the leader).
    cluster.propose(1, "set color blue")?;
    cluster.propose(1, "set shape circle")?;
    cluster.propose(2, "set size large")?;
    cluster.stabilize()?;

    // Hand leadership to node 3 (MsgTransferLeader, then MsgTimeoutNow) and keep writing.
    cluster.node(1).raft.transfer_leader(3);
    cluster.stabilize()?;
    println!("leader after transfer: {:?}", cluster.leader());
    cluster.propose(3, "set color green")?;
    cluster.stabilize()?;

    for node in &cluster.nodes {
        println!("node {}: {:?}", node.raft.basic_status().id, node.map);
    }
    let first = &cluster.nodes[0].map;
    assert!(cluster.nodes.iter().all(|n| n.map == *first));
    Ok(())
}
