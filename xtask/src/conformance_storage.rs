//! `cargo xtask conformance storage`: the storage conformance suite on every engine.
//!
//! Each engine's `tests/conformance.rs` expands the suite into a module named after the engine;
//! this runs them all in one cargo invocation (with the same package and feature selection as
//! CI's clippy step, so nothing is rebuilt) and reports one line per test.

use std::process::Command;

use anyhow::{Context, Result, bail};

/// Runs the suite on LMDB and RocksDB; ends with `N passed, M failed`.
pub fn run() -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let output = Command::new(&cargo)
        .args([
            "test",
            "--workspace",
            "--all-features",
            "--test",
            "conformance",
            "--",
            "--test-threads=2",
        ])
        .current_dir(crate::workspace_root())
        .output()
        .with_context(|| format!("cannot start `{cargo}`"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let (passed, failed) = report(&stdout);
    println!("{passed} passed, {failed} failed");
    if !output.status.success() || failed > 0 || passed == 0 {
        eprintln!("{}", String::from_utf8_lossy(&output.stderr));
        bail!("storage conformance failed");
    }
    Ok(())
}

/// Prints one line per test result of libtest's output; returns (passed, failed).
fn report(stdout: &str) -> (usize, usize) {
    let (mut passed, mut failed) = (0, 0);
    for line in stdout.lines() {
        let Some(rest) = line.strip_prefix("test ") else {
            continue;
        };
        if let Some(name) = rest.strip_suffix(" ... ok") {
            passed += 1;
            println!("ok   {name}");
        } else if let Some(name) = rest.strip_suffix(" ... FAILED") {
            failed += 1;
            println!("FAIL {name}");
        }
    }
    (passed, failed)
}

#[cfg(test)]
mod tests {
    use super::report;

    #[test]
    fn counts_libtest_lines() {
        let out = "running 3 tests\ntest lmdb::a ... ok\ntest rocks::b ... FAILED\n\
                   test lmdb::c ... ok\ntest result: FAILED. 2 passed; 1 failed";
        assert_eq!(report(out), (2, 1));
    }
}
