//! A peer connection's byte stream: plain, or TLS (rustls) for https and unixs peer URLs, over
//! a TCP or unix [`Socket`].
//!
//! Every connection has exactly one thread doing its I/O; other threads only ever call
//! `shutdown` on a raw [`Socket`] clone taken with [`PeerStream::socket`] (socket options and
//! shutdown act on the kernel socket, whichever handle is used). So the TLS session is owned by
//! the I/O thread without a lock: a lock held across a blocking read would keep the shutdown
//! path waiting forever.

use std::io::{self, ErrorKind, Read, Write};
use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use rustls::pki_types::ServerName;

use super::socket::Socket;
use rustls::{
    ClientConfig, ClientConnection, ConnectionCommon, ServerConfig, ServerConnection, SideData,
    StreamOwned,
};

/// A connection to or from a peer, plain or TLS.
pub(super) enum PeerStream {
    /// Plain (`http://`, `unix://` peer URLs).
    Plain(Socket),
    /// TLS, this side dialing.
    Client(Box<StreamOwned<ClientConnection, Socket>>),
    /// TLS, this side accepting.
    Server(Box<StreamOwned<ServerConnection, Socket>>),
}

impl PeerStream {
    /// A TLS session dialing `name` over `sock`; no I/O until [`PeerStream::finish_handshake`].
    pub(super) fn client(
        sock: Socket,
        config: Arc<ClientConfig>,
        name: ServerName<'static>,
    ) -> io::Result<PeerStream> {
        let conn = ClientConnection::new(config, name).map_err(io::Error::other)?;
        Ok(PeerStream::Client(Box::new(StreamOwned::new(conn, sock))))
    }

    /// A TLS session accepted on `sock`; no I/O until [`PeerStream::finish_handshake`].
    pub(super) fn server(sock: Socket, config: Arc<ServerConfig>) -> io::Result<PeerStream> {
        let conn = ServerConnection::new(config).map_err(io::Error::other)?;
        Ok(PeerStream::Server(Box::new(StreamOwned::new(conn, sock))))
    }

    /// The socket: for timeouts, `try_clone` and `shutdown`.
    pub(super) fn socket(&self) -> &Socket {
        match self {
            PeerStream::Plain(s) => s,
            PeerStream::Client(s) => &s.sock,
            PeerStream::Server(s) => &s.sock,
        }
    }

    /// Whether this is a TLS connection.
    pub(super) fn is_tls(&self) -> bool {
        !matches!(self, PeerStream::Plain(_))
    }

    /// Drives the TLS handshake to completion under the socket's current timeouts (a no-op for
    /// plain TCP), so that a refused certificate or a peer not speaking TLS fails here, at a
    /// known point, rather than inside the first read or write.
    pub(super) fn finish_handshake(&mut self) -> io::Result<()> {
        match self {
            PeerStream::Plain(_) => Ok(()),
            PeerStream::Client(s) => handshake(&mut s.conn, &mut s.sock),
            PeerStream::Server(s) => handshake(&mut s.conn, &mut s.sock),
        }
    }
}

fn handshake<C, S>(conn: &mut C, sock: &mut Socket) -> io::Result<()>
where
    C: DerefMut + Deref<Target = ConnectionCommon<S>>,
    S: SideData,
{
    while conn.is_handshaking() {
        let (read, written) = conn.complete_io(sock)?;
        if read == 0 && written == 0 && conn.is_handshaking() {
            return Err(io::Error::new(
                ErrorKind::UnexpectedEof,
                "TLS handshake made no progress",
            ));
        }
    }
    drain(conn, sock)
}

/// Writes every pending TLS record to the socket. Never reads: a blocked write fails with the
/// socket's write timeout instead of waiting for the peer to send something.
fn drain<C, S>(conn: &mut C, sock: &mut Socket) -> io::Result<()>
where
    C: DerefMut + Deref<Target = ConnectionCommon<S>>,
    S: SideData,
{
    while conn.wants_write() {
        match conn.write_tls(sock) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Encrypts (part of) `buf` and hands the records to the socket before returning, so a write
/// error is reported by the call that caused it. (`StreamOwned::write` swallows it until the
/// next call and, when the socket write blocks, goes on to *read*: on a write-only message
/// stream that read would wait for data the peer never sends.)
fn tls_write<C, S>(conn: &mut C, sock: &mut Socket, buf: &[u8]) -> io::Result<usize>
where
    C: DerefMut + Deref<Target = ConnectionCommon<S>>,
    S: SideData,
{
    drain(conn, sock)?;
    let n = conn.writer().write(buf)?;
    drain(conn, sock)?;
    Ok(n)
}

fn tls_flush<C, S>(conn: &mut C, sock: &mut Socket) -> io::Result<()>
where
    C: DerefMut + Deref<Target = ConnectionCommon<S>>,
    S: SideData,
{
    conn.writer().flush()?;
    drain(conn, sock)?;
    sock.flush()
}

/// A peer closing the TCP connection without a TLS `close_notify` is how every connection
/// ends here (shutdown of a raw clone, a redial, stop), as a plain connection ends with EOF:
/// report it as EOF too. A truncated frame is still detected by its length and checksum.
fn eof_is_end(r: io::Result<usize>) -> io::Result<usize> {
    match r {
        Err(e) if e.kind() == ErrorKind::UnexpectedEof => Ok(0),
        r => r,
    }
}

impl Read for PeerStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            PeerStream::Plain(s) => s.read(buf),
            PeerStream::Client(s) => eof_is_end(s.read(buf)),
            PeerStream::Server(s) => eof_is_end(s.read(buf)),
        }
    }
}

