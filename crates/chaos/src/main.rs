//! `chaos`: seeded chaos runs against real `ferrocd` clusters, then crash-consistency loops;
//! ends with `N passed, M failed`. Usually started by `cargo xtask chaos`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use chaos::run::{RunConfig, RunReport};
use clap::Parser;

/// Chaos runs against real ferrocd clusters.
#[derive(Parser, Debug)]
#[command(name = "chaos")]
struct Cli {
    /// The ferrocd binary.
    #[arg(long)]
    ferrocd: PathBuf,
    /// Seeded runs per cluster size.
    #[arg(long, default_value_t = 2)]
    seeds: u64,
    /// The first seed (runs use `seed`, `seed + 1`, ...). Replays a failure with `--seeds 1`.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Seconds of clients and faults per run.
    #[arg(long, default_value_t = 20)]
    duration: u64,
    /// Cluster sizes to run (repeatable or comma-separated: 3, 5).
    #[arg(long, value_delimiter = ',', default_values_t = vec![3usize])]
    members: Vec<usize>,
    /// Concurrent KV clients per run.
    #[arg(long, default_value_t = 4)]
    clients: usize,
    /// Keys the KV clients share.
    #[arg(long, default_value_t = 6)]
    keys: usize,
    /// `--snapshot-count` of the members (small: snapshots and snapshot catch-up during runs).
    #[arg(long, default_value_t = 300)]
    snapshot_count: u64,
    /// Crash-consistency loops (kill -9 of one member under heavy writes); 0 skips them.
    #[arg(long, default_value_t = 0)]
    crash_loops: usize,
    /// Print every run's fault schedule, not only failed runs'.
    #[arg(long)]
    verbose: bool,
    /// Keep every run's directory (member logs and data), not only failed runs'.
    #[arg(long)]
    keep_dirs: bool,
    /// Self-test of the checker: hold serializable reads to linearizability too (they may be
    /// stale, so runs with pauses or partitions are expected to FAIL).
    #[arg(long)]
    serializable_as_linearizable: bool,
    /// Where run directories go (failed runs keep theirs).
    #[arg(long, default_value = "target/chaos")]
    work_dir: PathBuf,
}

fn print_run(r: &RunReport, verbose: bool, duration: u64) {
    let verdict = if r.violations.is_empty() {
        "ok"
    } else {
        "FAILED"
    };
    println!(
        "run seed={} members={}: {verdict}: {} operations ({} checked for linearizability, {} keys inconclusive), \
         {} watch events, {} leases, {} faults {:?}",
        r.seed,
        r.members,
        r.operations,
        r.checked.linearizability_ops,
        r.checked.inconclusive_keys,
        r.checked.watch_events,
        r.leases,
        r.fault_count(),
        r.faults
    );
    if verbose || !r.violations.is_empty() {
        println!("  fault schedule:");
        for s in &r.schedule {
            println!("    {s}");
        }
    }
    if !r.violations.is_empty() {
        for v in &r.violations {
            println!("  VIOLATION [{}] {}", v.check, v.detail);
        }
    }
    for u in &r.unavailable {
        println!("  not injected on this machine: {u}");
    }
    if let Some(d) = &r.dir {
        println!("  member logs and data kept in {}", d.display());
    }
    if !r.violations.is_empty() {
        println!(
            "  reproduce: cargo xtask chaos --seed {} --seeds 1 --members {} --duration {duration} --crash-loops 0 \
             (the schedule is seeded; process timing is not)",
            r.seed, r.members
        );
    }
}

/// Runs `fut` until it ends or SIGINT/SIGTERM arrives (`None`). On a signal the caller drops
/// the runtime, which drops every task and with them the clusters, whose `Drop` kills the
/// `ferrocd` processes: an interrupted run leaves no process behind.
fn interruptible<T>(
    rt: &tokio::runtime::Runtime,
    fut: impl std::future::Future<Output = T>,
) -> Option<T> {
    rt.block_on(async {
        let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        else {
            return Some(fut.await);
        };
        tokio::select! {
            r = fut => Some(r),
            _ = tokio::signal::ctrl_c() => None,
            _ = term.recv() => None,
        }
    })
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    if !cli.ferrocd.is_file() {
        bail!("no ferrocd binary at {}", cli.ferrocd.display());
    }
    std::fs::create_dir_all(&cli.work_dir)
        .with_context(|| format!("creating {}", cli.work_dir.display()))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let (mut passed, mut failed) = (0usize, 0usize);
    let (mut ops, mut lin_ops, mut faults, mut violations, mut watch_events) = (0, 0, 0, 0, 0);
    for &members in &cli.members {
        if !(1..=7).contains(&members) {
            bail!("--members {members}: expected 1 to 7");
        }
        let cfg = RunConfig {
            binary: cli.ferrocd.clone(),
            members,
            duration: Duration::from_secs(cli.duration),
            clients: cli.clients,
            keys: cli.keys,
            work_dir: cli.work_dir.clone(),
            snapshot_count: cli.snapshot_count,
            keep_dirs: cli.keep_dirs,
            serializable_as_linearizable: cli.serializable_as_linearizable,
        };
        for seed in cli.seed..cli.seed + cli.seeds {
            let Some(r) = interruptible(&rt, chaos::run::run(&cfg, seed)) else {
                drop(rt);
                bail!("interrupted during the run of seed {seed}");
            };
            print_run(&r, cli.verbose, cli.duration);
            ops += r.operations;
            lin_ops += r.checked.linearizability_ops;
            watch_events += r.checked.watch_events;
            faults += r.fault_count();
            violations += r.violations.len();
            if r.violations.is_empty() {
                passed += 1;
            } else {
                failed += 1;
            }
        }
    }
    let mut crash_acked = 0;
    let mut crash_loops = 0;
    if cli.crash_loops > 0 {
        let crash = interruptible(
            &rt,
            chaos::crash::run(
                &cli.ferrocd,
                &cli.work_dir,
                cli.seed,
                cli.crash_loops,
                |r| {
                    if !r.violations.is_empty() || r.round % 10 == 0 {
                        println!(
                            "crash loop {}: killed after {:?}: {} acknowledged, {} in flight, {} keys checked{}",
                            r.round,
                            r.killed_after,
                            r.acknowledged,
                            r.in_flight,
                            r.keys_checked,
                            if r.violations.is_empty() {
                                ""
                            } else {
                                ": FAILED"
                            }
                        );
                    }
                },
            ),
        );
        let Some(crash) = crash else {
            drop(rt);
            bail!("interrupted during the crash loops");
        };
        let (reports, kept) = crash?;
        for r in &reports {
            crash_loops += 1;
            crash_acked += r.acknowledged;
            faults += 1;
            violations += r.violations.len();
            if r.violations.is_empty() {
                passed += 1;
            } else {
                failed += 1;
                for v in &r.violations {
                    println!(
                        "  crash loop {} VIOLATION [{}] {}",
                        r.round, v.check, v.detail
                    );
                }
            }
        }
        if let Some(d) = kept {
            println!(
                "  crash data kept in {}; reproduce: cargo xtask chaos --seeds 0 --seed {} --crash-loops {}",
                d.display(),
                cli.seed,
                cli.crash_loops
            );
        }
    }
    println!(
        "totals: {ops} client operations ({lin_ops} checked for linearizability), {watch_events} watch events, \
         {crash_loops} crash loops ({crash_acked} acknowledged writes verified), {faults} faults injected, \
         {violations} violations"
    );
    println!("{passed} passed, {failed} failed");
    if failed > 0 {
        std::process::exit(1);
    }
    Ok(())
}
