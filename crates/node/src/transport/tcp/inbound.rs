//! The receiving side: the accept thread and one reader thread per inbound connection.

use std::collections::HashMap;
use std::io::{BufReader, ErrorKind, Read, Write};
use std::net::Shutdown;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use raft_core::raftpb::{Message, MessageType};
use rustls::ServerConfig;

use super::socket::{self, PeerAddr, Socket};
use super::stream::{self, PeerStream};
use super::wire::{
    self, ClusterInfo, HANDSHAKE_LEN, Handshake, HandshakeReply, HandshakeStatus, PROTOCOL_VERSION,
    SNAPSHOT_ACK, SnapshotHeader, StreamKind, WireError,
};
use super::{PeerEvent, Shared, lock, spawn};

/// How long the accept thread sleeps when no listener has a pending connection.
const ACCEPT_POLL: Duration = Duration::from_millis(10);

/// The largest buffer a reader keeps between frames.
const KEEP_BUFFER: usize = 4 << 20;

/// The live inbound connections and their reader threads.
#[derive(Default)]
pub(super) struct InboundRegistry {
    next_id: u64,
    conns: HashMap<u64, InboundConn>,
    threads: Vec<JoinHandle<()>>,
    /// Set by [`InboundRegistry::shutdown_all`]: no new connection is admitted.
    closed: bool,
}

struct InboundConn {
    socket: Socket,
    /// The sender and kind, once the handshake is accepted.
    stream: Option<(u64, StreamKind)>,
}

impl InboundRegistry {
    /// Closes every connection and refuses new ones; returns the reader threads to join.
    pub(super) fn shutdown_all(&mut self) -> Vec<JoinHandle<()>> {
        self.closed = true;
        for c in self.conns.values() {
            let _ = c.socket.shutdown(Shutdown::Both);
        }
        std::mem::take(&mut self.threads)
    }

    fn reap(&mut self) {
        let (done, rest): (Vec<_>, Vec<_>) = self.threads.drain(..).partition(|h| h.is_finished());
        self.threads = rest;
        for h in done {
            if h.join().is_err() {
                tracing::error!("a peer reader thread panicked");
            }
        }
    }
}

/// A listener, and the TLS configuration it serves (`None`: plain).
pub(super) type Listener = (socket::Listener, Option<Arc<ServerConfig>>);

/// Accepts connections on every listener until the transport stops. The TLS handshake of an
/// accepted connection happens on its reader thread, never here: a slow or silent client must
/// not hold up the other accepts.
pub(super) fn accept_loop(shared: Arc<Shared>, listeners: Vec<Listener>) {
    while !shared.is_stopped() {
        let mut idle = true;
        for (l, tls) in &listeners {
            match l.accept() {
                Ok((s, addr)) => {
                    idle = false;
                    admit(&shared, s, addr, tls.clone());
                }
                Err(e)
                    if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted => {}
                Err(e) => tracing::warn!("accepting a peer connection failed: {e}"),
            }
        }
        if idle {
            thread::sleep(ACCEPT_POLL);
        }
    }
    tracing::debug!("peer accept loop stopped");
}

fn admit(shared: &Arc<Shared>, mut s: Socket, addr: PeerAddr, tls: Option<Arc<ServerConfig>>) {
    if let Err(e) = s.set_nonblocking(false) {
        tracing::warn!(%addr, "dropping peer connection: {e}");
        return;
    }
    let mut reg = lock(&shared.inbound);
    if reg.closed {
        return;
    }
    reg.reap();
    if reg.conns.len() >= shared.config.max_inbound {
        tracing::warn!(%addr, max = shared.config.max_inbound, "too many peer connections, refusing");
        if tls.is_some() {
            // No TLS session yet, and none is started here: just close. The dialer sees its
            // handshake fail, which it treats as a refusal.
            return;
        }
        let reply = HandshakeReply {
            version: PROTOCOL_VERSION,
            status: HandshakeStatus::Busy,
            cluster_id: shared.cluster_id,
            id: shared.local_id,
        };
        let _ = s.set_write_timeout(Some(Duration::from_millis(100)));
        let _ = s.write_all(&reply.encode());
        return;
    }
    let socket = match s.try_clone() {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(%addr, "dropping peer connection: {e}");
            return;
        }
    };
    let id = reg.next_id;
    reg.next_id += 1;
    reg.conns.insert(
        id,
        InboundConn {
            socket,
            stream: None,
        },
    );
    let reader = {
        let shared = shared.clone();
        let addr = addr.clone();
        spawn(&format!("peer-r-{:x}", shared.local_id), move || {
            reader(&shared, id, s, addr, tls)
        })
    };
    match reader {
        Ok(h) => reg.threads.push(h),
        Err(e) => {
            tracing::error!(%addr, "dropping peer connection: {e}");
            if let Some(c) = reg.conns.remove(&id) {
                let _ = c.socket.shutdown(Shutdown::Both);
            }
        }
    }
}

