//! The fault-injecting proxy in the peer path.
//!
//! Every member advertises a peer URL that points at a [`Proxy`] owned by the harness, which
//! forwards to the member's real `--listen-peer-urls`. So every peer connection *to* member `i`
//! passes through proxy `i`. ferrocd's peer handshake (magic, version, kind, cluster, from, to)
//! names the dialing member, which tells the proxy which link a connection belongs to; the
//! [`Network`] then decides per link whether it is partitioned, delayed or lossy:
//!
//! - **partition**: new connections on a blocked link are refused and established ones are cut
//!   (checked on every frame and every 50 ms);
//! - **delay**: every frame is held back for the link's delay (order preserved);
//! - **loss**: on message streams each frame (one raft message) is dropped with the link's loss
//!   probability. Snapshot streams are only delayed or cut: a dropped chunk would corrupt the
//!   snapshot, and a corrupted snapshot is not the network fault being modelled.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep, sleep_until, timeout};

use crate::rng::Rng;

/// Bytes of ferrocd's peer handshake (`node::transport::tcp::wire::HANDSHAKE_LEN`).
const HANDSHAKE_LEN: usize = 31;
/// Bytes of a frame header: payload length and CRC, both u32 LE.
const FRAME_HEADER_LEN: usize = 8;
/// Frames larger than this are not parsed as messages (the connection is cut instead).
const MAX_FRAME: usize = 64 << 20;

/// Delay and loss of one member's links.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LinkFault {
    /// How long each frame is held back.
    pub delay: Duration,
    /// Probability that a raft message frame is dropped.
    pub loss: f64,
}

#[derive(Default)]
struct NetState {
    /// Member id → index, learned from the cluster's member list.
    index: HashMap<u64, usize>,
    /// Blocked links, as ordered pairs (low index, high index): partitions are symmetric.
    blocked: HashSet<(usize, usize)>,
    /// Per member: the delay and loss of all its links (a link takes the worse of its ends).
    faults: HashMap<usize, LinkFault>,
}

/// The harness's view of the peer network: which links are cut, delayed or lossy.
#[derive(Default)]
pub struct Network {
    state: Mutex<NetState>,
}

impl Network {
    fn lock(&self) -> MutexGuard<'_, NetState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records the member ids (index `i` has id `ids[i]`), so handshakes map to members.
    pub fn set_ids(&self, ids: &[u64]) {
        let mut s = self.lock();
        s.index = ids.iter().enumerate().map(|(i, id)| (*id, i)).collect();
    }

    /// Blocks every link between a member of `a` and a member of `b`.
    pub fn partition(&self, a: &[usize], b: &[usize]) {
        let mut s = self.lock();
        for &x in a {
            for &y in b {
                if x != y {
                    s.blocked.insert((x.min(y), x.max(y)));
                }
            }
        }
    }

    /// Sets the delay and loss of every link of member `i`.
    pub fn set_fault(&self, i: usize, fault: LinkFault) {
        self.lock().faults.insert(i, fault);
    }

    /// Heals every partition and clears every delay and loss.
    pub fn heal(&self) {
        let mut s = self.lock();
        s.blocked.clear();
        s.faults.clear();
    }

    fn member(&self, id: u64) -> Option<usize> {
        self.lock().index.get(&id).copied()
    }

    fn blocked(&self, from: Option<usize>, to: usize) -> bool {
        match from {
            Some(f) => self.lock().blocked.contains(&(f.min(to), f.max(to))),
            None => false,
        }
    }

    fn fault(&self, from: Option<usize>, to: usize) -> LinkFault {
        let s = self.lock();
        let a = from
            .and_then(|f| s.faults.get(&f))
            .copied()
            .unwrap_or_default();
        let b = s.faults.get(&to).copied().unwrap_or_default();
        LinkFault {
            delay: a.delay.max(b.delay),
            loss: a.loss.max(b.loss),
        }
    }
}

/// A proxy in front of one member's peer listener.
pub struct Proxy {
    /// The port the proxy listens on (the member's advertised peer port).
    pub port: u16,
    task: JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Proxy {
    /// Starts a proxy on a free port of 127.0.0.1 forwarding to `target`, member `to` of `net`.
    pub async fn start(
        net: Arc<Network>,
        to: usize,
        target: SocketAddr,
        rng: Rng,
    ) -> std::io::Result<Proxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let task = tokio::spawn(accept_loop(listener, net, to, target, rng));
        Ok(Proxy { port, task })
    }
}

