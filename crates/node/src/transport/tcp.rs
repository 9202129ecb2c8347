//! A [`Transport`] over real TCP sockets: etcd's rafthttp, simplified.
//!
//! - Each peer gets a **message stream**: one outbound connection written by a per-peer writer
//!   thread from a bounded queue ([`TcpConfig::queue_len`], etcd's 4096). A full queue drops
//!   the message and reports [`PeerEvent::Unreachable`]; `send` never blocks. A failed dial or
//!   write reports the peer unreachable and redials with exponential backoff
//!   ([`TcpConfig::backoff_min`] to [`TcpConfig::backoff_max`]); messages arriving while the
//!   peer is backed off are dropped (raft retransmits).
//! - `MsgSnap` goes through a per-peer **snapshot sender** on its own connection per snapshot,
//!   the data cut into [`TcpConfig::snapshot_chunk_len`] chunks, so a large snapshot never holds
//!   up the message stream. With [`TcpConfig::snapshot_files`] the sender reads the chunks from
//!   its `.snap.db` file and the receiver writes them to its own (synced, then renamed into
//!   place), so neither holds the snapshot in memory; without, the data travels in the message.
//!   The receiver delivers one [`Message`] and acks; the sender then reports
//!   [`PeerEvent::SnapshotStatus`].
//! - Listeners accept on one thread; each inbound connection has a reader thread. A new message
//!   stream from a peer replaces its previous one.
//!
//! - TLS: the scheme of each URL decides. An `https://` peer URL is dialed over TLS (the peer's
//!   certificate checked for the URL's host) and an `https://` listen URL accepts TLS only,
//!   with [`TcpConfig::tls`] ([`PeerTls`]); `http://` URLs are plain TCP. The wire protocol
//!   inside TLS is the same.
//! - Unix sockets: `unix://` and `unixs://` (TLS) URLs, as etcd takes them, listen on and dial
//!   a unix socket whose path is the URL's host and path ([`socket`]).
//!
//! Every connection opens with a handshake (magic, protocol version, stream kind, cluster id,
//! sender, receiver); a mismatch is logged and the connection refused, so a member of another
//! cluster never gets a message delivered. Frames are length-prefixed and CRC-32C checked
//! ([`wire`]); a corrupt or oversized frame closes the connection.

pub mod wire;

mod inbound;
mod outbound;
mod socket;
mod stream;

use std::collections::{HashMap, HashSet};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{SendTimeoutError, Sender, TrySendError};
use raft_core::raftpb::{Message, MessageType};

use super::{PeerEvent, Transport};
use crate::membership::Member;
use crate::snapshot::DataPaths;
use crate::tls::{TlsError, TlsInfo};
use inbound::InboundRegistry;
use outbound::Peer;
use stream::PeerStream;
use wire::{ClusterInfo, HandshakeStatus, WireError};

/// Tuning of a [`TcpTransport`]; [`Default`] follows etcd where etcd has a number.
#[derive(Clone, Debug)]
pub struct TcpConfig {
    /// Messages queued per peer before `send` drops them (etcd: 4096).
    pub queue_len: usize,
    /// Snapshots queued per peer before `send` fails them.
    pub snapshot_queue_len: usize,
    /// The largest frame accepted or sent; a bigger message is dropped.
    pub max_frame_len: usize,
    /// Bytes of snapshot data per chunk frame (at most `max_frame_len`).
    pub snapshot_chunk_len: usize,
    /// The largest snapshot data accepted.
    pub max_snapshot_len: u64,
    /// The time allowed to establish a TCP connection.
    pub dial_timeout: Duration,
    /// The time allowed for each side of the handshake.
    pub handshake_timeout: Duration,
    /// The time a blocked socket write may take before the connection is dropped.
    pub write_timeout: Duration,
    /// The time a snapshot receiver may wait for each read of a transfer, and a snapshot sender
    /// for the receiver's acknowledgement.
    pub snapshot_timeout: Duration,
    /// The first redial delay after a failure.
    pub backoff_min: Duration,
    /// The longest redial delay.
    pub backoff_max: Duration,
    /// Inbound connections beyond which new ones are refused.
    pub max_inbound: usize,
    /// The longest [`TcpTransport::stop`] waits for its threads.
    pub stop_timeout: Duration,
    /// The member's data directory layout: when set, snapshots are streamed from the sender's
    /// `.snap.db` file into the receiver's, chunk by chunk, never whole in memory (see
    /// [`Transport::streams_snapshot_files`]); when `None`, they travel in `snapshot.data`.
    pub snapshot_files: Option<DataPaths>,
    /// Where peer traffic is counted (`etcd_network_peer_{sent,received}_bytes_total`).
    pub metrics: Option<Arc<crate::metrics::Metrics>>,
    /// TLS for `https://` peer URLs, dialed and listened on; `None`: such URLs cannot be used
    /// (an https listener fails [`TcpTransport::start_with_config`], an https peer is
    /// unreachable).
    pub tls: Option<PeerTls>,
}

