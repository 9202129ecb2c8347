//! Validated configuration changes: simple (one voter at a time) and joint consensus.
//!
//! The [`Changer`] never modifies the tracker it is given: each operation returns the new
//! [`Config`] and [`ProgressMap`] for the caller to install, or an error leaving everything as
//! it was.

mod restore;

use std::collections::BTreeSet;

use crate::raftpb::{ConfChangeSingle, ConfChangeType};
use crate::tracker::{Config, Progress, ProgressMap, ProgressTracker};

pub use restore::restore;

/// Why a configuration change was refused. The messages are etcd's.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfChangeError {
    /// [`Changer::enter_joint`] on a joint configuration.
    #[error("config is already joint")]
    AlreadyJoint,
    /// [`Changer::enter_joint`] on a configuration without voters.
    #[error("can't make a zero-voter config joint")]
    ZeroVoterJoint,
    /// [`Changer::leave_joint`] on a configuration that is not joint.
    #[error("can't leave a non-joint config")]
    NotJoint,
    /// [`Changer::simple`] on a joint configuration.
    #[error("can't apply simple config change in joint config")]
    SimpleInJoint,
    /// [`Changer::simple`] changing more than one voter.
    #[error("more than one voter changed without entering joint config")]
    TooManyVoterChanges,
    /// The change would leave no voter in the incoming configuration.
    #[error("removed all voters")]
    RemovedAllVoters,
    /// Invariant: a member without progress.
    #[error("no progress for {0}")]
    NoProgress(u64),
    /// Invariant: a staged learner that is not an outgoing voter.
    #[error("{0} is in LearnersNext, but not Voters[1]")]
    LearnerNextNotOutgoingVoter(u64),
    /// Invariant: a staged learner whose progress already says learner.
    #[error("{0} is in LearnersNext, but is already marked as learner")]
    LearnerNextAlreadyLearner(u64),
    /// Invariant: a learner that is an outgoing voter.
    #[error("{0} is in Learners and Voters[1]")]
    LearnerIsOutgoingVoter(u64),
    /// Invariant: a learner that is an incoming voter.
    #[error("{0} is in Learners and Voters[0]")]
    LearnerIsIncomingVoter(u64),
    /// Invariant: a learner whose progress does not say learner.
    #[error("{0} is in Learners, but is not marked as learner")]
    LearnerNotMarkedLearner(u64),
    /// Invariant: staged learners outside of joint consensus.
    #[error("cfg.LearnersNext must be nil when not joint")]
    LearnersNextWhenNotJoint,
    /// Invariant: auto-leave outside of joint consensus.
    #[error("AutoLeave must be false when not joint")]
    AutoLeaveWhenNotJoint,
}

/// Computes configuration changes against a [`ProgressTracker`], validating them before they can
/// affect the active configuration.
#[derive(Clone, Copy, Debug)]
pub struct Changer<'a> {
    /// The tracker holding the current configuration and progress.
    pub tracker: &'a ProgressTracker,
    /// The leader's last log index: new members start probing right after it.
    pub last_index: u64,
}

impl<'a> Changer<'a> {
    /// A changer starting from `tracker`'s configuration; `last_index` is the last log index.
    pub fn new(tracker: &'a ProgressTracker, last_index: u64) -> Self {
        Changer {
            tracker,
            last_index,
        }
    }

    /// Enters joint consensus: the outgoing half becomes a copy of the incoming one, then `ccs`
    /// are applied to the incoming half (`C_{new,old}` in the Raft thesis, section 4.3).
    ///
    /// With `auto_leave`, Raft leaves the joint configuration by itself once it is committed.
    pub fn enter_joint(
        &self,
        auto_leave: bool,
        ccs: &[ConfChangeSingle],
    ) -> Result<(Config, ProgressMap), ConfChangeError> {
        let (mut cfg, mut prs) = self.check_and_copy()?;
        if cfg.is_joint() {
            return Err(ConfChangeError::AlreadyJoint);
        }
        if cfg.voters.incoming.is_empty() {
            // An empty configuration may be populated (bootstrap, tests), but not made joint.
            return Err(ConfChangeError::ZeroVoterJoint);
        }
        cfg.voters.outgoing = cfg.voters.incoming.clone();
        self.apply(&mut cfg, &mut prs, ccs)?;
        cfg.auto_leave = auto_leave;
        check_and_return(cfg, prs)
    }

