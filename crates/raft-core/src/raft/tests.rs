//! Unit tests of the state machine, in the spirit of etcd's `raft_test.go` and
//! `raft_paper_test.go`: small clusters of [`Raft`] nodes over [`MemStorage`], with messages
//! delivered by a simple in-memory network.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, VecDeque};

use super::*;
use crate::logger::default_logger;
use crate::raftpb::{ConfChangeSingle, ConfChangeType, SnapshotMetadata};
use crate::raw_node::RawNode;
use crate::storage::MemStorage;

fn storage_with_peers(peers: &[u64], learners: &[u64]) -> MemStorage {
    let mut s = MemStorage::new();
    s.apply_snapshot(Snapshot {
        data: Vec::new(),
        metadata: SnapshotMetadata {
            conf_state: ConfState {
                voters: peers.to_vec(),
                learners: learners.to_vec(),
                ..ConfState::default()
            },
            index: 0,
            term: 0,
        },
    })
    .unwrap();
    s
}

fn config(id: u64) -> Config {
    Config {
        id,
        election_tick: 10,
        heartbeat_tick: 1,
        ..Config::default()
    }
}

fn new_raft(c: &Config, s: MemStorage) -> Raft<MemStorage> {
    Raft::new(c, s, default_logger()).unwrap()
}

/// Persists the unstable state the way an application would, then handles the messages that
/// waited for it (stepping those addressed to the node itself).
fn persist(r: &mut Raft<MemStorage>) {
    loop {
        if let Some(snap) = r.raft_log.next_unstable_snapshot().cloned() {
            r.raft_log.storage.apply_snapshot(snap).unwrap();
        }
        let ents = r.raft_log.next_unstable_ents().to_vec();
        r.raft_log.accept_unstable();
        r.raft_log.storage.append(&ents);
        if let Some(snap) = r.raft_log.unstable.snapshot.clone() {
            r.applied_snap(&snap);
        }
        if let Some(last) = ents.last() {
            r.raft_log.stable_to(last.index, last.term);
        }
        let after = std::mem::take(&mut r.msgs_after_append);
        if after.is_empty() {
            return;
        }
        for m in after {
            if m.to == r.id {
                let _ = r.step(m);
            } else {
                r.msgs.push(m);
            }
        }
    }
}

fn read_messages(r: &mut Raft<MemStorage>) -> Vec<Message> {
    persist(r);
    std::mem::take(&mut r.msgs)
}

/// A cluster connected by a lossless network, with optional cut links.
struct Network {
    peers: BTreeMap<u64, Raft<MemStorage>>,
    dropped: Vec<(u64, u64)>,
}

impl Network {
    fn new(n: u64, f: impl Fn(&mut Config)) -> Self {
        let ids: Vec<u64> = (1..=n).collect();
        let peers = ids
            .iter()
            .map(|&id| {
                let mut c = config(id);
                f(&mut c);
                (id, new_raft(&c, storage_with_peers(&ids, &[])))
            })
            .collect();
        Network {
            peers,
            dropped: Vec::new(),
        }
    }

    fn cut(&mut self, a: u64, b: u64) {
        self.dropped.push((a, b));
        self.dropped.push((b, a));
    }

    fn isolate(&mut self, id: u64) {
        let others: Vec<u64> = self.peers.keys().copied().filter(|&o| o != id).collect();
        for o in others {
            self.cut(id, o);
        }
    }

    fn recover(&mut self) {
        self.dropped.clear();
    }

    fn send(&mut self, msgs: Vec<Message>) {
        let mut queue: VecDeque<Message> = msgs.into();
        while let Some(m) = queue.pop_front() {
            if self.dropped.contains(&(m.from, m.to)) {
                continue;
            }
            let Some(p) = self.peers.get_mut(&m.to) else {
                continue;
            };
            let _ = p.step(m);
            queue.extend(read_messages(p));
        }
    }

    /// Steps a local message into `id` and delivers everything that follows.
    fn step_local(&mut self, id: u64, t: MessageType) {
        self.step_local_msg(id, Message::new(t, id, id));
    }

    fn step_local_msg(&mut self, id: u64, m: Message) {
        let p = self.peers.get_mut(&id).unwrap();
        let _ = p.step(m);
        let out = read_messages(p);
        self.send(out);
    }

