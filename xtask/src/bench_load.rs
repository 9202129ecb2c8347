//! `cargo xtask bench put|range|txn-put|watch|suite`: runs `ferrocd-bench` workloads against
//! etcd and ferrocd clusters it starts itself (1 or 3 members, each engine), interleaving the
//! targets across repetitions, and reports medians and ferrocd/etcd ratios as a table, a
//! markdown report, a JSON file of every measurement and an SVG chart in `docs/benchmarks/`.
//! Figures only: nothing passes or fails on a time.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::bench_chart::{self, Panel};
use crate::bench_cluster::{ClientTls, Cluster, Engine, Footprint, Target, load_average, plural};
use crate::system::target_dir;
use crate::{cargo, workspace_root};

/// A server kind on the command line (`--target etcd,ferrocd`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum TargetKind {
    /// etcd, from `etcd` on the PATH (installed with apt-get when missing).
    Etcd,
    /// ferrocd, built in release, on every `--engine`.
    Ferrocd,
}

/// Where and how often to run: targets, engines, cluster sizes, repetitions, report.
#[derive(Clone, Debug, clap::Args)]
pub(crate) struct Matrix {
    /// Servers to measure, interleaved.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "etcd,ferrocd"
    )]
    target: Vec<TargetKind>,
    /// ferrocd's engines (`rocks` builds ferrocd with `--features rocks`).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "lmdb")]
    engine: Vec<Engine>,
    /// Cluster sizes [default: 1; suite: 1,3].
    #[arg(long, value_delimiter = ',')]
    members: Vec<usize>,
    /// Repetitions; the report shows medians.
    #[arg(long, default_value_t = 1)]
    runs: usize,
    /// The report's name: docs/benchmarks/NAME.{md,json,svg} [default: the workload's name].
    #[arg(long)]
    name: Option<String>,
    /// Where the report goes (relative to the workspace root).
    #[arg(long, default_value = "docs/benchmarks")]
    out_dir: PathBuf,
    /// Where the clusters' data directories go [default: the system's temporary directory].
    #[arg(long)]
    data_root: Option<PathBuf>,
    /// Use the release binaries already built instead of building them.
    #[arg(long)]
    no_build: bool,
    /// Serve clients over TLS (etcd and ferrocd alike, with one certificate made for the run;
    /// the benchmark verifies it against its CA).
    #[arg(long)]
    tls: bool,
    /// The etcd binary [default: `etcd` on the PATH].
    #[arg(long)]
    etcd_bin: Option<PathBuf>,
    /// Send every request to the leader (etcd's `--target-leader`) instead of all members.
    #[arg(long)]
    target_leader: bool,
    /// Longest one measurement may run, in seconds (then it is stopped and left out).
    #[arg(long, default_value_t = 3_600)]
    max_secs: u64,
}

/// Connections, clients and requests (`ferrocd-bench`'s global flags).
#[derive(Clone, Debug, clap::Args)]
pub(crate) struct Load {
    /// gRPC connections.
    #[arg(long, default_value_t = 1)]
    conns: usize,
    /// Concurrent clients sharing the connections.
    #[arg(long, default_value_t = 1)]
    clients: usize,
    /// Requests.
    #[arg(long, default_value_t = 10_000)]
    total: u64,
}

/// Keys of a workload.
#[derive(Clone, Debug, clap::Args)]
pub(crate) struct Keys {
    /// Bytes per key.
    #[arg(long, default_value_t = 8)]
    key_size: usize,
    /// Distinct keys.
    #[arg(long, default_value_t = 1)]
    key_space_size: u64,
    /// Request `i` uses key `i % key-space-size` (otherwise random keys).
    #[arg(long)]
    sequential_keys: bool,
    /// Bytes per value.
    #[arg(long, default_value_t = 256)]
    val_size: usize,
}

/// Linearizable or serializable reads.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub(crate) enum Consistency {
    /// Linearizable.
    L,
    /// Serializable.
    S,
}

/// One measured workload: a label for the report and `ferrocd-bench`'s arguments.
#[derive(Clone, Debug)]
pub(crate) struct Row {
    label: String,
    args: Vec<String>,
}

impl Row {
    /// The label the report shows.
    pub(crate) fn label(&self) -> &str {
        &self.label
    }
}

