//! An in-process cluster on real files for the node tests.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use mvcc::{PutRequest, RangeRequest};
use node::transport::local::LocalNetwork;
use node::{Node, NodeConfig};

pub const WAIT: Duration = Duration::from_secs(10);
pub const TOKEN: &str = "test-cluster";

/// Polls `f` until it holds, for at most `timeout`.
pub fn eventually(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    f()
}

pub struct TestCluster {
    pub net: LocalNetwork,
    pub dir: tempfile::TempDir,
    pub members: Vec<(String, Vec<String>)>,
    pub nodes: Vec<Option<Node>>,
    pub snapshot_count: u64,
    pub catchup: u64,
}

impl TestCluster {
    pub fn new(n: usize, snapshot_count: u64) -> TestCluster {
        let members = (0..n)
            .map(|i| {
                (
                    format!("n{i}"),
                    vec![format!("http://127.0.0.1:{}", 2380 + i)],
                )
            })
            .collect();
        let mut c = TestCluster {
            net: LocalNetwork::new(),
            dir: tempfile::tempdir().unwrap(),
            members,
            nodes: (0..n).map(|_| None).collect(),
            snapshot_count,
            catchup: 5,
        };
        for i in 0..n {
            c.start(i);
        }
        c
    }

    pub fn id(&self, i: usize) -> u64 {
        node::membership::member_id(&self.members[i].1, TOKEN, None)
    }

    /// The client URL member `i` publishes.
    pub fn client_url(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", 2379 + 10 * i)
    }

    pub fn config(&self, i: usize) -> NodeConfig {
        let (transport, rx) = self.net.join(self.id(i));
        let mut cfg = NodeConfig::new(
            self.members[i].0.clone(),
            self.dir.path().join(&self.members[i].0),
            self.members.clone(),
            transport,
            rx,
        );
        cfg.cluster_token = TOKEN.into();
        cfg.client_urls = vec![self.client_url(i)];
        cfg.heartbeat = Duration::from_millis(10);
        cfg.election = Duration::from_millis(100);
        cfg.request_timeout = Duration::from_secs(5);
        cfg.snapshot_count = self.snapshot_count;
        cfg.snapshot_catchup_entries = self.catchup;
        cfg
    }

    pub fn start(&mut self, i: usize) {
        let cfg = self.config(i);
        self.nodes[i] = Some(Node::start(cfg).unwrap());
    }

    pub fn stop(&mut self, i: usize) {
        if let Some(node) = self.nodes[i].take() {
            node.stop();
        }
        self.net.leave(self.id(i));
    }

    pub fn node(&self, i: usize) -> &Node {
        self.nodes[i].as_ref().unwrap()
    }

    /// The index of the leader once every running node agrees on one.
    pub fn wait_leader(&self) -> usize {
        let mut found = None;
        assert!(
            eventually(WAIT, || {
                let running: Vec<&Node> = self.nodes.iter().flatten().collect();
                let leader = running.iter().position(|n| n.is_leader());
                match leader {
                    Some(_) => {
                        let lead_id = running.iter().find(|n| n.is_leader()).unwrap().member_id();
                        if running.iter().all(|n| n.leader() == lead_id) {
                            found = self
                                .nodes
                                .iter()
                                .position(|n| n.as_ref().is_some_and(|n| n.member_id() == lead_id));
                            true
                        } else {
                            false
                        }
                    }
                    None => false,
                }
            }),
            "no leader elected"
        );
        found.unwrap()
    }

    pub fn put(&self, i: usize, key: &str, value: &str) -> i64 {
        self.node(i)
            .put(PutRequest::new(key, value))
            .wait(WAIT)
            .unwrap()
            .body
            .revision
    }

    /// Puts through whichever node leads, retrying across elections.
    pub fn put_anywhere(&self, key: &str, value: &str) -> i64 {
        for _ in 0..20 {
            let l = self.wait_leader();
            if let Ok(r) = self.node(l).put(PutRequest::new(key, value)).wait(WAIT) {
                return r.body.revision;
            }
        }
        panic!("put {key} never succeeded");
    }

    pub fn get(&self, i: usize, key: &str, serializable: bool) -> Option<Vec<u8>> {
        let req = RangeRequest {
            key: key.as_bytes().to_vec(),
            ..RangeRequest::default()
        };
        let resp = self.node(i).range(req, serializable).wait(WAIT).unwrap();
        resp.body.kvs.into_iter().next().map(|kv| kv.value)
    }

    /// Waits until node `i` serves `key` = `value` from its local store.
    pub fn wait_value(&self, i: usize, key: &str, value: &str) -> bool {
        let req = RangeRequest {
            key: key.as_bytes().to_vec(),
            ..RangeRequest::default()
        };
        // A read racing with a snapshot install may hit the replaced store: retry it.
        eventually(WAIT, || {
            self.node(i)
                .range(req.clone(), true)
                .wait(WAIT)
                .is_ok_and(|r| {
                    r.body.kvs.first().map(|kv| kv.value.as_slice()) == Some(value.as_bytes())
                })
        })
    }

    pub fn stop_all(&mut self) {
        for i in 0..self.nodes.len() {
            self.stop(i);
        }
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        self.stop_all();
    }
}
