//! `ferrocdutl`: offline tools for ferrocd's data, like etcd 3.5's `etcdutl`.
//!
//! - `ferrocdutl snapshot status FILE [-w simple|table|json]` prints what `etcdctl snapshot
//!   status` (3.4) prints for an etcd or ferrocd snapshot: its hash (CRC-32C over bucket names,
//!   keys and values), revision, number of keys and size.
//! - `ferrocdutl snapshot restore FILE [--data-dir DIR] ...` turns an etcd or ferrocd snapshot
//!   (a bbolt file followed by its SHA-256) into a new ferrocd data dir, with etcdctl 3.4's
//!   restore flags and defaults.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use bbolt::Db;
use clap::{ArgAction, Parser, Subcommand, ValueEnum};
use node::engine::EngineKind;
use node::restore::Restorer;
use sha2::{Digest, Sha256};

/// The SHA-256 that follows the database in a snapshot taken over the API.
const SHA256_LEN: u64 = 32;

#[derive(Parser, Debug)]
#[command(
    name = "ferrocdutl",
    version,
    about = "Offline tools for ferrocd data (like etcdutl)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Inspects and restores snapshots (`etcdctl snapshot save` files, etcd's or ferrocd's).
    Snapshot {
        #[command(subcommand)]
        command: SnapshotCommand,
    },
}

#[derive(Subcommand, Debug)]
enum SnapshotCommand {
    /// Prints a snapshot's hash, revision, total keys and total size.
    Status {
        /// The snapshot file.
        file: PathBuf,
        /// Output format.
        #[arg(short = 'w', long = "write-out", value_enum, default_value_t = WriteOut::Simple)]
        write_out: WriteOut,
    },
    /// Restores a snapshot into a new ferrocd data dir.
    Restore(RestoreArgs),
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum WriteOut {
    /// `hash, revision, total keys, total size` (etcdctl's default).
    Simple,
    /// A table, as `etcdctl -w table`.
    Table,
    /// JSON, as `etcdctl -w json`.
    Json,
}

#[derive(clap::Args, Debug)]
struct RestoreArgs {
    /// The snapshot file.
    file: PathBuf,
    /// The data directory to create (default: `<name>.ferrocd`); it must not exist.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// The member's name; ferrocd must be started with the same `--name`.
    #[arg(long, default_value = "default")]
    name: String,
    /// The initial cluster for the restored member; ferrocd must be started with the same.
    #[arg(long, default_value = "default=http://localhost:2380")]
    initial_cluster: String,
    /// The initial cluster token; ferrocd must be started with the same.
    #[arg(long, default_value = "etcd-cluster")]
    initial_cluster_token: String,
    /// This member's peer URLs (comma-separated), as listed for it in `--initial-cluster`.
    #[arg(long, default_value = "http://localhost:2380")]
    initial_advertise_peer_urls: String,
    /// Restore without checking the SHA-256 trailer (needed for a `db` file copied from a
    /// data dir, which has none).
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, default_value_t = false,
          default_missing_value = "true")]
    skip_hash_check: bool,
    /// The storage engine of the new data dir.
    #[arg(long, default_value = "lmdb")]
    backend: EngineKind,
}

fn main() -> Result<()> {
    server::logging::init_default()?;
    match Cli::parse().command {
        Command::Snapshot {
            command: SnapshotCommand::Status { file, write_out },
        } => {
            let status = status(&file)?;
            print!("{}", status.render(write_out));
            Ok(())
        }
        Command::Snapshot {
            command: SnapshotCommand::Restore(args),
        } => restore(&args),
    }
}

/// etcd's `snapshot.Status`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Status {
    hash: u32,
    revision: i64,
    total_key: u64,
    total_size: u64,
}

impl Status {
    fn render(&self, how: WriteOut) -> String {
        let row = [
            format!("{:x}", self.hash),
            self.revision.to_string(),
            self.total_key.to_string(),
            humanize_bytes(self.total_size),
        ];
        match how {
            WriteOut::Simple => format!("{}\n", row.join(", ")),
            WriteOut::Json => format!(
                "{{\"hash\":{},\"revision\":{},\"totalKey\":{},\"totalSize\":{}}}\n",
                self.hash, self.revision, self.total_key, self.total_size
            ),
            WriteOut::Table => table(&["HASH", "REVISION", "TOTAL KEYS", "TOTAL SIZE"], &row),
        }
    }
}

