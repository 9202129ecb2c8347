//! Free TCP ports for a process that a test is about to start.
//!
//! The usual trick — bind port 0, read the port, close it, pass it on — races: the kernel
//! hands out the same ephemeral range for every `bind(…:0)` and for the source port of every
//! outgoing connection, so between the close and the child's bind another test's probe, or a
//! client's connection to an unrelated server, can take the port (the child then exits with
//! "address in use"). Ports here come from below the kernel's ephemeral range instead, from a
//! counter that never repeats a port within a process, and each one is checked by binding it on
//! 127.0.0.1 before it is returned. Processes that allocate at the same time start at different
//! offsets (derived from the pid and the clock).

use std::io;
use std::net::TcpListener;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

/// The lowest port handed out: clear of the well-known and most registered service ports.
const LOWEST: u16 = 10_000;

/// Fewer ports than this below the ephemeral range: use the kernel's own allocation.
const MIN_SPAN: u16 = 1_000;

/// Where the kernel's ephemeral range starts when `/proc` does not say (Linux's default).
const DEFAULT_EPHEMERAL_LOW: u16 = 32_768;

struct Allocator {
    lowest: u16,
    span: u16,
    next: AtomicU32,
}

fn allocator() -> Option<&'static Allocator> {
    static ALLOCATOR: OnceLock<Option<Allocator>> = OnceLock::new();
    ALLOCATOR
        .get_or_init(|| {
            let ephemeral_low = ephemeral_low().unwrap_or(DEFAULT_EPHEMERAL_LOW);
            let span = ephemeral_low.checked_sub(LOWEST)?;
            (span >= MIN_SPAN).then(|| Allocator {
                lowest: LOWEST,
                span,
                next: AtomicU32::new(start_offset(span)),
            })
        })
        .as_ref()
}

/// The first port of the kernel's ephemeral range (`ip_local_port_range`), if readable.
fn ephemeral_low() -> Option<u16> {
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    range.split_whitespace().next()?.parse().ok()
}

/// An offset into the span that differs between processes started at the same time.
fn start_offset(span: u16) -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let mix = std::process::id()
        .wrapping_mul(2_654_435_761)
        .wrapping_add(nanos);
    mix % u32::from(span)
}

/// A TCP port on 127.0.0.1 that is free now and that this process has not handed out before.
pub fn free_port() -> io::Result<u16> {
    let Some(a) = allocator() else {
        return kernel_port();
    };
    for _ in 0..a.span {
        let n = a.next.fetch_add(1, Ordering::Relaxed) % u32::from(a.span);
        // `n < span <= u16::MAX - LOWEST`: the sum fits.
        let port = a.lowest + u16::try_from(n).unwrap_or(0);
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AddrInUse,
        format!(
            "no free port in {}..{}",
            a.lowest,
            u32::from(a.lowest) + u32::from(a.span)
        ),
    ))
}

/// `n` distinct free ports (see [`free_port`]).
pub fn free_ports(n: usize) -> io::Result<Vec<u16>> {
    (0..n).map(|_| free_port()).collect()
}

/// A port from the kernel's ephemeral range: the fallback when there is no room below it.
fn kernel_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::collections::HashSet;
    use std::net::TcpListener;

    use super::*;

    #[test]
    fn ports_are_distinct_bindable_and_below_the_ephemeral_range() {
        let ports = free_ports(200).unwrap();
        assert_eq!(ports.iter().collect::<HashSet<_>>().len(), 200);
        let low = ephemeral_low().unwrap_or(DEFAULT_EPHEMERAL_LOW);
        for &p in &ports {
            if low >= LOWEST + MIN_SPAN {
                assert!((LOWEST..low).contains(&p), "{p}");
            }
            TcpListener::bind(("127.0.0.1", p)).unwrap();
        }
    }

    #[test]
    fn a_port_in_use_is_skipped() {
        let first = free_port().unwrap();
        // Hold the next ports the counter will reach: none of them may be returned.
        let held: Vec<TcpListener> = (1..=3)
            .filter_map(|d| TcpListener::bind(("127.0.0.1", first.wrapping_add(d))).ok())
            .collect();
        let held_ports: HashSet<u16> = held
            .iter()
            .map(|l| l.local_addr().unwrap().port())
            .collect();
        for _ in 0..10 {
            let p = free_port().unwrap();
            assert!(!held_ports.contains(&p), "{p} is held");
        }
    }

    #[test]
    fn threads_never_get_the_same_port() {
        let handles: Vec<_> = (0..8)
            .map(|_| std::thread::spawn(|| free_ports(50).unwrap()))
            .collect();
        let mut all = HashSet::new();
        for h in handles {
            for p in h.join().unwrap() {
                assert!(all.insert(p), "{p} handed out twice");
            }
        }
    }
}
