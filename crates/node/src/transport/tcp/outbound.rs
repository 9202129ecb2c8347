//! The sending side: per peer, a message-stream writer and a snapshot sender, each a thread.

use std::io::{BufWriter, Read, Write};
use std::net::Shutdown;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError, select};
use raft_core::raftpb::{Message, MessageType};

use rustls::pki_types::ServerName;

use super::socket::Socket;
use super::stream::{self, PeerStream};
use super::wire::{
    self, Handshake, HandshakeStatus, PROTOCOL_VERSION, SNAPSHOT_ACK, SnapshotHeader, StreamKind,
    WireError,
};
use super::{PeerEvent, PeerUrl, Shared, TransportError, lock, spawn, tls_hint};

/// Messages written before the writer flushes (it also flushes whenever its queue is empty).
const MAX_BATCH: usize = 256;

/// What a peer's threads share with the transport.
struct Link {
    id: u64,
    /// The peer's URLs.
    urls: Mutex<Vec<PeerUrl>>,
    /// Bumped when `urls` change: the writer then redials.
    generation: AtomicU64,
    stopped: AtomicBool,
    /// Clones of the live sockets (message stream, snapshot stream), to shut them down.
    sockets: Mutex<[Option<Socket>; 2]>,
    /// `etcd_network_peer_sent_bytes_total` for this peer, when metrics are kept.
    sent_bytes: Option<prometheus::IntCounter>,
}

impl Link {
    fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }

    fn slot(kind: StreamKind) -> usize {
        match kind {
            // A peer link never makes members queries; they share the message slot.
            StreamKind::Message | StreamKind::Members => 0,
            StreamKind::Snapshot => 1,
        }
    }

    /// Records the socket a thread is using so [`Peer::shutdown`] can interrupt it.
    fn set_socket(&self, kind: StreamKind, socket: Option<Socket>) {
        let mut sockets = lock(&self.sockets);
        sockets[Self::slot(kind)] = socket;
        if self.is_stopped() {
            for s in sockets.iter_mut().filter_map(Option::take) {
                let _ = s.shutdown(Shutdown::Both);
            }
        }
    }

    fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        let mut sockets = lock(&self.sockets);
        for s in sockets.iter_mut().filter_map(Option::take) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

/// The transport's handle on one peer.
pub(super) struct Peer {
    link: Arc<Link>,
    msg_tx: Sender<Message>,
    snap_tx: Sender<Message>,
    /// Dropped to wake the peer's threads.
    stop_tx: Sender<()>,
    threads: Vec<JoinHandle<()>>,
}

impl Peer {
    /// Starts the threads talking to peer `id` at `urls`.
    pub(super) fn start(
        shared: Arc<Shared>,
        id: u64,
        urls: Vec<PeerUrl>,
    ) -> Result<Peer, TransportError> {
        let link = Arc::new(Link {
            id,
            urls: Mutex::new(urls),
            generation: AtomicU64::new(0),
            stopped: AtomicBool::new(false),
            sockets: Mutex::new([None, None]),
            sent_bytes: shared.config.metrics.as_ref().map(|m| m.sent_counter(id)),
        });
        let (msg_tx, msg_rx) = crossbeam_channel::bounded(shared.config.queue_len.max(1));
        let (snap_tx, snap_rx) =
            crossbeam_channel::bounded(shared.config.snapshot_queue_len.max(1));
        let (stop_tx, stop_rx) = crossbeam_channel::bounded::<()>(0);
        let local = shared.local_id;
        let writer = {
            let (shared, link, stop_rx) = (shared.clone(), link.clone(), stop_rx.clone());
            spawn(&format!("peer-w-{local:x}-{id:x}"), move || {
                message_writer(&shared, &link, &msg_rx, &stop_rx)
            })?
        };
        let snapshotter = {
            let link2 = link.clone();
            spawn(&format!("peer-snap-{local:x}-{id:x}"), move || {
                snapshot_sender(&shared, &link2, &snap_rx, &stop_rx)
            })
        };
        let snapshotter = match snapshotter {
            Ok(h) => h,
            Err(e) => {
                link.stop();
                drop(stop_tx);
                let _ = writer.join();
                return Err(e);
            }
        };
        Ok(Peer {
            link,
            msg_tx,
            snap_tx,
            stop_tx,
            threads: vec![writer, snapshotter],
        })
    }