fn s(v: impl ToString) -> String {
    v.to_string()
}

fn load_args(l: &Load) -> Vec<String> {
    vec![
        s("--conns"),
        s(l.conns),
        s("--clients"),
        s(l.clients),
        s("--total"),
        s(l.total),
    ]
}

fn key_args(k: &Keys) -> Vec<String> {
    let mut a = vec![
        s("--key-size"),
        s(k.key_size),
        s("--key-space-size"),
        s(k.key_space_size),
        s("--val-size"),
        s(k.val_size),
    ];
    if k.sequential_keys {
        a.push(s("--sequential-keys"));
    }
    a
}

fn clients_label(l: &Load) -> String {
    format!("{}c/{}conn", l.clients, l.conns)
}

/// `put`.
pub(crate) fn put_row(load: &Load, keys: &Keys) -> Row {
    let mut args = load_args(load);
    args.push(s("put"));
    args.extend(key_args(keys));
    Row {
        label: format!("put {}B {}", keys.val_size, clients_label(load)),
        args,
    }
}

/// `range`, after writing every key of the key space once.
pub(crate) fn range_row(load: &Load, keys: &Keys, c: Consistency) -> Row {
    let mut args = load_args(load);
    args.push(s("range"));
    args.extend(key_args(keys));
    let c = match c {
        Consistency::L => "l",
        Consistency::S => "s",
    };
    args.extend([s("--consistency"), s(c), s("--preload")]);
    Row {
        label: format!("range-{c} {}", clients_label(load)),
        args,
    }
}

/// `txn-put`.
pub(crate) fn txn_put_row(load: &Load, keys: &Keys, txn_ops: usize) -> Row {
    let mut args = load_args(load);
    args.push(s("txn-put"));
    args.extend(key_args(keys));
    args.extend([s("--txn-ops"), s(txn_ops)]);
    Row {
        label: format!("txn-put x{txn_ops} {}", clients_label(load)),
        args,
    }
}

/// Options of the `watch` workload.
#[derive(Clone, Debug, clap::Args)]
pub(crate) struct WatchFlags {
    /// Watchers on the watched key.
    #[arg(long, default_value_t = 100)]
    watchers: usize,
    /// Watch streams carrying them.
    #[arg(long, default_value_t = 10)]
    streams: usize,
    /// Puts to the watched key.
    #[arg(long, default_value_t = 1_000)]
    puts: u64,
    /// Puts per second (0: unpaced).
    #[arg(long, default_value_t = 100)]
    put_rate: u64,
    /// Bytes per value.
    #[arg(long, default_value_t = 256)]
    val_size: usize,
}

/// `watch`.
pub(crate) fn watch_row(load: &Load, w: &WatchFlags) -> Row {
    let mut args = load_args(load);
    args.extend([
        s("watch"),
        s("--watchers"),
        s(w.watchers),
        s("--streams"),
        s(w.streams),
        s("--puts"),
        s(w.puts),
        s("--put-rate"),
        s(w.put_rate),
        s("--val-size"),
        s(w.val_size),
    ]);
    Row {
        label: format!(
            "watch {}w/{}s {}puts@{}/s",
            w.watchers, w.streams, w.puts, w.put_rate
        ),
        args,
    }
}

/// The suite: the figures issue #8 asks for, scaled by `scale` (1.0: full size; 0.01: a
/// CI-sized run). Totals scale, clients and connections do not.
pub(crate) fn suite_rows(scale: f64) -> Vec<Row> {
    let n = |full: u64| ((full as f64 * scale).round() as u64).max(100);
    let one = |total| Load {
        conns: 1,
        clients: 1,
        total,
    };
    let many = |total| Load {
        conns: 100,
        clients: 1_000,
        total,
    };
    let keys = |space: u64| Keys {
        key_size: 8,
        key_space_size: space,
        sequential_keys: true,
        val_size: 256,
    };
    let reads = keys(n(1_000).min(1_000));
    let mut rows = vec![
        put_row(&one(n(10_000)), &keys(n(10_000))),
        put_row(&many(n(100_000)), &keys(n(100_000))),
        range_row(&one(n(10_000)), &reads, Consistency::L),
        range_row(&many(n(100_000)), &reads, Consistency::L),
        range_row(&one(n(10_000)), &reads, Consistency::S),
        range_row(&many(n(100_000)), &reads, Consistency::S),
        txn_put_row(&many(n(100_000)), &keys(n(100_000)), 4),
        watch_row(
            &one(0),
            &WatchFlags {
                watchers: 100,
                streams: 10,
                puts: n(1_000),
                put_rate: 100,
                val_size: 256,
            },
        ),
    ];
    let mut million = put_row(&many(n(1_000_000)), &keys(n(1_000_000)));
    million.label = format!("put {} keys (RSS, disk)", n(1_000_000));
    rows.push(million);
    rows
}

