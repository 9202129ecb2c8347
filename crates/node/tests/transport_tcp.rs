//! The TCP peer transport on real sockets (127.0.0.1, ephemeral ports): ordered delivery,
//! unreachable peers, reconnection, cluster isolation, large snapshots, queue overflow,
//! corrupt input, and all of it over TLS for https peer URLs (certificates made here with
//! rcgen). Every wait is bounded.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use node::membership::{ClusterInfo, Member};
use node::snapshot::DataPaths;
use node::tls::{TlsInfo, self_cert};
use node::transport::tcp::wire::{
    self, Handshake, HandshakeReply, HandshakeStatus, PROTOCOL_VERSION, REPLY_LEN, StreamKind,
};
use node::transport::tcp::{
    ListenAddr, ListenSocket, PeerTls, PeerUrl, TcpConfig, TcpTransport, TransportError,
    fetch_cluster, fetch_cluster_with, listen_addrs, listen_endpoints, url_host_port,
};
use node::transport::{PeerEvent, Transport};
use raft_core::raftpb::{Entry, EntryType, Message, MessageType, Snapshot};

const CLUSTER: u64 = 0xc1u64;
const WAIT: Duration = Duration::from_secs(10);

fn localhost() -> Vec<SocketAddr> {
    vec!["127.0.0.1:0".parse().unwrap()]
}

fn start_cfg(id: u64, cluster: u64, cfg: TcpConfig) -> (TcpTransport, Receiver<PeerEvent>) {
    let (tx, rx) = crossbeam_channel::unbounded();
    let t = TcpTransport::start_with_config(id, cluster, localhost(), tx, cfg).unwrap();
    (t, rx)
}

fn start(id: u64, cluster: u64) -> (TcpTransport, Receiver<PeerEvent>) {
    start_cfg(id, cluster, fast_config())
}

fn fast_config() -> TcpConfig {
    TcpConfig {
        backoff_min: Duration::from_millis(20),
        backoff_max: Duration::from_millis(200),
        ..TcpConfig::default()
    }
}

fn url(t: &TcpTransport) -> String {
    format!("http://{}", t.local_addrs()[0])
}

/// A free port on 127.0.0.1 ([`testkit::ports`]).
fn free_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], testkit::free_port().unwrap()))
}

fn app(from: u64, to: u64, index: u64) -> Message {
    let mut m = Message::new(MessageType::MsgApp, from, to);
    m.term = 3;
    m.index = index;
    m.entries = vec![Entry::new(
        3,
        index + 1,
        EntryType::Normal,
        format!("entry {from}->{to} #{index}").into_bytes(),
    )];
    m
}

/// Message events until `n` arrived or `timeout` passed.
fn recv_messages(rx: &Receiver<PeerEvent>, n: usize, timeout: Duration) -> Vec<Message> {
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    while out.len() < n {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(PeerEvent::Message(m)) => out.push(m),
            Ok(_) => {}
            Err(_) => break,
        }
    }
    out
}

/// The first event matching `pred` within `timeout`.
/// Waits for the next snapshot status report and checks that it is for `to`, `failed` or not.
fn assert_snapshot_status(rx: &Receiver<PeerEvent>, to: u64, failed: bool) {
    let status = wait_event(rx, WAIT, |e| matches!(e, PeerEvent::SnapshotStatus { .. }));
    assert!(
        matches!(status, Some(PeerEvent::SnapshotStatus { to: t, failed: f }) if t == to && f == failed),
        "{status:?}"
    );
}

fn wait_event(
    rx: &Receiver<PeerEvent>,
    timeout: Duration,
    pred: impl Fn(&PeerEvent) -> bool,
) -> Option<PeerEvent> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(ev) if pred(&ev) => return Some(ev),
            Ok(_) => {}
            Err(_) => return None,
        }
    }
}

#[test]
fn urls_parse() {
    assert_eq!(
        url_host_port("http://127.0.0.1:2380").unwrap(),
        "127.0.0.1:2380"
    );
    assert_eq!(url_host_port("https://[::1]:2380/x").unwrap(), "[::1]:2380");
    assert_eq!(url_host_port("node-1:2380").unwrap(), "node-1:2380");
    assert!(url_host_port("http://127.0.0.1").is_err());
    assert!(url_host_port("ftp://127.0.0.1:21").is_err());
    assert!(url_host_port("http://:2380").is_err());
    let addrs = listen_addrs(&["http://127.0.0.1:2380".to_string()]).unwrap();
    assert_eq!(addrs, vec!["127.0.0.1:2380".parse().unwrap()]);

    // The scheme decides TLS.
    assert!(PeerUrl::parse("https://127.0.0.1:2380").unwrap().tls);
    assert!(!PeerUrl::parse("http://127.0.0.1:2380").unwrap().tls);
    assert!(!PeerUrl::parse("node-1:2380").unwrap().tls);
    let endpoints = listen_endpoints(&[
        "https://127.0.0.1:2380".to_string(),
        "http://127.0.0.1:2381".to_string(),
    ])
    .unwrap();
    assert_eq!(
        endpoints,
        vec![
            ListenAddr {
                socket: ListenSocket::Tcp("127.0.0.1:2380".parse().unwrap()),
                tls: true
            },
            ListenAddr {
                socket: ListenSocket::Tcp("127.0.0.1:2381".parse().unwrap()),
                tls: false
            },
        ]
    );

    // Unix sockets, as etcd takes them: the socket is the URL's host and path.
    let unix = PeerUrl::parse("unix://etcd.unix:1").unwrap();
    assert!(unix.unix && !unix.tls);
    assert_eq!(unix.host_port, "etcd.unix:1");
    assert!(PeerUrl::parse("unixs:///run/peer.sock").unwrap().tls);
    assert!(PeerUrl::parse("unix://").is_err());
    assert_eq!(
        listen_endpoints(&["unixs:///run/peer.sock".to_string()]).unwrap(),
        vec![ListenAddr {
            socket: ListenSocket::Unix("/run/peer.sock".into()),
            tls: true
        }]
    );
    assert!(
        listen_addrs(&["unix:///run/peer.sock".to_string()])
            .unwrap()
            .is_empty()
    );
}