/// The TLS configurations of the peer transport: the listeners' and the dialer's.
#[derive(Clone, Debug)]
pub struct PeerTls {
    /// Serves `https://` listen URLs.
    pub server: Arc<rustls::ServerConfig>,
    /// Dials `https://` peer URLs (and presents this member's certificate).
    pub client: Arc<rustls::ClientConfig>,
}

impl PeerTls {
    /// The peer TLS of etcd's `--peer-*` TLS flags, given as `info`: the listener requires a
    /// client certificate signed by the trusted CA whenever a trusted CA is set (etcd does so
    /// for peers even without `--peer-client-cert-auth`); dialing verifies the peer's
    /// certificate against that CA, or not at all with auto TLS (`info.self_signed`), and
    /// presents this member's certificate. Session resumption is off (peer connections are
    /// long-lived, and every handshake then checks the certificate against the current CA and
    /// CRL).
    pub fn new(info: &TlsInfo) -> Result<PeerTls, TransportError> {
        let mut server_info = info.clone();
        if info.trusted_ca_file.is_some() && !info.self_signed {
            server_info.client_cert_auth = true;
        }
        let mut server = (*server_info.server_config(&[])?).clone();
        server.send_tls13_tickets = 0;
        server.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        Ok(PeerTls {
            server: Arc::new(server),
            client: info.client_config()?,
        })
    }
}

impl Default for TcpConfig {
    fn default() -> Self {
        TcpConfig {
            queue_len: 4096,
            snapshot_queue_len: 4,
            max_frame_len: 64 << 20,
            snapshot_chunk_len: 1 << 20,
            max_snapshot_len: 64 << 30,
            dial_timeout: Duration::from_secs(1),
            handshake_timeout: Duration::from_secs(2),
            write_timeout: Duration::from_secs(5),
            snapshot_timeout: Duration::from_secs(30),
            backoff_min: Duration::from_millis(50),
            backoff_max: Duration::from_secs(2),
            max_inbound: 1024,
            stop_timeout: Duration::from_secs(5),
            snapshot_files: None,
            metrics: None,
            tls: None,
        }
    }
}

/// Why the transport could not start, or a connection failed.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// A listener could not bind.
    #[error("binding peer listener {addr}: {source}")]
    Bind {
        /// The address (or unix socket).
        addr: ListenSocket,
        /// The cause.
        source: std::io::Error,
    },
    /// A peer URL is not `scheme://host:port[/path]` or does not resolve.
    #[error("invalid peer url {url:?}: {reason}")]
    InvalidUrl {
        /// The URL.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// A thread could not be spawned.
    #[error("spawning {name}: {source}")]
    Spawn {
        /// The thread's name.
        name: String,
        /// The cause.
        source: std::io::Error,
    },
    /// No address of the peer could be connected to.
    #[error("dialing peer {peer:x}: {reason}")]
    Dial {
        /// The peer.
        peer: u64,
        /// The last failure.
        reason: String,
    },
    /// The peer refused the handshake.
    #[error(
        "peer {peer:x} rejected the handshake: {status:?} (remote cluster {remote_cluster:x}, remote id {remote_id:x})"
    )]
    Rejected {
        /// The peer.
        peer: u64,
        /// Why.
        status: HandshakeStatus,
        /// The cluster the peer belongs to.
        remote_cluster: u64,
        /// The id the peer answered with.
        remote_id: u64,
    },
    /// The wire protocol failed.
    #[error(transparent)]
    Wire(#[from] WireError),
    /// The peer TLS configuration cannot be used (certificate, key or CA files).
    #[error("peer TLS: {0}")]
    Tls(#[from] TlsError),
    /// An `https://` URL, to listen on or to dial, but no [`TcpConfig::tls`].
    #[error(
        "{url} is an https peer URL but no peer TLS is configured (a peer certificate and key, or peer auto TLS)"
    )]
    TlsNotConfigured {
        /// The URL.
        url: String,
    },
}