/// Serves one inbound connection until it closes, fails or the transport stops.
fn reader(
    shared: &Shared,
    conn_id: u64,
    s: Socket,
    addr: PeerAddr,
    tls: Option<Arc<ServerConfig>>,
) {
    // Other threads shut the connection down through the raw clone `admit` registered; the
    // TLS session (if any) is this thread's alone. The handshake happens here, after the
    // timeouts are set, so a silent client costs this thread only and `stop` interrupts it.
    let result = (|| {
        let cfg = &shared.config;
        s.set_nodelay()?;
        s.set_read_timeout(Some(cfg.handshake_timeout))?;
        s.set_write_timeout(Some(cfg.write_timeout))?;
        let mut s = match tls {
            Some(config) => PeerStream::server(s, config)?,
            None => PeerStream::Plain(s),
        };
        let served = match s.finish_handshake() {
            Ok(()) => serve(shared, conn_id, &mut s, &addr),
            Err(e) => {
                log_tls_failure(shared, &addr, &e);
                Ok(())
            }
        };
        let _ = s.socket().shutdown(Shutdown::Both);
        served
    })();
    match result {
        Ok(()) => tracing::debug!(%addr, "peer connection closed"),
        Err(e) if shared.is_stopped() => tracing::debug!(%addr, "peer connection closed: {e}"),
        Err(e) => tracing::warn!(%addr, "closing peer connection: {e}"),
    }
    lock(&shared.inbound).conns.remove(&conn_id);
}

/// Logs a failed TLS handshake of an inbound connection (which is then dropped).
fn log_tls_failure(shared: &Shared, addr: &PeerAddr, e: &std::io::Error) {
    if shared.is_stopped() {
        tracing::debug!(%addr, "TLS handshake interrupted by stop: {e}");
    } else if stream::refusal(e) == Some(stream::Refusal::TheirCertificate) {
        tracing::warn!(%addr, error = %e, "refused the TLS certificate of a peer connection; connection dropped");
    } else if stream::refusal(e) == Some(stream::Refusal::OurCertificate) {
        let go = stream::go_remote_error(e).unwrap_or_default();
        tracing::warn!(%addr, error = %e, "a peer connection refused this member's TLS certificate{go}; connection dropped");
    } else if matches!(
        stream::rustls_error(e),
        Some(rustls::Error::InvalidMessage(
            rustls::InvalidMessage::InvalidContentType
        ))
    ) {
        tracing::warn!(%addr, error = %e, "not TLS on an https peer listener (the dialer has an http URL for it?); connection dropped");
    } else {
        tracing::warn!(%addr, error = %e, "TLS handshake with a peer connection failed; connection dropped");
    }
}

