//! The parameters of a Raft node.

use crate::raft::{LOCAL_APPEND_THREAD, LOCAL_APPLY_THREAD, NONE};
use crate::read_only::ReadOnlyOption;

/// Why a [`Config`] was refused. The messages are etcd's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The id is 0 (which means "none").
    #[error("cannot use none as id")]
    NoneId,
    /// The id is one of the local storage thread ids.
    #[error("cannot use local target as id")]
    LocalTargetId,
    /// `heartbeat_tick` is 0.
    #[error("heartbeat tick must be greater than 0")]
    HeartbeatTick,
    /// `election_tick <= heartbeat_tick`.
    #[error("election tick must be greater than heartbeat tick")]
    ElectionTick,
    /// `max_inflight_msgs` is 0.
    #[error("max inflight messages must be greater than 0")]
    MaxInflightMsgs,
    /// `max_inflight_bytes` is set below `max_size_per_msg`.
    #[error("max inflight bytes must be >= max message size")]
    MaxInflightBytes,
    /// Lease-based reads without check-quorum.
    #[error("CheckQuorum must be enabled when ReadOnlyOption is ReadOnlyLeaseBased")]
    LeaseWithoutCheckQuorum,
}

/// The parameters of a Raft node (etcd's `raft.Config`, minus storage and logger, which are
/// passed separately).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// The node's id; not 0.
    pub id: u64,
    /// Ticks without hearing from a leader before a follower campaigns (randomized in
    /// `[election_tick, 2 * election_tick)`). Must exceed `heartbeat_tick`.
    pub election_tick: usize,
    /// Ticks between the leader's heartbeats.
    pub heartbeat_tick: usize,
    /// The last applied index, when restarting; entries up to it are not handed out again.
    pub applied: u64,
    /// Whether storage writes go through `MsgStorageAppend` / `MsgStorageApply` messages to
    /// local threads instead of the `Ready` / `advance` cycle.
    pub async_storage_writes: bool,
    /// The maximum encoded size of the entries of one append message (0: one entry at a time,
    /// `u64::MAX`: no limit).
    pub max_size_per_msg: u64,
    /// The maximum encoded size of committed entries handed out for application and not yet
    /// applied (0: `max_size_per_msg`).
    pub max_committed_size_per_ready: u64,
    /// The maximum payload size of the leader's uncommitted tail; proposals beyond it are
    /// dropped (0: no limit).
    pub max_uncommitted_entries_size: u64,
    /// The maximum number of append messages in flight to one follower.
    pub max_inflight_msgs: usize,
    /// The maximum payload bytes in flight to one follower (0: no limit).
    pub max_inflight_bytes: u64,
    /// Whether the leader steps down when a quorum was not active for an election timeout
    /// (which also enables the leader lease vote rejection).
    pub check_quorum: bool,
    /// Whether elections start with a pre-vote round (Raft thesis, section 9.6).
    pub pre_vote: bool,
    /// How read-only requests are confirmed.
    pub read_only_option: ReadOnlyOption,
    /// Whether followers drop proposals instead of forwarding them to the leader.
    pub disable_proposal_forwarding: bool,
    /// Whether to skip the propose-time checks of configuration changes.
    pub disable_conf_change_validation: bool,
    /// Whether a leader removed from (or demoted in) the configuration steps down.
    pub step_down_on_removal: bool,
    /// The seed of the node's pseudo-random election timeouts (0: derived from the id), so that
    /// runs are reproducible.
    pub random_seed: u64,
}

impl Default for Config {
    /// etcd's customary values: election after 10 ticks, heartbeat every tick, 256 messages in
    /// flight, no size limits; the id must still be set.
    fn default() -> Self {
        Config {
            id: NONE,
            election_tick: 10,
            heartbeat_tick: 1,
            applied: 0,
            async_storage_writes: false,
            max_size_per_msg: u64::MAX,
            max_committed_size_per_ready: 0,
            max_uncommitted_entries_size: 0,
            max_inflight_msgs: 256,
            max_inflight_bytes: 0,
            check_quorum: false,
            pre_vote: false,
            read_only_option: ReadOnlyOption::Safe,
            disable_proposal_forwarding: false,
            disable_conf_change_validation: false,
            step_down_on_removal: false,
            random_seed: 0,
        }
    }
}

impl Config {
    /// A default configuration for node `id`.
    pub fn new(id: u64) -> Self {
        Config {
            id,
            ..Config::default()
        }
    }

    /// Checks the parameters.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.id == NONE {
            return Err(ConfigError::NoneId);
        }
        if self.id == LOCAL_APPEND_THREAD || self.id == LOCAL_APPLY_THREAD {
            return Err(ConfigError::LocalTargetId);
        }
        if self.heartbeat_tick == 0 {
            return Err(ConfigError::HeartbeatTick);
        }
        if self.election_tick <= self.heartbeat_tick {
            return Err(ConfigError::ElectionTick);
        }
        if self.max_inflight_msgs == 0 {
            return Err(ConfigError::MaxInflightMsgs);
        }
        if self.max_inflight_bytes != 0 && self.max_inflight_bytes < self.max_size_per_msg {
            return Err(ConfigError::MaxInflightBytes);
        }
        if self.read_only_option == ReadOnlyOption::LeaseBased && !self.check_quorum {
            return Err(ConfigError::LeaseWithoutCheckQuorum);
        }
        Ok(())
    }

    /// The uncommitted size limit in effect (0 means none).
    pub(crate) fn effective_max_uncommitted_size(&self) -> u64 {
        if self.max_uncommitted_entries_size == 0 {
            u64::MAX
        } else {
            self.max_uncommitted_entries_size
        }
    }

    /// The applying size limit in effect (0 means `max_size_per_msg`).
    pub(crate) fn effective_max_committed_size_per_ready(&self) -> u64 {
        if self.max_committed_size_per_ready == 0 {
            self.max_size_per_msg
        } else {
            self.max_committed_size_per_ready
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validate_checks_each_parameter() {
        assert_eq!(Config::new(1).validate(), Ok(()));
        assert_eq!(Config::default().validate(), Err(ConfigError::NoneId));
        assert_eq!(
            Config::new(LOCAL_APPLY_THREAD).validate(),
            Err(ConfigError::LocalTargetId)
        );
        let c = |f: fn(&mut Config)| {
            let mut c = Config::new(1);
            f(&mut c);
            c.validate()
        };
        assert_eq!(c(|c| c.heartbeat_tick = 0), Err(ConfigError::HeartbeatTick));
        assert_eq!(c(|c| c.election_tick = 1), Err(ConfigError::ElectionTick));
        assert_eq!(
            c(|c| c.max_inflight_msgs = 0),
            Err(ConfigError::MaxInflightMsgs)
        );
        assert_eq!(
            c(|c| {
                c.max_size_per_msg = 100;
                c.max_inflight_bytes = 99;
            }),
            Err(ConfigError::MaxInflightBytes)
        );
        assert_eq!(
            c(|c| c.read_only_option = ReadOnlyOption::LeaseBased),
            Err(ConfigError::LeaseWithoutCheckQuorum)
        );
        assert_eq!(
            c(|c| {
                c.read_only_option = ReadOnlyOption::LeaseBased;
                c.check_quorum = true;
            }),
            Ok(())
        );
    }
}