/// A parsed peer URL: where to connect, and whether over TLS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerUrl {
    /// `host:port` (an IPv6 host bracketed), or a unix socket's path.
    pub host_port: String,
    /// Whether the scheme is `https` or `unixs` (TLS); `http`, `tcp`, `unix` or none is plain.
    pub tls: bool,
    /// Whether it names a unix socket (`unix://`, `unixs://`).
    pub unix: bool,
}

impl PeerUrl {
    /// Parses `scheme://host:port[/path]` (the scheme is optional; a path is ignored; IPv6
    /// hosts are bracketed: `https://[::1]:2380`), or `unix://path` / `unixs://path`, whose
    /// socket is the URL's host and path, as in etcd (`unix://etcd.unix:1` is the file
    /// `etcd.unix:1` in the working directory).
    pub fn parse(url: &str) -> Result<PeerUrl, TransportError> {
        let invalid = |reason: &str| TransportError::InvalidUrl {
            url: url.to_string(),
            reason: reason.to_string(),
        };
        let (tls, rest) = match url.split_once("://") {
            Some(("https", rest)) => (true, rest),
            Some(("http" | "tcp", rest)) => (false, rest),
            Some((scheme @ ("unix" | "unixs"), path)) => {
                if path.is_empty() {
                    return Err(invalid("a unix URL needs a socket path"));
                }
                return Ok(PeerUrl {
                    host_port: path.to_string(),
                    tls: scheme == "unixs",
                    unix: true,
                });
            }
            Some(_) => return Err(invalid("scheme must be http, https, unix, unixs or tcp")),
            None => (false, url),
        };
        let host_port = rest.split('/').next().unwrap_or_default();
        let Some((host, port)) = host_port.rsplit_once(':') else {
            return Err(invalid("missing port"));
        };
        if host.is_empty() || port.parse::<u16>().is_err() {
            return Err(invalid("expected host:port"));
        }
        Ok(PeerUrl {
            host_port: host_port.to_string(),
            tls,
            unix: false,
        })
    }

    /// The URL as `scheme://host:port` (or `unix(s)://path`).
    fn display(&self) -> String {
        let scheme = match (self.unix, self.tls) {
            (false, false) => "http",
            (false, true) => "https",
            (true, false) => "unix",
            (true, true) => "unixs",
        };
        format!("{scheme}://{}", self.host_port)
    }

    /// The name a TLS peer certificate must be valid for: the URL's host (`localhost` for a
    /// unix socket).
    fn server_name(&self) -> Result<rustls::pki_types::ServerName<'static>, TlsError> {
        if self.unix {
            return crate::tls::server_name("localhost:0");
        }
        crate::tls::server_name(&self.host_port)
    }
}

/// What a peer listener listens on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListenSocket {
    /// A TCP address (port 0 picks a free port).
    Tcp(SocketAddr),
    /// A unix socket (a stale file there is replaced; the file is removed at stop).
    Unix(PathBuf),
}

impl std::fmt::Display for ListenSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ListenSocket::Tcp(a) => a.fmt(f),
            ListenSocket::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// Where to listen for peers, and whether it accepts TLS (an `https://` or `unixs://` listen
/// URL) or plain connections.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenAddr {
    /// The address or socket.
    pub socket: ListenSocket,
    /// TLS only (with [`TcpConfig::tls`]), or plain only.
    pub tls: bool,
}

impl From<SocketAddr> for ListenAddr {
    /// A plain TCP listener.
    fn from(addr: SocketAddr) -> ListenAddr {
        ListenAddr {
            socket: ListenSocket::Tcp(addr),
            tls: false,
        }
    }
}

/// `host:port` of a peer URL such as `http://127.0.0.1:2380` (a scheme is optional; a path is
/// ignored; IPv6 hosts are bracketed: `http://[::1]:2380`).
pub fn url_host_port(url: &str) -> Result<String, TransportError> {
    PeerUrl::parse(url).map(|u| u.host_port)
}