    /// Leaves joint consensus: the outgoing half is dropped (`C_new`), staged learners become
    /// learners, and outgoing voters that are no longer members lose their progress.
    pub fn leave_joint(&self) -> Result<(Config, ProgressMap), ConfChangeError> {
        let (mut cfg, mut prs) = self.check_and_copy()?;
        if !cfg.is_joint() {
            return Err(ConfChangeError::NotJoint);
        }
        for id in std::mem::take(&mut cfg.learners_next) {
            cfg.learners.insert(id);
            if let Some(pr) = prs.get_mut(id) {
                pr.is_learner = true;
            }
        }
        for id in cfg.voters.outgoing.iter() {
            if !cfg.voters.incoming.contains(id) && !cfg.learners.contains(&id) {
                prs.remove(id);
            }
        }
        cfg.voters.outgoing.clear();
        cfg.auto_leave = false;
        check_and_return(cfg, prs)
    }

    /// Applies `ccs` without joint consensus; in aggregate they may change at most one voter.
    pub fn simple(
        &self,
        ccs: &[ConfChangeSingle],
    ) -> Result<(Config, ProgressMap), ConfChangeError> {
        let (mut cfg, mut prs) = self.check_and_copy()?;
        if cfg.is_joint() {
            return Err(ConfChangeError::SimpleInJoint);
        }
        self.apply(&mut cfg, &mut prs, ccs)?;
        let before = self.tracker.config.voters.incoming.as_set();
        let after = cfg.voters.incoming.as_set();
        if before.symmetric_difference(after).count() > 1 {
            return Err(ConfChangeError::TooManyVoterChanges);
        }
        check_and_return(cfg, prs)
    }

    /// Applies the changes to the incoming half (the outgoing half, if any, is left alone).
    fn apply(
        &self,
        cfg: &mut Config,
        prs: &mut ProgressMap,
        ccs: &[ConfChangeSingle],
    ) -> Result<(), ConfChangeError> {
        for cc in ccs {
            if cc.node_id == 0 {
                // The application zeroes the node id of changes it decided not to apply.
                continue;
            }
            match cc.change_type {
                ConfChangeType::AddNode => self.make_voter(cfg, prs, cc.node_id),
                ConfChangeType::AddLearnerNode => self.make_learner(cfg, prs, cc.node_id),
                ConfChangeType::RemoveNode => remove(cfg, prs, cc.node_id),
                ConfChangeType::UpdateNode => {}
            }
        }
        if cfg.voters.incoming.is_empty() {
            return Err(ConfChangeError::RemovedAllVoters);
        }
        Ok(())
    }

    /// Adds `id` as an incoming voter, or promotes it.
    fn make_voter(&self, cfg: &mut Config, prs: &mut ProgressMap, id: u64) {
        let Some(pr) = prs.get_mut(id) else {
            self.init_progress(cfg, prs, id, false);
            return;
        };
        pr.is_learner = false;
        cfg.learners.remove(&id);
        cfg.learners_next.remove(&id);
        cfg.voters.incoming.insert(id);
    }

    /// Adds `id` as a learner, or demotes it. A node that is still an outgoing voter cannot be
    /// a learner at the same time: it is staged in `learners_next` until the joint
    /// configuration is left.
    fn make_learner(&self, cfg: &mut Config, prs: &mut ProgressMap, id: u64) {
        let Some(pr) = prs.get_mut(id) else {
            self.init_progress(cfg, prs, id, true);
            return;
        };
        if pr.is_learner {
            return;
        }
        // No longer an incoming voter, but the progress is kept.
        cfg.voters.incoming.remove(id);
        cfg.learners.remove(&id);
        cfg.learners_next.remove(&id);
        if cfg.voters.outgoing.contains(id) {
            cfg.learners_next.insert(id);
        } else {
            pr.is_learner = true;
            cfg.learners.insert(id);
        }
    }

    /// Tracks a new voter or learner, probing from the last index.
    fn init_progress(&self, cfg: &mut Config, prs: &mut ProgressMap, id: u64, is_learner: bool) {
        if is_learner {
            cfg.learners.insert(id);
        } else {
            cfg.voters.incoming.insert(id);
        }
        // Starting at the last index means the new member can be probed right away
        // (`max(.., 1)` keeps the invariant match < next).
        let mut pr = Progress::new(self.last_index.max(1), self.tracker.new_inflights());
        pr.is_learner = is_learner;
        // A new member counts as recently active, so that a quorum check right after adding it
        // does not make the leader step down before the member had a chance to respond.
        pr.recent_active = true;
        prs.insert(id, pr);
    }

    /// Copies the tracker's configuration and progress, checking its invariants first.
    fn check_and_copy(&self) -> Result<(Config, ProgressMap), ConfChangeError> {
        check_and_return(self.tracker.config.clone(), self.tracker.progress.clone())
    }
}