    fn propose(&mut self, id: u64, data: &[u8]) {
        let mut m = Message::new(MessageType::MsgProp, id, id);
        m.entries = vec![Entry::new(0, 0, EntryType::Normal, data.to_vec())];
        self.step_local_msg(id, m);
    }

    fn tick(&mut self, id: u64, n: usize) {
        for _ in 0..n {
            let p = self.peers.get_mut(&id).unwrap();
            p.tick();
            let out = read_messages(p);
            self.send(out);
        }
    }

    fn get(&self, id: u64) -> &Raft<MemStorage> {
        &self.peers[&id]
    }
}

#[test]
fn leader_election_in_three_node_cluster() {
    let mut nt = Network::new(3, |_| {});
    nt.step_local(1, MessageType::MsgHup);
    assert_eq!(nt.get(1).state, StateRole::Leader);
    assert_eq!(nt.get(1).term, 1);
    for id in [2, 3] {
        assert_eq!(nt.get(id).state, StateRole::Follower);
        assert_eq!(nt.get(id).lead, 1);
        assert_eq!(nt.get(id).vote, 1);
    }
}

#[test]
fn election_fails_without_quorum() {
    let mut nt = Network::new(3, |_| {});
    nt.isolate(1);
    nt.step_local(1, MessageType::MsgHup);
    assert_eq!(nt.get(1).state, StateRole::Candidate);
    assert_eq!(nt.get(1).term, 1);
}

#[test]
fn pre_vote_election_does_not_bump_terms_when_it_fails() {
    let mut nt = Network::new(3, |c| c.pre_vote = true);
    nt.isolate(1);
    nt.step_local(1, MessageType::MsgHup);
    assert_eq!(nt.get(1).state, StateRole::PreCandidate);
    assert_eq!(nt.get(1).term, 0);
    nt.recover();
    nt.step_local(1, MessageType::MsgHup);
    assert_eq!(nt.get(1).state, StateRole::Leader);
    assert_eq!(nt.get(1).term, 1);
}

#[test]
fn log_replication_commits_on_all_nodes() {
    let mut nt = Network::new(3, |_| {});
    nt.step_local(1, MessageType::MsgHup);
    nt.propose(1, b"somedata");
    // A proposal at a follower is forwarded to the leader.
    nt.propose(2, b"more");
    for id in 1..=3 {
        let r = nt.get(id);
        assert_eq!(r.raft_log.committed, 3, "node {id}");
        let data: Vec<Vec<u8>> = r
            .raft_log
            .all_entries()
            .into_iter()
            .map(|e| e.data)
            .collect();
        assert_eq!(
            data,
            vec![Vec::new(), b"somedata".to_vec(), b"more".to_vec()]
        );
    }
}

#[test]
fn candidate_with_stale_log_loses() {
    let mut nt = Network::new(3, |_| {});
    nt.step_local(1, MessageType::MsgHup);
    nt.cut(1, 3);
    nt.propose(1, b"x");
    assert_eq!(nt.get(2).raft_log.last_index(), 2);
    assert_eq!(nt.get(3).raft_log.last_index(), 1);
    // Node 3 misses entry 2: node 2 refuses to vote for it.
    nt.recover();
    nt.isolate(1);
    nt.step_local(3, MessageType::MsgHup);
    assert_eq!(
        nt.get(3).state,
        StateRole::Candidate,
        "one grant, one rejection"
    );
    nt.step_local(2, MessageType::MsgHup);
    assert_eq!(nt.get(2).state, StateRole::Leader);
}

#[test]
fn disabled_proposal_forwarding_drops_proposals() {
    let mut nt = Network::new(3, |c| c.disable_proposal_forwarding = true);
    nt.step_local(1, MessageType::MsgHup);
    let mut m = Message::new(MessageType::MsgProp, 2, 2);
    m.entries = vec![Entry::new(0, 0, EntryType::Normal, b"x".to_vec())];
    let r2 = nt.peers.get_mut(&2).unwrap();
    assert_eq!(r2.step(m), Err(RaftError::ProposalDropped));
    assert!(r2.msgs.is_empty());
}