/// The binaries a run needs.
struct Bins {
    ferrocd: PathBuf,
    bench: PathBuf,
    etcd: Option<PathBuf>,
}

/// `name` on the PATH.
fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// etcd's binary: `--etcd-bin`, `etcd` on the PATH, or Debian's etcd-server installed now.
fn ensure_etcd(given: Option<&Path>) -> Result<PathBuf> {
    if let Some(bin) = given {
        return Ok(bin.to_path_buf());
    }
    if let Some(bin) = which("etcd") {
        return Ok(bin);
    }
    crate::system::ensure_packages(&[("/usr/bin/etcd", "etcd-server")])?;
    which("etcd").context("etcd is still not on the PATH after installing etcd-server")
}

/// Builds what the targets need (unless `--no-build`) and finds the binaries.
fn prepare(m: &Matrix, targets: &[Target]) -> Result<Bins> {
    let rocks = targets.contains(&Target::Ferrocd(Engine::Rocks));
    if !m.no_build {
        let mut args = vec![
            "build",
            "--release",
            "-p",
            "server",
            "--bin",
            "ferrocd",
            "-p",
            "benchmark",
            "--bin",
            "ferrocd-bench",
        ];
        if rocks {
            // RocksDB's C++ build is long (~16-25 minutes on 2 cores) the first time.
            args.extend(["--features", "server/rocks"]);
        }
        cargo("build ferrocd and ferrocd-bench (release)", &args)?;
    }
    let release = target_dir().join("release");
    let bins = Bins {
        ferrocd: release.join("ferrocd"),
        bench: release.join("ferrocd-bench"),
        etcd: if targets.contains(&Target::Etcd) {
            Some(ensure_etcd(m.etcd_bin.as_deref())?)
        } else {
            None
        },
    };
    for bin in [&bins.ferrocd, &bins.bench] {
        if !bin.is_file() {
            bail!(
                "{} is missing (build it, or drop --no-build)",
                bin.display()
            );
        }
    }
    Ok(bins)
}

/// The targets of the matrix, in the order they are interleaved.
fn targets(m: &Matrix) -> Vec<Target> {
    let mut out = Vec::new();
    for kind in &m.target {
        match kind {
            TargetKind::Etcd => {
                if !out.contains(&Target::Etcd) {
                    out.push(Target::Etcd);
                }
            }
            TargetKind::Ferrocd => {
                for &e in &m.engine {
                    if !out.contains(&Target::Ferrocd(e)) {
                        out.push(Target::Ferrocd(e));
                    }
                }
            }
        }
    }
    out
}

/// One workload measured once on one cluster.
#[derive(Clone, Debug)]
struct Measurement {
    run: usize,
    row: usize,
    members: usize,
    target: Target,
    result: serde_json::Value,
    footprint: Footprint,
    load_before: String,
    load_after: String,
}

impl Measurement {
    fn num(&self, field: &str) -> Option<f64> {
        self.result.get(field)?.as_f64()
    }

    fn latency(&self, field: &str) -> Option<f64> {
        self.result.get("latency")?.get(field)?.as_f64()
    }
}

