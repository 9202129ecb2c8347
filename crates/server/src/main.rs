//! `ferrocd`: a member of a ferrocd cluster, configured with etcd's flags.

use anyhow::{Context, Result, bail};
use clap::Parser;
use server::Config;

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let config = Config::parse();
    config.validate().context("invalid configuration")?;
    tracing::info!(name = %config.name, data_dir = %config.data_dir, backend = ?config.backend, "configuration accepted");
    // The configuration is complete; serving the etcd v3 API is issue #7's work.
    bail!("ferrocd cannot serve yet: the etcd v3 gRPC API lands with issue #7 (node: issue #6)")
}