/// Removes `id` as incoming voter or learner; its progress stays while it is an outgoing voter.
fn remove(cfg: &mut Config, prs: &mut ProgressMap, id: u64) {
    if !prs.contains(id) {
        return;
    }
    cfg.voters.incoming.remove(id);
    cfg.learners.remove(&id);
    cfg.learners_next.remove(&id);
    if !cfg.voters.outgoing.contains(id) {
        prs.remove(id);
    }
}

/// Returns the configuration and progress if they satisfy the invariants of [`Config`].
fn check_and_return(
    cfg: Config,
    prs: ProgressMap,
) -> Result<(Config, ProgressMap), ConfChangeError> {
    check_invariants(&cfg, &prs)?;
    Ok((cfg, prs))
}

/// Checks that the configuration and the progresses agree. The empty configuration is allowed,
/// so that an initial configuration can be built from it.
fn check_invariants(cfg: &Config, prs: &ProgressMap) -> Result<(), ConfChangeError> {
    let members: BTreeSet<u64> = cfg
        .voters
        .ids()
        .into_iter()
        .chain(cfg.learners.iter().copied())
        .chain(cfg.learners_next.iter().copied())
        .collect();
    if let Some(&id) = members.iter().find(|&&id| !prs.contains(id)) {
        return Err(ConfChangeError::NoProgress(id));
    }
    let marked_learner = |id: u64| prs.get(id).is_some_and(|pr| pr.is_learner);

    // A staged learner is staged because it is still an outgoing voter.
    for &id in &cfg.learners_next {
        if !cfg.voters.outgoing.contains(id) {
            return Err(ConfChangeError::LearnerNextNotOutgoingVoter(id));
        }
        if marked_learner(id) {
            return Err(ConfChangeError::LearnerNextAlreadyLearner(id));
        }
    }
    // Learners and voters do not intersect.
    for &id in &cfg.learners {
        if cfg.voters.outgoing.contains(id) {
            return Err(ConfChangeError::LearnerIsOutgoingVoter(id));
        }
        if cfg.voters.incoming.contains(id) {
            return Err(ConfChangeError::LearnerIsIncomingVoter(id));
        }
        if !marked_learner(id) {
            return Err(ConfChangeError::LearnerNotMarkedLearner(id));
        }
    }
    if !cfg.is_joint() {
        if !cfg.learners_next.is_empty() {
            return Err(ConfChangeError::LearnersNextWhenNotJoint);
        }
        if cfg.auto_leave {
            return Err(ConfChangeError::AutoLeaveWhenNotJoint);
        }
    }
    Ok(())
}