/// etcdctl's table (olekukonko/tablewriter): centred headers, right-aligned cells.
fn table(header: &[&str], row: &[String]) -> String {
    let widths: Vec<usize> = header
        .iter()
        .zip(row)
        .map(|(h, c)| h.len().max(c.len()))
        .collect();
    let rule: String = widths
        .iter()
        .map(|w| format!("+{}", "-".repeat(w + 2)))
        .collect::<String>()
        + "+\n";
    let mut out = rule.clone();
    for (h, w) in header.iter().zip(&widths) {
        let left = (w - h.len()) / 2;
        let right = w - h.len() - left;
        out += &format!("| {}{h}{} ", " ".repeat(left), " ".repeat(right));
    }
    out += "|\n";
    out += &rule;
    for (c, w) in row.iter().zip(&widths) {
        out += &format!("| {c:>w$} ");
    }
    out += "|\n";
    out += &rule;
    out
}

/// go-humanize's `Bytes`: SI units, one decimal below 10.
fn humanize_bytes(n: u64) -> String {
    if n < 10 {
        return format!("{n} B");
    }
    const UNITS: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    let f = n as f64;
    let e = (f.ln() / 1000f64.ln()).floor();
    let unit = UNITS[(e as usize).min(UNITS.len() - 1)];
    let val = (f / 1000f64.powf(e) * 10.0 + 0.5).floor() / 10.0;
    if val < 10.0 {
        format!("{val:.1} {unit}")
    } else {
        format!("{val:.0} {unit}")
    }
}

/// What etcdctl 3.4's `snapshot status` computes (v3_snapshot.go `Status`).
fn status(path: &Path) -> Result<Status> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut db = Db::open(BufReader::new(file))
        .with_context(|| format!("{} is not a valid snapshot", path.display()))?;
    let mut st = Status {
        total_size: db.size(),
        ..Status::default()
    };
    let mut hash = 0u32;
    for bucket in db.buckets()? {
        hash = crc32c::crc32c_append(hash, &bucket.name);
        let is_key = bucket.name == b"key";
        db.for_each::<anyhow::Error>(&bucket, |k, v| {
            hash = crc32c::crc32c_append(hash, k);
            hash = crc32c::crc32c_append(hash, v);
            if is_key {
                let main: [u8; 8] = k
                    .get(..8)
                    .and_then(|b| b.try_into().ok())
                    .with_context(|| format!("key bucket holds a {}-byte key", k.len()))?;
                st.revision = i64::from_be_bytes(main);
            }
            st.total_key += 1;
            Ok(())
        })?;
    }
    st.hash = hash;
    Ok(st)
}