/// Runs `rows` on every (cluster size, target) `runs` times, targets interleaved, then prints
/// and writes the report `default_name` (unless `--name`).
pub(crate) fn run(
    m: &Matrix,
    rows: &[Row],
    default_name: &str,
    default_members: &[usize],
) -> Result<()> {
    let targets = targets(m);
    if targets.is_empty() {
        bail!("no target to measure");
    }
    let members: Vec<usize> = if m.members.is_empty() {
        default_members.to_vec()
    } else {
        m.members.clone()
    };
    if members.contains(&0) {
        bail!("--members must be at least 1");
    }
    let bins = prepare(m, &targets)?;
    let data_root = m.data_root.clone().unwrap_or_else(std::env::temp_dir);
    let name = m.name.clone().unwrap_or_else(|| default_name.to_owned());
    let started = utc_now();
    let tls = if m.tls {
        Some(ClientTls::generate(
            &data_root.join(format!("bench-tls-{}", std::process::id())),
        )?)
    } else {
        None
    };
    let load_start = load_average();
    let steps = m.runs * rows.len() * members.len() * targets.len();
    let mut done = Vec::new();
    let mut failures = Vec::new();
    let mut step = 0;
    for run in 0..m.runs {
        for (r, row) in rows.iter().enumerate() {
            for &n in &members {
                for &target in &targets {
                    step += 1;
                    eprintln!(
                        "\n==> [{step}/{steps}] run {} · {} · {} · {target}",
                        run + 1,
                        row.label,
                        plural(n)
                    );
                    match measure(&bins, target, n, row, &data_root, m, tls.as_ref()) {
                        Ok((result, footprint, load_before, load_after)) => {
                            let ms = Measurement {
                                run,
                                row: r,
                                members: n,
                                target,
                                result,
                                footprint,
                                load_before,
                                load_after,
                            };
                            eprintln!("    {}", one_line(&ms));
                            done.push(ms);
                        }
                        Err(e) => {
                            eprintln!("    FAILED: {e:#}");
                            failures.push(format!(
                                "run {} · {} · {} · {target}: {e:#}",
                                run + 1,
                                row.label,
                                plural(n)
                            ));
                        }
                    }
                }
            }
        }
    }
    let table = Table::new(rows, &members, &targets, &done);
    print!("\n{}", table.text());
    let out_dir = workspace_root().join(&m.out_dir);
    std::fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let svg = out_dir.join(format!("{name}.svg"));
    table.chart(&svg)?;
    let report = Report {
        name: &name,
        target_leader: m.target_leader,
        started: &started,
        load_start: &load_start,
        load_end: &load_average(),
        runs: m.runs,
        rows,
        table: &table,
        measurements: &done,
        failures: &failures,
    };
    let md = out_dir.join(format!("{name}.md"));
    std::fs::write(&md, report.markdown()).with_context(|| format!("writing {}", md.display()))?;
    let json = out_dir.join(format!("{name}.json"));
    let raw = serde_json::to_string_pretty(&report.json()).context("encoding the measurements")?;
    std::fs::write(&json, raw).with_context(|| format!("writing {}", json.display()))?;
    eprintln!(
        "\n==> report: {}, {}, {}",
        md.display(),
        svg.display(),
        json.display()
    );
    if !failures.is_empty() {
        eprintln!(
            "==> {} measurement(s) failed; see the report",
            failures.len()
        );
    }
    Ok(())
}