    /// Queues `m` without blocking; false if the queue is full (the message is dropped).
    pub(super) fn enqueue(&self, m: Message) -> bool {
        let msg_type = m.msg_type;
        let tx = if msg_type == MessageType::MsgSnap {
            &self.snap_tx
        } else {
            &self.msg_tx
        };
        match tx.try_send(m) {
            Ok(()) => true,
            Err(e) => {
                if matches!(e, TrySendError::Full(_)) {
                    tracing::debug!(peer = %format_args!("{:x}", self.link.id), msg_type = %msg_type, "peer queue full, dropping message");
                }
                false
            }
        }
    }

    /// Replaces the peer's URLs; the message stream redials.
    pub(super) fn set_urls(&self, urls: Vec<PeerUrl>) {
        *lock(&self.link.urls) = urls;
        self.link.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// Stops the peer's threads (closing their sockets) and returns them to be joined.
    pub(super) fn shutdown(self) -> Vec<JoinHandle<()>> {
        self.link.stop();
        drop(self.stop_tx);
        self.threads
    }
}

/// Exponential redial delay.
struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
    retry_at: Option<Instant>,
}

impl Backoff {
    fn new(min: Duration, max: Duration) -> Self {
        Backoff {
            min,
            max,
            next: min,
            retry_at: None,
        }
    }

    fn ready(&self) -> bool {
        self.retry_at.is_none_or(|t| Instant::now() >= t)
    }

    fn failed(&mut self) {
        self.retry_at = Some(Instant::now() + self.next);
        self.next = (self.next * 2).min(self.max);
    }

    fn reset(&mut self) {
        self.next = self.min;
        self.retry_at = None;
    }
}

fn io_err(e: std::io::Error) -> TransportError {
    WireError::Io(e).into()
}