#[test]
fn two_transports_exchange_messages_in_order() {
    let (a, arx) = start(1, CLUSTER);
    let (b, brx) = start(2, CLUSTER);
    exchange_in_order(&a, &arx, url(&a), &b, &brx, url(&b));
    a.stop();
    b.stop();
}

/// Members 1 (`a`, at `a_url`) and 2 (`b`) send each other 2 000 messages in chunks, both
/// ways at once; each receives the other's in order.
fn exchange_in_order(
    a: &TcpTransport,
    arx: &Receiver<PeerEvent>,
    a_url: String,
    b: &TcpTransport,
    brx: &Receiver<PeerEvent>,
    b_url: String,
) {
    a.add_peer(2, &[b_url]);
    b.add_peer(1, &[a_url]);
    const N: u64 = 2000;
    for chunk in (0..N).collect::<Vec<_>>().chunks(100) {
        a.send(chunk.iter().map(|&i| app(1, 2, i)).collect());
        b.send(chunk.iter().map(|&i| app(2, 1, i)).collect());
    }
    let at_b = recv_messages(brx, N as usize, WAIT);
    let at_a = recv_messages(arx, N as usize, WAIT);
    // The first message triggers the dial; the rest wait in the queue meanwhile.
    assert_eq!(at_b, (0..N).map(|i| app(1, 2, i)).collect::<Vec<_>>());
    assert_eq!(at_a, (0..N).map(|i| app(2, 1, i)).collect::<Vec<_>>());
}

#[test]
fn three_transports_full_mesh() {
    let nodes: Vec<_> = (1..=3).map(|id| start(id, CLUSTER)).collect();
    for (t, _) in &nodes {
        for (p, _) in &nodes {
            if p.local_id() != t.local_id() {
                t.add_peer(p.local_id(), &[url(p)]);
            }
        }
    }
    const N: u64 = 300;
    for i in 0..N {
        for (t, _) in &nodes {
            let from = t.local_id();
            t.send(
                (1..=3)
                    .filter(|&to| to != from)
                    .map(|to| app(from, to, i))
                    .collect(),
            );
        }
    }
    for (t, rx) in &nodes {
        let got = recv_messages(rx, 2 * N as usize, WAIT);
        assert_eq!(got.len(), 2 * N as usize, "node {}", t.local_id());
        for from in (1..=3).filter(|&f| f != t.local_id()) {
            let from_peer: Vec<u64> = got
                .iter()
                .filter(|m| m.from == from)
                .map(|m| m.index)
                .collect();
            assert_eq!(
                from_peer,
                (0..N).collect::<Vec<_>>(),
                "{from} -> {}",
                t.local_id()
            );
        }
    }
}

#[test]
fn down_peer_is_unreachable_and_send_does_not_block() {
    let (a, arx) = start(1, CLUSTER);
    a.add_peer(2, &[format!("http://{}", free_addr())]);
    let started = Instant::now();
    for i in 0..20_000 {
        a.send(vec![app(1, 2, i)]);
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "send blocked: {:?}",
        started.elapsed()
    );
    assert!(wait_event(&arx, WAIT, |e| matches!(e, PeerEvent::Unreachable(2))).is_some());
    // Unknown peers are reported too.
    a.send(vec![app(1, 9, 0)]);
    assert!(wait_event(&arx, WAIT, |e| matches!(e, PeerEvent::Unreachable(9))).is_some());
    let started = Instant::now();
    a.stop();
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[test]
fn peer_coming_up_later_receives_after_reconnect() {
    let (a, arx) = start(1, CLUSTER);
    let addr = free_addr();
    a.add_peer(2, &[format!("http://{addr}")]);
    a.send(vec![app(1, 2, 0)]);
    assert!(wait_event(&arx, WAIT, |e| matches!(e, PeerEvent::Unreachable(2))).is_some());

    let (tx, brx) = crossbeam_channel::unbounded();
    let b = TcpTransport::start_with_config(2, CLUSTER, vec![addr], tx, fast_config()).unwrap();
    // Keep sending until one arrives (the writer is backed off for up to backoff_max).
    let deadline = Instant::now() + WAIT;
    let mut first = None;
    let mut i = 1;
    while first.is_none() && Instant::now() < deadline {
        a.send(vec![app(1, 2, i)]);
        i += 1;
        first = recv_messages(&brx, 1, Duration::from_millis(50)).pop();
    }
    let first = first.expect("no delivery after the peer came up");
    // Connected now: the next messages arrive in order after whatever was in flight.
    for j in 1000..1100 {
        a.send(vec![app(1, 2, j)]);
    }
    let deadline = Instant::now() + WAIT;
    let mut rest = Vec::new();
    while rest.last() != Some(&1099) && Instant::now() < deadline {
        rest.extend(
            recv_messages(&brx, 1, Duration::from_millis(100))
                .iter()
                .map(|m| m.index),
        );
    }
    assert!(first.index >= 1);
    rest.retain(|&x| x >= 1000);
    assert_eq!(rest, (1000..1100).collect::<Vec<_>>());
    drop(b);
}

#[test]
fn wrong_cluster_is_rejected() {
    let (a, arx) = start(1, CLUSTER);
    let (b, brx) = start(2, CLUSTER + 1);
    a.add_peer(2, &[url(&b)]);
    b.add_peer(1, &[url(&a)]);
    for i in 0..5 {
        a.send(vec![app(1, 2, i)]);
        b.send(vec![app(2, 1, i)]);
        std::thread::sleep(Duration::from_millis(60));
    }
    assert!(wait_event(&arx, WAIT, |e| matches!(e, PeerEvent::Unreachable(2))).is_some());
    assert!(recv_messages(&brx, 1, Duration::from_millis(500)).is_empty());
    assert!(recv_messages(&arx, 1, Duration::from_millis(100)).is_empty());

    // On the wire: the listener answers ClusterMismatch.
    let mut s = TcpStream::connect(b.local_addrs()[0]).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    let hs = Handshake {
        version: PROTOCOL_VERSION,
        kind: StreamKind::Message,
        cluster_id: CLUSTER,
        from: 1,
        to: 2,
    };
    s.write_all(&hs.encode()).unwrap();
    let mut buf = [0u8; REPLY_LEN];
    s.read_exact(&mut buf).unwrap();
    let reply = HandshakeReply::decode(&buf).unwrap();
    assert_eq!(reply.status, HandshakeStatus::ClusterMismatch);
    assert_eq!(reply.cluster_id, CLUSTER + 1);
    assert_eq!(
        s.read(&mut [0u8; 1]).unwrap_or(0),
        0,
        "connection closed after rejection"
    );
}

fn snapshot_message(from: u64, to: u64, len: usize) -> Message {
    let mut data = Vec::with_capacity(len);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    while data.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        data.extend_from_slice(&x.to_le_bytes());
    }
    data.truncate(len);
    let mut m = Message::new(MessageType::MsgSnap, from, to);
    m.term = 5;
    let mut snap = Snapshot {
        data,
        ..Snapshot::default()
    };
    snap.metadata.index = 1234;
    snap.metadata.term = 5;
    snap.metadata.conf_state.voters = vec![1, 2, 3];
    m.snapshot = Some(snap);
    m
}