#[test]
fn check_quorum_makes_an_isolated_leader_step_down() {
    let mut nt = Network::new(3, |c| c.check_quorum = true);
    nt.step_local(1, MessageType::MsgHup);
    assert_eq!(nt.get(1).state, StateRole::Leader);
    nt.isolate(1);
    // Two election timeouts: the first one only resets the activity flags.
    nt.tick(1, 21);
    assert_eq!(nt.get(1).state, StateRole::Follower);
}

#[test]
fn leader_lease_rejects_disruptive_votes() {
    let mut nt = Network::new(3, |c| c.check_quorum = true);
    nt.step_local(1, MessageType::MsgHup);
    // Node 3 campaigns while 2 still hears from the leader: ignored.
    let r3 = nt.peers.get_mut(&3).unwrap();
    r3.set_randomized_election_timeout(10);
    nt.tick(3, 10);
    assert_eq!(nt.get(3).state, StateRole::Candidate);
    assert_eq!(nt.get(1).state, StateRole::Leader);
    assert_eq!(nt.get(2).term, 1);
}

#[test]
fn leader_transfer_to_up_to_date_follower() {
    let mut nt = Network::new(3, |_| {});
    nt.step_local(1, MessageType::MsgHup);
    nt.step_local_msg(1, Message::new(MessageType::MsgTransferLeader, 2, 1));
    assert_eq!(nt.get(2).state, StateRole::Leader);
    assert_eq!(nt.get(1).state, StateRole::Follower);
    assert_eq!(nt.get(1).lead, 2);
    assert_eq!(nt.get(1).lead_transferee, NONE);
}

#[test]
fn leader_transfer_drops_proposals_and_times_out() {
    let mut nt = Network::new(3, |_| {});
    nt.step_local(1, MessageType::MsgHup);
    nt.isolate(3);
    nt.step_local_msg(1, Message::new(MessageType::MsgTransferLeader, 3, 1));
    assert_eq!(nt.get(1).lead_transferee, 3);
    let mut m = Message::new(MessageType::MsgProp, 1, 1);
    m.entries = vec![Entry::new(0, 0, EntryType::Normal, b"x".to_vec())];
    assert_eq!(
        nt.peers.get_mut(&1).unwrap().step(m),
        Err(RaftError::ProposalDropped)
    );
    nt.tick(1, 10);
    assert_eq!(nt.get(1).lead_transferee, NONE);
    assert_eq!(nt.get(1).state, StateRole::Leader);
}

#[test]
fn randomized_election_timeout_is_in_range_and_reproducible() {
    let mut r = new_raft(&config(1), storage_with_peers(&[1, 2, 3], &[]));
    let mut seen = Vec::new();
    for _ in 0..100 {
        r.reset_randomized_election_timeout();
        let t = r.randomized_election_timeout();
        assert!((10..20).contains(&t), "timeout {t}");
        seen.push(t);
    }
    assert!(seen.iter().any(|&t| t != seen[0]), "timeouts should vary");
    let mut r2 = new_raft(&config(1), storage_with_peers(&[1, 2, 3], &[]));
    let again: Vec<usize> = (0..100)
        .map(|_| {
            r2.reset_randomized_election_timeout();
            r2.randomized_election_timeout()
        })
        .collect();
    assert_eq!(seen, again, "same seed, same timeouts");
}

#[test]
fn uncommitted_size_limit_drops_proposals() {
    let mut c = config(1);
    c.max_uncommitted_entries_size = 10;
    let mut r = new_raft(&c, storage_with_peers(&[1, 2], &[]));
    r.become_candidate();
    r.become_leader();
    let prop = |n: usize| {
        let mut m = Message::new(MessageType::MsgProp, 1, 1);
        m.entries = vec![Entry::new(0, 0, EntryType::Normal, vec![0; n])];
        m
    };
    // The first proposal is always accepted, even beyond the limit.
    assert_eq!(r.step(prop(8)), Ok(()));
    assert_eq!(r.step(prop(2)), Ok(()));
    assert_eq!(r.step(prop(1)), Err(RaftError::ProposalDropped));
    // Empty entries are never refused.
    assert_eq!(r.step(prop(0)), Ok(()));
    assert_eq!(r.uncommitted_size(), 10);
}

