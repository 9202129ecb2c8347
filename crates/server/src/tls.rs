//! TLS on the client listeners: which configuration etcd's flags give ([`client_tls_info`]),
//! and the accept loop that turns TCP connections into TLS ones for tonic
//! ([`tls_incoming`]). Handshakes run on their own tasks, bounded in time, never on the
//! accept loop; a refused handshake (no certificate under `--client-cert-auth`, an unknown
//! CA, a revoked certificate, no common cipher suite) is logged and the connection dropped.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use node::tls::{TlsError, TlsInfo};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;

use crate::Config;
use crate::config::ClientUrl;
use crate::listener::{ClientIo, ClientListener};

/// How long a client may take to complete its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// The protocols offered by ALPN on client listeners: gRPC, then plain HTTP (curl).
pub const CLIENT_ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// The hosts of `urls` (`scheme://host:port`), for a self-signed certificate's names.
fn hosts(urls: &[String]) -> Vec<String> {
    let mut hosts: Vec<String> = urls
        .iter()
        .filter_map(|u| match ClientUrl::parse(u) {
            Some(ClientUrl::Tcp { host_port, .. }) => Some(host_port),
            // A unix socket has no host to name (clients dial it as `localhost`).
            Some(ClientUrl::Unix { .. }) => Some("localhost:0".to_owned()),
            None => None,
        })
        .map(|hp| {
            hp.rsplit_once(':')
                .map_or(hp.as_str(), |(h, _)| h)
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned()
        })
        .collect();
    hosts.sort();
    hosts.dedup();
    hosts
}

/// The TLS of the client (and metrics) listeners, if any of their URLs is https: the certificate files given,
/// or with `--auto-tls` (and no files) a self-signed certificate under
/// `<data-dir>/fixtures/client`, made once, as etcd does.
pub fn client_tls_info(config: &Config) -> Result<Option<TlsInfo>, TlsError> {
    if !config
        .listen_client_urls
        .iter()
        .chain(&config.metrics_urls())
        .any(|u| ClientUrl::parse(u).is_some_and(|c| c.tls()))
    {
        return Ok(None);
    }
    let t = &config.tls;
    let path = |s: &str| (!s.is_empty()).then(|| PathBuf::from(s));
    let mut info = if !t.cert_file.is_empty() && !t.key_file.is_empty() {
        if t.auto_tls {
            tracing::warn!("ignoring client auto TLS since certs given");
        }
        TlsInfo {
            cert_file: PathBuf::from(&t.cert_file),
            key_file: PathBuf::from(&t.key_file),
            trusted_ca_file: path(&t.trusted_ca_file),
            client_cert_auth: t.client_cert_auth,
            crl_file: path(&t.client_crl_file),
            ..TlsInfo::default()
        }
    } else {
        let dir = Path::new(&config.data_dir).join("fixtures").join("client");
        node::tls::self_cert(
            &dir,
            &hosts(&config.listen_client_urls),
            t.self_signed_cert_validity,
        )?
    };
    info.cipher_suites = t.cipher_suites.clone();
    info.min_version = t.tls_min_version.clone();
    info.max_version = t.tls_max_version.clone();
    Ok(Some(info))
}

/// The TLS of the peer transport, if any peer URL (listened on, advertised, or another
/// member's) is https: the peer certificate files, or with `--peer-auto-tls` (and no files) a
/// self-signed certificate under `<data-dir>/fixtures/peer`. With a trusted CA, peers must
/// present a certificate it signed (etcd's peer rule); with auto TLS, peers are not verified.
pub fn peer_tls_info(config: &Config) -> Result<Option<TlsInfo>, TlsError> {
    let https = |u: &String| u.starts_with("https://");
    let any_https = config.listen_peer_urls.iter().any(https)
        || config.initial_advertise_peer_urls.iter().any(https)
        || config.initial_cluster.contains("https://");
    if !any_https {
        return Ok(None);
    }
    let t = &config.tls;
    let path = |s: &str| (!s.is_empty()).then(|| PathBuf::from(s));
    let text = |s: &String| (!s.is_empty()).then(|| s.clone());
    let mut info = if !t.peer_cert_file.is_empty() && !t.peer_key_file.is_empty() {
        if t.peer_auto_tls {
            tracing::warn!("ignoring peer auto TLS since certs given");
        }
        TlsInfo {
            cert_file: PathBuf::from(&t.peer_cert_file),
            key_file: PathBuf::from(&t.peer_key_file),
            trusted_ca_file: path(&t.peer_trusted_ca_file),
            client_cert_auth: t.peer_client_cert_auth,
            crl_file: path(&t.peer_crl_file),
            allowed_cn: text(&t.peer_cert_allowed_cn),
            allowed_hostname: text(&t.peer_cert_allowed_hostname),
            ..TlsInfo::default()
        }
    } else if t.peer_auto_tls {
        let dir = Path::new(&config.data_dir).join("fixtures").join("peer");
        node::tls::self_cert(
            &dir,
            &hosts(&config.listen_peer_urls),
            t.self_signed_cert_validity,
        )?
    } else {
        return Ok(None);
    };
    info.cipher_suites = t.cipher_suites.clone();
    info.min_version = t.tls_min_version.clone();
    info.max_version = t.tls_max_version.clone();
    Ok(Some(info))
}

