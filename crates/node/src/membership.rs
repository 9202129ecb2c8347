//! Cluster membership: members, their ids, and their records in the `members` bucket.
//!
//! Ids are etcd's: a member id is the first 8 bytes (big-endian) of the SHA-1 of its sorted peer
//! URLs, the cluster token and, for members added at runtime, the time (`computeMemberId`); the
//! cluster id the same of the initial members' ids (`genID`). The same flags give the same ids
//! as etcd, e.g. `8e9e05c52164694d` / `cdf818194e3a8c32` for etcd's defaults.

use std::collections::BTreeMap;

use mvcc::WriteTxn;
use serde::{Deserialize, Serialize};
use sha1::{Digest, Sha1};
use storage_api::{Backend, Bucket, ReadTx};

/// A cluster member.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// The member id.
    pub id: u64,
    /// Its name (empty until it publishes it).
    pub name: String,
    /// The URLs peers reach it at.
    pub peer_urls: Vec<String>,
    /// The URLs clients reach it at (published by the member).
    pub client_urls: Vec<String>,
    /// Whether it is a non-voting learner.
    pub is_learner: bool,
}

/// A running cluster as its members describe it: what a member joining it needs to start (the
/// answer to a peer's members query, etcd's `GET /members`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterInfo {
    /// The cluster id.
    pub cluster_id: u64,
    /// The members, learners included.
    pub members: Vec<Member>,
}

/// The context of a replicated configuration change: who waits for it and the member concerned.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ConfChangeContext {
    pub(crate) request_id: u64,
    pub(crate) member: Member,
}

impl ConfChangeContext {
    pub(crate) fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(self)
            .unwrap_or_else(|e| panic!("postcard failed to encode a conf change context: {e}"))
    }

    pub(crate) fn decode(data: &[u8]) -> Option<ConfChangeContext> {
        postcard::from_bytes(data).ok()
    }
}

/// The first 8 bytes of the SHA-1 of `bytes`, big-endian (etcd's id derivation).
fn sha1_id(bytes: &[u8]) -> u64 {
    let digest = Sha1::digest(bytes);
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

/// A member's id (etcd's `computeMemberId`): a hash of its sorted, concatenated peer URLs, the
/// cluster token and `time` (unix seconds, for members added at runtime; `None` for initial
/// members).
pub fn member_id(peer_urls: &[String], cluster_token: &str, time: Option<u64>) -> u64 {
    let mut urls = peer_urls.to_vec();
    urls.sort();
    let mut bytes = urls.concat().into_bytes();
    bytes.extend_from_slice(cluster_token.as_bytes());
    if let Some(t) = time {
        bytes.extend_from_slice(t.to_string().as_bytes());
    }
    sha1_id(&bytes)
}

/// The cluster id (etcd's `genID`): a hash of the initial members' ids in ascending order.
pub fn cluster_id(member_ids: &[u64]) -> u64 {
    let mut ids = member_ids.to_vec();
    ids.sort_unstable();
    let bytes: Vec<u8> = ids.iter().flat_map(|id| id.to_be_bytes()).collect();
    sha1_id(&bytes)
}

fn member_key(id: u64) -> Vec<u8> {
    format!("{id:016x}").into_bytes()
}

/// The members as the applied log says (plus the removed ids, which may not come back).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Cluster {
    /// The members by id.
    pub members: BTreeMap<u64, Member>,
    /// Ids removed from the cluster.
    pub removed: Vec<u64>,
}

impl Cluster {
    /// Loads the `members` and `members_removed` buckets.
    pub fn load(backend: &Backend) -> Result<Cluster, storage_api::StorageError> {
        let tx = backend.read_tx()?;
        let mut cluster = Cluster::default();
        if tx.buckets().any(|b| b == Bucket::MEMBERS) {
            for (_, v) in tx.range(Bucket::MEMBERS, &[], None, 0)? {
                if let Ok(m) = postcard::from_bytes::<Member>(&v) {
                    cluster.members.insert(m.id, m);
                }
            }
        }
        if tx.buckets().any(|b| b == Bucket::MEMBERS_REMOVED) {
            for (k, _) in tx.range(Bucket::MEMBERS_REMOVED, &[], None, 0)? {
                if let Some(id) = std::str::from_utf8(&k)
                    .ok()
                    .and_then(|s| u64::from_str_radix(s, 16).ok())
                {
                    cluster.removed.push(id);
                }
            }
        }
        Ok(cluster)
    }

    /// Writes `member` in `txn`.
    pub(crate) fn save_member(txn: &mut WriteTxn<'_>, member: &Member) -> mvcc::Result<()> {
        txn.create_bucket(Bucket::MEMBERS)?;
        let value = postcard::to_allocvec(member)
            .unwrap_or_else(|e| panic!("postcard failed to encode a member: {e}"));
        txn.raw_put(Bucket::MEMBERS, &member_key(member.id), &value)
    }

    /// Deletes member `id` in `txn` and records it as removed.
    pub(crate) fn remove_member(txn: &mut WriteTxn<'_>, id: u64) -> mvcc::Result<()> {
        txn.create_bucket(Bucket::MEMBERS)?;
        txn.create_bucket(Bucket::MEMBERS_REMOVED)?;
        txn.raw_delete(Bucket::MEMBERS, &member_key(id))?;
        txn.raw_put(Bucket::MEMBERS_REMOVED, &member_key(id), b"removed")
    }

    /// Whether some member other than `except` uses one of `urls`.
    pub fn peer_url_taken(&self, urls: &[String], except: u64) -> bool {
        self.members
            .values()
            .filter(|m| m.id != except)
            .any(|m| m.peer_urls.iter().any(|u| urls.contains(u)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_etcds() {
        // etcd's defaults: `--initial-advertise-peer-urls http://localhost:2380`,
        // `--initial-cluster-token etcd-cluster` give member 8e9e05c52164694d in cluster
        // cdf818194e3a8c32 (what `etcdctl member list` shows for a default etcd).
        let id = member_id(&["http://localhost:2380".into()], "etcd-cluster", None);
        assert_eq!(id, 0x8e9e_05c5_2164_694d);
        assert_eq!(cluster_id(&[id]), 0xcdf8_1819_4e3a_8c32);
    }

    #[test]
    fn ids_depend_on_sorted_urls_token_and_time() {
        let a = vec!["http://b:2380".to_string(), "http://a:2380".to_string()];
        let b = vec!["http://a:2380".to_string(), "http://b:2380".to_string()];
        assert_eq!(member_id(&a, "t", None), member_id(&b, "t", None));
        assert_ne!(member_id(&a, "t", None), member_id(&a, "u", None));
        assert_ne!(member_id(&a, "t", None), member_id(&a, "t", Some(1)));
        assert_eq!(cluster_id(&[1, 2]), cluster_id(&[2, 1]));
    }
}