/// With snapshot files, the data goes from the sender's `.snap.db` file into the receiver's
/// without being held in a message: the delivered `MsgSnap` has empty data and the file is
/// there, whole, before the message is delivered.
#[test]
fn snapshot_files_are_streamed_file_to_file() {
    let dir_a = tempfile::tempdir().unwrap();
    let dir_b = tempfile::tempdir().unwrap();
    let paths_a = DataPaths::new(dir_a.path());
    let paths_b = DataPaths::new(dir_b.path());
    let with_files = |paths: &DataPaths| TcpConfig {
        snapshot_files: Some(paths.clone()),
        snapshot_chunk_len: 64 << 10,
        ..fast_config()
    };
    let (a, arx) = start_cfg(1, CLUSTER, with_files(&paths_a));
    let (b, brx) = start_cfg(2, CLUSTER, with_files(&paths_b));
    assert!(a.streams_snapshot_files());
    a.add_peer(2, &[url(&b)]);

    let mut snap = snapshot_message(1, 2, 3 << 20);
    let data = std::mem::take(&mut snap.snapshot.as_mut().unwrap().data);
    std::fs::create_dir_all(&paths_a.snap).unwrap();
    std::fs::write(paths_a.db_file(5, 1234), &data).unwrap();
    a.send(vec![snap.clone()]);
    let got = recv_messages(&brx, 1, Duration::from_secs(30));
    assert_eq!(got.len(), 1);
    assert!(got[0] == snap, "the message arrives without data");
    assert_eq!(std::fs::read(paths_b.db_file(5, 1234)).unwrap(), data);
    assert!(!paths_b.db_file(5, 1234).with_extension("db.part").exists());
    assert_snapshot_status(&arx, 2, false);

    // No file (the bootstrap snapshot): an empty snapshot, no file on the receiver.
    let mut empty = snapshot_message(1, 2, 0);
    empty.snapshot.as_mut().unwrap().metadata.index = 1;
    a.send(vec![empty.clone()]);
    let got = recv_messages(&brx, 1, WAIT);
    assert!(got.first() == Some(&empty));
    assert!(!paths_b.db_file(5, 1).exists());
    assert_snapshot_status(&arx, 2, false);

    // Any other snapshot whose file is gone is not sent (as empty data it would wipe the
    // receiver's state): the send fails and nothing arrives.
    let mut lost = snapshot_message(1, 2, 0);
    lost.snapshot.as_mut().unwrap().metadata.index = 4321;
    a.send(vec![lost]);
    assert_snapshot_status(&arx, 2, true);
    assert!(recv_messages(&brx, 1, Duration::from_millis(500)).is_empty());
}

/// A members query (a member joining a running cluster) is answered `NotReady` until the node
/// registered its membership, then with the cluster id and the members.
#[test]
fn members_query_answers_once_a_source_is_set() {
    let (a, _arx) = start(1, CLUSTER);
    let err = fetch_cluster(&[url(&a)], Duration::from_millis(300)).unwrap_err();
    assert!(err.to_string().contains("NotReady"), "{err}");
    let member = Member {
        id: 1,
        name: "a".into(),
        peer_urls: vec![url(&a)],
        client_urls: vec!["http://127.0.0.1:2379".into()],
        is_learner: false,
    };
    let listed = vec![member.clone()];
    a.set_members_source(std::sync::Arc::new(move || listed.clone()));
    let info = fetch_cluster(&[format!("http://{}", free_addr()), url(&a)], WAIT).unwrap();
    assert_eq!(
        info,
        ClusterInfo {
            cluster_id: CLUSTER,
            members: vec![member]
        }
    );
}

#[test]
fn twenty_mib_snapshot_arrives_intact_and_is_reported() {
    let (a, arx) = start(1, CLUSTER);
    let (b, brx) = start(2, CLUSTER);
    a.add_peer(2, &[url(&b)]);
    let snap = snapshot_message(1, 2, 20 << 20);
    a.send(vec![snap.clone(), app(1, 2, 7)]);
    let got = recv_messages(&brx, 2, Duration::from_secs(30));
    assert_eq!(got.len(), 2);
    let received = got
        .iter()
        .find(|m| m.msg_type == MessageType::MsgSnap)
        .unwrap();
    assert!(received == &snap, "snapshot differs");
    assert!(got.iter().any(|m| m == &app(1, 2, 7)));
    assert_snapshot_status(&arx, 2, false);

    // To a peer that is down: a failure report.
    a.add_peer(3, &[format!("http://{}", free_addr())]);
    a.send(vec![snapshot_message(1, 3, 1 << 10)]);
    assert_snapshot_status(&arx, 3, true);
}