/// Checks the SHA-256 trailer as etcdctl 3.4 does; returns the length of the database.
fn check_hash(file: &mut File, skip: bool) -> Result<u64> {
    let len = file.metadata()?.len();
    // etcd's `hasChecksum`: a database is whole pages, so a 32-byte remainder is the hash.
    let has_hash = len % 512 == SHA256_LEN;
    if !has_hash {
        if !skip {
            bail!("snapshot missing hash but --skip-hash-check=false");
        }
        return Ok(len);
    }
    let db_len = len - SHA256_LEN;
    if !skip {
        let mut expected = [0u8; SHA256_LEN as usize];
        file.seek(SeekFrom::Start(db_len))?;
        file.read_exact(&mut expected)?;
        file.seek(SeekFrom::Start(0))?;
        let mut hasher = Sha256::new();
        std::io::copy(&mut (&mut *file).take(db_len), &mut hasher)?;
        let got = hasher.finalize();
        if got.as_slice() != expected {
            bail!(
                "expected sha256 {}, got {}",
                hex(&expected),
                hex(got.as_slice())
            );
        }
    }
    Ok(db_len)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The peer URLs `--initial-cluster` lists for `name`.
fn peer_urls_of(initial_cluster: &str, name: &str) -> Result<Vec<String>> {
    let mut urls = Vec::new();
    for entry in initial_cluster.split(',').filter(|e| !e.trim().is_empty()) {
        let Some((n, url)) = entry.trim().split_once('=') else {
            bail!("invalid --initial-cluster entry {entry:?} (expected name=url)");
        };
        if n == name {
            urls.push(url.to_owned());
        }
    }
    if urls.is_empty() {
        bail!("member {name:?} is not in --initial-cluster {initial_cluster:?}");
    }
    urls.sort();
    Ok(urls)
}

fn restore(args: &RestoreArgs) -> Result<()> {
    let mut in_cluster = peer_urls_of(&args.initial_cluster, &args.name)?;
    let mut advertised: Vec<String> = args
        .initial_advertise_peer_urls
        .split(',')
        .map(|u| u.trim().to_owned())
        .filter(|u| !u.is_empty())
        .collect();
    advertised.sort();
    in_cluster.dedup();
    advertised.dedup();
    if in_cluster != advertised {
        bail!(
            "--initial-cluster has {}={} but --initial-advertise-peer-urls is {}",
            args.name,
            in_cluster.join(","),
            advertised.join(",")
        );
    }
    let data_dir = args
        .data_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("{}.ferrocd", args.name)));
    if data_dir.exists() {
        bail!("data-dir {:?} exists", data_dir.display().to_string());
    }
    let mut file =
        File::open(&args.file).with_context(|| format!("opening {}", args.file.display()))?;
    let db_len = check_hash(&mut file, args.skip_hash_check)?;
    let mut db = Db::open_with_len(BufReader::new(file), db_len)
        .with_context(|| format!("{} is not a valid snapshot", args.file.display()))?;
    let buckets = db.buckets()?;

    let copied = (|| -> Result<_> {
        let mut restorer = Restorer::create(&data_dir, args.backend)?;
        for bucket in &buckets {
            restorer.bucket(&bucket.name)?;
            db.for_each::<anyhow::Error>(bucket, |k, v| Ok(restorer.put(k, v)?))?;
        }
        Ok(restorer.finish()?)
    })();
    let summary = match copied {
        Ok(s) => s,
        Err(e) => {
            // The directory did not exist before: everything in it is this run's.
            if data_dir.exists()
                && let Err(rm) = std::fs::remove_dir_all(&data_dir)
            {
                tracing::warn!(error = %rm, dir = %data_dir.display(), "could not remove the partial data dir");
            }
            return Err(e.context(format!("restoring {}", args.file.display())));
        }
    };
    tracing::info!(
        data_dir = %data_dir.display(),
        keys = summary.keys,
        dropped = summary.dropped,
        buckets = summary.buckets.len(),
        backend = %args.backend,
        "restored snapshot"
    );
    eprintln!(
        "restored {} keys in {} buckets into {}; start it with: ferrocd --name {} --data-dir {} \
         --initial-cluster {} --initial-cluster-token {} --initial-advertise-peer-urls {} \
         --backend {}",
        summary.keys,
        summary.buckets.len(),
        data_dir.display(),
        args.name,
        data_dir.display(),
        args.initial_cluster,
        args.initial_cluster_token,
        args.initial_advertise_peer_urls,
        args.backend
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn humanize_matches_go_humanize() {
        assert_eq!(humanize_bytes(0), "0 B");
        assert_eq!(humanize_bytes(9), "9 B");
        assert_eq!(humanize_bytes(82), "82 B");
        assert_eq!(humanize_bytes(20480), "20 kB");
        assert_eq!(humanize_bytes(1500), "1.5 kB");
        assert_eq!(humanize_bytes(78_979_072), "79 MB");
    }

    #[test]
    fn the_table_matches_etcdctl() {
        let st = Status {
            hash: 0xd14f25b1,
            revision: 7740398493674204011,
            total_key: 20001,
            total_size: 78_979_072,
        };
        let expected = "\
+----------+---------------------+------------+------------+
|   HASH   |      REVISION       | TOTAL KEYS | TOTAL SIZE |
+----------+---------------------+------------+------------+
| d14f25b1 | 7740398493674204011 |      20001 |      79 MB |
+----------+---------------------+------------+------------+
";
        assert_eq!(st.render(WriteOut::Table), expected);
    }
}