#[test]
fn leader_commits_only_entries_of_its_term_by_counting() {
    // Paper, section 5.4.2: an entry of an older term is committed only together with one of
    // the current term.
    let mut nt = Network::new(3, |_| {});
    nt.step_local(1, MessageType::MsgHup);
    nt.isolate(1);
    nt.propose(1, b"old");
    assert_eq!(nt.get(1).raft_log.last_index(), 2);
    // Node 1 comes back as leader of term 3 after 2 led term 2 without appending.
    nt.recover();
    nt.cut(1, 2);
    nt.cut(1, 3);
    nt.step_local(2, MessageType::MsgHup);
    nt.recover();
    assert_eq!(nt.get(2).state, StateRole::Leader);
    assert_eq!(nt.get(2).raft_log.committed, 2);
    // Node 1's stale entry 2 (term 1) was replaced by node 2's empty entry of term 2.
    nt.step_local(2, MessageType::MsgBeat);
    assert_eq!(nt.get(1).raft_log.term(2), Ok(2));
    assert_eq!(nt.get(1).raft_log.committed, 2);
}

#[test]
fn follower_rejection_hint_skips_divergent_terms() {
    // Follower log terms: 1 1 1 2 2 (indexes 1..=5); leader probes at (index 5, term 3).
    let mut s = storage_with_peers(&[1, 2], &[]);
    s.append(&[
        Entry::new(1, 1, EntryType::Normal, Vec::new()),
        Entry::new(1, 2, EntryType::Normal, Vec::new()),
        Entry::new(1, 3, EntryType::Normal, Vec::new()),
        Entry::new(2, 4, EntryType::Normal, Vec::new()),
        Entry::new(2, 5, EntryType::Normal, Vec::new()),
    ]);
    let mut r = new_raft(&config(2), s);
    let mut m = Message::new(MessageType::MsgApp, 1, 2);
    m.term = 4;
    m.index = 7;
    m.log_term = 1;
    r.step(m).unwrap();
    let resp = read_messages(&mut r).pop().unwrap();
    assert!(resp.reject);
    // The largest index <= min(7, 5) whose term is <= 1 is 3.
    assert_eq!((resp.reject_hint, resp.log_term), (3, 1));
}

#[test]
fn read_index_safe_waits_for_heartbeat_quorum() {
    let mut nt = Network::new(3, |_| {});
    nt.step_local(1, MessageType::MsgHup);
    let mut m = Message::new(MessageType::MsgReadIndex, 1, 1);
    m.entries = vec![Entry::new(0, 0, EntryType::Normal, b"ctx".to_vec())];
    nt.step_local_msg(1, m);
    let rs = &nt.get(1).read_states;
    assert_eq!(rs.len(), 1);
    assert_eq!(rs[0].index, 1);
    assert_eq!(rs[0].request_ctx, b"ctx");
    // From a follower: forwarded, answered by the leader.
    let mut m = Message::new(MessageType::MsgReadIndex, 2, 2);
    m.entries = vec![Entry::new(0, 0, EntryType::Normal, b"f".to_vec())];
    nt.step_local_msg(2, m);
    assert_eq!(nt.get(2).read_states.len(), 1);
    assert_eq!(nt.get(2).read_states[0].index, 1);
}

#[test]
fn learner_does_not_campaign_and_is_not_counted() {
    let ids = [1, 2];
    let mut r = new_raft(&config(2), storage_with_peers(&[1], &ids[1..]));
    assert!(r.is_learner());
    r.set_randomized_election_timeout(10);
    for _ in 0..30 {
        r.tick();
    }
    assert_eq!(r.state, StateRole::Follower);
    assert_eq!(r.term, 0);
}

#[test]
fn conf_change_adds_voter_and_probes_it() {
    let mut r = new_raft(&config(1), storage_with_peers(&[1], &[]));
    r.become_candidate();
    r.become_leader();
    persist(&mut r);
    let cs = r.apply_conf_change(&ConfChangeV2 {
        changes: vec![ConfChangeSingle::new(ConfChangeType::AddNode, 2)],
        ..ConfChangeV2::default()
    });
    assert_eq!(cs.voters, vec![1, 2]);
    // The new voter is probed right away.
    let msgs = read_messages(&mut r);
    assert!(
        msgs.iter()
            .any(|m| m.to == 2 && m.msg_type == MessageType::MsgApp)
    );
}