/// The changes as etcd prints them: `ConfChangeAddNode(1) ConfChangeRemoveNode(2)`.
pub fn describe(ccs: &[ConfChangeSingle]) -> String {
    ccs.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cc(change_type: ConfChangeType, node_id: u64) -> ConfChangeSingle {
        ConfChangeSingle::new(change_type, node_id)
    }

    fn voters(ids: &[u64]) -> Vec<ConfChangeSingle> {
        ids.iter()
            .map(|&id| cc(ConfChangeType::AddNode, id))
            .collect()
    }

    /// Applies `op` to `t` and installs the result, like the caller of a Changer does.
    fn step(
        t: &mut ProgressTracker,
        last_index: u64,
        op: impl FnOnce(Changer<'_>) -> Result<(Config, ProgressMap), ConfChangeError>,
    ) -> Result<(), ConfChangeError> {
        let (cfg, prs) = op(Changer::new(t, last_index))?;
        t.apply_config(cfg, prs);
        Ok(())
    }

    #[test]
    fn simple_adds_one_voter_at_a_time() -> Result<(), ConfChangeError> {
        let mut t = ProgressTracker::new(10, 0);
        step(&mut t, 0, |c| c.simple(&voters(&[1])))?;
        step(&mut t, 5, |c| c.simple(&voters(&[2])))?;
        assert_eq!(t.config.to_string(), "voters=(1 2)");
        assert_eq!(t.progress.get(2).map(|pr| pr.next), Some(5));
        assert_eq!(
            step(&mut t, 6, |c| c.simple(&voters(&[3, 4]))),
            Err(ConfChangeError::TooManyVoterChanges)
        );
        // The failed change left the tracker alone.
        assert_eq!(t.config.to_string(), "voters=(1 2)");
        // Adding a learner and a voter at once is fine: only one voter changes.
        step(&mut t, 7, |c| {
            c.simple(&[
                cc(ConfChangeType::AddLearnerNode, 5),
                cc(ConfChangeType::AddNode, 3),
            ])
        })?;
        assert_eq!(t.config.to_string(), "voters=(1 2 3) learners=(5)");
        Ok(())
    }

    #[test]
    fn cannot_remove_all_voters() -> Result<(), ConfChangeError> {
        let mut t = ProgressTracker::new(10, 0);
        step(&mut t, 0, |c| c.simple(&voters(&[1])))?;
        assert_eq!(
            step(&mut t, 1, |c| c
                .simple(&[cc(ConfChangeType::RemoveNode, 1)])),
            Err(ConfChangeError::RemovedAllVoters)
        );
        Ok(())
    }

    #[test]
    fn joint_demotion_goes_through_learners_next() -> Result<(), ConfChangeError> {
        let mut t = ProgressTracker::new(10, 0);
        step(&mut t, 0, |c| c.simple(&voters(&[1])))?;
        step(&mut t, 1, |c| c.simple(&voters(&[2])))?;
        step(&mut t, 2, |c| c.simple(&voters(&[3])))?;
        step(&mut t, 3, |c| {
            c.enter_joint(
                true,
                &[
                    cc(ConfChangeType::AddLearnerNode, 3),
                    cc(ConfChangeType::AddNode, 4),
                ],
            )
        })?;
        assert_eq!(
            t.config.to_string(),
            "voters=(1 2 4)&&(1 2 3) learners_next=(3) autoleave"
        );
        assert_eq!(t.progress.get(3).map(|pr| pr.is_learner), Some(false));
        assert_eq!(
            step(&mut t, 4, |c| c.enter_joint(false, &[])),
            Err(ConfChangeError::AlreadyJoint)
        );
        assert_eq!(
            step(&mut t, 4, |c| c.simple(&[])),
            Err(ConfChangeError::SimpleInJoint)
        );
        step(&mut t, 4, |c| c.leave_joint())?;
        assert_eq!(t.config.to_string(), "voters=(1 2 4) learners=(3)");
        assert_eq!(t.progress.get(3).map(|pr| pr.is_learner), Some(true));
        assert_eq!(
            step(&mut t, 5, |c| c.leave_joint()),
            Err(ConfChangeError::NotJoint)
        );
        Ok(())
    }

    #[test]
    fn leaving_joint_drops_removed_voters() -> Result<(), ConfChangeError> {
        let mut t = ProgressTracker::new(10, 0);
        step(&mut t, 0, |c| c.simple(&voters(&[1])))?;
        step(&mut t, 1, |c| c.simple(&voters(&[2])))?;
        step(&mut t, 2, |c| {
            c.enter_joint(false, &[cc(ConfChangeType::RemoveNode, 2)])
        })?;
        assert_eq!(t.config.to_string(), "voters=(1)&&(1 2)");
        assert!(t.progress.contains(2), "2 still votes in the outgoing half");
        step(&mut t, 3, |c| c.leave_joint())?;
        assert_eq!(t.config.to_string(), "voters=(1)");
        assert!(!t.progress.contains(2));
        Ok(())
    }

    #[test]
    fn zero_voter_config_cannot_be_made_joint() {
        let t = ProgressTracker::new(10, 0);
        assert_eq!(
            Changer::new(&t, 0).enter_joint(false, &voters(&[1])),
            Err(ConfChangeError::ZeroVoterJoint)
        );
    }

    #[test]
    fn broken_invariants_are_reported() {
        let mut t = ProgressTracker::new(10, 0);
        t.config.voters.incoming.insert(1);
        assert_eq!(
            Changer::new(&t, 0).simple(&[]),
            Err(ConfChangeError::NoProgress(1))
        );
        t.progress.insert(1, Progress::new(1, t.new_inflights()));
        t.config.learners.insert(1);
        if let Some(pr) = t.progress.get_mut(1) {
            pr.is_learner = true;
        }
        assert_eq!(
            Changer::new(&t, 0).simple(&[]),
            Err(ConfChangeError::LearnerIsIncomingVoter(1))
        );
        assert_eq!(
            ConfChangeError::LearnerNextNotOutgoingVoter(3).to_string(),
            "3 is in LearnersNext, but not Voters[1]"
        );
    }

    #[test]
    fn describe_lists_changes() {
        assert_eq!(
            describe(&[
                cc(ConfChangeType::AddNode, 1),
                cc(ConfChangeType::RemoveNode, 2)
            ]),
            "ConfChangeAddNode(1) ConfChangeRemoveNode(2)"
        );
        assert_eq!(describe(&[]), "");
    }
}
