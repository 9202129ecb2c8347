//! The client listeners: a TCP address, or a unix socket (etcd's `unix://` and `unixs://`
//! client URLs), and the connection each accepts.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};

use crate::config::ClientUrl;

/// A bound client listener.
#[derive(Debug)]
pub enum ClientListener {
    /// A TCP address.
    Tcp(TcpListener),
    /// A unix socket; its file is removed when the listener is dropped, as etcd removes it.
    Unix(UnixListener, SocketFile),
}

/// A unix socket's file, removed on drop.
#[derive(Debug)]
pub struct SocketFile(PathBuf);

impl Drop for SocketFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Binds every URL (a name resolving to several addresses binds its first IPv4 one, as Go's
/// `net.Listen` does for `localhost`; a unix socket's stale file is removed first, as etcd
/// removes it).
pub async fn bind(urls: &[String]) -> io::Result<Vec<ClientListener>> {
    let mut out = Vec::with_capacity(urls.len());
    for url in urls {
        // `Config::validate` already refused any other form.
        let parsed = ClientUrl::parse(url).ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, format!("invalid URL {url}"))
        })?;
        let listener = match parsed {
            ClientUrl::Tcp { host_port, .. } => {
                ClientListener::Tcp(bind_tcp(url, &host_port).await?)
            }
            ClientUrl::Unix { path, .. } => {
                match std::fs::remove_file(&path) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => {
                        return Err(io::Error::new(
                            e.kind(),
                            format!("cannot listen on {url}: removing the old {path}: {e}"),
                        ));
                    }
                    _ => {}
                }
                let listener = UnixListener::bind(&path).map_err(|e| {
                    io::Error::new(e.kind(), format!("cannot listen on {url} ({path}): {e}"))
                })?;
                ClientListener::Unix(listener, SocketFile(PathBuf::from(path)))
            }
        };
        out.push(listener);
    }
    Ok(out)
}

async fn bind_tcp(url: &str, host_port: &str) -> io::Result<TcpListener> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host(host_port).await?.collect();
    let addr = addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or_else(|| addrs.first())
        .copied()
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("{host_port} resolves to nothing"),
            )
        })?;
    TcpListener::bind(addr)
        .await
        .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {url} ({addr}): {e}")))
}

impl ClientListener {
    /// The next connection and, for TCP, the client's address. TCP connections get
    /// `TCP_NODELAY`: answers are small and must not wait for the client's delayed ACK.
    pub async fn accept(&self) -> io::Result<(ClientIo, Option<SocketAddr>)> {
        match self {
            ClientListener::Tcp(l) => {
                let (s, addr) = l.accept().await?;
                let _ = s.set_nodelay(true);
                Ok((ClientIo::Tcp(s), Some(addr)))
            }
            ClientListener::Unix(l, _) => {
                let (s, _) = l.accept().await?;
                Ok((ClientIo::Unix(s), None))
            }
        }
    }
}

/// An accepted client connection, over TCP or a unix socket (what TLS runs over).
#[derive(Debug)]
pub enum ClientIo {
    /// TCP.
    Tcp(TcpStream),
    /// A unix socket.
    Unix(UnixStream),
}

impl AsyncRead for ClientIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientIo::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            ClientIo::Unix(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ClientIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ClientIo::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            ClientIo::Unix(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientIo::Tcp(s) => Pin::new(s).poll_flush(cx),
            ClientIo::Unix(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientIo::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            ClientIo::Unix(s) => Pin::new(s).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ClientIo::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            ClientIo::Unix(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            ClientIo::Tcp(s) => s.is_write_vectored(),
            ClientIo::Unix(s) => s.is_write_vectored(),
        }
    }
}
