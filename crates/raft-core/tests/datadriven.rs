//! Runs the datadriven scenario files: the project's own (`testdata/`) and, when present next to
//! the workspace, etcd's conformance vectors (`../shared/conformance/etcd-raft/`).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use raft_core::datadriven::Suite;

/// The `.txt` files directly in `dir`, sorted.
fn txt_files(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut files = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| format!("{}: {e}", dir.display()))?.path();
        if path.extension().is_some_and(|ext| ext == "txt") {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Runs every file of `suite` in `dir` and returns how many ran; panics with a report of the
/// failures. With `canonical`, a file must also be exactly what the runner rewrites it to.
fn run_dir(dir: &Path, suite: Suite, canonical: bool) -> usize {
    match try_run_dir(dir, suite, canonical) {
        Ok(n) => n,
        Err(report) => panic!("{report}"),
    }
}

fn try_run_dir(dir: &Path, suite: Suite, canonical: bool) -> Result<usize, String> {
    let files = txt_files(dir)?;
    let mut failures = String::new();
    for path in &files {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let source = path.display().to_string();
        match suite.run(&source, &text) {
            Ok(outcome) if !outcome.passed() => {
                for m in &outcome.mismatches {
                    let _ = writeln!(failures, "{m}");
                }
            }
            Ok(outcome) if canonical && outcome.rewritten != text => {
                let _ = writeln!(failures, "{source}: not in canonical (rewritten) form");
            }
            Ok(_) => {}
            Err(e) => {
                let _ = writeln!(failures, "{e}");
            }
        }
    }
    if failures.is_empty() {
        Ok(files.len())
    } else {
        Err(failures)
    }
}

fn own_testdata(suite: Suite) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata")
        .join(suite.dir_name())
}

/// etcd's vectors for `suite`, if the shared conformance folder exists on this machine.
fn etcd_vectors(suite: Suite) -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/conformance/etcd-raft")
        .join(suite.dir_name());
    dir.is_dir().then_some(dir)
}

#[test]
fn own_quorum_scenarios() {
    let n = run_dir(&own_testdata(Suite::Quorum), Suite::Quorum, true);
    assert!(
        n >= 3,
        "expected at least 3 quorum scenario files, found {n}"
    );
}

#[test]
fn own_confchange_scenarios() {
    let n = run_dir(&own_testdata(Suite::ConfChange), Suite::ConfChange, true);
    assert!(
        n >= 3,
        "expected at least 3 confchange scenario files, found {n}"
    );
}

#[test]
fn own_interaction_scenarios() {
    let n = run_dir(&own_testdata(Suite::Interaction), Suite::Interaction, true);
    assert!(
        n >= 20,
        "expected at least 20 interaction scenario files, found {n}"
    );
}

/// etcd's files pass and are in canonical form: rewriting them reproduces them byte for byte.
#[test]
fn etcd_quorum_vectors() {
    if let Some(dir) = etcd_vectors(Suite::Quorum) {
        let n = run_dir(&dir, Suite::Quorum, true);
        assert!(n > 0, "no quorum vectors in {}", dir.display());
    }
}

#[test]
fn etcd_confchange_vectors() {
    if let Some(dir) = etcd_vectors(Suite::ConfChange) {
        let n = run_dir(&dir, Suite::ConfChange, true);
        assert!(n > 0, "no confchange vectors in {}", dir.display());
    }
}

#[test]
fn etcd_interaction_vectors() {
    if let Some(dir) = etcd_vectors(Suite::Interaction) {
        let n = run_dir(&dir, Suite::Interaction, true);
        assert!(n > 0, "no interaction vectors in {}", dir.display());
    }
}
