//! The `confchange` suite: the [`Changer`] on a tracker that persists across a file.
//!
//! Commands `simple`, `enter-joint [autoleave=true]` and `leave-joint` take their changes as
//! input, space-separated: `v1` makes 1 a voter, `l1` a learner, `r1` removes it, `u1` updates
//! it. The output is the new configuration and progresses, or the change's error. Each command
//! advances the last log index by one, so `next` shows in which command a progress was created.

use super::{Fatal, TestData, parse_uint};
use crate::confchange::Changer;
use crate::raftpb::{ConfChangeSingle, ConfChangeType};
use crate::tracker::ProgressTracker;

/// The state of a `confchange` file: a tracker and the last log index.
#[derive(Clone, Debug)]
pub struct ConfChangeSuite {
    tracker: ProgressTracker,
    last_index: u64,
}

impl Default for ConfChangeSuite {
    fn default() -> Self {
        Self::new()
    }
}

impl ConfChangeSuite {
    /// An empty tracker (at most 10 messages in flight, no byte limit) at last index 0.
    pub fn new() -> Self {
        ConfChangeSuite {
            tracker: ProgressTracker::new(10, 0),
            last_index: 0,
        }
    }

    /// The tracker as left by the commands so far.
    pub fn tracker(&self) -> &ProgressTracker {
        &self.tracker
    }

    /// Runs one `confchange` directive.
    pub fn handle(&mut self, d: &TestData) -> Result<String, Fatal> {
        let out = self.run(d);
        self.last_index += 1;
        out
    }

    fn run(&mut self, d: &TestData) -> Result<String, Fatal> {
        let mut ccs = Vec::new();
        let input = d.input.trim();
        let tokens: Vec<&str> = if input.is_empty() {
            Vec::new()
        } else {
            input.split(' ').collect()
        };
        for tok in tokens {
            if tok.len() < 2 {
                return Ok(format!("unknown token {tok}"));
            }
            let mut chars = tok.chars();
            let change_type = match chars.next() {
                Some('v') => ConfChangeType::AddNode,
                Some('l') => ConfChangeType::AddLearnerNode,
                Some('r') => ConfChangeType::RemoveNode,
                Some('u') => ConfChangeType::UpdateNode,
                _ => return Ok(format!("unknown input: {tok}")),
            };
            let node_id = match parse_uint(chars.as_str()) {
                Ok(id) => id,
                Err(e) => return Ok(e),
            };
            ccs.push(ConfChangeSingle::new(change_type, node_id));
        }

        let changer = Changer::new(&self.tracker, self.last_index);
        let result = match d.cmd.as_str() {
            "simple" => changer.simple(&ccs).map_err(|e| e.to_string()),
            "enter-joint" => {
                let auto_leave = if d.cmd_args.is_empty() {
                    false
                } else {
                    d.scan_bool("autoleave")?
                };
                changer
                    .enter_joint(auto_leave, &ccs)
                    .map_err(|e| e.to_string())
            }
            "leave-joint" => {
                if ccs.is_empty() {
                    changer.leave_joint().map_err(|e| e.to_string())
                } else {
                    Err("this command takes no input".to_owned())
                }
            }
            _ => return Ok("unknown command".to_owned()),
        };
        match result {
            Ok((config, progress)) => {
                self.tracker.apply_config(config, progress);
                Ok(format!(
                    "{}\n{}",
                    self.tracker.config, self.tracker.progress
                ))
            }
            Err(e) => Ok(format!("{e}\n")),
        }
    }
}