impl Write for PeerStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            PeerStream::Plain(s) => s.write(buf),
            PeerStream::Client(s) => tls_write(&mut s.conn, &mut s.sock, buf),
            PeerStream::Server(s) => tls_write(&mut s.conn, &mut s.sock, buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            PeerStream::Plain(s) => s.flush(),
            PeerStream::Client(s) => tls_flush(&mut s.conn, &mut s.sock),
            PeerStream::Server(s) => tls_flush(&mut s.conn, &mut s.sock),
        }
    }
}

/// The rustls error inside an I/O error, if there is one.
pub(super) fn rustls_error(e: &io::Error) -> Option<&rustls::Error> {
    e.get_ref()?.downcast_ref::<rustls::Error>()
}

/// A certificate refused during a TLS handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Refusal {
    /// This side refused the peer's certificate (invalid, untrusted, expired or missing).
    TheirCertificate,
    /// The peer refused this side's certificate (it sent a certificate alert).
    OurCertificate,
}

/// Whether `e` is a refused certificate, and whose.
pub(super) fn refusal(e: &io::Error) -> Option<Refusal> {
    use rustls::AlertDescription as A;
    match rustls_error(e)? {
        rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented => {
            Some(Refusal::TheirCertificate)
        }
        rustls::Error::AlertReceived(
            A::BadCertificate
            | A::UnsupportedCertificate
            | A::CertificateRevoked
            | A::CertificateExpired
            | A::CertificateUnknown
            | A::UnknownCA
            | A::CertificateRequired
            | A::AccessDenied,
        ) => Some(Refusal::OurCertificate),
        _ => None,
    }
}

/// Go's name of a TLS alert (`crypto/tls`), as etcd's logs show a peer's refusal
/// (`remote error: tls: bad certificate`), so that operators and tools reading etcd's logs
/// recognise it.
fn go_alert_name(alert: rustls::AlertDescription) -> Option<&'static str> {
    use rustls::AlertDescription as A;
    Some(match alert {
        A::BadCertificate => "bad certificate",
        A::UnsupportedCertificate => "unsupported certificate",
        A::CertificateRevoked => "revoked certificate",
        A::CertificateExpired => "expired certificate",
        A::CertificateUnknown => "unknown certificate",
        A::UnknownCA => "unknown certificate authority",
        A::CertificateRequired => "certificate required",
        A::AccessDenied => "access denied",
        A::HandshakeFailure => "handshake failure",
        _ => return None,
    })
}

/// Go's wording of a refusal alert in `e` (`" (remote error: tls: bad certificate)"`), if any.
pub(super) fn go_remote_error(e: &io::Error) -> Option<String> {
    match rustls_error(e)? {
        rustls::Error::AlertReceived(alert) => {
            go_alert_name(*alert).map(|name| format!(" (remote error: tls: {name})"))
        }
        _ => None,
    }
}

/// `e` with what failed spelled out: "TLS handshake with <who>: <e>", and a hint when a
/// certificate was refused.
pub(super) fn handshake_error(e: io::Error, who: &str) -> io::Error {
    let hint = match (refusal(&e), rustls_error(&e)) {
        (Some(Refusal::TheirCertificate), _) => " (its certificate was refused)".to_owned(),
        (Some(Refusal::OurCertificate), Some(rustls::Error::AlertReceived(alert))) => {
            match go_alert_name(*alert) {
                Some(name) => {
                    format!(" (it refused this member's certificate: remote error: tls: {name})")
                }
                None => " (it refused this member's certificate)".to_owned(),
            }
        }
        (Some(Refusal::OurCertificate), _) => " (it refused this member's certificate)".to_owned(),
        (None, _) => String::new(),
    };
    io::Error::new(e.kind(), format!("TLS handshake with {who}: {e}{hint}"))
}