/// What an `https://` URL is dialed with.
type ClientTls = (Arc<rustls::ClientConfig>, ServerName<'static>);

/// The TLS to dial `url` with: `None` for plain TCP, an error for an https URL when the
/// transport has no TLS configuration or the host is no valid TLS server name.
fn client_tls(shared: &Shared, url: &PeerUrl) -> Result<Option<ClientTls>, TransportError> {
    if !url.tls {
        return Ok(None);
    }
    let Some(tls) = &shared.config.tls else {
        return Err(TransportError::TlsNotConfigured { url: url.display() });
    };
    let name = url.server_name()?;
    Ok(Some((Arc::clone(&tls.client), name)))
}

/// Connects to one of the peer's URLs and completes the handshake for `kind`.
fn dial(shared: &Shared, link: &Link, kind: StreamKind) -> Result<PeerStream, TransportError> {
    let urls = lock(&link.urls).clone();
    let dial_err = |reason: String| TransportError::Dial {
        peer: link.id,
        reason,
    };
    if urls.is_empty() {
        return Err(dial_err("no usable peer urls".into()));
    }
    let mut last = String::new();
    for url in &urls {
        let tls = match client_tls(shared, url) {
            Ok(tls) => tls,
            Err(e) => {
                last = e.to_string();
                continue;
            }
        };
        if link.is_stopped() || shared.is_stopped() {
            return Err(dial_err("transport stopped".into()));
        }
        match Socket::connect(url, shared.config.dial_timeout) {
            Ok(s) => return handshake(shared, link, kind, s, tls),
            Err(e) => last = e,
        }
    }
    Err(dial_err(last))
}

fn handshake(
    shared: &Shared,
    link: &Link,
    kind: StreamKind,
    s: Socket,
    tls: Option<ClientTls>,
) -> Result<PeerStream, TransportError> {
    let cfg = &shared.config;
    s.set_nodelay().map_err(io_err)?;
    s.set_write_timeout(Some(cfg.write_timeout))
        .map_err(io_err)?;
    s.set_read_timeout(Some(cfg.handshake_timeout))
        .map_err(io_err)?;
    // Registered before any handshake, so that stopping the peer interrupts it.
    link.set_socket(kind, Some(s.try_clone().map_err(io_err)?));
    let addr = s.peer_addr().map_or_else(|_| "?".into(), |a| a.to_string());
    let mut s = match tls {
        Some((config, name)) => PeerStream::client(s, config, name).map_err(io_err)?,
        None => PeerStream::Plain(s),
    };
    if let Err(e) = s.finish_handshake() {
        let _ = s.socket().shutdown(Shutdown::Both);
        return Err(io_err(stream::handshake_error(
            e,
            &format!("peer {:x} at {addr}", link.id),
        )));
    }
    let hs = Handshake {
        version: PROTOCOL_VERSION,
        kind,
        cluster_id: shared.cluster_id,
        from: shared.local_id,
        to: link.id,
    };
    let reply = match wire::exchange_handshake(&mut s, &hs) {
        Ok(reply) => reply,
        Err(e) => {
            let _ = s.socket().shutdown(Shutdown::Both);
            return Err(tls_hint(e, &s).into());
        }
    };
    if reply.status != HandshakeStatus::Accepted {
        let err = TransportError::Rejected {
            peer: link.id,
            status: reply.status,
            remote_cluster: reply.cluster_id,
            remote_id: reply.id,
        };
        if reply.status == HandshakeStatus::MemberRemoved {
            tracing::error!(
                peer = %format_args!("{:x}", link.id),
                "the peer says this member was removed from the cluster"
            );
            shared.report(PeerEvent::Removed);
        }
        if reply.status == HandshakeStatus::ClusterMismatch {
            tracing::error!(
                local_cluster = %format_args!("{:x}", shared.cluster_id),
                "peer belongs to another cluster: {err}"
            );
        }
        let _ = s.socket().shutdown(Shutdown::Both);
        return Err(err);
    }
    // The message stream never reads (`PeerStream` writes never read either), the snapshot
    // stream sets its own timeout for the ack.
    s.socket().set_read_timeout(None).map_err(io_err)?;
    Ok(s)
}

/// The message stream's writer: dials on demand, writes queued messages in order, redials with
/// backoff after a failure.
fn message_writer(shared: &Shared, link: &Link, rx: &Receiver<Message>, stop_rx: &Receiver<()>) {
    let cfg = &shared.config;
    let peer = format!("{:x}", link.id);
    let mut conn: Option<(BufWriter<PeerStream>, u64)> = None;
    let mut backoff = Backoff::new(cfg.backoff_min, cfg.backoff_max);
    let mut down_logged = false;
    let mut scratch = Vec::new();
    loop {
        let first = select! {
            recv(rx) -> m => match m {
                Ok(m) => m,
                Err(_) => break,
            },
            recv(stop_rx) -> _ => break,
        };
        if link.is_stopped() {
            break;
        }
        let generation = link.generation.load(Ordering::SeqCst);
        if conn.as_ref().is_some_and(|(_, g)| *g != generation) {
            tracing::info!(peer = %peer, "peer urls changed, redialing");
            close(conn.take());
            backoff.reset();
        }
        if conn.is_none() {
            if !backoff.ready() {
                // Backed off: drop (raft retransmits); the peer was reported unreachable.
                continue;
            }
            match dial(shared, link, StreamKind::Message) {
                Ok(s) => {
                    tracing::info!(peer = %peer, "message stream connected");
                    backoff.reset();
                    down_logged = false;
                    conn = Some((BufWriter::with_capacity(64 << 10, s), generation));
                }
                Err(e) => {
                    if down_logged {
                        tracing::debug!(peer = %peer, "peer still unreachable: {e}");
                    } else {
                        tracing::warn!(peer = %peer, "peer unreachable: {e}");
                        down_logged = true;
                    }
                    link.set_socket(StreamKind::Message, None);
                    backoff.failed();
                    shared.report(PeerEvent::Unreachable(link.id));
                    continue;
                }
            }
        }
        let Some((w, _)) = conn.as_mut() else {
            continue;
        };
        let mut result = write_message(shared, link, w, &first, &mut scratch);
        let mut batched = 1;
        while result.is_ok() && batched < MAX_BATCH {
            match rx.try_recv() {
                Ok(m) => {
                    result = write_message(shared, link, w, &m, &mut scratch);
                    batched += 1;
                }
                Err(_) => break,
            }
        }
        let result = result.and_then(|()| w.flush().map_err(io_err));
        if let Err(e) = result {
            if !link.is_stopped() {
                tracing::warn!(peer = %peer, "message stream failed: {e}");
                shared.report(PeerEvent::Unreachable(link.id));
            }
            close(conn.take());
            link.set_socket(StreamKind::Message, None);
            backoff.failed();
            down_logged = true;
        }
        if scratch.capacity() > 4 << 20 {
            scratch = Vec::new();
        }
    }
    close(conn);
    link.set_socket(StreamKind::Message, None);
    tracing::debug!(peer = %peer, "message writer stopped");
}

/// Closes a message stream without flushing what is buffered (the stream failed or is stale).
fn close(conn: Option<(BufWriter<PeerStream>, u64)>) {
    if let Some((w, _)) = conn {
        let (s, _unsent) = w.into_parts();
        let _ = s.socket().shutdown(Shutdown::Both);
    }
}

/// Encodes and writes one message; a message over the frame limit is dropped (and the peer
/// reported unreachable) without failing the stream.
fn write_message(
    shared: &Shared,
    link: &Link,
    w: &mut BufWriter<PeerStream>,
    m: &Message,
    scratch: &mut Vec<u8>,
) -> Result<(), TransportError> {
    scratch.clear();
    *scratch = match postcard::to_extend(m, std::mem::take(scratch)) {
        Ok(v) => v,
        Err(e) => {
            tracing::error!(peer = %format_args!("{:x}", link.id), msg_type = %m.msg_type, "cannot encode message: {e}");
            shared.report(PeerEvent::Unreachable(link.id));
            return Ok(());
        }
    };
    if scratch.len() > shared.config.max_frame_len {
        tracing::error!(
            peer = %format_args!("{:x}", link.id),
            msg_type = %m.msg_type,
            bytes = scratch.len(),
            max = shared.config.max_frame_len,
            "message over the frame limit dropped"
        );
        shared.report(PeerEvent::Unreachable(link.id));
        return Ok(());
    }
    wire::write_frame(w, scratch)?;
    if let Some(sent) = &link.sent_bytes {
        sent.inc_by((wire::FRAME_HEADER_LEN + scratch.len()) as u64);
    }
    Ok(())
}

/// The snapshot sender: one connection per snapshot, reporting each outcome.
fn snapshot_sender(shared: &Shared, link: &Link, rx: &Receiver<Message>, stop_rx: &Receiver<()>) {
    let peer = format!("{:x}", link.id);
    loop {
        let m = select! {
            recv(rx) -> m => match m {
                Ok(m) => m,
                Err(_) => break,
            },
            recv(stop_rx) -> _ => break,
        };
        if link.is_stopped() {
            break;
        }
        let index = m.snapshot.as_ref().map_or(0, |s| s.metadata.index);
        let started = Instant::now();
        let result = send_snapshot(shared, link, m);
        link.set_socket(StreamKind::Snapshot, None);
        let failed = match result {
            Ok(bytes) => {
                tracing::info!(peer = %peer, index, bytes, elapsed = ?started.elapsed(), "snapshot sent");
                false
            }
            Err(e) => {
                if link.is_stopped() {
                    break;
                }
                tracing::warn!(peer = %peer, index, "sending snapshot failed: {e}");
                shared.report(PeerEvent::Unreachable(link.id));
                true
            }
        };
        let status = PeerEvent::SnapshotStatus {
            to: link.id,
            failed,
        };
        if !shared.deliver(status, &|| link.is_stopped()) {
            break;
        }
    }
    link.set_socket(StreamKind::Snapshot, None);
    tracing::debug!(peer = %peer, "snapshot sender stopped");
}

/// Where a snapshot's data comes from: the message itself, or the sender's snapshot file.
enum SnapshotData {
    Memory(Vec<u8>),
    File(std::fs::File, u64),
}

impl SnapshotData {
    /// The data of `m`: taken out of the message, or opened from the snapshot file when the
    /// transport streams files (no file: the empty bootstrap snapshot; for any other
    /// snapshot a missing file is an error).
    fn take(shared: &Shared, m: &mut Message) -> Result<SnapshotData, TransportError> {
        let Some(snap) = m.snapshot.as_mut() else {
            return Ok(SnapshotData::Memory(Vec::new()));
        };
        let data = std::mem::take(&mut snap.data);
        let Some(paths) = &shared.config.snapshot_files else {
            return Ok(SnapshotData::Memory(data));
        };
        if !data.is_empty() {
            return Ok(SnapshotData::Memory(data));
        }
        match crate::snapshot::open_db(paths, snap.metadata.term, snap.metadata.index)
            .map_err(io_err)?
        {
            Some(f) => {
                let len = f.metadata().map_err(io_err)?.len();
                Ok(SnapshotData::File(f, len))
            }
            None => Ok(SnapshotData::Memory(Vec::new())),
        }
    }

    fn len(&self) -> u64 {
        match self {
            SnapshotData::Memory(d) => d.len() as u64,
            SnapshotData::File(_, len) => *len,
        }
    }

    /// Writes the data as chunk frames of at most `chunk` bytes, checking `stop` between them.
    fn write_chunks(
        &mut self,
        w: &mut impl Write,
        chunk: usize,
        stop: &dyn Fn() -> bool,
    ) -> Result<(), TransportError> {
        let stopped =
            || -> TransportError { WireError::Protocol("transport stopped".into()).into() };
        match self {
            SnapshotData::Memory(data) => {
                for c in data.chunks(chunk) {
                    if stop() {
                        return Err(stopped());
                    }
                    wire::write_frame(w, c)?;
                }
            }
            SnapshotData::File(f, len) => {
                let mut buf = vec![0u8; chunk];
                let mut left = *len;
                while left > 0 {
                    if stop() {
                        return Err(stopped());
                    }
                    let n = usize::try_from(left).unwrap_or(usize::MAX).min(chunk);
                    f.read_exact(&mut buf[..n]).map_err(io_err)?;
                    wire::write_frame(w, &buf[..n])?;
                    left -= n as u64;
                }
            }
        }
        Ok(())
    }
}

/// Sends one `MsgSnap` and waits for the receiver's ack; returns the data's size.
fn send_snapshot(shared: &Shared, link: &Link, mut m: Message) -> Result<u64, TransportError> {
    let cfg = &shared.config;
    let mut data = SnapshotData::take(shared, &mut m)?;
    let data_len = data.len();
    let header = SnapshotHeader {
        message: m,
        data_len,
    };
    let header = postcard::to_allocvec(&header).map_err(WireError::from)?;
    if header.len() > cfg.max_frame_len {
        return Err(WireError::FrameTooLarge {
            len: header.len(),
            max: cfg.max_frame_len,
        }
        .into());
    }
    let mut stream = dial(shared, link, StreamKind::Snapshot)?;
    let mut w = BufWriter::with_capacity(64 << 10, &mut stream);
    let written = (|| {
        wire::write_frame(&mut w, &header)?;
        data.write_chunks(
            &mut w,
            cfg.snapshot_chunk_len.min(cfg.max_frame_len).max(1),
            &|| link.is_stopped() || shared.is_stopped(),
        )?;
        w.flush().map_err(io_err)
    })();
    // Never flush on drop: after a failure that could block for the write timeout again.
    let _ = w.into_parts();
    if let Err(e) = written {
        let _ = stream.socket().shutdown(Shutdown::Both);
        return Err(e);
    }
    stream
        .socket()
        .set_read_timeout(Some(cfg.snapshot_timeout))
        .map_err(io_err)?;
    let mut ack = [0u8; 1];
    let read = stream.read_exact(&mut ack).map_err(io_err);
    let _ = stream.socket().shutdown(Shutdown::Both);
    read?;
    if ack[0] != SNAPSHOT_ACK {
        return Err(WireError::Protocol(format!("bad snapshot ack {:#04x}", ack[0])).into());
    }
    Ok(data_len)
}
