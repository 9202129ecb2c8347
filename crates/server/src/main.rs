//! `ferrocd`: a member of a ferrocd cluster, configured with etcd's flags, serving etcd's v3
//! gRPC API.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use node::engine::EngineKind;
use node::membership;
use node::membership::ClusterInfo;
use node::transport::tcp::{
    PeerTls, TcpConfig, TcpTransport, fetch_cluster_with, listen_endpoints,
};
use node::wal::Wal;
use node::{ClusterState, Node, NodeConfig};
use server::config::BackendKind;
use server::server::Serves;
use server::{Config, InitialClusterState};

/// How often start-up looks whether the member's attributes are published yet.
const READY_POLL: Duration = Duration::from_millis(20);
/// How long open calls (watch streams, keep-alives) may take to finish after a shutdown signal.
const DRAIN: Duration = Duration::from_secs(2);

/// How long a member joining a running cluster keeps asking the peers for the membership.
const JOIN_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the initial corruption check waits for each peer's hash (etcd: its request
/// timeout, 5 s at the default election timeout).
const INITIAL_CORRUPT_CHECK_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the serve loop looks whether this member was removed from the cluster or failed.
const REMOVED_POLL: Duration = Duration::from_millis(100);

/// Who this member is: its member id, its cluster id, and for a member joining a running
/// cluster, the cluster as its members describe it. A member that has run before is who its
/// WAL says (its flags are ignored, as etcd ignores them).
fn identity(
    config: &Config,
    members: &[server::Member],
    peer_tls: Option<&PeerTls>,
) -> Result<(u64, u64, Option<ClusterInfo>)> {
    let wal = config.data_paths().wal;
    if Wal::exists(&wal) {
        let meta = Wal::read_metadata(&wal).context("reading the WAL's metadata")?;
        return Ok((meta.member_id, meta.cluster_id, None));
    }
    match config.initial_cluster_state {
        InitialClusterState::New => {
            let ids: Vec<u64> = members
                .iter()
                .map(|m| membership::member_id(&m.peer_urls, &config.initial_cluster_token, None))
                .collect();
            let me = members
                .iter()
                .position(|m| m.name == config.name)
                .with_context(|| format!("{:?} is not in --initial-cluster", config.name))?;
            Ok((ids[me], membership::cluster_id(&ids), None))
        }
        InitialClusterState::Existing => {
            let mut mine = config.initial_advertise_peer_urls.clone();
            mine.sort();
            let others: Vec<String> = members
                .iter()
                .flat_map(|m| m.peer_urls.iter())
                .filter(|u| !mine.contains(u))
                .cloned()
                .collect();
            if others.is_empty() {
                bail!(
                    "--initial-cluster-state existing needs the other members' peer URLs in --initial-cluster"
                );
            }
            tracing::info!(peers = ?others, "joining a running cluster: asking the peers for its members");
            let query = TcpConfig {
                tls: peer_tls.cloned(),
                ..TcpConfig::default()
            };
            let info = fetch_cluster_with(&others, JOIN_TIMEOUT, &query).context(
                "cannot fetch the cluster's members from the peers in --initial-cluster",
            )?;
            let me = info
                .members
                .iter()
                .find(|m| {
                    let mut urls = m.peer_urls.clone();
                    urls.sort();
                    urls == mine
                })
                .with_context(|| {
                    format!(
                        "no member of cluster {:x} has peer URLs {mine:?}: add this member first \
                         (etcdctl member add {} --peer-urls={})",
                        info.cluster_id,
                        config.name,
                        mine.join(",")
                    )
                })?;
            let id = me.id;
            Ok((id, info.cluster_id, Some(info)))
        }
    }
}

