//! `ferrocd-bench`: a load generator speaking etcd's v3 gRPC API, like etcd's `benchmark` tool.
//!
//! ```text
//! ferrocd-bench --endpoints 127.0.0.1:2379 --conns 100 --clients 1000 --total 100000 \
//!     put --key-size 8 --val-size 256 --key-space-size 100000 --sequential-keys
//! ferrocd-bench --endpoints 127.0.0.1:2379 range --consistency s --key-space-size 1000 --preload
//! ferrocd-bench txn-put --txn-ops 4
//! ferrocd-bench watch --watchers 100 --streams 10 --puts 1000 --put-rate 100
//! ```
//!
//! Prints throughput and latency percentiles; `--json FILE` also writes them as JSON.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, Result};
use benchmark::client;
use benchmark::keys::KeySpace;
use benchmark::workloads::{
    self, Common, Consistency, PutOptions, RangeOptions, TxnPutOptions, WatchOptions, Workload,
};
use clap::{Args, Parser, Subcommand, ValueEnum};

/// A load generator for etcd's v3 API (etcd or ferrocd).
#[derive(Parser)]
#[command(name = "ferrocd-bench", version)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args)]
struct Global {
    /// Members to send requests to (`host:port` or URLs, comma separated).
    #[arg(
        long,
        global = true,
        value_delimiter = ',',
        default_value = "127.0.0.1:2379"
    )]
    endpoints: Vec<String>,
    /// gRPC connections, spread over the endpoints.
    #[arg(long, global = true, default_value_t = 1)]
    conns: usize,
    /// Concurrent clients, sharing the connections round-robin.
    #[arg(long, global = true, default_value_t = 1)]
    clients: usize,
    /// Requests to send.
    #[arg(long, global = true, default_value_t = 10_000)]
    total: u64,
    /// Seconds one request may take before it counts as failed.
    #[arg(long, global = true, default_value_t = 30)]
    request_timeout_secs: u64,
    /// Stop early after this many failed requests.
    #[arg(long, global = true, default_value_t = 1_000)]
    max_errors: u64,
    /// Also write the result as JSON to this file.
    #[arg(long, global = true)]
    json: Option<PathBuf>,
    /// No progress bar.
    #[arg(long, global = true)]
    no_progress: bool,
    /// Send every request to the leader only (the endpoint whose status names itself leader).
    #[arg(long, global = true)]
    target_leader: bool,
    /// The CA certificate (PEM) that https endpoints' certificates chain to.
    #[arg(long, global = true)]
    cacert: Option<PathBuf>,
}

#[derive(Args, Clone, Copy)]
struct KeyArgs {
    /// Bytes per key.
    #[arg(long, default_value_t = 8)]
    key_size: usize,
    /// Distinct keys.
    #[arg(long, default_value_t = 1)]
    key_space_size: u64,
    /// Request `i` uses key `i % key-space-size` (otherwise keys are random).
    #[arg(long)]
    sequential_keys: bool,
}

