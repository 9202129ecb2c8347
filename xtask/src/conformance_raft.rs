//! `cargo xtask conformance raft`: runs datadriven scenario files through `raft-core`.
//!
//! Every `.txt` file under the given directories is run by the suite named after the folder it
//! is in (`quorum/`, `confchange/`, `interaction/`, at any depth). A file passes when each
//! directive's output equals its expected output byte for byte.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use raft_core::datadriven::Suite;

/// The result of running one file.
#[derive(Debug, PartialEq, Eq)]
enum FileResult {
    Passed,
    /// Why it failed: the first mismatch, or the error that stopped the run.
    Failed(String),
    /// The file is not in a suite folder.
    Skipped(String),
}

/// Runs every `.txt` file under `dirs`, printing one line per file and a final
/// `N passed, M failed` line. Fails if any file failed or if no file was found.
pub fn run(dirs: &[PathBuf]) -> Result<()> {
    let mut report = String::new();
    let outcome = run_into(dirs, &mut report);
    print!("{report}");
    let (passed, failed) = outcome?;
    if failed > 0 {
        bail!("{failed} conformance file(s) failed");
    }
    if passed == 0 {
        bail!("no conformance files found");
    }
    Ok(())
}

/// Runs the files, writing the report into `out`; returns the numbers of passed and failed
/// files.
fn run_into(dirs: &[PathBuf], out: &mut String) -> Result<(usize, usize)> {
    let mut files = Vec::new();
    for dir in dirs {
        if !dir.is_dir() {
            bail!("{} is not a directory", dir.display());
        }
        collect_txt_files(dir, &mut files)?;
    }
    let (mut passed, mut failed) = (0, 0);
    for path in &files {
        match run_file(path)? {
            FileResult::Passed => {
                passed += 1;
                let _ = writeln!(out, "ok   {}", path.display());
            }
            FileResult::Failed(why) => {
                failed += 1;
                let _ = writeln!(out, "FAIL {}", path.display());
                for line in why.lines() {
                    let _ = writeln!(out, "       {line}");
                }
            }
            FileResult::Skipped(why) => {
                let _ = writeln!(out, "skip {} ({why})", path.display());
            }
        }
    }
    let _ = writeln!(out, "{passed} passed, {failed} failed");
    Ok((passed, failed))
}

/// Appends the `.txt` files under `dir` (recursively, skipping hidden entries) in path order.
fn collect_txt_files(dir: &Path, files: &mut Vec<PathBuf>) -> Result<()> {
    let mut entries = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let entry = entry.with_context(|| format!("cannot list {}", dir.display()))?;
        if !entry.file_name().to_string_lossy().starts_with('.') {
            entries.push(entry.path());
        }
    }
    entries.sort();
    for path in entries {
        if path.is_dir() {
            collect_txt_files(&path, files)?;
        } else if path.extension().is_some_and(|ext| ext == "txt") {
            files.push(path);
        }
    }
    Ok(())
}

/// Runs one file with the suite of its folder.
fn run_file(path: &Path) -> Result<FileResult> {
    let folder = path
        .parent()
        .and_then(Path::file_name)
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let Some(suite) = Suite::from_dir_name(&folder) else {
        return Ok(FileResult::Skipped(format!(
            "folder `{folder}` is not a suite"
        )));
    };
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(match suite.run(&path.display().to_string(), &text) {
        Ok(outcome) => match outcome.mismatches.first() {
            None => FileResult::Passed,
            Some(first) => FileResult::Failed(format!(
                "{} of {} directives differ; first:\n{first}",
                outcome.mismatches.len(),
                outcome.directives
            )),
        },
        Err(e) => FileResult::Failed(e.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scratch directory tree, removed on drop.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str) -> Result<Self> {
            let dir = std::env::temp_dir().join(format!(
                "ferrocd-conformance-raft-{name}-{}",
                std::process::id()
            ));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir)?;
            Ok(Scratch(dir))
        }

        fn write(&self, rel: &str, text: &str) -> Result<()> {
            let path = self.0.join(rel);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(path, text)?;
            Ok(())
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn reports_each_file_and_the_totals() -> Result<()> {
        let s = Scratch::new("report")?;
        s.write(
            "a/quorum/good.txt",
            "vote cfg=(1) votes=(y)\n----\nVoteWon\n",
        )?;
        s.write(
            "a/quorum/bad.txt",
            "vote cfg=(1) votes=(n)\n----\nVoteWon\n",
        )?;
        s.write(
            "confchange/ok.txt",
            "simple\nv1\n----\nvoters=(1)\n1: StateProbe match=0 next=1\n",
        )?;
        s.write("interaction/x.txt", "log-level none\n----\nok\n")?;
        s.write("notes/readme.txt", "not a test\n")?;

        let mut out = String::new();
        let (passed, failed) = run_into(std::slice::from_ref(&s.0), &mut out)?;
        assert_eq!((passed, failed), (3, 1), "{out}");
        let root = s.0.display().to_string();
        let out = out.replace(&root, "ROOT");
        assert!(out.contains("FAIL ROOT/a/quorum/bad.txt\n"), "{out}");
        assert!(out.contains("- \"VoteWon\"\n"), "{out}");
        assert!(out.contains("+ \"VoteLost\"\n"), "{out}");
        assert!(out.contains("ok   ROOT/a/quorum/good.txt\n"), "{out}");
        assert!(out.contains("ok   ROOT/confchange/ok.txt\n"), "{out}");
        assert!(out.contains("ok   ROOT/interaction/x.txt\n"), "{out}");
        assert!(out.contains("skip ROOT/notes/readme.txt"), "{out}");
        assert!(out.ends_with("\n3 passed, 1 failed\n"), "{out}");
        Ok(())
    }

    #[test]
    fn missing_directory_is_an_error() {
        let missing = std::env::temp_dir().join("ferrocd-conformance-raft-does-not-exist");
        assert!(run_into(&[missing], &mut String::new()).is_err());
    }
}