/// How this member dials other members' https client URLs (a follower forwarding lease
/// calls to the leader): the client TLS certificate presented, the other's certificate
/// verified against `--trusted-ca-file` (not at all with `--auto-tls`), HTTP/2 by ALPN.
/// `None` (logged) when there is no CA to verify with.
pub fn leader_dialing(info: &TlsInfo) -> Option<Arc<rustls::ClientConfig>> {
    match info.client_config() {
        Ok(config) => {
            let mut config = (*config).clone();
            config.alpn_protocols = vec![b"h2".to_vec()];
            Some(Arc::new(config))
        }
        Err(e) => {
            tracing::warn!(error = %e, "followers cannot forward lease requests to a leader's https client URL");
            None
        }
    }
}

/// A connector for tonic's channels that dials TCP and runs TLS with `config` over it, the
/// server name taken from the URI's host.
pub fn dialer(
    config: Arc<rustls::ClientConfig>,
) -> impl tower::Service<
    tonic::codegen::http::Uri,
    Response = hyper_util::rt::TokioIo<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>,
    Error = io::Error,
    Future = impl Future<
        Output = io::Result<
            hyper_util::rt::TokioIo<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>,
        >,
    > + Send,
> + Clone {
    tower::service_fn(move |uri: tonic::codegen::http::Uri| {
        let connector = tokio_rustls::TlsConnector::from(Arc::clone(&config));
        async move {
            let invalid = |what: &str| {
                io::Error::new(io::ErrorKind::InvalidInput, format!("{what} in {uri}"))
            };
            let host = uri.host().ok_or_else(|| invalid("no host"))?.to_owned();
            let port = uri.port_u16().ok_or_else(|| invalid("no port"))?;
            let bare = host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned();
            let tcp = tokio::net::TcpStream::connect((bare.as_str(), port)).await?;
            tcp.set_nodelay(true)?;
            let name = rustls::pki_types::ServerName::try_from(bare)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
            let tls = connector.connect(name, tcp).await?;
            Ok(hyper_util::rt::TokioIo::new(tls))
        }
    })
}

/// What a TLS client connection tells the services (in each request's extensions): who
/// connected, and the common name of the certificate it presented (etcd's user name under
/// auth with client certificates).
#[derive(Clone, Debug, Default)]
pub struct ClientTlsInfo {
    /// The client's address.
    pub remote_addr: Option<SocketAddr>,
    /// The common name of the client certificate, when one was presented and verified.
    pub common_name: Option<String>,
}

/// A client connection after its TLS handshake.
#[derive(Debug)]
pub struct TlsConn {
    inner: TlsStream<ClientIo>,
    info: ClientTlsInfo,
}

impl TlsConn {
    fn new(inner: TlsStream<ClientIo>, remote_addr: Option<SocketAddr>) -> TlsConn {
        let common_name = inner
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|certs| certs.first())
            .and_then(|c| node::tls::common_name(c.as_ref()));
        TlsConn {
            inner,
            info: ClientTlsInfo {
                remote_addr,
                common_name,
            },
        }
    }
}

impl AsyncRead for TlsConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

impl tonic::transport::server::Connected for TlsConn {
    type ConnectInfo = ClientTlsInfo;

    fn connect_info(&self) -> ClientTlsInfo {
        self.info.clone()
    }
}

/// Accepts on `listener` and hands tonic each connection whose TLS handshake succeeded. The
/// accept loop ends when tonic drops the stream (shutdown).
pub fn tls_incoming(
    listener: ClientListener,
    config: Arc<rustls::ServerConfig>,
) -> ReceiverStream<io::Result<TlsConn>> {
    let acceptor = TlsAcceptor::from(config);
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                () = tx.closed() => break,
                accepted = listener.accept() => accepted,
            };
            let (io, addr) = match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: back off rather than spin.
                    tracing::warn!(error = %e, "accepting a client connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let (acceptor, tx) = (acceptor.clone(), tx.clone());
            tokio::spawn(async move {
                let remote = addr.map_or_else(|| "unix socket".to_owned(), |a| a.to_string());
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(io)).await {
                    Ok(Ok(tls)) => {
                        let _ = tx.send(Ok(TlsConn::new(tls, addr))).await;
                    }
                    Ok(Err(e)) => {
                        // grpc-go clients send a `unixs://` endpoint's path as the server
                        // name; RFC 6066 forbids it and rustls refuses the handshake.
                        let hint = if e.to_string().contains("ServerNameMustContainOneHostName") {
                            " (the client's TLS server name is not a host name: grpc-go clients \
                             such as etcdctl send a unixs:// socket's path; use unix:// or an \
                             https URL for them)"
                        } else {
                            ""
                        };
                        tracing::warn!(%remote, error = %e, "rejected a client TLS connection{hint}");
                    }
                    Err(_) => {
                        tracing::warn!(%remote, "client TLS handshake timed out");
                    }
                }
            });
        }
    });
    ReceiverStream::new(rx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_of_listen_urls_without_ports_or_brackets() {
        let urls = vec![
            "https://127.0.0.1:2379".to_owned(),
            "https://localhost:2379".to_owned(),
            "http://[::1]:2379".to_owned(),
            "https://localhost:2380".to_owned(),
            "unixs:///run/ferrocd.sock".to_owned(),
        ];
        assert_eq!(hosts(&urls), vec!["127.0.0.1", "::1", "localhost"]);
    }
}
