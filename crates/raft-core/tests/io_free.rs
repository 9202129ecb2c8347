//! The crate's architecture invariant, checked: its library code does no IO of any kind and
//! depends only on small crates, so that any project can embed it and every run is reproducible.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::{Path, PathBuf};

/// Paths whose presence in library code would mean IO, wall-clock time, threads or OS
/// randomness.
const FORBIDDEN: [&str; 10] = [
    "std::fs",
    "std::net",
    "std::thread",
    "std::time",
    "std::process",
    "std::env",
    "tokio",
    "async fn",
    "getrandom",
    "rand::",
];

/// The only dependencies the library may have (dev-dependencies are the tests' business).
const ALLOWED_DEPENDENCIES: [&str; 3] = ["thiserror", "tracing", "serde"];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn library_code_names_no_io() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    assert!(files.len() > 10, "found only {} source files", files.len());
    let mut offences = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            for needle in FORBIDDEN {
                if code.contains(needle) {
                    offences.push(format!("{}:{}: {}", file.display(), n + 1, line.trim()));
                }
            }
        }
    }
    assert!(
        offences.is_empty(),
        "IO in raft-core:\n{}",
        offences.join("\n")
    );
}

#[test]
fn dependencies_are_the_small_allowed_set() {
    let manifest =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml")).unwrap();
    let mut section = String::new();
    let mut unexpected = Vec::new();
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            section = line.to_string();
            continue;
        }
        if section != "[dependencies]" || line.is_empty() || line.starts_with('#') {
            continue;
        }
        let name = line
            .split(['=', '.', ' '])
            .next()
            .unwrap_or_default()
            .trim();
        if !ALLOWED_DEPENDENCIES.contains(&name) {
            unexpected.push(name.to_string());
        }
    }
    assert!(
        unexpected.is_empty(),
        "raft-core depends on {unexpected:?}; allowed: {ALLOWED_DEPENDENCIES:?}"
    );
}