#[test]
fn queue_overflow_drops_instead_of_blocking() {
    // A "peer" that accepts TCP but never answers the handshake: the writer is stuck dialing.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let (a, arx) = start_cfg(
        1,
        CLUSTER,
        TcpConfig {
            queue_len: 16,
            handshake_timeout: Duration::from_secs(5),
            stop_timeout: Duration::from_secs(8),
            ..fast_config()
        },
    );
    a.add_peer(2, &[format!("http://{}", silent.local_addr().unwrap())]);
    let started = Instant::now();
    for i in 0..10_000 {
        a.send(vec![app(1, 2, i)]);
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "send blocked: {:?}",
        started.elapsed()
    );
    let unreachable = arx
        .try_iter()
        .filter(|e| matches!(e, PeerEvent::Unreachable(2)))
        .count();
    assert!(
        unreachable >= 10_000 - 17,
        "only {unreachable} drops reported"
    );
    // Stopping interrupts the stuck handshake.
    let started = Instant::now();
    a.stop();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "stop took {:?}",
        started.elapsed()
    );
}

fn raw_stream(to: &TcpTransport) -> TcpStream {
    let mut s = TcpStream::connect(to.local_addrs()[0]).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    let hs = Handshake {
        version: PROTOCOL_VERSION,
        kind: StreamKind::Message,
        cluster_id: CLUSTER,
        from: 1,
        to: to.local_id(),
    };
    s.write_all(&hs.encode()).unwrap();
    let mut buf = [0u8; REPLY_LEN];
    s.read_exact(&mut buf).unwrap();
    assert_eq!(
        HandshakeReply::decode(&buf).unwrap().status,
        HandshakeStatus::Accepted
    );
    s
}

/// Whether the peer closed `s` (EOF or reset) within the read timeout.
fn closed_by_peer(s: &mut TcpStream) -> bool {
    match s.read(&mut [0u8; 16]) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    }
}

#[test]
fn corrupt_frames_close_the_connection_only() {
    let (b, brx) = start(2, CLUSTER);

    // A valid frame is delivered; a frame with a bad checksum closes the stream.
    let mut s = raw_stream(&b);
    let mut frame = Vec::new();
    wire::write_frame(&mut frame, &postcard::to_allocvec(&app(1, 2, 1)).unwrap()).unwrap();
    s.write_all(&frame).unwrap();
    assert_eq!(recv_messages(&brx, 1, WAIT), vec![app(1, 2, 1)]);
    let mut bad = frame.clone();
    *bad.last_mut().unwrap() ^= 0xff;
    s.write_all(&bad).unwrap();
    assert!(closed_by_peer(&mut s));

    // A checksummed frame that is not a message.
    let mut s = raw_stream(&b);
    let mut frame = Vec::new();
    wire::write_frame(&mut frame, &[0xff; 40]).unwrap();
    s.write_all(&frame).unwrap();
    assert!(closed_by_peer(&mut s));

    // A frame over the size limit.
    let mut s = raw_stream(&b);
    s.write_all(&u32::MAX.to_le_bytes()).unwrap();
    s.write_all(&[0u8; 4]).unwrap();
    assert!(closed_by_peer(&mut s));

    // Not a handshake at all.
    let mut s = TcpStream::connect(b.local_addrs()[0]).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(b"GET /raft/stream/message/1 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .unwrap();
    assert!(closed_by_peer(&mut s));

    // A handshake cut short.
    let mut s = TcpStream::connect(b.local_addrs()[0]).unwrap();
    s.write_all(b"FRCD").unwrap();
    drop(s);

    // The receiver is unharmed: a real peer still gets through.
    let (a, _arx) = start(1, CLUSTER);
    a.add_peer(2, &[url(&b)]);
    a.send(vec![app(1, 2, 2)]);
    assert_eq!(recv_messages(&brx, 1, WAIT), vec![app(1, 2, 2)]);
    assert!(recv_messages(&brx, 1, Duration::from_millis(100)).is_empty());
}

#[test]
fn update_and_remove_peer() {
    let (a, arx) = start(1, CLUSTER);
    let (b, brx) = start(2, CLUSTER);
    a.add_peer(2, &[format!("http://{}", free_addr())]);
    a.send(vec![app(1, 2, 0)]);
    assert!(wait_event(&arx, WAIT, |e| matches!(e, PeerEvent::Unreachable(2))).is_some());

    a.update_peer(2, &[url(&b)]);
    let deadline = Instant::now() + WAIT;
    let mut got = Vec::new();
    let mut i = 1;
    while got.is_empty() && Instant::now() < deadline {
        a.send(vec![app(1, 2, i)]);
        i += 1;
        got = recv_messages(&brx, 1, Duration::from_millis(50));
    }
    assert_eq!(got.len(), 1, "no delivery after update_peer");

    a.remove_peer(2);
    assert!(!a.has_peer(2));
    while arx.try_recv().is_ok() {}
    a.send(vec![app(1, 2, 99)]);
    assert!(wait_event(&arx, WAIT, |e| matches!(e, PeerEvent::Unreachable(2))).is_some());
    assert!(
        recv_messages(&brx, 100, Duration::from_millis(300))
            .iter()
            .all(|m| m.index != 99)
    );
}

#[test]
fn stop_is_bounded_and_idempotent() {
    let (a, _arx) = start(1, CLUSTER);
    let (b, _brx) = start(2, CLUSTER);
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    a.add_peer(2, &[url(&b)]);
    a.add_peer(3, &[format!("http://{}", silent.local_addr().unwrap())]);
    b.add_peer(1, &[url(&a)]);
    a.send((0..100).map(|i| app(1, 2, i)).collect());
    a.send(vec![app(1, 3, 0), snapshot_message(1, 3, 4 << 20)]);
    b.send((0..100).map(|i| app(2, 1, i)).collect());
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    a.stop();
    a.stop();
    b.stop();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "stop took {:?}",
        started.elapsed()
    );
    // Sends after stop are ignored without blocking.
    a.send(vec![app(1, 2, 0)]);
}

