//! `cargo xtask bench`: figures only, a benchmark never passes or fails on time.
//!
//! - `bench storage [FILTER]`: runs a criterion suite, then prints the medians it measured side
//!   by side with the ratios between them.
//! - `bench put|range|txn-put|watch|suite`: etcd-style load (`ferrocd-bench`) against etcd and
//!   ferrocd clusters, with a table of ratios and a report in `docs/benchmarks/`
//!   ([`crate::bench_load`]).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};

use crate::bench_load::{self, Consistency, Keys, Load, Matrix, WatchFlags};
use crate::{cargo, workspace_root};

/// What `cargo xtask bench` measures.
#[derive(Clone, Debug, clap::Subcommand)]
pub(crate) enum Command {
    /// The storage layer (etcd's batching backend) against the raw engines (criterion).
    Storage {
        /// Only benchmarks whose name contains this (criterion's filter).
        filter: Option<String>,
    },
    /// Puts (etcd's `benchmark put`) against etcd and ferrocd.
    Put {
        #[command(flatten)]
        matrix: Matrix,
        #[command(flatten)]
        load: Load,
        #[command(flatten)]
        keys: Keys,
    },
    /// Reads of preloaded keys (etcd's `benchmark range`), linearizable and/or serializable.
    Range {
        #[command(flatten)]
        matrix: Matrix,
        #[command(flatten)]
        load: Load,
        #[command(flatten)]
        keys: Keys,
        /// Linearizable (l) and/or serializable (s) reads.
        #[arg(long, value_enum, value_delimiter = ',', default_value = "l,s")]
        consistency: Vec<Consistency>,
    },
    /// Transactions of puts (etcd's `benchmark txn-put`).
    TxnPut {
        #[command(flatten)]
        matrix: Matrix,
        #[command(flatten)]
        load: Load,
        #[command(flatten)]
        keys: Keys,
        /// Puts per transaction.
        #[arg(long, default_value_t = 1)]
        txn_ops: usize,
    },
    /// Watch event latency: watchers on a key, paced puts to it.
    Watch {
        #[command(flatten)]
        matrix: Matrix,
        #[command(flatten)]
        load: Load,
        #[command(flatten)]
        watch: WatchFlags,
    },
    /// Issue #8's figures: writes with 1 and 1 000 clients, linearizable and serializable reads,
    /// txn-put, watch, RSS and disk after 1 million keys; on 1 and 3 members by default.
    Suite {
        #[command(flatten)]
        matrix: Matrix,
        /// Multiplies every total (1: full size; 0.01: a CI-sized run).
        #[arg(long, default_value_t = 1.0)]
        scale: f64,
        /// Only the workloads whose label contains one of these (comma separated).
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
    },
}

/// Runs `cargo xtask bench COMMAND`.
pub(crate) fn run(command: Command) -> Result<()> {
    match command {
        Command::Storage { filter } => run_suite(Suite::Storage, filter.as_deref()),
        Command::Put { matrix, load, keys } => {
            bench_load::run(&matrix, &[bench_load::put_row(&load, &keys)], "put", &[1])
        }
        Command::Range {
            matrix,
            load,
            keys,
            consistency,
        } => {
            let rows: Vec<_> = consistency
                .iter()
                .map(|&c| bench_load::range_row(&load, &keys, c))
                .collect();
            bench_load::run(&matrix, &rows, "range", &[1])
        }
        Command::TxnPut {
            matrix,
            load,
            keys,
            txn_ops,
        } => bench_load::run(
            &matrix,
            &[bench_load::txn_put_row(&load, &keys, txn_ops)],
            "txn-put",
            &[1],
        ),
        Command::Watch {
            matrix,
            load,
            watch,
        } => bench_load::run(
            &matrix,
            &[bench_load::watch_row(&load, &watch)],
            "watch",
            &[1],
        ),
        Command::Suite {
            matrix,
            scale,
            only,
        } => {
            if !(scale > 0.0 && scale.is_finite()) {
                anyhow::bail!("--scale must be a positive number");
            }
            let rows: Vec<_> = bench_load::suite_rows(scale)
                .into_iter()
                .filter(|r| only.is_empty() || only.iter().any(|o| r.label().contains(o.as_str())))
                .collect();
            if rows.is_empty() {
                anyhow::bail!("--only matches no workload of the suite");
            }
            bench_load::run(&matrix, &rows, "suite", &[1, 3])
        }
    }
}

/// A criterion suite `cargo xtask bench` knows how to run and summarise.
#[derive(Clone, Copy, Debug)]
enum Suite {
    /// The storage layer (etcd's batching backend) against the raw engines, on every engine.
    Storage,
}

impl Suite {
    /// The bench target's name.
    fn target(self) -> &'static str {
        match self {
            Suite::Storage => "storage",
        }
    }
}