/// A measurement in one line, for the console.
fn one_line(m: &Measurement) -> String {
    format!(
        "{:.0} ops/s, p50 {:.3} ms, p99 {:.3} ms, {} errors, RSS {:.1} MiB (peak {:.1}), {} threads (peak), disk {:.1} MiB, load {} -> {}",
        m.num("throughput").unwrap_or(0.0),
        m.latency("p50").unwrap_or(0.0),
        m.latency("p99").unwrap_or(0.0),
        m.num("errors").unwrap_or(0.0),
        mib(m.footprint.rss),
        mib(m.footprint.hwm),
        m.footprint.threads,
        mib(m.footprint.disk),
        m.load_before,
        m.load_after
    )
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// Starts a cluster, runs `row` on it, measures its footprint, stops it.
fn measure(
    bins: &Bins,
    target: Target,
    members: usize,
    row: &Row,
    data_root: &Path,
    m: &Matrix,
    tls: Option<&ClientTls>,
) -> Result<(serde_json::Value, Footprint, String, String)> {
    let max_secs = m.max_secs;
    let server = match target {
        Target::Etcd => bins.etcd.as_deref().context("no etcd binary")?,
        Target::Ferrocd(_) => &bins.ferrocd,
    };
    let load_before = load_average();
    let mut cluster = Cluster::start(target, server, &bins.bench, members, data_root, tls)?;
    let out = tempfile::NamedTempFile::new().context("a file for the result")?;
    let mut bench = Command::new(&bins.bench);
    if m.target_leader {
        bench.arg("--target-leader");
    }
    if let Some(tls) = tls {
        bench.arg("--cacert").arg(&tls.ca);
    }
    let mut child = bench
        .args(&row.args)
        .arg("--endpoints")
        .arg(cluster.endpoints.join(","))
        .arg("--json")
        .arg(out.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", bins.bench.display()))?;
    let deadline = Instant::now() + Duration::from_secs(max_secs);
    let mut threads = 0;
    let status = loop {
        if let Some(status) = child.try_wait().context("waiting for ferrocd-bench")? {
            break status;
        }
        threads = threads.max(cluster.sample_threads()?);
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("ferrocd-bench still running after {max_secs} s: stopped");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    if !status.success() {
        cluster.check_alive()?;
        bail!("ferrocd-bench failed ({status})");
    }
    cluster.check_alive()?;
    let footprint = cluster.footprint(threads)?;
    drop(cluster);
    let load_after = load_average();
    let text = std::fs::read_to_string(out.path()).context("reading ferrocd-bench's result")?;
    let result: serde_json::Value =
        serde_json::from_str(&text).context("parsing ferrocd-bench's result")?;
    Ok((result, footprint, load_before, load_after))
}

/// The median of `values` (the mean of the middle two for an even count); none when empty.
fn median(mut values: Vec<f64>) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    Some(if values.len().is_multiple_of(2) {
        (values[mid - 1] + values[mid]) / 2.0
    } else {
        values[mid]
    })
}

/// A ratio with two decimals, or three significant digits below 0.1.
fn ratio(r: f64) -> String {
    if r < 0.1 {
        format!("{r:.3}×")
    } else {
        format!("{r:.2}×")
    }
}

/// Medians of one (workload, cluster size, target) cell.
#[derive(Clone, Debug, Default)]
struct Cell {
    throughput: f64,
    p50: f64,
    p90: f64,
    p99: f64,
    p999: f64,
    errors: f64,
    rss: f64,
    hwm: f64,
    disk: f64,
    threads: f64,
}

/// The medians of every cell, in report order.
struct Table {
    /// `(row label, members, target, cell)`.
    lines: Vec<(String, usize, Target, Option<Cell>)>,
    targets: Vec<Target>,
}

impl Table {
    fn new(rows: &[Row], members: &[usize], targets: &[Target], ms: &[Measurement]) -> Table {
        let mut lines = Vec::new();
        for (r, row) in rows.iter().enumerate() {
            for &n in members {
                for &t in targets {
                    let of: Vec<&Measurement> = ms
                        .iter()
                        .filter(|m| m.row == r && m.members == n && m.target == t)
                        .collect();
                    let med = |f: &dyn Fn(&Measurement) -> Option<f64>| {
                        median(of.iter().filter_map(|m| f(m)).collect()).unwrap_or(0.0)
                    };
                    let cell = (!of.is_empty()).then(|| Cell {
                        throughput: med(&|m| m.num("throughput")),
                        p50: med(&|m| m.latency("p50")),
                        p90: med(&|m| m.latency("p90")),
                        p99: med(&|m| m.latency("p99")),
                        p999: med(&|m| m.latency("p999")),
                        errors: med(&|m| m.num("errors")),
                        rss: med(&|m| Some(mib(m.footprint.rss))),
                        hwm: med(&|m| Some(mib(m.footprint.hwm))),
                        disk: med(&|m| Some(mib(m.footprint.disk))),
                        threads: med(&|m| Some(m.footprint.threads as f64)),
                    });
                    lines.push((row.label.clone(), n, t, cell));
                }
            }
        }
        Table {
            lines,
            targets: targets.to_vec(),
        }
    }

    /// etcd's cell of the same workload and cluster size.
    fn etcd(&self, label: &str, members: usize) -> Option<&Cell> {
        self.lines
            .iter()
            .find(|(l, n, t, _)| l == label && *n == members && *t == Target::Etcd)
            .and_then(|(_, _, _, c)| c.as_ref())
    }

    /// ferrocd/etcd throughput and p99 ratios, for ferrocd's lines.
    fn ratios(&self, label: &str, members: usize, t: Target, c: &Cell) -> (String, String) {
        let dash = || ("—".to_owned(), "—".to_owned());
        if t == Target::Etcd {
            return dash();
        }
        match self.etcd(label, members) {
            Some(e) if e.throughput > 0.0 && e.p99 > 0.0 => {
                (ratio(c.throughput / e.throughput), ratio(c.p99 / e.p99))
            }
            _ => dash(),
        }
    }

    const HEADER: [&'static str; 14] = [
        "workload",
        "members",
        "target",
        "ops/s",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "p99.9 ms",
        "errors",
        "RSS MiB (peak)",
        "threads (peak)",
        "disk MiB",
        "ops/s vs etcd",
        "p99 vs etcd",
    ];

    /// Every line's cells as strings.
    fn cells(&self) -> Vec<Vec<String>> {
        self.lines
            .iter()
            .map(|(label, n, t, cell)| {
                let mut v = vec![label.clone(), n.to_string(), t.to_string()];
                match cell {
                    Some(c) => {
                        let (thr, p99) = self.ratios(label, *n, *t, c);
                        v.extend([
                            format!("{:.0}", c.throughput),
                            format!("{:.3}", c.p50),
                            format!("{:.3}", c.p90),
                            format!("{:.3}", c.p99),
                            format!("{:.3}", c.p999),
                            format!("{:.0}", c.errors),
                            format!("{:.1} ({:.1})", c.rss, c.hwm),
                            format!("{:.0}", c.threads),
                            format!("{:.1}", c.disk),
                            thr,
                            p99,
                        ]);
                    }
                    None => v.extend(std::iter::repeat_n("failed".to_owned(), 11)),
                }
                v
            })
            .collect()
    }

    /// The table for the terminal, columns aligned.
    fn text(&self) -> String {
        let cells = self.cells();
        let mut widths: Vec<usize> = Self::HEADER.iter().map(|h| h.chars().count()).collect();
        for line in &cells {
            for (w, c) in widths.iter_mut().zip(line) {
                *w = (*w).max(c.chars().count());
            }
        }
        let mut out = String::new();
        let mut row = |items: Vec<String>| {
            let mut line = String::new();
            for (i, (item, w)) in items.iter().zip(&widths).enumerate() {
                let pad = w - item.chars().count();
                if i < 3 {
                    let _ = write!(line, "{item}{}  ", " ".repeat(pad));
                } else {
                    let _ = write!(line, "{}{item}  ", " ".repeat(pad));
                }
            }
            let _ = writeln!(out, "{}", line.trim_end());
        };
        row(Self::HEADER.iter().map(|h| h.to_string()).collect());
        for line in cells {
            row(line);
        }
        out
    }

    /// The table in markdown.
    fn markdown(&self) -> String {
        let mut out = format!("| {} |\n", Self::HEADER.join(" | "));
        let _ = writeln!(
            out,
            "|{}",
            (0..Self::HEADER.len())
                .map(|i| if i < 3 { "---|" } else { "---:|" })
                .collect::<String>()
        );
        for line in self.cells() {
            let _ = writeln!(out, "| {} |", line.join(" | "));
        }
        out
    }

    /// Throughput and p99 per (workload, cluster size), one bar per target.
    fn chart(&self, path: &Path) -> Result<()> {
        let mut groups: Vec<(String, usize)> = Vec::new();
        for (label, n, _, _) in &self.lines {
            if !groups.contains(&(label.clone(), *n)) {
                groups.push((label.clone(), *n));
            }
        }
        let names: Vec<String> = groups.iter().map(|(l, n)| format!("{l} ×{n}")).collect();
        let series = |f: fn(&Cell) -> f64| -> Vec<(String, Vec<Option<f64>>)> {
            self.targets
                .iter()
                .map(|&t| {
                    let values = groups
                        .iter()
                        .map(|(label, n)| {
                            self.lines
                                .iter()
                                .find(|(l, m, tt, _)| l == label && m == n && *tt == t)
                                .and_then(|(_, _, _, c)| c.as_ref())
                                .map(f)
                        })
                        .collect();
                    (t.to_string(), values)
                })
                .collect()
        };
        let panels = [
            Panel {
                title: "throughput (ops/s, higher is better)",
                series: series(|c| c.throughput),
            },
            Panel {
                title: "p99 latency (ms, lower is better)",
                series: series(|c| c.p99),
            },
        ];
        bench_chart::write(path, &names, &panels)
    }
}

/// Everything the markdown and JSON reports say.
struct Report<'a> {
    name: &'a str,
    target_leader: bool,
    started: &'a str,
    load_start: &'a str,
    load_end: &'a str,
    runs: usize,
    rows: &'a [Row],
    table: &'a Table,
    measurements: &'a [Measurement],
    failures: &'a [String],
}

impl Report<'_> {
    fn command_line() -> String {
        let args: Vec<String> = std::env::args().skip(1).collect();
        format!("cargo xtask {}", args.join(" "))
    }

    fn markdown(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "# Benchmark: {}\n", self.name);
        let _ = writeln!(
            out,
            "Generated by `{}` at {} on {} CPUs; requests went to {}. Figures only, never pass/fail: each cell is the \
             median of {} run(s); targets were interleaved within every run, each measurement on \
             a fresh cluster on 127.0.0.1. Load average (1/5/15 min) at the start: {}; at the \
             end: {}. RSS and disk are the largest member's, after the workload.\n",
            Self::command_line(),
            self.started,
            std::thread::available_parallelism().map_or(0, |n| n.get()),
            if self.target_leader {
                "the leader only"
            } else {
                "every member (connections spread round-robin)"
            },
            self.runs,
            self.load_start,
            self.load_end
        );
        out.push_str(&self.table.markdown());
        let _ = writeln!(
            out,
            "\n\"vs etcd\": ferrocd's median over etcd's for the same workload and cluster size \
             (ops/s above 1: ferrocd faster; p99 below 1: ferrocd's tail lower).\n"
        );
        let _ = writeln!(out, "![throughput and p99 latency]({}.svg)\n", self.name);
        let _ = writeln!(out, "## Workloads (`ferrocd-bench` arguments)\n");
        for row in self.rows {
            let _ = writeln!(out, "- {}: `{}`", row.label, row.args.join(" "));
        }
        let _ = writeln!(out, "\n## Every measurement\n");
        let _ = writeln!(
            out,
            "| run | workload | members | target | ops/s | p99 ms | errors | load before | load after |\n|---:|---|---|---|---:|---:|---:|---|---|"
        );
        for m in self.measurements {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {:.0} | {:.3} | {:.0} | {} | {} |",
                m.run + 1,
                self.rows[m.row].label,
                m.members,
                m.target,
                m.num("throughput").unwrap_or(0.0),
                m.latency("p99").unwrap_or(0.0),
                m.num("errors").unwrap_or(0.0),
                m.load_before,
                m.load_after
            );
        }
        if !self.failures.is_empty() {
            let _ = writeln!(out, "\n## Failed measurements\n");
            for f in self.failures {
                let one_line = f.replace('\n', " ");
                let short: String = one_line.chars().take(600).collect();
                let _ = writeln!(out, "- {short}");
            }
        }
        out
    }

    fn json(&self) -> serde_json::Value {
        let measurements: Vec<serde_json::Value> = self
            .measurements
            .iter()
            .map(|m| {
                serde_json::json!({
                    "run": m.run + 1,
                    "workload": self.rows[m.row].label,
                    "args": self.rows[m.row].args,
                    "members": m.members,
                    "target": m.target.to_string(),
                    "rss_bytes": m.footprint.rss,
                    "peak_rss_bytes": m.footprint.hwm,
                    "peak_threads": m.footprint.threads,
                    "disk_bytes": m.footprint.disk,
                    "load_before": m.load_before,
                    "load_after": m.load_after,
                    "result": m.result,
                })
            })
            .collect();
        serde_json::json!({
            "name": self.name,
            "command": Self::command_line(),
            "started": self.started,
            "load_start": self.load_start,
            "load_end": self.load_end,
            "measurements": measurements,
            "failures": self.failures,
        })
    }
}

