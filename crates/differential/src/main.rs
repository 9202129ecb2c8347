//! `differential`: runs seeded random request sequences against fresh etcd and ferrocd clusters,
//! compares everything, shrinks each mismatch to a short reproduction, and ends with
//! `N passed, M failed` (exit status 1 when any failed).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use clap::ValueEnum;
use differential::cluster::Binaries;
use differential::ops::{Avoid, generate_avoiding};
use differential::pretty::show;
use differential::runner::{RunConfig, ShrinkBudget, Signature, run_steps, shrink};

/// Differential testing of ferrocd against etcd over the v3 gRPC API.
#[derive(Parser, Debug)]
#[command(name = "differential")]
struct Cli {
    /// How many sequences (seeds) to run, for each member count.
    #[arg(long, default_value_t = 10)]
    seeds: u64,
    /// The first seed (seeds run are first-seed .. first-seed + seeds).
    #[arg(long, default_value_t = 1)]
    first_seed: u64,
    /// Replay this one seed only (overrides --seeds and --first-seed).
    #[arg(long)]
    seed: Option<u64>,
    /// Operations per sequence.
    #[arg(long, default_value_t = 60)]
    ops: usize,
    /// Members per cluster, e.g. `1`, `3` or `1,3` (each seed runs for each count).
    #[arg(long, value_delimiter = ',', default_value = "1")]
    members: Vec<usize>,
    /// The etcd (3.4) binary.
    #[arg(long, default_value = "/usr/bin/etcd")]
    etcd: PathBuf,
    /// The ferrocd binary (default: `ferrocd` beside this binary).
    #[arg(long)]
    ferrocd: Option<PathBuf>,
    /// At most this many replays to shrink one mismatch.
    #[arg(long, default_value_t = 40)]
    shrink_attempts: usize,
    /// At most this many seconds to shrink one mismatch.
    #[arg(long, default_value_t = 120)]
    shrink_secs: u64,
    /// Do not shrink mismatches.
    #[arg(long)]
    no_shrink: bool,
    /// Overlook a known, reported difference so that runs can find others (repeatable; changes
    /// what is generated, so pass the same to replay a seed).
    #[arg(long, value_enum)]
    tolerate: Vec<Known>,
    /// Run only these steps (by index in the generated sequence, as reproductions show them).
    #[arg(long, value_delimiter = ',')]
    only_steps: Vec<usize>,
    /// Print every step with both outcomes.
    #[arg(long)]
    trace: bool,
    /// Print each sequence's steps before running it.
    #[arg(long)]
    show_steps: bool,
}

/// Known differences `--tolerate` can overlook.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Known {
    /// Ignore the headers of responses nested in a txn.
    NestedTxnHeaders,
    /// Ignore the header revision of watches canceled by compaction.
    CompactedWatchRevision,
    /// Generate no request over gRPC's message size limit.
    OverGrpcLimit,
    /// Generate no client-chosen watch ids.
    ExplicitWatchIds,
    /// Generate no compaction at revision 0 or below.
    CompactAtZero,
    /// Generate no watch with a negative start revision.
    NegativeWatchStart,
    /// Generate no Put with ignore_value and a lease.
    IgnoreValueWithLease,
    /// Generate no Range both keys_only and sorted by value.
    KeysOnlyByValue,
}

/// A distinct mismatch (by signature) and its shortest reproduction.
struct Finding {
    signature: Signature,
    seeds: Vec<(u64, usize)>,
    reproduction: String,
}

fn default_ferrocd() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("locating this binary")?;
    let dir = exe.parent().context("this binary has no directory")?;
    Ok(dir.join("ferrocd"))
}

#[tokio::main]
async fn main() -> Result<ExitCode> {
    let cli = Cli::parse();
    let ferrocd = match &cli.ferrocd {
        Some(p) => p.clone(),
        None => default_ferrocd()?,
    };
    for (what, path) in [("etcd", &cli.etcd), ("ferrocd", &ferrocd)] {
        if !path.is_file() {
            bail!("{what} binary {} not found", path.display());
        }
    }
    if cli.members.iter().any(|&m| m == 0 || m > 7) {
        bail!("--members takes counts from 1 to 7");
    }
    let bins = Binaries {
        etcd: cli.etcd.clone(),
        ferrocd,
    };
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing a SIGTERM handler")?;
    // Returning on a signal drops the running clusters, which kills their processes.
    tokio::select! {
        result = run(&cli, bins) => result,
        _ = tokio::signal::ctrl_c() => {
            eprintln!("interrupted");
            Ok(ExitCode::from(130))
        }
        _ = terminate.recv() => {
            eprintln!("terminated");
            Ok(ExitCode::from(143))
        }
    }
}