fn serve(
    shared: &Shared,
    conn_id: u64,
    s: &mut PeerStream,
    addr: &PeerAddr,
) -> Result<(), WireError> {
    let mut buf = [0u8; HANDSHAKE_LEN];
    s.read_exact(&mut buf)?;
    let hs = match Handshake::decode(&buf) {
        // 0x16: a TLS handshake record, i.e. a ClientHello.
        Err(WireError::BadMagic) if !s.is_tls() && buf[0] == 0x16 => {
            return Err(WireError::Protocol(
                "a TLS connection on a plain (http) peer listener: the dialer has an https URL for it"
                    .into(),
            ));
        }
        decoded => decoded?,
    };
    if hs.kind == StreamKind::Members && hs.version == PROTOCOL_VERSION {
        return answer_members(shared, s, addr);
    }
    let status = if hs.version != PROTOCOL_VERSION {
        HandshakeStatus::VersionMismatch
    } else if hs.cluster_id != shared.cluster_id {
        HandshakeStatus::ClusterMismatch
    } else if hs.to != shared.local_id {
        HandshakeStatus::WrongReceiver
    } else if hs.from == 0 || hs.from == shared.local_id {
        HandshakeStatus::BadSender
    } else if lock(&shared.removed).contains(&hs.from) {
        HandshakeStatus::MemberRemoved
    } else {
        HandshakeStatus::Accepted
    };
    let reply = HandshakeReply {
        version: PROTOCOL_VERSION,
        status,
        cluster_id: shared.cluster_id,
        id: shared.local_id,
    };
    s.write_all(&reply.encode())?;
    s.flush()?;
    let from = format!("{:x}", hs.from);
    match status {
        HandshakeStatus::Accepted => {}
        HandshakeStatus::ClusterMismatch => {
            tracing::error!(
                %addr,
                from = %from,
                remote_cluster = %format_args!("{:x}", hs.cluster_id),
                local_cluster = %format_args!("{:x}", shared.cluster_id),
                "rejected peer connection from another cluster"
            );
            return Ok(());
        }
        other => {
            tracing::warn!(%addr, from = %from, to = %format_args!("{:x}", hs.to), version = hs.version, "rejected peer connection: {other:?}");
            return Ok(());
        }
    }
    {
        let mut reg = lock(&shared.inbound);
        if reg.closed {
            return Ok(());
        }
        if hs.kind == StreamKind::Message {
            // A peer has one message stream to us: a new one replaces (closes) the old.
            for (id, c) in &reg.conns {
                if *id != conn_id && c.stream == Some((hs.from, StreamKind::Message)) {
                    let _ = c.socket.shutdown(Shutdown::Both);
                }
            }
        }
        if let Some(c) = reg.conns.get_mut(&conn_id) {
            c.stream = Some((hs.from, hs.kind));
        }
    }
    tracing::info!(%addr, from = %from, kind = ?hs.kind, "peer stream accepted");
    match hs.kind {
        StreamKind::Message => read_messages(shared, s, &from, hs.from),
        StreamKind::Snapshot => read_snapshots(shared, s, &from),
        StreamKind::Members => Ok(()),
    }
}

/// Answers a members query with this cluster's id and members, or `NotReady` while the node
/// has not registered its membership yet.
fn answer_members(shared: &Shared, s: &mut PeerStream, addr: &PeerAddr) -> Result<(), WireError> {
    let source = lock(&shared.members).clone();
    let info = source.map(|members| ClusterInfo {
        cluster_id: shared.cluster_id,
        members: members(),
    });
    let reply = HandshakeReply {
        version: PROTOCOL_VERSION,
        status: if info.is_some() {
            HandshakeStatus::Accepted
        } else {
            HandshakeStatus::NotReady
        },
        cluster_id: shared.cluster_id,
        id: shared.local_id,
    };
    s.write_all(&reply.encode())?;
    if let Some(info) = info {
        wire::write_frame(s, &postcard::to_allocvec(&info)?)?;
        tracing::info!(%addr, "answered a members query");
    }
    s.flush()?;
    Ok(())
}

/// Whether a peer may send `m` to us.
fn acceptable(shared: &Shared, m: &Message, from: &str) -> bool {
    if m.to != shared.local_id || m.msg_type.is_local() {
        tracing::warn!(from = %from, to = %format_args!("{:x}", m.to), msg_type = %m.msg_type, "dropping misaddressed or local message");
        return false;
    }
    true
}

fn read_messages(
    shared: &Shared,
    s: &mut PeerStream,
    from: &str,
    from_id: u64,
) -> Result<(), WireError> {
    s.socket().set_read_timeout(None)?;
    let received = shared
        .config
        .metrics
        .as_ref()
        .map(|m| m.received_counter(from_id));
    let mut r = BufReader::with_capacity(64 << 10, s);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        if !wire::read_frame(&mut r, shared.config.max_frame_len, &mut buf)? {
            return Ok(());
        }
        if let Some(received) = &received {
            received.inc_by((wire::FRAME_HEADER_LEN + buf.len()) as u64);
        }
        let m: Message = postcard::from_bytes(&buf)?;
        if buf.capacity() > KEEP_BUFFER {
            buf = Vec::new();
        }
        if !acceptable(shared, &m, from) {
            continue;
        }
        if !shared.deliver(PeerEvent::Message(m), &|| false) {
            return Ok(());
        }
    }
}