/// The time now in UTC, as `date -u` prints it (or seconds since the epoch without `date`).
fn utc_now() -> String {
    Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| {
            let secs = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            format!("{secs} s since the epoch")
        })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::collections::BTreeMap;

    use super::*;

    fn measurement(row: usize, target: Target, throughput: f64, p99: f64) -> Measurement {
        Measurement {
            run: 0,
            row,
            members: 1,
            target,
            result: serde_json::json!({
                "throughput": throughput,
                "errors": 0,
                "latency": {"p50": p99 / 2.0, "p90": p99, "p99": p99, "p999": p99 * 2.0},
            }),
            footprint: Footprint {
                rss: 10 << 20,
                hwm: 20 << 20,
                disk: 5 << 20,
                threads: 9,
            },
            load_before: "1.00 1.00 1.00".into(),
            load_after: "1.00 1.00 1.00".into(),
        }
    }

    #[test]
    fn small_ratios_keep_their_digits() {
        assert_eq!(ratio(0.0049), "0.005×");
        assert_eq!(ratio(1.5), "1.50×");
    }

    #[test]
    fn medians() {
        assert_eq!(median(vec![]), None);
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), Some(2.5));
    }

    #[test]
    fn table_takes_medians_and_ratios_against_etcd() {
        let rows = vec![Row {
            label: "put".into(),
            args: vec![],
        }];
        let lmdb = Target::Ferrocd(Engine::Lmdb);
        let ms = vec![
            measurement(0, Target::Etcd, 1000.0, 2.0),
            measurement(0, Target::Etcd, 3000.0, 2.0),
            measurement(0, Target::Etcd, 2000.0, 2.0),
            measurement(0, lmdb, 3000.0, 1.0),
        ];
        let table = Table::new(&rows, &[1], &[Target::Etcd, lmdb], &ms);
        let cells = table.cells();
        assert_eq!(cells[0][3], "2000");
        assert_eq!(cells[0][12], "—");
        assert_eq!(cells[1][3], "3000");
        assert_eq!(cells[1][12], "1.50×");
        assert_eq!(cells[1][13], "0.50×");
        assert_eq!(cells[1][9], "10.0 (20.0)");
        assert_eq!(cells[1][10], "9");
        let md = table.markdown();
        assert!(md.lines().nth(1).unwrap().starts_with("|---|"), "{md}");
        assert_eq!(md.lines().count(), 4, "{md}");
        assert!(table.text().contains("ferrocd-lmdb"));
    }

    #[test]
    fn a_missing_target_is_shown_as_failed() {
        let rows = vec![Row {
            label: "put".into(),
            args: vec![],
        }];
        let lmdb = Target::Ferrocd(Engine::Lmdb);
        let ms = vec![measurement(0, lmdb, 10.0, 1.0)];
        let table = Table::new(&rows, &[1], &[Target::Etcd, lmdb], &ms);
        let cells = table.cells();
        assert_eq!(cells[0][3], "failed");
        assert_eq!(cells[0][13], "failed");
        assert_eq!(cells[1][12], "—");
    }

    #[test]
    fn suite_scales_totals_but_not_clients() {
        let small = suite_rows(0.01);
        let full = suite_rows(1.0);
        assert_eq!(small.len(), full.len());
        let total = |r: &Row| {
            let i = r.args.iter().position(|a| a == "--total").unwrap();
            r.args[i + 1].parse::<u64>().unwrap()
        };
        assert_eq!(total(&full[1]), 100_000);
        assert_eq!(total(&small[1]), 1_000);
        assert!(
            small
                .iter()
                .all(|r| total(r) >= 100 || r.label.starts_with("watch"))
        );
        assert!(full.last().unwrap().label.contains("1000000 keys"));
        assert!(
            small[1].args.contains(&"1000".to_owned()),
            "{:?}",
            small[1].args
        );
        let by_label: BTreeMap<&str, usize> = full.iter().map(|r| (r.label.as_str(), 0)).collect();
        assert_eq!(by_label.len(), full.len(), "labels are distinct");
    }

    #[test]
    fn targets_expand_engines_in_order() {
        let m = Matrix {
            target: vec![TargetKind::Etcd, TargetKind::Ferrocd],
            engine: vec![Engine::Lmdb, Engine::Rocks],
            members: vec![],
            runs: 1,
            name: None,
            out_dir: PathBuf::new(),
            data_root: None,
            no_build: true,
            tls: false,
            etcd_bin: None,
            target_leader: false,
            max_secs: 1,
        };
        assert_eq!(
            targets(&m),
            [
                Target::Etcd,
                Target::Ferrocd(Engine::Lmdb),
                Target::Ferrocd(Engine::Rocks)
            ]
        );
    }
}