#[test]
fn corrupt_snapshot_chunk_is_not_delivered() {
    let (b, brx) = start(2, CLUSTER);
    let mut s = TcpStream::connect(b.local_addrs()[0]).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    let hs = Handshake {
        version: PROTOCOL_VERSION,
        kind: StreamKind::Snapshot,
        cluster_id: CLUSTER,
        from: 1,
        to: 2,
    };
    s.write_all(&hs.encode()).unwrap();
    let mut buf = [0u8; REPLY_LEN];
    s.read_exact(&mut buf).unwrap();
    assert_eq!(
        HandshakeReply::decode(&buf).unwrap().status,
        HandshakeStatus::Accepted
    );

    let mut m = snapshot_message(1, 2, 3000);
    let data = std::mem::take(&mut m.snapshot.as_mut().unwrap().data);
    let header = wire::SnapshotHeader {
        message: m,
        data_len: data.len() as u64,
    };
    let mut out = Vec::new();
    wire::write_frame(&mut out, &postcard::to_allocvec(&header).unwrap()).unwrap();
    wire::write_frame(&mut out, &data[..1000]).unwrap();
    let mut bad = Vec::new();
    wire::write_frame(&mut bad, &data[1000..]).unwrap();
    bad[wire::FRAME_HEADER_LEN + 5] ^= 0x40;
    out.extend_from_slice(&bad);
    s.write_all(&out).unwrap();
    assert!(closed_by_peer(&mut s), "no ack, connection closed");
    assert!(recv_messages(&brx, 1, Duration::from_millis(300)).is_empty());
}

// ---------------------------------------------------------------------------------------------
// TLS: https peer URLs.
// ---------------------------------------------------------------------------------------------

/// A CA and leaf certificates it signs (for 127.0.0.1 and localhost, server and client auth),
/// as PEM files in a temporary directory.
struct TestCa {
    dir: tempfile::TempDir,
    issuer: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
    ca_file: std::path::PathBuf,
}

impl TestCa {
    fn new(name: &str) -> TestCa {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let issuer =
            rcgen::CertifiedIssuer::self_signed(params, rcgen::KeyPair::generate().unwrap())
                .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, issuer.pem()).unwrap();
        TestCa {
            dir,
            issuer,
            ca_file,
        }
    }

    /// The TLS settings of member `name`: a leaf certificate of this CA, and this CA trusted.
    fn member(&self, name: &str) -> TlsInfo {
        let mut params =
            rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
                .unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.extended_key_usages = vec![
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let cert_file = self.dir.path().join(format!("{name}.pem"));
        let key_file = self.dir.path().join(format!("{name}-key.pem"));
        std::fs::write(&cert_file, cert.pem()).unwrap();
        std::fs::write(&key_file, key.serialize_pem()).unwrap();
        TlsInfo {
            cert_file,
            key_file,
            trusted_ca_file: Some(self.ca_file.clone()),
            ..TlsInfo::default()
        }
    }

    fn peer_tls(&self, name: &str) -> PeerTls {
        PeerTls::new(&self.member(name)).unwrap()
    }
}

fn tls_config(tls: &PeerTls) -> TcpConfig {
    TcpConfig {
        tls: Some(tls.clone()),
        ..fast_config()
    }
}

/// A transport listening on 127.0.0.1 for TLS (`tls_listener`) or plain TCP.
fn start_listening(
    id: u64,
    tls_listener: bool,
    cfg: TcpConfig,
) -> (TcpTransport, Receiver<PeerEvent>) {
    let (tx, rx) = crossbeam_channel::unbounded();
    let listen = ListenAddr {
        socket: ListenSocket::Tcp("127.0.0.1:0".parse().unwrap()),
        tls: tls_listener,
    };
    let t = TcpTransport::start_with_config(id, CLUSTER, [listen], tx, cfg).unwrap();
    (t, rx)
}

fn start_tls(id: u64, tls: &PeerTls) -> (TcpTransport, Receiver<PeerEvent>) {
    start_listening(id, true, tls_config(tls))
}

fn https_url(t: &TcpTransport) -> String {
    format!("https://{}", t.local_addrs()[0])
}

/// Warnings and errors logged by the transport, captured for the whole test binary.
mod logs {
    use std::fmt::Write as _;
    use std::sync::{Mutex, Once};

    use tracing::field::{Field, Visit};
    use tracing::span::{Attributes, Id, Record};
    use tracing::{Event, Level, Metadata, Subscriber};

    static LINES: Mutex<Vec<String>> = Mutex::new(Vec::new());

    struct Capture;

    struct Line(String);

    impl Visit for Line {
        fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }

    impl Subscriber for Capture {
        fn enabled(&self, metadata: &Metadata<'_>) -> bool {
            *metadata.level() <= Level::WARN
        }
        fn new_span(&self, _: &Attributes<'_>) -> Id {
            Id::from_u64(1)
        }
        fn record(&self, _: &Id, _: &Record<'_>) {}
        fn record_follows_from(&self, _: &Id, _: &Id) {}
        fn event(&self, event: &Event<'_>) {
            let mut line = Line(event.metadata().level().to_string());
            event.record(&mut line);
            LINES
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(line.0);
        }
        fn enter(&self, _: &Id) {}
        fn exit(&self, _: &Id) {}
    }

    pub fn capture() {
        static ONCE: Once = Once::new();
        ONCE.call_once(|| {
            let _ = tracing::subscriber::set_global_default(Capture);
        });
    }