/// The TCP socket addresses of listen URLs such as `--listen-peer-urls`
/// (`http://127.0.0.1:2380`), their schemes (and unix sockets) dropped: see
/// [`listen_endpoints`] to keep them (needed for `https://`).
pub fn listen_addrs(urls: &[String]) -> Result<Vec<SocketAddr>, TransportError> {
    Ok(listen_endpoints(urls)?
        .into_iter()
        .filter_map(|l| match l.socket {
            ListenSocket::Tcp(addr) => Some(addr),
            ListenSocket::Unix(_) => None,
        })
        .collect())
}

/// The listeners of listen URLs such as `--listen-peer-urls`: an `https://` (or `unixs://`)
/// URL listens for TLS only, any other for plain connections only. For
/// [`TcpTransport::start_with_config`].
pub fn listen_endpoints(urls: &[String]) -> Result<Vec<ListenAddr>, TransportError> {
    let mut out = Vec::new();
    for url in urls {
        let parsed = PeerUrl::parse(url)?;
        if parsed.unix {
            out.push(ListenAddr {
                socket: ListenSocket::Unix(PathBuf::from(&parsed.host_port)),
                tls: parsed.tls,
            });
            continue;
        }
        let addrs = parsed
            .host_port
            .to_socket_addrs()
            .map_err(|e| TransportError::InvalidUrl {
                url: url.clone(),
                reason: e.to_string(),
            })?;
        out.extend(addrs.map(|addr| ListenAddr {
            socket: ListenSocket::Tcp(addr),
            tls: parsed.tls,
        }));
    }
    Ok(out)
}

/// Asks the members at `peer_urls` which cluster they form (etcd's `GET /members` on the peer
/// URLs): what a member joining a running cluster learns its cluster id and its own id from.
/// Tries each URL in turn, again and again, until one answers or `timeout` passes.
/// Plain TCP only: an `https://` URL fails; see [`fetch_cluster_with`].
pub fn fetch_cluster(
    peer_urls: &[String],
    timeout: Duration,
) -> Result<ClusterInfo, TransportError> {
    fetch_cluster_with(peer_urls, timeout, &TcpConfig::default())
}

/// [`fetch_cluster`] with `config`'s dial and handshake timeouts and its [`TcpConfig::tls`]
/// for `https://` URLs (the transport's own config, so that the query authenticates as the
/// member will).
pub fn fetch_cluster_with(
    peer_urls: &[String],
    timeout: Duration,
    config: &TcpConfig,
) -> Result<ClusterInfo, TransportError> {
    let deadline = Instant::now() + timeout;
    let mut last = String::from("no peer urls");
    loop {
        for url in peer_urls {
            match query_members(url, config) {
                Ok(info) => return Ok(info),
                Err(e) => {
                    tracing::debug!(%url, "members query failed: {e}");
                    last = format!("{url}: {e}");
                }
            }
        }
        if Instant::now() >= deadline {
            return Err(TransportError::Dial {
                peer: 0,
                reason: last,
            });
        }
        thread::sleep(Duration::from_millis(200));
    }
}

fn query_members(url: &str, config: &TcpConfig) -> Result<ClusterInfo, TransportError> {
    let parsed = PeerUrl::parse(url)?;
    let tls = if parsed.tls {
        let Some(tls) = &config.tls else {
            return Err(TransportError::TlsNotConfigured {
                url: url.to_string(),
            });
        };
        Some((Arc::clone(&tls.client), parsed.server_name()?))
    } else {
        None
    };
    let s = socket::Socket::connect(&parsed, config.dial_timeout)
        .map_err(|reason| TransportError::Dial { peer: 0, reason })?;
    let io = |e: std::io::Error| TransportError::Wire(WireError::Io(e));
    s.set_read_timeout(Some(config.handshake_timeout))
        .map_err(io)?;
    s.set_write_timeout(Some(config.handshake_timeout))
        .map_err(io)?;
    let mut s = match &tls {
        Some((client, name)) => {
            PeerStream::client(s, Arc::clone(client), name.clone()).map_err(io)?
        }
        None => PeerStream::Plain(s),
    };
    s.finish_handshake()
        .map_err(|e| io(stream::handshake_error(e, url)))?;
    let hs = wire::Handshake {
        version: wire::PROTOCOL_VERSION,
        kind: wire::StreamKind::Members,
        cluster_id: 0,
        from: 0,
        to: 0,
    };
    let reply = wire::exchange_handshake(&mut s, &hs).map_err(|e| tls_hint(e, &s))?;
    if reply.status != HandshakeStatus::Accepted {
        return Err(TransportError::Rejected {
            peer: 0,
            status: reply.status,
            remote_cluster: reply.cluster_id,
            remote_id: reply.id,
        });
    }
    let mut frame = Vec::new();
    if !wire::read_frame(&mut s, config.max_frame_len, &mut frame)? {
        return Err(WireError::Protocol("members query closed without an answer".into()).into());
    }
    Ok(postcard::from_bytes(&frame).map_err(WireError::from)?)
}