impl KeyArgs {
    fn key_space(self) -> KeySpace {
        KeySpace {
            key_size: self.key_size,
            size: self.key_space_size,
            sequential: self.sequential_keys,
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum ConsistencyArg {
    /// Linearizable.
    L,
    /// Serializable.
    S,
}

#[derive(Subcommand)]
enum Command {
    /// Puts, one key per request.
    Put {
        #[command(flatten)]
        keys: KeyArgs,
        /// Bytes per value.
        #[arg(long, default_value_t = 8)]
        val_size: usize,
    },
    /// Reads: KEY [END] every time, or keys of the key space.
    Range {
        /// Read this key every time.
        key: Option<String>,
        /// With KEY: the end of the range read.
        end: Option<String>,
        #[command(flatten)]
        keys: KeyArgs,
        /// Linearizable (l) or serializable (s).
        #[arg(long, value_enum, default_value = "l")]
        consistency: ConsistencyArg,
        /// Write every key to be read once first (unmeasured).
        #[arg(long)]
        preload: bool,
        /// Bytes per preloaded value.
        #[arg(long, default_value_t = 8)]
        val_size: usize,
    },
    /// Transactions of `--txn-ops` puts each.
    TxnPut {
        #[command(flatten)]
        keys: KeyArgs,
        /// Bytes per value.
        #[arg(long, default_value_t = 8)]
        val_size: usize,
        /// Puts per transaction.
        #[arg(long, default_value_t = 1)]
        txn_ops: usize,
    },
    /// Watchers on one key, puts to it; latency from each put to each watcher's event.
    Watch {
        /// Watchers.
        #[arg(long, default_value_t = 100)]
        watchers: usize,
        /// Watch streams carrying them.
        #[arg(long, default_value_t = 10)]
        streams: usize,
        /// Puts to the watched key.
        #[arg(long, default_value_t = 1_000)]
        puts: u64,
        /// Puts per second (0: unpaced, `--clients` closed-loop putters).
        #[arg(long, default_value_t = 100)]
        put_rate: u64,
        /// Bytes of the watched key.
        #[arg(long, default_value_t = 8)]
        key_size: usize,
        /// Bytes per value (at least 8).
        #[arg(long, default_value_t = 8)]
        val_size: usize,
        /// Seconds a watcher waits for its next event before giving up on the rest.
        #[arg(long, default_value_t = 30)]
        idle_secs: u64,
    },
    /// Waits until every endpoint serves a linearizable read.
    Health {
        /// Seconds to wait at most.
        #[arg(long, default_value_t = 30)]
        timeout_secs: u64,
    },
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    let g = cli.global;
    let tls = match &g.cacert {
        Some(path) => Some(client::tls_config(
            std::fs::read(path).with_context(|| format!("reading --cacert {}", path.display()))?,
        )),
        None => None,
    };
    let workload = match cli.command {
        Command::Health { timeout_secs } => {
            workloads::wait_ready(
                &g.endpoints,
                Duration::from_secs(timeout_secs),
                tls.as_ref(),
            )
            .await?;
            println!("healthy: {}", g.endpoints.join(","));
            return Ok(());
        }
        Command::Put { keys, val_size } => Workload::Put(PutOptions {
            keys: keys.key_space(),
            val_size,
        }),
        Command::Range {
            key,
            end,
            keys,
            consistency,
            preload,
            val_size,
        } => Workload::Range(RangeOptions {
            key: key.map(String::into_bytes),
            range_end: end.map(String::into_bytes),
            keys: keys.key_space(),
            consistency: match consistency {
                ConsistencyArg::L => Consistency::Linearizable,
                ConsistencyArg::S => Consistency::Serializable,
            },
            preload,
            val_size,
        }),
        Command::TxnPut {
            keys,
            val_size,
            txn_ops,
        } => Workload::TxnPut(TxnPutOptions {
            keys: keys.key_space(),
            val_size,
            txn_ops,
        }),
        Command::Watch {
            watchers,
            streams,
            puts,
            put_rate,
            key_size,
            val_size,
            idle_secs,
        } => Workload::Watch(WatchOptions {
            watchers,
            streams,
            puts,
            put_rate,
            key_size,
            val_size,
            idle: Duration::from_secs(idle_secs),
        }),
    };
    let endpoints = if g.target_leader {
        vec![workloads::find_leader(&g.endpoints, Duration::from_secs(10), tls.as_ref()).await?]
    } else {
        g.endpoints
    };
    let common = Common {
        endpoints,
        conns: g.conns,
        clients: g.clients,
        total: g.total,
        request_timeout: Duration::from_secs(g.request_timeout_secs),
        max_errors: g.max_errors,
        progress: !g.no_progress,
        tls,
    };
    let result = workloads::run(&common, &workload).await?;
    print!("{result}");
    if let Some(path) = g.json {
        let json = serde_json::to_string_pretty(&result).context("encoding the result")?;
        std::fs::write(&path, json).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