    /// The captured lines containing every one of `parts`.
    pub fn matching(parts: &[&str]) -> Vec<String> {
        LINES
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .filter(|l| parts.iter().all(|p| l.contains(p)))
            .cloned()
            .collect()
    }
}

/// (a) Two members with certificates of one CA (which makes client certificates required)
/// exchange messages in order, both ways, over https peer URLs.
#[test]
fn tls_transports_exchange_messages_in_order() {
    let ca = TestCa::new("ca");
    let (a, arx) = start_tls(1, &ca.peer_tls("a"));
    let (b, brx) = start_tls(2, &ca.peer_tls("b"));
    exchange_in_order(&a, &arx, https_url(&a), &b, &brx, https_url(&b));
    a.stop();
    b.stop();
}

/// (b) Snapshots over TLS: in the message (with a message after it on the message stream),
/// and streamed file to file.
#[test]
fn tls_snapshots_arrive_intact() {
    let ca = TestCa::new("ca");
    let (a, arx) = start_tls(1, &ca.peer_tls("a"));
    let (b, brx) = start_tls(2, &ca.peer_tls("b"));
    a.add_peer(2, &[https_url(&b)]);
    let snap = snapshot_message(1, 2, 8 << 20);
    a.send(vec![snap.clone(), app(1, 2, 7)]);
    let got = recv_messages(&brx, 2, Duration::from_secs(30));
    assert_eq!(got.len(), 2);
    let received = got
        .iter()
        .find(|m| m.msg_type == MessageType::MsgSnap)
        .unwrap();
    assert!(received == &snap, "snapshot differs");
    assert!(got.iter().any(|m| m == &app(1, 2, 7)));
    assert_snapshot_status(&arx, 2, false);

    let dir_c = tempfile::tempdir().unwrap();
    let dir_d = tempfile::tempdir().unwrap();
    let (paths_c, paths_d) = (DataPaths::new(dir_c.path()), DataPaths::new(dir_d.path()));
    let with_files = |paths: &DataPaths, tls: PeerTls| TcpConfig {
        snapshot_files: Some(paths.clone()),
        snapshot_chunk_len: 64 << 10,
        ..tls_config(&tls)
    };
    let (c, crx) = start_listening(3, true, with_files(&paths_c, ca.peer_tls("c")));
    let (d, drx) = start_listening(4, true, with_files(&paths_d, ca.peer_tls("d")));
    c.add_peer(4, &[https_url(&d)]);
    let mut snap = snapshot_message(3, 4, 3 << 20);
    let data = std::mem::take(&mut snap.snapshot.as_mut().unwrap().data);
    std::fs::create_dir_all(&paths_c.snap).unwrap();
    std::fs::write(paths_c.db_file(5, 1234), &data).unwrap();
    c.send(vec![snap.clone()]);
    let got = recv_messages(&drx, 1, Duration::from_secs(30));
    assert_eq!(got.len(), 1);
    assert!(got[0] == snap, "the message arrives without data");
    assert_eq!(std::fs::read(paths_d.db_file(5, 1234)).unwrap(), data);
    assert_snapshot_status(&crx, 4, false);
}

/// (c) The members query over https, with the transport's TLS configuration; without one,
/// an https URL fails clearly.
#[test]
fn tls_members_query() {
    let ca = TestCa::new("ca");
    let (a, _arx) = start_tls(1, &ca.peer_tls("a"));
    let member = Member {
        id: 1,
        name: "a".into(),
        peer_urls: vec![https_url(&a)],
        client_urls: vec!["https://127.0.0.1:2379".into()],
        is_learner: false,
    };
    let listed = vec![member.clone()];
    a.set_members_source(std::sync::Arc::new(move || listed.clone()));
    let joining = tls_config(&ca.peer_tls("joining"));
    let info = fetch_cluster_with(
        &[format!("https://{}", free_addr()), https_url(&a)],
        WAIT,
        &joining,
    )
    .unwrap();
    assert_eq!(
        info,
        ClusterInfo {
            cluster_id: CLUSTER,
            members: vec![member]
        }
    );

    let err = fetch_cluster(&[https_url(&a)], Duration::from_millis(300)).unwrap_err();
    assert!(
        err.to_string().contains("no peer TLS is configured"),
        "{err}"
    );
    // A plain query to the TLS listener gets nothing.
    let err = fetch_cluster(&[url(&a)], Duration::from_millis(300)).unwrap_err();
    assert!(!err.to_string().contains("NotReady"), "{err}");
    // A member whose certificate another CA signed is refused.
    let other = TestCa::new("other");
    let mut foreign = other.member("foreign");
    foreign.trusted_ca_file = Some(ca.ca_file.clone());
    let foreign = tls_config(&PeerTls::new(&foreign).unwrap());
    assert!(fetch_cluster_with(&[https_url(&a)], Duration::from_millis(300), &foreign).is_err());
}

/// (d) With a trusted CA, a dialer whose certificate another CA signed is refused: the
/// accepting side logs it with the dialer's address and the rustls error, nothing is
/// delivered, the dialer reports the peer unreachable. So is a dialer without a certificate.
/// A dialer that does not trust the listener's CA refuses it in turn.
#[test]
fn tls_certificate_of_another_ca_is_refused() {
    logs::capture();
    let ca = TestCa::new("ca");
    let other = TestCa::new("other");
    let (b, brx) = start_tls(2, &ca.peer_tls("b"));

    // Trusts b's CA, but presents a certificate of another CA.
    let mut foreign = other.member("foreign");
    foreign.trusted_ca_file = Some(ca.ca_file.clone());
    let (a, arx) = start_tls(1, &PeerTls::new(&foreign).unwrap());
    a.add_peer(2, &[https_url(&b)]);
    for i in 0..5 {
        a.send(vec![app(1, 2, i), snapshot_message(1, 2, 1 << 10)]);
        std::thread::sleep(Duration::from_millis(60));
    }
    assert!(wait_event(&arx, WAIT, |e| matches!(e, PeerEvent::Unreachable(2))).is_some());
    assert_snapshot_status(&arx, 2, true);
    assert!(recv_messages(&brx, 1, Duration::from_millis(500)).is_empty());
    let deadline = Instant::now() + WAIT;
    let refused = loop {
        let lines = logs::matching(&[
            "WARN",
            "refused the TLS certificate of a peer connection",
            "addr=127.0.0.1:",
            "UnknownIssuer",
        ]);
        if !lines.is_empty() || Instant::now() >= deadline {
            break lines;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(
        !refused.is_empty(),
        "no warning about the refused certificate"
    );

    // A certificate is required, not just checked when offered: a dialer without one is
    // refused too.
    let mut roots = rustls::RootCertStore::empty();
    for cert in node::tls::load_certs(&ca.ca_file).unwrap() {
        roots.add(cert).unwrap();
    }
    #[allow(deprecated)]
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let anonymous = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let anonymous = PeerTls {
        client: std::sync::Arc::new(anonymous),
        ..ca.peer_tls("anonymous")
    };
    let (e, erx) = start_tls(5, &anonymous);
    e.add_peer(2, &[https_url(&b)]);
    e.send(vec![app(5, 2, 0)]);
    assert!(wait_event(&erx, WAIT, |e| matches!(e, PeerEvent::Unreachable(2))).is_some());
    assert!(recv_messages(&brx, 1, Duration::from_millis(300)).is_empty());

    // The other way round: the dialer trusts only the other CA, so b's certificate is refused.
    let mut distrusting = ca.member("distrusting");
    distrusting.trusted_ca_file = Some(other.ca_file.clone());
    let (c, crx) = start_tls(3, &PeerTls::new(&distrusting).unwrap());
    c.add_peer(2, &[https_url(&b)]);
    c.send(vec![app(3, 2, 0)]);
    assert!(wait_event(&crx, WAIT, |e| matches!(e, PeerEvent::Unreachable(2))).is_some());
    assert!(recv_messages(&brx, 1, Duration::from_millis(300)).is_empty());

    // b still serves members of its CA.
    let (d, _drx) = start_tls(4, &ca.peer_tls("d"));
    d.add_peer(2, &[https_url(&b)]);
    d.send(vec![app(4, 2, 1)]);
    assert_eq!(recv_messages(&brx, 1, WAIT), vec![app(4, 2, 1)]);
}

/// (e) The scheme must match on both sides: a plain dialer to a TLS listener and a TLS dialer
/// to a plain listener deliver nothing and report the peer unreachable; an https URL or
/// listener without a TLS configuration is an error.
#[test]
fn tls_and_plain_do_not_mix() {
    logs::capture();
    let ca = TestCa::new("ca");
    let tls_a = ca.peer_tls("a");
    let (tls_listener, tls_rx) = start_tls(2, &ca.peer_tls("b"));
    let (plain_listener, plain_rx) = start(3, CLUSTER);
    let (a, arx) = start_tls(1, &tls_a);
    // http:// to the TLS listener, https:// to the plain one.
    a.add_peer(2, &[url(&tls_listener)]);
    a.add_peer(3, &[https_url(&plain_listener)]);
    for i in 0..5 {
        a.send(vec![app(1, 2, i), app(1, 3, i)]);
        std::thread::sleep(Duration::from_millis(60));
    }
    assert!(wait_event(&arx, WAIT, |e| matches!(e, PeerEvent::Unreachable(2))).is_some());
    assert!(wait_event(&arx, WAIT, |e| matches!(e, PeerEvent::Unreachable(3))).is_some());
    assert!(recv_messages(&tls_rx, 1, Duration::from_millis(300)).is_empty());
    assert!(recv_messages(&plain_rx, 1, Duration::from_millis(300)).is_empty());
    // Both listeners say what is wrong.
    let deadline = Instant::now() + WAIT;
    while (logs::matching(&["not TLS on an https peer listener"]).is_empty()
        || logs::matching(&["a TLS connection on a plain (http) peer listener"]).is_empty())
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!logs::matching(&["WARN", "not TLS on an https peer listener"]).is_empty());
    assert!(
        !logs::matching(&["WARN", "a TLS connection on a plain (http) peer listener"]).is_empty()
    );

    // No TLS configuration: an https peer is unreachable, an https listener does not start.
    let (p, prx) = start(4, CLUSTER);
    p.add_peer(2, &[https_url(&tls_listener)]);
    p.send(vec![app(4, 2, 0)]);
    assert!(wait_event(&prx, WAIT, |e| matches!(e, PeerEvent::Unreachable(2))).is_some());
    assert!(recv_messages(&tls_rx, 1, Duration::from_millis(300)).is_empty());
    let (tx, _rx) = crossbeam_channel::unbounded();
    let listen = ListenAddr {
        socket: ListenSocket::Tcp("127.0.0.1:0".parse().unwrap()),
        tls: true,
    };
    let err = TcpTransport::start_with_config(5, CLUSTER, [listen], tx, fast_config())
        .err()
        .unwrap();
    assert!(
        matches!(err, TransportError::TlsNotConfigured { .. }),
        "{err}"
    );

    // Both listeners are unharmed.
    let (c, _crx) = start_tls(6, &ca.peer_tls("c"));
    c.add_peer(2, &[https_url(&tls_listener)]);
    c.add_peer(3, &[url(&plain_listener)]);
    c.send(vec![app(6, 2, 9), app(6, 3, 9)]);
    assert_eq!(recv_messages(&tls_rx, 1, WAIT), vec![app(6, 2, 9)]);
    assert_eq!(recv_messages(&plain_rx, 1, WAIT), vec![app(6, 3, 9)]);
}

/// (f) Auto TLS: self-signed certificates on both sides, encryption without verification.
#[test]
fn auto_tls_works() {
    let dir_a = tempfile::tempdir().unwrap();
    let dir_b = tempfile::tempdir().unwrap();
    let hosts = vec!["127.0.0.1".to_string(), "localhost".to_string()];
    let auto = |dir: &std::path::Path| PeerTls::new(&self_cert(dir, &hosts, 1).unwrap()).unwrap();
    let (a, arx) = start_tls(1, &auto(dir_a.path()));
    let (b, brx) = start_tls(2, &auto(dir_b.path()));
    a.add_peer(2, &[https_url(&b)]);
    b.add_peer(1, &[https_url(&a)]);
    a.send((0..100).map(|i| app(1, 2, i)).collect());
    b.send((0..100).map(|i| app(2, 1, i)).collect());
    assert_eq!(
        recv_messages(&brx, 100, WAIT),
        (0..100).map(|i| app(1, 2, i)).collect::<Vec<_>>()
    );
    assert_eq!(
        recv_messages(&arx, 100, WAIT),
        (0..100).map(|i| app(2, 1, i)).collect::<Vec<_>>()
    );
    a.send(vec![snapshot_message(1, 2, 1 << 20)]);
    assert_eq!(recv_messages(&brx, 1, WAIT).len(), 1);
    assert_snapshot_status(&arx, 2, false);
}

/// (g) `stop` returns promptly with TLS connections open: established streams, an inbound
/// connection that never starts its TLS handshake, and a dial stuck in a TLS handshake with a
/// listener that never answers.
#[test]
fn tls_stop_is_prompt_with_connections_open() {
    let ca = TestCa::new("ca");
    let slow = |tls: PeerTls| TcpConfig {
        handshake_timeout: Duration::from_secs(10),
        stop_timeout: Duration::from_secs(8),
        ..tls_config(&tls)
    };
    let (a, _arx) = start_listening(1, true, slow(ca.peer_tls("a")));
    let (b, brx) = start_listening(2, true, slow(ca.peer_tls("b")));
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    a.add_peer(2, &[https_url(&b)]);
    b.add_peer(1, &[https_url(&a)]);
    a.add_peer(3, &[format!("https://{}", silent.local_addr().unwrap())]);
    a.send((0..100).map(|i| app(1, 2, i)).collect());
    b.send((0..100).map(|i| app(2, 1, i)).collect());
    a.send(vec![app(1, 3, 0), snapshot_message(1, 3, 1 << 20)]);
    assert_eq!(recv_messages(&brx, 100, WAIT).len(), 100);
    let mut idle = TcpStream::connect(b.local_addrs()[0]).unwrap();
    idle.set_read_timeout(Some(WAIT)).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    a.stop();
    b.stop();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "stop took {:?}",
        started.elapsed()
    );
    assert!(closed_by_peer(&mut idle), "the idle connection was closed");
}

/// A TLS peer that stops reading: the writer's blocked write fails with the write timeout (it
/// must not end up waiting to *read* on its write-only stream), the peer is reported
/// unreachable, and the writer redials.
#[test]
fn tls_write_to_a_stalled_peer_times_out_and_redials() {
    let ca = TestCa::new("ca");
    let server = ca.peer_tls("b").server;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (accepted_tx, accepted_rx) = crossbeam_channel::unbounded();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        listener.set_nonblocking(true).unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline && held.len() < 2 {
            let Ok((s, _)) = listener.accept() else {
                std::thread::sleep(Duration::from_millis(10));
                continue;
            };
            s.set_nonblocking(false).unwrap();
            s.set_read_timeout(Some(WAIT)).unwrap();
            let conn = rustls::ServerConnection::new(server.clone()).unwrap();
            let mut tls = rustls::StreamOwned::new(conn, s);
            let mut hs = [0u8; wire::HANDSHAKE_LEN];
            if tls.read_exact(&mut hs).is_err() {
                continue;
            }
            let reply = HandshakeReply {
                version: PROTOCOL_VERSION,
                status: HandshakeStatus::Accepted,
                cluster_id: CLUSTER,
                id: 2,
            };
            tls.write_all(&reply.encode()).unwrap();
            tls.flush().unwrap();
            let _ = accepted_tx.send(());
            // Never read again.
            held.push(tls);
        }
    });
    let (a, arx) = start_listening(
        1,
        true,
        TcpConfig {
            write_timeout: Duration::from_millis(300),
            ..tls_config(&ca.peer_tls("a"))
        },
    );
    a.add_peer(2, &[format!("https://{addr}")]);
    let big = |i: u64| {
        let mut m = app(1, 2, i);
        m.entries[0].data = vec![0x5a; 1 << 20];
        m
    };
    a.send((0..64).map(big).collect());
    assert!(accepted_rx.recv_timeout(WAIT).is_ok(), "first connection");
    assert!(wait_event(&arx, WAIT, |e| matches!(e, PeerEvent::Unreachable(2))).is_some());
    // Keep traffic coming so that the writer redials once its backoff expires.
    let deadline = Instant::now() + WAIT;
    let mut redialed = false;
    let mut i = 64;
    while !redialed && Instant::now() < deadline {
        a.send(vec![app(1, 2, i)]);
        i += 1;
        redialed = accepted_rx.recv_timeout(Duration::from_millis(50)).is_ok();
    }
    assert!(redialed, "the writer is stuck on the stalled connection");
    let started = Instant::now();
    a.stop();
    assert!(started.elapsed() < Duration::from_secs(3));
}