async fn accept_loop(
    listener: TcpListener,
    net: Arc<Network>,
    to: usize,
    target: SocketAddr,
    mut rng: Rng,
) {
    // Dropped (and so every connection aborted) when the proxy's task is aborted.
    let mut conns = tokio::task::JoinSet::new();
    loop {
        let Ok((inbound, _)) = listener.accept().await else {
            sleep(Duration::from_millis(10)).await;
            continue;
        };
        while conns.try_join_next().is_some() {}
        let seed = rng.next_u64();
        conns.spawn(connection(inbound, net.clone(), to, target, Rng::new(seed)));
    }
}

/// Forwards one peer connection until it ends or its link is cut.
async fn connection(
    mut inbound: TcpStream,
    net: Arc<Network>,
    to: usize,
    target: SocketAddr,
    rng: Rng,
) {
    let mut hs = [0u8; HANDSHAKE_LEN];
    match timeout(Duration::from_secs(3), inbound.read_exact(&mut hs)).await {
        Ok(Ok(_)) => {}
        _ => return,
    }
    let from_id = u64::from_le_bytes([
        hs[15], hs[16], hs[17], hs[18], hs[19], hs[20], hs[21], hs[22],
    ]);
    let is_message_stream = hs[..4] == *b"FRCD" && hs[6] == 1;
    let from = net.member(from_id);
    if net.blocked(from, to) {
        return;
    }
    let Ok(Ok(mut outbound)) = timeout(Duration::from_secs(2), TcpStream::connect(target)).await
    else {
        return;
    };
    let _ = inbound.set_nodelay(true);
    let _ = outbound.set_nodelay(true);
    if outbound.write_all(&hs).await.is_err() {
        return;
    }
    let (in_r, in_w) = inbound.into_split();
    let (out_r, out_w) = outbound.into_split();
    let mut up = tokio::spawn(pump_up(
        in_r,
        out_w,
        net.clone(),
        from,
        to,
        is_message_stream,
        rng,
    ));
    let mut down = tokio::spawn(pump_raw(out_r, in_w, net.clone(), from, to));
    // Bounded by the connection's life: it ends when either side closes or the link is cut.
    loop {
        tokio::select! {
            _ = &mut up => break,
            _ = &mut down => break,
            _ = sleep(Duration::from_millis(50)) => {
                if net.blocked(from, to) {
                    break;
                }
            }
        }
    }
    up.abort();
    down.abort();
}

/// Dialer → listener: frames, each delayed and (on message streams) possibly dropped.
async fn pump_up(
    mut r: tokio::net::tcp::OwnedReadHalf,
    mut w: tokio::net::tcp::OwnedWriteHalf,
    net: Arc<Network>,
    from: Option<usize>,
    to: usize,
    message_stream: bool,
    mut rng: Rng,
) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let reader = {
        let net = net.clone();
        async move {
            // The handshake reply comes back on the other direction; here: frames, or (on a
            // snapshot stream) frames and raw chunks alike, forwarded as read.
            loop {
                let mut buf;
                if message_stream {
                    let mut header = [0u8; FRAME_HEADER_LEN];
                    if r.read_exact(&mut header).await.is_err() {
                        return;
                    }
                    let len =
                        u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
                    if len > MAX_FRAME {
                        return;
                    }
                    buf = Vec::with_capacity(FRAME_HEADER_LEN + len);
                    buf.extend_from_slice(&header);
                    buf.resize(FRAME_HEADER_LEN + len, 0);
                    if r.read_exact(&mut buf[FRAME_HEADER_LEN..]).await.is_err() {
                        return;
                    }
                } else {
                    buf = vec![0u8; 64 * 1024];
                    match r.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.truncate(n),
                    }
                }
                if net.blocked(from, to) {
                    return;
                }
                let fault = net.fault(from, to);
                if message_stream && fault.loss > 0.0 && rng.chance(fault.loss) {
                    continue;
                }
                if tx.send((Instant::now() + fault.delay, buf)).is_err() {
                    return;
                }
            }
        }
    };
    let writer = async move {
        while let Some((at, buf)) = rx.recv().await {
            sleep_until(at).await;
            if w.write_all(&buf).await.is_err() {
                return;
            }
        }
    };
    tokio::join!(reader, writer);
}

/// Listener → dialer (handshake reply, snapshot acks): copied as is while the link is up.
async fn pump_raw(
    mut r: tokio::net::tcp::OwnedReadHalf,
    mut w: tokio::net::tcp::OwnedWriteHalf,
    net: Arc<Network>,
    from: Option<usize>,
    to: usize,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match r.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if net.blocked(from, to) {
            return;
        }
        if w.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