async fn run(cli: &Cli, bins: Binaries) -> Result<ExitCode> {
    let seeds: Vec<u64> = match cli.seed {
        Some(s) => vec![s],
        None => (cli.first_seed..cli.first_seed.saturating_add(cli.seeds)).collect(),
    };
    let budget = ShrinkBudget {
        attempts: cli.shrink_attempts,
        time: Duration::from_secs(cli.shrink_secs),
    };
    let has = |k: Known| cli.tolerate.contains(&k);
    let avoid = Avoid {
        // A deliberate difference, never generated: a txn that deletes from a key on (range
        // end "\0") and writes a key at or after it is refused by ferrocd as a duplicate key;
        // etcd 3.4 takes "\0" literally in that check (an empty interval), accepts the txn,
        // and some such txns then crash it ("unexpected error during txn").
        from_key_delete_in_txn: true,
        over_grpc_limit: has(Known::OverGrpcLimit),
        explicit_watch_ids: has(Known::ExplicitWatchIds),
        compact_at_zero: has(Known::CompactAtZero),
        negative_watch_start: has(Known::NegativeWatchStart),
        ignore_value_with_lease: has(Known::IgnoreValueWithLease),
        keys_only_by_value: has(Known::KeysOnlyByValue),
        revision_in_txn: false,
    };
    let tolerated: String = cli
        .tolerate
        .iter()
        .filter_map(|k| k.to_possible_value())
        .map(|v| format!(" --tolerate {}", v.get_name()))
        .collect();
    let started = Instant::now();
    let (mut passed, mut failed, mut skipped) = (0u64, 0u64, 0u64);
    let mut findings: Vec<Finding> = Vec::new();
    for &members in &cli.members {
        let mut cfg = RunConfig::new(bins.clone(), members);
        // etcd 3.4's own bug with several members (see `Avoid::revision_in_txn`).
        let avoid = Avoid {
            revision_in_txn: avoid.revision_in_txn || members > 1,
            ..avoid
        };
        cfg.tolerate.nested_txn_headers = has(Known::NestedTxnHeaders);
        cfg.tolerate.compacted_watch_revision = has(Known::CompactedWatchRevision);
        cfg.trace = cli.trace;
        for &seed in &seeds {
            let mut seq = generate_avoiding(seed, cli.ops, members, avoid);
            if !cli.only_steps.is_empty() {
                seq.steps.retain(|s| cli.only_steps.contains(&s.origin));
            }
            if cli.show_steps {
                for s in &seq.steps {
                    println!("  step {} member {}: {}", s.origin, s.member, show(&s.op));
                }
            }
            let t = Instant::now();
            let mismatch = match run_steps(&cfg, seq.watch_member, &seq.steps).await {
                Ok(None) => {
                    passed += 1;
                    println!(
                        "seed {seed} (members {members}): ok ({} ops, {:.1}s)",
                        seq.steps.len(),
                        t.elapsed().as_secs_f64()
                    );
                    continue;
                }
                Ok(Some(m)) => m,
                Err(e) => {
                    failed += 1;
                    println!("seed {seed} (members {members}): FAILED to start clusters: {e}");
                    continue;
                }
            };
            if mismatch.etcd_failed {
                skipped += 1;
                println!(
                    "seed {seed} (members {members}): SKIPPED, etcd itself failed at op #{}:\n{}",
                    mismatch.index, mismatch.detail
                );
                continue;
            }
            failed += 1;
            println!(
                "seed {seed} (members {members}): MISMATCH at op #{} [{}]\n{}",
                mismatch.index, mismatch.signature, mismatch.detail
            );
            if let Some(f) = findings
                .iter_mut()
                .find(|f| f.signature == mismatch.signature)
            {
                f.seeds.push((seed, members));
                println!("  (same kind as an earlier finding: not shrunk again)\n");
                continue;
            }
            let replay = format!(
                "differential --seed {seed} --members {members} --ops {}{tolerated}",
                cli.ops
            );
            let reproduction = if cli.no_shrink {
                format!("  replay: {replay}\n")
            } else {
                let s = shrink(&cfg, seq.watch_member, &seq.steps, &mismatch, budget).await;
                let mut text = String::new();
                if s.reproduced {
                    text.push_str(&format!(
                        "  shortest reproduction found ({} of {} ops; seed {seed}, members {members}, watch stream on member {}; {} replays):\n",
                        s.steps.len(),
                        seq.steps.len(),
                        seq.watch_member,
                        s.attempts
                    ));
                    for (i, step) in s.steps.iter().enumerate() {
                        text.push_str(&format!(
                            "    #{i} (step {}) member {}: {}\n",
                            step.origin,
                            step.member,
                            show(&step.op)
                        ));
                        if i + 1 < s.steps.len()
                            && let Some(outcome) = s.mismatch.transcript.get(i)
                        {
                            text.push_str(&format!("         etcd and ferrocd: {outcome}\n"));
                        }
                    }
                    text.push_str(&format!("  mismatch:\n{}", s.mismatch.detail));
                    let origins: Vec<String> =
                        s.steps.iter().map(|s| s.origin.to_string()).collect();
                    let simplified = s.steps.iter().any(|st| {
                        seq.steps
                            .iter()
                            .any(|g| g.origin == st.origin && g.op != st.op)
                    });
                    text.push_str(&format!(
                        "  replay the reproduction: {replay} --only-steps {}{}\n",
                        origins.join(","),
                        if simplified {
                            " (txns as generated: shrinking simplified some)"
                        } else {
                            ""
                        }
                    ));
                } else {
                    text.push_str("  did NOT reproduce on a replay on fresh clusters (flaky?)\n");
                }
                text.push_str(&format!("  replay: {replay}\n"));
                text
            };
            println!("{reproduction}");
            findings.push(Finding {
                signature: mismatch.signature,
                seeds: vec![(seed, members)],
                reproduction,
            });
        }
    }
    if !findings.is_empty() {
        println!("\n==== {} distinct mismatch(es) ====", findings.len());
        for (i, f) in findings.iter().enumerate() {
            let seeds: Vec<String> = f.seeds.iter().map(|(s, m)| format!("{s}/m{m}")).collect();
            println!(
                "\n[{}] {} (seeds {})\n{}",
                i + 1,
                f.signature,
                seeds.join(", "),
                f.reproduction
            );
        }
    }
    if skipped > 0 {
        println!("\n{skipped} skipped: etcd itself failed (see SKIPPED above)");
    }
    println!(
        "\ndifferential: {:.0}s\n{passed} passed, {failed} failed",
        started.elapsed().as_secs_f64()
    );
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