/// A transport listening on the unix socket `path` (TLS only with `tls`, plain otherwise).
fn start_unix(id: u64, path: &Path, tls: Option<&PeerTls>) -> (TcpTransport, Receiver<PeerEvent>) {
    let (tx, rx) = crossbeam_channel::unbounded();
    let listen = ListenAddr {
        socket: ListenSocket::Unix(path.to_path_buf()),
        tls: tls.is_some(),
    };
    let cfg = tls.map_or_else(fast_config, tls_config);
    let t = TcpTransport::start_with_config(id, CLUSTER, [listen], tx, cfg).unwrap();
    (t, rx)
}

/// `unix://` and `unixs://` peer URLs (etcd's unix socket peers): messages both ways in order,
/// plain and over TLS; a stale socket file is replaced, and the files go with the transports.
#[test]
fn transports_exchange_messages_over_unix_sockets_plain_and_tls() {
    let dir = tempfile::tempdir().unwrap();
    let (pa, pb) = (dir.path().join("a.sock"), dir.path().join("b.sock"));
    std::fs::write(&pa, b"stale").unwrap();
    let (a, arx) = start_unix(1, &pa, None);
    let (b, brx) = start_unix(2, &pb, None);
    let unix = |p: &Path| format!("unix://{}", p.display());
    exchange_in_order(&a, &arx, unix(&pa), &b, &brx, unix(&pb));
    a.stop();
    b.stop();
    assert!(
        !pa.exists() && !pb.exists(),
        "socket files outlived the transports"
    );

    let ca = TestCa::new("ca");
    let (ta, tb) = (dir.path().join("ta.sock"), dir.path().join("tb.sock"));
    let (a, arx) = start_unix(1, &ta, Some(&ca.peer_tls("a")));
    let (b, brx) = start_unix(2, &tb, Some(&ca.peer_tls("b")));
    let unixs = |p: &Path| format!("unixs://{}", p.display());
    exchange_in_order(&a, &arx, unixs(&ta), &b, &brx, unixs(&tb));
    a.stop();
    b.stop();
}