/// `e`, from the dialer's first exchange after a TLS handshake, with a hint when the peer
/// refused this member's certificate: with TLS 1.3 the dialer finishes its handshake before
/// the listener has checked the certificate, so the refusal arrives as an alert on this read.
fn tls_hint(e: WireError, s: &PeerStream) -> WireError {
    match e {
        WireError::Io(io) if s.is_tls() && stream::rustls_error(&io).is_some() => {
            WireError::Io(stream::handshake_error(io, "the peer"))
        }
        other => other,
    }
}

/// State shared by the transport and its threads.
struct Shared {
    local_id: u64,
    cluster_id: u64,
    config: TcpConfig,
    events: Sender<PeerEvent>,
    stopped: AtomicBool,
    inbound: Mutex<InboundRegistry>,
    /// Answers members queries once the node registered it.
    members: Mutex<Option<MembersSource>>,
    /// Members removed from the cluster: their handshakes are refused with `MemberRemoved`.
    removed: Mutex<HashSet<u64>>,
}

/// Lists the cluster's members for a members query (see [`TcpTransport::set_members_source`]).
pub type MembersSource = Arc<dyn Fn() -> Vec<Member> + Send + Sync>;

impl Shared {
    fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }

    /// Best-effort report that never blocks (delivery failures; raft copes with a lost one).
    fn report(&self, ev: PeerEvent) {
        match self.events.try_send(ev) {
            Ok(()) | Err(TrySendError::Disconnected(_)) => {}
            Err(TrySendError::Full(ev)) => {
                tracing::debug!(?ev, "event channel full, report dropped")
            }
        }
    }

    /// Delivers `ev`, waiting while the channel is full unless the transport or `cancelled`
    /// stops; returns whether it was delivered.
    fn deliver(&self, mut ev: PeerEvent, cancelled: &dyn Fn() -> bool) -> bool {
        loop {
            match self.events.send_timeout(ev, Duration::from_millis(100)) {
                Ok(()) => return true,
                Err(SendTimeoutError::Disconnected(_)) => return false,
                Err(SendTimeoutError::Timeout(back)) => {
                    if self.is_stopped() || cancelled() {
                        return false;
                    }
                    ev = back;
                }
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> Result<JoinHandle<()>, TransportError> {
    thread::Builder::new()
        .name(name.to_string())
        .spawn(f)
        .map_err(|source| TransportError::Spawn {
            name: name.to_string(),
            source,
        })
}

/// Joins `handles` until `deadline`; threads still running then are detached (and logged).
fn join_until(handles: Vec<JoinHandle<()>>, deadline: Instant) {
    let mut pending = handles;
    loop {
        let (done, rest): (Vec<_>, Vec<_>) = pending.into_iter().partition(|h| h.is_finished());
        for h in done {
            if h.join().is_err() {
                tracing::error!("a transport thread panicked");
            }
        }
        pending = rest;
        if pending.is_empty() {
            return;
        }
        if Instant::now() >= deadline {
            tracing::warn!(
                threads = pending.len(),
                "transport threads did not stop in time; detached"
            );
            return;
        }
        thread::sleep(Duration::from_millis(5));
    }
}

/// A [`Transport`] over TCP; see the [module docs](self).
pub struct TcpTransport {
    shared: Arc<Shared>,
    local_addrs: Vec<SocketAddr>,
    accept: Mutex<Option<JoinHandle<()>>>,
    peers: Mutex<HashMap<u64, Peer>>,
    /// Threads of removed peers, joined by [`TcpTransport::stop`].
    retired: Mutex<Vec<JoinHandle<()>>>,
}

impl TcpTransport {
    /// Binds `listen` (port 0 picks a free port; see [`TcpTransport::local_addrs`]) and starts
    /// accepting peers of `cluster_id` as member `local_id`, with the default [`TcpConfig`].
    /// Incoming messages and delivery reports go to `events`. `listen` takes [`SocketAddr`]s
    /// (plain TCP) or [`ListenAddr`]s (see [`listen_endpoints`]).
    pub fn start<L: Into<ListenAddr>>(
        local_id: u64,
        cluster_id: u64,
        listen: impl IntoIterator<Item = L>,
        events: Sender<PeerEvent>,
    ) -> Result<TcpTransport, TransportError> {
        Self::start_with_config(local_id, cluster_id, listen, events, TcpConfig::default())
    }

    /// [`TcpTransport::start`] with `config`. A TLS listener needs [`TcpConfig::tls`]
    /// ([`TransportError::TlsNotConfigured`] otherwise).
    pub fn start_with_config<L: Into<ListenAddr>>(
        local_id: u64,
        cluster_id: u64,
        listen: impl IntoIterator<Item = L>,
        events: Sender<PeerEvent>,
        config: TcpConfig,
    ) -> Result<TcpTransport, TransportError> {
        let mut listeners = Vec::new();
        let mut local_addrs = Vec::new();
        for ListenAddr { socket, tls } in listen.into_iter().map(Into::into) {
            let tls = if tls {
                let Some(peer_tls) = &config.tls else {
                    return Err(TransportError::TlsNotConfigured {
                        url: format!("https://{socket}"),
                    });
                };
                Some(Arc::clone(&peer_tls.server))
            } else {
                None
            };
            let bind = |source| TransportError::Bind {
                addr: socket.clone(),
                source,
            };
            let l = socket::Listener::bind(&socket).map_err(bind)?;
            let local = l.local().map_err(bind)?;
            tracing::info!(addr = %local, tls = tls.is_some(), "peer listener bound");
            if let ListenSocket::Tcp(addr) = local {
                local_addrs.push(addr);
            }
            listeners.push((l, tls));
        }
        let shared = Arc::new(Shared {
            local_id,
            cluster_id,
            config,
            events,
            stopped: AtomicBool::new(false),
            inbound: Mutex::new(InboundRegistry::default()),
            members: Mutex::new(None),
            removed: Mutex::new(HashSet::new()),
        });
        let accept = {
            let shared = shared.clone();
            spawn(&format!("peer-accept-{local_id:x}"), move || {
                inbound::accept_loop(shared, listeners)
            })?
        };
        tracing::info!(local_id = %format_args!("{local_id:x}"), addrs = ?local_addrs, "peer transport listening");
        Ok(TcpTransport {
            shared,
            local_addrs,
            accept: Mutex::new(Some(accept)),
            peers: Mutex::new(HashMap::new()),
            retired: Mutex::new(Vec::new()),
        })
    }

    /// The bound TCP listen addresses (with the actual ports).
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local_addrs
    }

    /// This member's id.
    pub fn local_id(&self) -> u64 {
        self.shared.local_id
    }

    /// Lets the transport answer members queries from members joining the cluster (etcd serves
    /// them on the peer URL); until it is set they are answered `NotReady`.
    pub fn set_members_source(&self, source: MembersSource) {
        *lock(&self.shared.members) = Some(source);
    }

    /// Whether `id` is a known peer.
    pub fn has_peer(&self, id: u64) -> bool {
        lock(&self.peers).contains_key(&id)
    }

    /// Stops accepting, closes every connection and joins the threads (waiting at most
    /// [`TcpConfig::stop_timeout`]). Queued messages are dropped. Idempotent.
    pub fn stop(&self) {
        if self.shared.stopped.swap(true, Ordering::AcqRel) {
            return;
        }
        let deadline = Instant::now() + self.shared.config.stop_timeout;
        let mut handles: Vec<JoinHandle<()>> = lock(&self.accept).take().into_iter().collect();
        for (_, peer) in lock(&self.peers).drain() {
            handles.extend(peer.shutdown());
        }
        handles.append(&mut lock(&self.retired));
        handles.extend(lock(&self.shared.inbound).shutdown_all());
        join_until(handles, deadline);
        // Readers accepted while we were shutting down.
        let late = lock(&self.shared.inbound).shutdown_all();
        join_until(late, deadline);
        tracing::info!(local_id = %format_args!("{:x}", self.shared.local_id), "peer transport stopped");
    }

    fn urls(&self, id: u64, peer_urls: &[String]) -> Vec<PeerUrl> {
        peer_urls
            .iter()
            .filter_map(|u| match PeerUrl::parse(u) {
                Ok(url) => {
                    if url.tls && self.shared.config.tls.is_none() {
                        // Kept: dialing it fails with this error and reports the peer
                        // unreachable, which is what raft must see.
                        tracing::error!(
                            peer = %format_args!("{id:x}"),
                            "{}",
                            TransportError::TlsNotConfigured { url: url.display() }
                        );
                    }
                    Some(url)
                }
                Err(e) => {
                    tracing::error!(peer = %format_args!("{id:x}"), "ignoring peer url: {e}");
                    None
                }
            })
            .collect()
    }

    fn report_undeliverable(&self, to: u64, msg_type: MessageType) {
        self.shared.report(PeerEvent::Unreachable(to));
        if msg_type == MessageType::MsgSnap {
            self.shared
                .report(PeerEvent::SnapshotStatus { to, failed: true });
        }
    }
}

impl Transport for TcpTransport {
    fn send(&self, msgs: Vec<Message>) {
        if self.shared.is_stopped() {
            return;
        }
        let mut undeliverable = Vec::new();
        {
            let peers = lock(&self.peers);
            for m in msgs {
                let (to, msg_type) = (m.to, m.msg_type);
                if to == self.shared.local_id {
                    tracing::debug!(msg_type = %msg_type, "not sending a message to self");
                    continue;
                }
                let queued = match peers.get(&to) {
                    Some(peer) => peer.enqueue(m),
                    None => {
                        tracing::debug!(to = %format_args!("{to:x}"), msg_type = %msg_type, "dropping message to unknown peer");
                        false
                    }
                };
                if !queued {
                    undeliverable.push((to, msg_type));
                }
            }
        }
        for (to, msg_type) in undeliverable {
            self.report_undeliverable(to, msg_type);
        }
    }

    fn add_peer(&self, id: u64, peer_urls: &[String]) {
        if self.shared.is_stopped() || id == self.shared.local_id || id == 0 {
            return;
        }
        let mut peers = lock(&self.peers);
        if peers.contains_key(&id) {
            return;
        }
        let urls = self.urls(id, peer_urls);
        match Peer::start(self.shared.clone(), id, urls) {
            Ok(peer) => {
                tracing::info!(peer = %format_args!("{id:x}"), urls = ?peer_urls, "added peer");
                peers.insert(id, peer);
            }
            Err(e) => tracing::error!(peer = %format_args!("{id:x}"), "cannot add peer: {e}"),
        }
    }

    fn remove_peer(&self, id: u64) {
        // Ids are never reused: from now on the member's handshakes are answered `MemberRemoved`,
        // which tells it to stop.
        lock(&self.shared.removed).insert(id);
        let Some(peer) = lock(&self.peers).remove(&id) else {
            return;
        };
        tracing::info!(peer = %format_args!("{id:x}"), "removed peer");
        let mut retired = lock(&self.retired);
        retired.extend(peer.shutdown());
        // Keep the list short: reap what has finished.
        let (done, rest): (Vec<_>, Vec<_>) = retired.drain(..).partition(|h| h.is_finished());
        *retired = rest;
        drop(retired);
        for h in done {
            let _ = h.join();
        }
    }

    fn streams_snapshot_files(&self) -> bool {
        self.shared.config.snapshot_files.is_some()
    }

    fn update_peer(&self, id: u64, peer_urls: &[String]) {
        let urls = self.urls(id, peer_urls);
        match lock(&self.peers).get(&id) {
            Some(peer) => {
                tracing::info!(peer = %format_args!("{id:x}"), urls = ?peer_urls, "updated peer urls");
                peer.set_urls(urls);
            }
            None => {
                tracing::debug!(peer = %format_args!("{id:x}"), "update of unknown peer ignored")
            }
        }
    }
}

impl Drop for TcpTransport {
    fn drop(&mut self) {
        self.stop();
    }
}
