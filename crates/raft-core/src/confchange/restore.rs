//! Rebuilding a configuration from a [`ConfState`], e.g. when applying a snapshot.

use super::{Changer, ConfChangeError};
use crate::raftpb::{ConfChangeSingle, ConfChangeType, ConfState};
use crate::tracker::{Config, ProgressMap, ProgressTracker};

/// Builds the configuration described by `cs`, starting from `tracker` (normally empty), through
/// a sequence of valid [`Changer`] steps: so the result satisfies every invariant and the
/// progresses are initialised as for ordinary changes.
///
/// Without outgoing voters, each member is added by a simple change. Otherwise the outgoing
/// configuration is built first, then the joint configuration is entered with the changes that
/// turn it into the incoming one.
pub fn restore(
    tracker: &ProgressTracker,
    last_index: u64,
    cs: &ConfState,
) -> Result<(Config, ProgressMap), ConfChangeError> {
    let (outgoing, incoming) = to_conf_change_singles(cs);
    let mut scratch = tracker.clone();
    if outgoing.is_empty() {
        for cc in &incoming {
            let (cfg, prs) = Changer::new(&scratch, last_index).simple(std::slice::from_ref(cc))?;
            scratch.apply_config(cfg, prs);
        }
    } else {
        for cc in &outgoing {
            let (cfg, prs) = Changer::new(&scratch, last_index).simple(std::slice::from_ref(cc))?;
            scratch.apply_config(cfg, prs);
        }
        let (cfg, prs) =
            Changer::new(&scratch, last_index).enter_joint(cs.auto_leave, &incoming)?;
        scratch.apply_config(cfg, prs);
    }
    Ok((scratch.config, scratch.progress))
}

/// The changes that build the outgoing configuration from nothing, and those that turn the
/// outgoing configuration into the incoming one (learners included).
fn to_conf_change_singles(cs: &ConfState) -> (Vec<ConfChangeSingle>, Vec<ConfChangeSingle>) {
    let single = |change_type, &node_id: &u64| ConfChangeSingle::new(change_type, node_id);
    // Build the outgoing configuration as if it were the only one.
    let outgoing = cs
        .voters_outgoing
        .iter()
        .map(|id| single(ConfChangeType::AddNode, id))
        .collect();
    // Then, as the incoming half of the joint configuration: remove all outgoing voters (the
    // outgoing half keeps them), and add back the incoming voters, learners and staged
    // learners. A staged learner is an outgoing voter, so adding it as a learner lands it in
    // learners_next.
    let incoming = cs
        .voters_outgoing
        .iter()
        .map(|id| single(ConfChangeType::RemoveNode, id))
        .chain(
            cs.voters
                .iter()
                .map(|id| single(ConfChangeType::AddNode, id)),
        )
        .chain(
            cs.learners
                .iter()
                .map(|id| single(ConfChangeType::AddLearnerNode, id)),
        )
        .chain(
            cs.learners_next
                .iter()
                .map(|id| single(ConfChangeType::AddLearnerNode, id)),
        )
        .collect();
    (outgoing, incoming)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn restores_simple_and_joint_configurations() -> Result<(), ConfChangeError> {
        let cases = [
            ConfState {
                voters: vec![1, 2, 3],
                ..ConfState::default()
            },
            ConfState {
                voters: vec![1, 2, 3],
                learners: vec![4, 5],
                ..ConfState::default()
            },
            ConfState {
                voters: vec![1, 2, 3],
                learners: vec![5],
                voters_outgoing: vec![1, 2, 4, 6],
                learners_next: vec![4],
                auto_leave: true,
            },
        ];
        for cs in cases {
            let tracker = ProgressTracker::new(20, 0);
            let (cfg, prs) = restore(&tracker, 10, &cs)?;
            assert!(
                cfg.to_conf_state().equivalent(&cs),
                "{cs} restored as {cfg}"
            );
            assert_eq!(prs.len(), cfg.voters.ids().len() + cfg.learners.len());
        }
        Ok(())
    }

    #[test]
    fn empty_conf_state_restores_nothing() -> Result<(), ConfChangeError> {
        let (cfg, prs) = restore(&ProgressTracker::new(20, 0), 10, &ConfState::default())?;
        assert_eq!(cfg, Config::default());
        assert!(prs.is_empty());
        Ok(())
    }

    /// A random valid ConfState: disjoint voters, learners; outgoing voters overlapping the
    /// incoming ones; staged learners taken from outgoing voters that are not incoming voters.
    fn conf_state() -> impl Strategy<Value = ConfState> {
        (
            proptest::collection::btree_set(1u64..12, 1..5),
            proptest::collection::btree_set(1u64..12, 0..5),
            proptest::collection::btree_set(1u64..12, 0..4),
            any::<bool>(),
            any::<bool>(),
        )
            .prop_map(|(voters, outgoing, learners, stage, auto_leave)| {
                let learners: Vec<u64> = learners
                    .into_iter()
                    .filter(|id| !voters.contains(id) && !outgoing.contains(id))
                    .collect();
                let learners_next: Vec<u64> = if stage {
                    outgoing
                        .iter()
                        .copied()
                        .filter(|id| !voters.contains(id))
                        .take(1)
                        .collect()
                } else {
                    Vec::new()
                };
                let joint = !outgoing.is_empty();
                ConfState {
                    voters: voters.into_iter().collect(),
                    learners,
                    voters_outgoing: outgoing.into_iter().collect(),
                    learners_next,
                    auto_leave: joint && auto_leave,
                }
            })
    }

    proptest! {
        #[test]
        fn restore_round_trips(cs in conf_state()) {
            let restored = restore(&ProgressTracker::new(20, 0), 10, &cs);
            prop_assert!(restored.is_ok(), "{cs}: {restored:?}");
            if let Ok((cfg, _)) = restored {
                prop_assert!(cfg.to_conf_state().equivalent(&cs), "{} restored as {}", cs, cfg);
            }
        }
    }
}