/// Runs `suite` (with `filter`, a criterion name filter, when given) and prints its summary.
fn run_suite(suite: Suite, filter: Option<&str>) -> Result<()> {
    let spinner = ProgressBar::new_spinner().with_style(
        ProgressStyle::with_template("{spinner} {elapsed} {msg}")
            .context("progress bar template")?,
    );
    spinner.enable_steady_tick(std::time::Duration::from_millis(200));
    spinner.set_message(format!("bench {}: building and measuring", suite.target()));
    // The same package and feature selection as CI's test step, so RocksDB is compiled once.
    let mut args = vec![
        "bench",
        "--workspace",
        "--all-features",
        "--bench",
        suite.target(),
    ];
    if let Some(filter) = filter {
        args.extend(["--", filter]);
    }
    let outcome = spinner.suspend(|| cargo(&format!("bench {}", suite.target()), &args));
    spinner.finish_and_clear();
    outcome?;
    match suite {
        Suite::Storage => print!("{}", storage_summary(&criterion_dir())?),
    }
    Ok(())
}

/// Where criterion keeps its measurements: `$CARGO_TARGET_DIR/criterion` or `target/criterion`.
fn criterion_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
        .join("criterion")
}

/// The median time per iteration, in nanoseconds, criterion measured for `group`/`id`.
fn median_ns(criterion: &Path, group: &str, id: &str) -> Result<Option<f64>> {
    let path = criterion
        .join(group.replace('/', "_"))
        .join(id)
        .join("new/estimates.json");
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let estimates: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    Ok(estimates["median"]["point_estimate"].as_f64())
}

/// Workloads of the storage suite: (name, operations per iteration).
const STORAGE_WORKLOADS: [(&str, f64); 5] = [
    ("put_seq", 1_000.0),
    ("put_rand", 1_000.0),
    ("commit", 1.0),
    ("range_1", 1.0),
    ("range_1000", 1_000.0),
];

/// The storage table: per engine and workload, the backend's and the raw engine's medians and
/// the backend/engine time ratio (above 1: the batching layer costs; below 1: it saves).
fn storage_summary(criterion: &Path) -> Result<String> {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n{:<7} {:<11} {:>14} {:>14} {:>14} {:>9}",
        "engine", "workload", "backend", "engine", "backend ops/s", "b/e time"
    );
    for engine in ["lmdb", "rocks"] {
        for (workload, ops) in STORAGE_WORKLOADS {
            let group = format!("storage/{engine}/{workload}");
            let backend = median_ns(criterion, &group, "backend")?;
            let raw = median_ns(criterion, &group, "engine")?;
            let (Some(backend), Some(raw)) = (backend, raw) else {
                continue;
            };
            let _ = writeln!(
                out,
                "{engine:<7} {workload:<11} {:>14} {:>14} {:>14.0} {:>9.2}",
                human_ns(backend),
                human_ns(raw),
                ops * 1e9 / backend,
                backend / raw
            );
        }
    }
    Ok(out)
}

/// `ns` with a unit that keeps it short.
fn human_ns(ns: f64) -> String {
    if ns >= 1e9 {
        format!("{:.2} s", ns / 1e9)
    } else if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{ns:.0} ns")
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn write_estimate(dir: &Path, group: &str, id: &str, median: f64) {
        let path = dir.join(group.replace('/', "_")).join(id).join("new");
        std::fs::create_dir_all(&path).unwrap();
        let json =
            format!(r#"{{"median":{{"point_estimate":{median}}},"mean":{{"point_estimate":1}}}}"#);
        std::fs::write(path.join("estimates.json"), json).unwrap();
    }

    #[test]
    fn summary_reads_criterion_medians_and_computes_ratios() {
        let dir = tempfile::tempdir().unwrap();
        write_estimate(dir.path(), "storage/lmdb/put_seq", "backend", 2_000_000.0);
        write_estimate(dir.path(), "storage/lmdb/put_seq", "engine", 1_000_000.0);
        // Only one side measured: the row is left out rather than guessed.
        write_estimate(dir.path(), "storage/rocks/commit", "backend", 5.0);
        let table = storage_summary(dir.path()).unwrap();
        let rows: Vec<&str> = table.lines().filter(|l| l.starts_with("lmdb")).collect();
        assert_eq!(rows.len(), 1, "{table}");
        assert!(rows[0].contains("2.00 ms"), "{table}");
        assert!(rows[0].contains("500000"), "{table}");
        assert!(rows[0].trim_end().ends_with("2.00"), "{table}");
        assert!(!table.contains("rocks "), "{table}");
    }

    #[test]
    fn units_stay_short() {
        assert_eq!(human_ns(950.0), "950 ns");
        assert_eq!(human_ns(1_500.0), "1.50 µs");
        assert_eq!(human_ns(2_500_000.0), "2.50 ms");
        assert_eq!(human_ns(3e9), "3.00 s");
    }
}