fn node_config(config: &Config) -> Result<(NodeConfig, Arc<TcpTransport>)> {
    let members = config.initial_members()?;
    let initial: Vec<(String, Vec<String>)> = members
        .iter()
        .map(|m| (m.name.clone(), m.peer_urls.clone()))
        .collect();
    let peer_tls = server::tls::peer_tls_info(config)
        .context("peer TLS")?
        .map(|info| PeerTls::new(&info))
        .transpose()
        .context(
            "peer TLS (--peer-cert-file, --peer-key-file, --peer-trusted-ca-file, --peer-crl-file)",
        )?;
    let (member_id, cluster_id, existing) = identity(config, &members, peer_tls.as_ref())?;
    let (events_tx, events_rx) = crossbeam_channel::unbounded();
    let metrics = node::metrics::Metrics::new().context("registering the member's metrics")?;
    let addrs = listen_endpoints(&config.listen_peer_urls).context("--listen-peer-urls")?;
    let transport = Arc::new(
        TcpTransport::start_with_config(
            member_id,
            cluster_id,
            addrs,
            events_tx,
            TcpConfig {
                snapshot_files: Some(config.data_paths()),
                metrics: Some(Arc::clone(&metrics)),
                tls: peer_tls,
                ..TcpConfig::default()
            },
        )
        .context("starting the peer transport")?,
    );
    let mut nc = NodeConfig::new(
        config.name.clone(),
        &config.data_dir,
        initial,
        transport.clone(),
        events_rx,
    );
    nc.client_urls = config.advertise_client_urls.clone();
    nc.member_id = Some(member_id);
    nc.metrics = Some(metrics);
    nc.existing_cluster = existing;
    nc.cluster_token = config.initial_cluster_token.clone();
    nc.cluster_state = match config.initial_cluster_state {
        InitialClusterState::New => ClusterState::New,
        InitialClusterState::Existing => ClusterState::Existing,
    };
    nc.snapshot_count = config.snapshot_count;
    nc.wal_dir = (!config.wal_dir.is_empty()).then(|| config.wal_dir.clone().into());
    nc.max_snapshots = config.max_snapshots as usize;
    nc.snapshot_catchup_entries = config.snapshot_catchup_entries;
    nc.heartbeat = Duration::from_millis(config.heartbeat_interval);
    nc.election = Duration::from_millis(config.election_timeout);
    if config.quota_backend_bytes > 0 {
        nc.quota_backend_bytes = config.quota_backend_bytes;
    }
    nc.engine = match config.backend {
        BackendKind::Lmdb => EngineKind::Lmdb,
        BackendKind::Rocks => EngineKind::Rocks,
    };
    Ok((nc, transport))
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => tracing::info!("received SIGTERM"),
                    _ = tokio::signal::ctrl_c() => tracing::info!("received SIGINT"),
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch SIGTERM; only SIGINT stops ferrocd");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Resolves when the node reports a fatal failure (its WAL or backend could not be written):
/// the member must stop, as etcd exits on these errors, rather than stay up and answer nothing.
async fn member_failure(node: &Node) -> String {
    loop {
        if let Some(reason) = node.failure() {
            tracing::error!(%reason, "the member failed; stopping");
            return reason;
        }
        tokio::time::sleep(REMOVED_POLL).await;
    }
}

async fn run(config: Config) -> Result<()> {
    let client_tls_info = server::tls::client_tls_info(&config).context("client TLS")?;
    let client_tls = client_tls_info
        .as_ref()
        .map(|info| info.server_config(&server::tls::CLIENT_ALPN))
        .transpose()
        .context("client TLS (--cert-file, --key-file, --trusted-ca-file, --client-crl-file, --cipher-suites, --tls-min/max-version)")?;
    let leader_tls = client_tls_info
        .as_ref()
        .and_then(server::tls::leader_dialing);
    let client_listeners = server::listener::bind(&config.listen_client_urls)
        .await
        .context("--listen-client-urls")?;
    let metrics_urls = config.metrics_urls();
    let metrics_listeners = server::listener::bind(&metrics_urls)
        .await
        .context("--listen-metrics-urls")?;
    // Each listener with the TLS of its URL: https ones serve TLS only, http ones plaintext.
    let tls_of = |url: &String| {
        server::config::ClientUrl::parse(url)
            .is_some_and(|u| u.tls())
            .then(|| client_tls.clone())
            .flatten()
    };
    let listeners: Vec<_> = client_listeners
        .into_iter()
        .zip(&config.listen_client_urls)
        .map(|(l, url)| (Serves::Client, l, tls_of(url)))
        .chain(
            metrics_listeners
                .into_iter()
                .zip(&metrics_urls)
                .map(|(l, url)| (Serves::Metrics, l, tls_of(url))),
        )
        .collect();
    let (nc, transport) = node_config(&config)?;
    let node = tokio::task::spawn_blocking(move || Node::start(nc))
        .await
        .context("starting the node")?
        .context("starting the node")?;
    {
        let node = node.clone();
        transport.set_members_source(Arc::new(move || node.member_list().body));
    }
    tracing::info!(
        name = %config.name,
        member_id = %format_args!("{:x}", node.member_id()),
        cluster_id = %format_args!("{:x}", node.cluster_id()),
        "node started; publishing the member's attributes"
    );
    if config.experimental_initial_corrupt_check
        && let Err(e) =
            server::corruption::check_initial_hash_kv(&node, INITIAL_CORRUPT_CHECK_TIMEOUT).await
    {
        tracing::error!("{e}");
        let stopping = node.clone();
        let _ = tokio::task::spawn_blocking(move || {
            stopping.stop();
            transport.stop();
        })
        .await;
        return Err(e).context("initial corruption check");
    }
    // Like etcd, serve clients once this member's attributes are published to the cluster.
    let published = async {
        while !node.published() {
            tokio::time::sleep(READY_POLL).await;
        }
    };
    let mut failed = None;
    let interrupted = tokio::select! {
        () = published => false,
        () = shutdown_signal() => true,
        reason = member_failure(&node) => {
            failed = Some(reason);
            true
        }
    };
    if !interrupted {
        tracing::info!(client_urls = ?config.listen_client_urls, "ferrocd is serving");
        // etcd logs this once the cluster version is set; tools (etcd's e2e suite among them)
        // wait for it and for `published` before they use a member.
        tracing::info!(
            "enabled capabilities for version {}",
            server::etcdhttp::major_minor(server::services::API_VERSION)
        );
    }
    let ctx = server::server::context(node.clone(), &config, leader_tls)
        .context("registering metrics")?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut servers = tokio::task::JoinSet::new();
    for (what, listener, tls) in listeners.into_iter().filter(|_| !interrupted) {
        let mut rx = stop_rx.clone();
        let ctx = ctx.clone();
        servers.spawn(async move {
            let signal = async move {
                let _ = rx.wait_for(|stop| *stop).await;
            };
            server::server::serve(ctx, what, listener, tls, signal).await
        });
    }
    let failure = if interrupted {
        None
    } else {
        let removed = async {
            while !node.removed() {
                tokio::time::sleep(REMOVED_POLL).await;
            }
            tracing::error!("the member has been permanently removed from the cluster; stopping");
        };
        tokio::select! {
            () = shutdown_signal() => None,
            () = removed => None,
            reason = member_failure(&node) => {
                failed = Some(reason);
                None
            }
            Some(res) = servers.join_next() => Some(res),
        }
    };
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(DRAIN, async {
        while let Some(res) = servers.join_next().await {
            if let Ok(Err(e)) = res {
                tracing::warn!(error = %e, "client server stopped with an error");
            }
        }
    })
    .await;
    if drained.is_err() {
        tracing::info!("closing the client connections still open");
        servers.shutdown().await;
    }
    drop(ctx);
    tokio::task::spawn_blocking(move || {
        node.stop();
        transport.stop();
    })
    .await
    .context("stopping the node")?;
    tracing::info!("ferrocd stopped");
    if let Some(reason) = failed {
        bail!("the member failed and stopped: {reason}");
    }
    match failure {
        Some(Ok(Err(e))) => bail!("serving clients failed: {e}"),
        Some(Err(e)) => bail!("serving clients failed: {e}"),
        _ => Ok(()),
    }
}

fn main() -> Result<()> {
    let loaded = match server::config::load(std::env::args_os(), std::env::vars_os()) {
        Ok(loaded) => loaded,
        // Usage errors, --help and --version: clap prints them and exits (2 for a bad flag,
        // as Go's flag package does for etcd).
        Err(server::config::LoadError::Args(e)) => e.exit(),
        Err(e) => return Err(e).context("invalid configuration"),
    };
    let config = loaded.config;
    config.validate().context("invalid configuration")?;
    server::logging::init(&config.log_settings()).context("setting up logging")?;
    if let Some(path) = &loaded.from_file {
        tracing::info!(
            path = %path.display(),
            "loaded server configuration, other configuration command line flags and \
             environment variables will be ignored if provided"
        );
    }
    for var in &loaded.unrecognized_env {
        tracing::warn!(name = %var, "unrecognized environment variable");
    }
    for warning in config.warnings() {
        tracing::warn!("{warning}");
    }
    tracing::info!(name = %config.name, data_dir = %config.data_dir, backend = ?config.backend, "configuration accepted");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("ferrocd-grpc")
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(run(config))?;
    // Tasks still waiting on a slow or gone client (a watch send) must not hold the exit.
    runtime.shutdown_timeout(Duration::from_millis(500));
    Ok(())
}