#[test]
fn step_down_on_removal() {
    let mut c = config(1);
    c.step_down_on_removal = true;
    let mut r = new_raft(&c, storage_with_peers(&[1, 2], &[]));
    r.become_candidate();
    r.become_leader();
    r.apply_conf_change(&ConfChangeV2 {
        changes: vec![ConfChangeSingle::new(ConfChangeType::RemoveNode, 1)],
        ..ConfChangeV2::default()
    });
    assert_eq!(r.state, StateRole::Follower);
    assert!(!r.promotable());
}

#[test]
fn second_conf_change_is_refused_while_one_is_pending() {
    let mut r = new_raft(&config(1), storage_with_peers(&[1, 2], &[]));
    r.become_candidate();
    r.become_leader();
    let cc = AnyConfChange::V2(ConfChangeV2 {
        changes: vec![ConfChangeSingle::new(ConfChangeType::AddNode, 3)],
        ..ConfChangeV2::default()
    });
    r.step(conf_change_to_msg(Some(&cc))).unwrap();
    r.step(conf_change_to_msg(Some(&cc))).unwrap();
    let types: Vec<EntryType> = r
        .raft_log
        .all_entries()
        .iter()
        .map(|e| e.entry_type)
        .collect();
    // The empty leader entry, the first change, and the second change replaced by an empty
    // normal entry (the first one is not applied yet).
    assert_eq!(
        types,
        vec![
            EntryType::Normal,
            EntryType::ConfChangeV2,
            EntryType::Normal
        ]
    );
}

#[test]
fn restore_from_snapshot() {
    let mut r = new_raft(&config(2), storage_with_peers(&[1, 2], &[]));
    let snap = Snapshot {
        data: Vec::new(),
        metadata: SnapshotMetadata {
            conf_state: ConfState {
                voters: vec![1, 2, 3],
                ..ConfState::default()
            },
            index: 11,
            term: 11,
        },
    };
    assert!(r.restore(snap.clone()));
    assert_eq!(r.raft_log.last_index(), 11);
    assert_eq!(r.raft_log.term(11), Ok(11));
    assert_eq!(r.trk.voter_nodes(), vec![1, 2, 3]);
    // The same snapshot again is stale.
    assert!(!r.restore(snap));
}

#[test]
fn raw_node_single_node_ready_cycle() {
    let mut rn = RawNode::new(&config(1), storage_with_peers(&[1], &[])).unwrap();
    rn.campaign().unwrap();
    let mut last_commit = 0;
    for _ in 0..5 {
        if !rn.has_ready() {
            break;
        }
        let rd = rn.ready();
        if !rd.hard_state.is_empty() {
            rn.store_mut().set_hard_state(rd.hard_state);
            last_commit = rd.hard_state.commit;
        }
        rn.store_mut().append(&rd.entries);
        rn.advance();
    }
    assert!(!rn.has_ready());
    assert_eq!(rn.basic_status().soft_state.raft_state, StateRole::Leader);
    assert_eq!(last_commit, 1);
    rn.propose(b"x".to_vec()).unwrap();
    let rd = rn.ready();
    assert_eq!(rd.entries.len(), 1);
    assert!(rd.must_sync);
    rn.store_mut().append(&rd.entries);
    rn.advance();
    let rd = rn.ready();
    assert_eq!(rd.committed_entries.len(), 1);
    assert_eq!(rd.committed_entries[0].data, b"x");
    assert_eq!(rn.status().progress.len(), 1);
}

#[test]
fn raw_node_refuses_local_messages_from_the_network() {
    let mut rn = RawNode::new(&config(1), storage_with_peers(&[1, 2], &[])).unwrap();
    assert_eq!(
        rn.step(Message::new(MessageType::MsgHup, 2, 1)),
        Err(RaftError::StepLocalMsg)
    );
    assert_eq!(
        rn.step(Message::new(MessageType::MsgAppResp, 9, 1)),
        Err(RaftError::StepPeerNotFound)
    );
}

#[test]
fn invalid_config_is_an_error() {
    let mut c = config(1);
    c.election_tick = 1;
    assert!(matches!(
        Raft::new(&c, MemStorage::new(), default_logger()),
        Err(RaftError::Config(ConfigError::ElectionTick))
    ));
}