fn read_snapshots(shared: &Shared, s: &mut PeerStream, from: &str) -> Result<(), WireError> {
    let cfg = &shared.config;
    s.socket().set_read_timeout(Some(cfg.snapshot_timeout))?;
    let mut r = BufReader::with_capacity(256 << 10, s);
    loop {
        let mut head = Vec::new();
        if !wire::read_frame(&mut r, cfg.max_frame_len, &mut head)? {
            return Ok(());
        }
        let header: SnapshotHeader = postcard::from_bytes(&head)?;
        let mut m = header.message;
        if m.msg_type != MessageType::MsgSnap || m.snapshot.is_none() {
            return Err(WireError::Protocol(format!(
                "{} on the snapshot stream",
                m.msg_type
            )));
        }
        if header.data_len > cfg.max_snapshot_len {
            return Err(WireError::Protocol(format!(
                "snapshot of {} bytes over the limit of {}",
                header.data_len, cfg.max_snapshot_len
            )));
        }
        if !acceptable(shared, &m, from) {
            return Err(WireError::Protocol("misaddressed snapshot".into()));
        }
        let len = header.data_len;
        let (term, index) = m
            .snapshot
            .as_ref()
            .map_or((0, 0), |s| (s.metadata.term, s.metadata.index));
        match &cfg.snapshot_files {
            Some(paths) if len > 0 => {
                receive_to_file(&mut r, cfg.max_frame_len, len, &paths.db_file(term, index))?;
            }
            _ => {
                let mut data = Vec::new();
                receive_chunks(&mut r, cfg.max_frame_len, len, |chunk| {
                    data.extend_from_slice(chunk);
                    Ok(())
                })?;
                if let Some(snap) = m.snapshot.as_mut() {
                    snap.data = data;
                }
            }
        }
        tracing::info!(from = %from, index, bytes = len, "snapshot received");
        if !shared.deliver(PeerEvent::Message(m), &|| false) {
            return Ok(());
        }
        // Same thread, same session: the ack goes out under the reader.
        r.get_mut().write_all(&[SNAPSHOT_ACK])?;
        r.get_mut().flush()?;
    }
}

/// Reads chunk frames until `len` bytes arrived, handing each chunk to `sink`.
fn receive_chunks(
    r: &mut impl Read,
    max_frame_len: usize,
    len: u64,
    mut sink: impl FnMut(&[u8]) -> Result<(), WireError>,
) -> Result<(), WireError> {
    let mut got = 0u64;
    let mut buf = Vec::new();
    while got < len {
        buf.clear();
        if !wire::read_frame(r, max_frame_len, &mut buf)? {
            return Err(WireError::Protocol("stream ended inside a snapshot".into()));
        }
        got += buf.len() as u64;
        if buf.is_empty() || got > len {
            return Err(WireError::Protocol("snapshot chunks do not add up".into()));
        }
        sink(&buf)?;
    }
    Ok(())
}

/// Streams a snapshot's chunks into `path`: written to a `.part` file, synced, then renamed
/// into place, so a snapshot file is either whole or absent.
fn receive_to_file(
    r: &mut impl Read,
    max_frame_len: usize,
    len: u64,
    path: &std::path::Path,
) -> Result<(), WireError> {
    let dir = path
        .parent()
        .ok_or_else(|| WireError::Protocol(format!("no directory for {}", path.display())))?;
    std::fs::create_dir_all(dir)?;
    let part = path.with_extension("db.part");
    let result = (|| {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&part)?);
        receive_chunks(r, max_frame_len, len, |chunk| Ok(f.write_all(chunk)?))?;
        let f = f.into_inner().map_err(|e| e.into_error())?;
        f.sync_all()?;
        std::fs::rename(&part, path)?;
        crate::wal::segment::sync_dir(dir)?;
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&part);
    }
    result
}
