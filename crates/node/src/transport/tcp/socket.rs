//! The sockets a peer connection runs over: TCP (`http://`, `https://` peer URLs), or a unix
//! socket (`unix://`, `unixs://`, as etcd has them: the socket's path is the URL's host and
//! path).

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::time::Duration;

use super::PeerUrl;

/// A connected peer socket.
#[derive(Debug)]
pub(super) enum Socket {
    /// TCP.
    Tcp(TcpStream),
    /// A unix socket.
    Unix(UnixStream),
}

/// Who is at the other end of a connection, for logs.
#[derive(Clone, Debug)]
pub(super) enum PeerAddr {
    /// A TCP address.
    Tcp(SocketAddr),
    /// A unix socket (its path, when the kernel names it).
    Unix(String),
}

impl fmt::Display for PeerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerAddr::Tcp(a) => a.fmt(f),
            PeerAddr::Unix(p) => write!(f, "unix:{p}"),
        }
    }
}

impl Socket {
    /// Connects to one of `url`'s addresses (a unix socket's path, or each address its host
    /// resolves to, in turn), within `timeout` per TCP address; the last failure otherwise.
    pub(super) fn connect(url: &PeerUrl, timeout: Duration) -> Result<Socket, String> {
        if url.unix {
            return UnixStream::connect(&url.host_port)
                .map(Socket::Unix)
                .map_err(|e| format!("{}: {e}", url.host_port));
        }
        let addrs = url
            .host_port
            .to_socket_addrs()
            .map_err(|e| format!("resolving {}: {e}", url.host_port))?;
        let mut last = format!("{} resolves to nothing", url.host_port);
        for addr in addrs {
            match TcpStream::connect_timeout(&addr, timeout) {
                Ok(s) => return Ok(Socket::Tcp(s)),
                Err(e) => last = format!("{addr}: {e}"),
            }
        }
        Err(last)
    }

    /// Another handle on the same kernel socket (for `shutdown` from another thread).
    pub(super) fn try_clone(&self) -> io::Result<Socket> {
        match self {
            Socket::Tcp(s) => s.try_clone().map(Socket::Tcp),
            Socket::Unix(s) => s.try_clone().map(Socket::Unix),
        }
    }

    /// Shuts the socket down, interrupting any blocked read or write on it.
    pub(super) fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        match self {
            Socket::Tcp(s) => s.shutdown(how),
            Socket::Unix(s) => s.shutdown(how),
        }
    }

    /// The read timeout.
    pub(super) fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        match self {
            Socket::Tcp(s) => s.set_read_timeout(timeout),
            Socket::Unix(s) => s.set_read_timeout(timeout),
        }
    }

    /// The write timeout.
    pub(super) fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        match self {
            Socket::Tcp(s) => s.set_write_timeout(timeout),
            Socket::Unix(s) => s.set_write_timeout(timeout),
        }
    }

    /// `TCP_NODELAY` on TCP (a unix socket has no Nagle to turn off).
    pub(super) fn set_nodelay(&self) -> io::Result<()> {
        match self {
            Socket::Tcp(s) => s.set_nodelay(true),
            Socket::Unix(_) => Ok(()),
        }
    }

    /// Blocking or not.
    pub(super) fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
        match self {
            Socket::Tcp(s) => s.set_nonblocking(nonblocking),
            Socket::Unix(s) => s.set_nonblocking(nonblocking),
        }
    }

    /// The other end.
    pub(super) fn peer_addr(&self) -> io::Result<PeerAddr> {
        match self {
            Socket::Tcp(s) => s.peer_addr().map(PeerAddr::Tcp),
            Socket::Unix(s) => Ok(unix_addr(&s.peer_addr()?)),
        }
    }
}

fn unix_addr(a: &std::os::unix::net::SocketAddr) -> PeerAddr {
    PeerAddr::Unix(
        a.as_pathname()
            .map_or_else(|| "(unnamed)".to_owned(), |p| p.display().to_string()),
    )
}

impl Read for Socket {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Socket::Tcp(s) => s.read(buf),
            Socket::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Socket {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Socket::Tcp(s) => s.write(buf),
            Socket::Unix(s) => s.write(buf),
        }
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Socket::Tcp(s) => s.write_vectored(bufs),
            Socket::Unix(s) => s.write_vectored(bufs),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Socket::Tcp(s) => s.flush(),
            Socket::Unix(s) => s.flush(),
        }
    }
}

/// A peer listener: TCP, or a unix socket whose file is removed when the listener is dropped
/// (a stale file is removed before binding, as etcd does).
#[derive(Debug)]
pub(super) enum Listener {
    /// TCP.
    Tcp(TcpListener),
    /// A unix socket and its file.
    Unix(UnixListener, PathBuf),
}

impl Listener {
    /// A non-blocking listener on `on`.
    pub(super) fn bind(on: &super::ListenSocket) -> io::Result<Listener> {
        let l = match on {
            super::ListenSocket::Tcp(addr) => Listener::Tcp(TcpListener::bind(addr)?),
            super::ListenSocket::Unix(path) => {
                match std::fs::remove_file(path) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                    _ => {}
                }
                Listener::Unix(UnixListener::bind(path)?, path.clone())
            }
        };
        match &l {
            Listener::Tcp(t) => t.set_nonblocking(true)?,
            Listener::Unix(u, _) => u.set_nonblocking(true)?,
        }
        Ok(l)
    }

    /// What it listens on, with the actual port.
    pub(super) fn local(&self) -> io::Result<super::ListenSocket> {
        match self {
            Listener::Tcp(t) => t.local_addr().map(super::ListenSocket::Tcp),
            Listener::Unix(_, path) => Ok(super::ListenSocket::Unix(path.clone())),
        }
    }

    /// A pending connection (`WouldBlock` when there is none).
    pub(super) fn accept(&self) -> io::Result<(Socket, PeerAddr)> {
        match self {
            Listener::Tcp(t) => t
                .accept()
                .map(|(s, addr)| (Socket::Tcp(s), PeerAddr::Tcp(addr))),
            Listener::Unix(u, _) => u
                .accept()
                .map(|(s, addr)| (Socket::Unix(s), unix_addr(&addr))),
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Listener::Unix(_, path) = self {
            let _ = std::fs::remove_file(path);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_unix_listener_accepts_and_removes_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("peer.sock");
        // A stale file from an earlier run is replaced.
        std::fs::write(&path, b"stale").unwrap();
        let l = Listener::bind(&super::super::ListenSocket::Unix(path.clone())).unwrap();
        let url = PeerUrl::parse(&format!("unix://{}", path.display())).unwrap();
        let mut dialed = Socket::connect(&url, Duration::from_secs(1)).unwrap();
        let (mut accepted, from) = loop {
            match l.accept() {
                Ok(pair) => break pair,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => panic!("{e}"),
            }
        };
        assert!(from.to_string().starts_with("unix:"), "{from}");
        accepted.set_nonblocking(false).unwrap();
        dialed.write_all(b"ping").unwrap();
        let mut got = [0; 4];
        accepted.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"ping");
        drop(l);
        assert!(!path.exists());
    }
}
