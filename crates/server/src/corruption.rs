//! etcd's `--experimental-initial-corrupt-check`: before a member serves clients, its key-value
//! hash at its current revision is compared with every reachable peer's hash at that revision
//! (etcd's `CheckInitialHashKV`). A mismatch at the same compaction revision means one of the
//! stores diverged: the member refuses to start, naming itself as etcd does
//! (`<member id> found data inconsistency with peers`).
//!
//! Peers are asked over their client URLs (gRPC `Maintenance.HashKV`), where etcd uses the
//! peer port's `/members/hashkv`; the question and the answer are the same. A peer that cannot
//! answer (down, not serving yet, compacted past the revision, behind it) is logged and
//! skipped, as etcd skips it. The member has already joined raft when this runs (etcd checks
//! just before starting raft), but serves no client until it passes.

use std::time::Duration;

use node::Node;

use crate::proto::etcdserverpb as pb;
use crate::proto::etcdserverpb::maintenance_client::MaintenanceClient;

/// A failed initial corruption check.
#[derive(Debug, thiserror::Error)]
pub enum CorruptionError {
    /// This member's hash differs from a peer's at the same revision and compaction.
    #[error("{member:016x} found data inconsistency with peers")]
    Inconsistent {
        /// This member's id.
        member: u64,
    },
    /// This member's own hash could not be computed.
    #[error("{member:016x} failed to fetch hash ({reason})")]
    OwnHash {
        /// This member's id.
        member: u64,
        /// Why.
        reason: String,
    },
}

/// What one peer said of the revision asked.
#[derive(Debug)]
enum PeerHash {
    /// Its hash and compaction revision there.
    Hash { hash: u32, compact_revision: i64 },
    /// It could not answer.
    Unavailable(String),
}

/// Asks the peer at `url` for its hash at `revision`, within `timeout`.
async fn peer_hash(url: &str, revision: i64, timeout: Duration) -> PeerHash {
    let attempt = async {
        let channel = tonic::transport::Channel::from_shared(url.to_owned())
            .map_err(|e| format!("bad client URL: {e}"))?
            .connect_timeout(timeout)
            .connect()
            .await
            .map_err(|e| format!("cannot connect: {e}"))?;
        let response = MaintenanceClient::new(channel)
            .hash_kv(pb::HashKvRequest { revision })
            .await
            .map_err(|status| status.message().to_owned())?
            .into_inner();
        Ok::<_, String>(PeerHash::Hash {
            hash: response.hash,
            compact_revision: response.compact_revision,
        })
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(Ok(answer)) => answer,
        Ok(Err(reason)) => PeerHash::Unavailable(reason),
        Err(_) => PeerHash::Unavailable("timed out".into()),
    }
}

/// Runs the check for `node`, asking each peer for at most `timeout`.
pub async fn check_initial_hash_kv(node: &Node, timeout: Duration) -> Result<(), CorruptionError> {
    let member = node.member_id();
    tracing::info!(member = %format_args!("{member:x}"), "starting initial corruption check");
    let own = {
        let node = node.clone();
        tokio::task::spawn_blocking(move || node.hash_kv(0))
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r.map_err(|e| e.to_string()))
            .map_err(|reason| CorruptionError::OwnHash { member, reason })?
    };
    let mut mismatches = 0;
    for peer in node.member_list().body.iter().filter(|m| m.id != member) {
        let Some(url) = peer.client_urls.iter().find(|u| u.starts_with("http://")) else {
            tracing::warn!(
                peer = %format_args!("{:x}", peer.id),
                urls = ?peer.client_urls,
                "cannot check the hash of a peer without a plain-http client URL"
            );
            continue;
        };
        match peer_hash(url, own.revision, timeout).await {
            PeerHash::Hash {
                hash,
                compact_revision,
            } if hash != own.hash => {
                if compact_revision == own.compact_revision {
                    tracing::error!(
                        "{member:x}'s hash {} != {:x}'s hash {hash} (revision {}, peer revision {}, compact revision {})",
                        own.hash,
                        peer.id,
                        own.revision,
                        own.revision,
                        own.compact_revision
                    );
                    mismatches += 1;
                } else {
                    tracing::warn!(
                        "{member:x} cannot check hash of peer({:x}): peer has a different compact revision {compact_revision} (revision:{})",
                        peer.id,
                        own.revision
                    );
                }
            }
            PeerHash::Hash { .. } => {}
            PeerHash::Unavailable(reason) => tracing::warn!(
                "{member:x} cannot check the hash of peer({:x}) at revision {}: {reason}",
                peer.id,
                own.revision
            ),
        }
    }
    if mismatches > 0 {
        return Err(CorruptionError::Inconsistent { member });
    }
    tracing::info!(member = %format_args!("{member:x}"), "initial corruption checking passed; no corruption");
    Ok(())
}
