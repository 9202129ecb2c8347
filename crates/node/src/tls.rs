//! TLS for the client and peer listeners, configured as etcd configures it (its
//! `pkg/transport.TLSInfo`): a certificate and key, an optional trusted CA that client
//! certificates must chain to (`--client-cert-auth`), an optional CRL, self-signed certificates
//! for auto TLS, and the cipher suites and versions allowed. rustls, no OpenSSL.
//!
//! The certificate, key, CA and CRL files are re-read when they change (checked on each new
//! handshake, as etcd reloads them), so that rotating a certificate needs no restart; a file
//! that cannot be read or parsed keeps the previous material in use and is logged.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use parking_lot::Mutex;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{
    CertificateDer, CertificateRevocationListDer, PrivateKeyDer, ServerName, UnixTime,
};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme};

/// A TLS configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// A file holds no usable PEM item of the kind expected.
    #[error("{path}: {what}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
    /// rustls refused the material or the settings.
    #[error("{0}")]
    Rustls(String),
    /// A self-signed certificate could not be made or written.
    #[error("generating a self-signed certificate in {dir}: {reason}")]
    SelfCert {
        /// Where.
        dir: PathBuf,
        /// Why.
        reason: String,
    },
    /// A cipher suite etcd names that rustls does not offer (CBC and 3DES suites).
    #[error("unsupported cipher suite {0:?} (supported: {SUPPORTED_SUITES})")]
    UnsupportedCipherSuite(String),
    /// A TLS version that is not `TLS1.2` or `TLS1.3`, or bounds that exclude both.
    #[error("unsupported TLS version {0:?} (TLS1.2 and TLS1.3 are supported)")]
    UnsupportedVersion(String),
}

/// The cipher suite names (Go's) accepted by `--cipher-suites`.
pub const SUPPORTED_SUITES: &str = "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, \
TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, \
TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384, TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305(_SHA256), \
TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305(_SHA256)";

/// The TLS settings of one side (client or peer), as etcd's flags give them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsInfo {
    /// The certificate served (and presented to peers when dialing them).
    pub cert_file: PathBuf,
    /// Its private key.
    pub key_file: PathBuf,
    /// The CA that the other side's certificate must chain to (for dialing peers, and for
    /// the certificates a listener then requires of whoever connects, as etcd requires them).
    pub trusted_ca_file: Option<PathBuf>,
    /// Require a certificate signed by `trusted_ca_file` from whoever connects (etcd's
    /// `--client-cert-auth`; a trusted CA already requires one, so this only makes a missing
    /// CA an error).
    pub client_cert_auth: bool,
    /// Certificates revoked (PEM or DER CRL), refused during the handshake.
    pub crl_file: Option<PathBuf>,
    /// Go names of the TLS 1.2 cipher suites allowed (empty: rustls' defaults). TLS 1.3
    /// suites are not configurable, as in Go.
    pub cipher_suites: Vec<String>,
    /// The lowest version allowed (`TLS1.2`, `TLS1.3`; empty: TLS1.2).
    pub min_version: String,
    /// The highest version allowed (empty: TLS1.3).
    pub max_version: String,
    /// Self-signed (auto TLS): encryption without authentication, as etcd's auto TLS. The
    /// other side's certificate is not verified when dialing.
    pub self_signed: bool,
    /// Only a verified certificate with this subject common name is accepted, on either side
    /// (etcd's `--peer-cert-allowed-cn`).
    pub allowed_cn: Option<String>,
    /// Only a verified certificate valid for this host name is accepted, on either side
    /// (etcd's `--peer-cert-allowed-hostname`).
    pub allowed_hostname: Option<String>,
}

/// The identity a verified certificate must also have ([`TlsInfo::allowed_cn`],
/// [`TlsInfo::allowed_hostname`]).
#[derive(Clone, Debug, Default)]
struct AllowedIdentity {
    cn: Option<String>,
    hostname: Option<String>,
}

impl AllowedIdentity {
    fn of(info: &TlsInfo) -> AllowedIdentity {
        AllowedIdentity {
            cn: info.allowed_cn.clone().filter(|s| !s.is_empty()),
            hostname: info.allowed_hostname.clone().filter(|s| !s.is_empty()),
        }
    }

    fn is_open(&self) -> bool {
        self.cn.is_none() && self.hostname.is_none()
    }

    /// Checks the end-entity certificate (already verified against the CA).
    fn check(&self, end_entity: &CertificateDer<'_>) -> Result<(), rustls::Error> {
        if self.is_open() {
            return Ok(());
        }
        // Go answers a certificate its `VerifyPeerCertificate` refuses with the alert
        // bad_certificate, and etcd's members log it as `remote error: tls: bad certificate`
        // (tools wait for that line): rustls sends that alert for `NotValidForName`. The
        // reason is logged here, since the alert cannot carry it.
        let refuse = |why: String| {
            tracing::warn!("refused a verified TLS certificate: {why}");
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForName,
            ))
        };
        let Ok((_, cert)) = x509_parser::parse_x509_certificate(end_entity.as_ref()) else {
            return Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::BadEncoding,
            ));
        };
        if let Some(cn) = &self.cn {
            let has = subject_common_names(&cert).any(|n| n == cn);
            if !has {
                return refuse(format!(
                    "CommonName authentication failed (allowed: {cn:?})"
                ));
            }
        }
        if let Some(host) = &self.hostname
            && !valid_for_host(&cert, host)
        {
            return refuse(format!(
                "client certificate authentication failed (allowed hostname: {host:?})"
            ));
        }
        Ok(())
    }
}

/// The subject's common names of a parsed certificate, in order (names that are not UTF-8 are
/// skipped).
fn subject_common_names<'a>(
    cert: &'a x509_parser::certificate::X509Certificate<'_>,
) -> impl Iterator<Item = &'a str> {
    cert.subject()
        .iter_common_name()
        .filter_map(|n| n.as_str().ok())
}

/// The (first) common name of a DER certificate's subject: who a client certificate names
/// (etcd's user name under auth with client certificates).
pub fn common_name(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    subject_common_names(&cert).next().map(str::to_owned)
}

/// Whether `cert` names `host` among its subject alternative names (DNS names, with a
/// leftmost `*` label matching one label, and IP addresses), as Go's `VerifyHostname`.
fn valid_for_host(cert: &x509_parser::certificate::X509Certificate<'_>, host: &str) -> bool {
    use x509_parser::extensions::GeneralName;
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return false;
    };
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let ip: Option<std::net::IpAddr> = host.parse().ok();
    san.value.general_names.iter().any(|name| match name {
        GeneralName::DNSName(dns) => {
            let dns = dns.trim_end_matches('.').to_ascii_lowercase();
            match dns.strip_prefix("*.") {
                Some(suffix) => host
                    .split_once('.')
                    .is_some_and(|(first, rest)| !first.is_empty() && rest == suffix),
                None => dns == host,
            }
        }
        GeneralName::IPAddress(bytes) => ip.is_some_and(|ip| match (ip, bytes.len()) {
            (std::net::IpAddr::V4(v4), 4) => v4.octets()[..] == bytes[..],
            (std::net::IpAddr::V6(v6), 16) => v6.octets()[..] == bytes[..],
            _ => false,
        }),
        _ => false,
    })
}

/// The files' modification times when they were last loaded.
type Stamps = Vec<Option<SystemTime>>;

fn stamps(paths: &[&Path]) -> Stamps {
    paths
        .iter()
        .map(|p| fs::metadata(p).and_then(|m| m.modified()).ok())
        .collect()
}

/// A value made from files, made again on the first use after one of them changed; when that
/// fails, the previous value stays in use and the failure is logged.
#[derive(Debug)]
struct FileBacked<T> {
    /// What it is, for the log.
    what: &'static str,
    paths: Vec<PathBuf>,
    loaded: Mutex<(Stamps, T)>,
}

impl<T: Clone> FileBacked<T> {
    /// Loads it now (an error here is a configuration error).
    fn load(
        what: &'static str,
        paths: Vec<PathBuf>,
        make: impl FnOnce() -> Result<T, TlsError>,
    ) -> Result<FileBacked<T>, TlsError> {
        let now = stamps(&paths.iter().map(PathBuf::as_path).collect::<Vec<_>>());
        let value = make()?;
        Ok(FileBacked {
            what,
            paths,
            loaded: Mutex::new((now, value)),
        })
    }

    /// The current value, made again first with `make` if a file changed since.
    fn current(&self, make: impl FnOnce() -> Result<T, TlsError>) -> T {
        let now = stamps(&self.paths.iter().map(PathBuf::as_path).collect::<Vec<_>>());
        let mut loaded = self.loaded.lock();
        if loaded.0 != now {
            match make() {
                Ok(value) => {
                    tracing::info!(files = ?self.paths, "reloaded the {}", self.what);
                    *loaded = (now, value);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot reload the {}; keeping the previous one", self.what);
                    loaded.0 = now;
                }
            }
        }
        loaded.1.clone()
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn pem_error(path: &Path, what: impl std::fmt::Display) -> TlsError {
    TlsError::Pem {
        path: path.to_path_buf(),
        what: what.to_string(),
    }
}

/// The certificates of a PEM file, in order.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(path, e))?;
    if certs.is_empty() {
        return Err(pem_error(path, "no CERTIFICATE in the file"));
    }
    Ok(certs)
}

fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = read(path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| pem_error(path, e))
}

fn load_crls(path: &Path) -> Result<Vec<CertificateRevocationListDer<'static>>, TlsError> {
    let bytes = read(path)?;
    if !bytes.starts_with(b"-----") {
        // DER, as `openssl ca -gencrl -outform DER` and etcd's fixtures may give it.
        return Ok(vec![CertificateRevocationListDer::from(bytes)]);
    }
    let crls = CertificateRevocationListDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(path, e))?;
    if crls.is_empty() {
        return Err(pem_error(path, "no X509 CRL in the file"));
    }
    Ok(crls)
}

fn load_roots(path: &Path) -> Result<Arc<RootCertStore>, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(path)? {
        roots
            .add(cert)
            .map_err(|e| pem_error(path, format!("not a usable CA certificate: {e}")))?;
    }
    Ok(Arc::new(roots))
}

/// The crypto provider: ring, with the TLS 1.2 suites `names` allows (all when empty).
fn provider(names: &[String]) -> Result<Arc<CryptoProvider>, TlsError> {
    use rustls::crypto::ring::cipher_suite as cs;
    // ring rather than aws-lc-rs (whose C build needs cmake and minutes more per clean build);
    // rustls deprecates ring's provider only for lacking post-quantum key exchange, which no
    // etcd client or peer negotiates.
    #[allow(deprecated)]
    let mut p = rustls::crypto::ring::default_provider();
    // `--cipher-suites` with no value parses to one empty name: the defaults too.
    let names: Vec<&str> = names
        .iter()
        .map(|n| n.trim())
        .filter(|n| !n.is_empty())
        .collect();
    if names.is_empty() {
        return Ok(Arc::new(p));
    }
    let mut tls12 = Vec::new();
    for name in names {
        let suite = match name {
            "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256" => {
                cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
            }
            "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256" => cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
            "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384" => {
                cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
            }
            "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384" => cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
            "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305"
            | "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256" => {
                cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
            }
            "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305"
            | "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256" => {
                cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256
            }
            other => return Err(TlsError::UnsupportedCipherSuite(other.to_owned())),
        };
        tls12.push(suite);
    }
    p.cipher_suites
        .retain(|s| s.version() == &rustls::version::TLS13);
    p.cipher_suites.extend(tls12);
    Ok(Arc::new(p))
}

/// The protocol versions between the bounds.
fn versions(
    min: &str,
    max: &str,
) -> Result<Vec<&'static rustls::SupportedProtocolVersion>, TlsError> {
    let rank = |v: &str, default: u8| match v {
        "" => Ok(default),
        "TLS1.2" => Ok(2),
        "TLS1.3" => Ok(3),
        other => Err(TlsError::UnsupportedVersion(other.to_owned())),
    };
    let (lo, hi) = (rank(min, 2)?, rank(max, 3)?);
    let all = [(2, &rustls::version::TLS12), (3, &rustls::version::TLS13)];
    let chosen: Vec<_> = all
        .iter()
        .filter(|(r, _)| (lo..=hi).contains(r))
        .map(|(_, v)| *v)
        .collect();
    if chosen.is_empty() {
        return Err(TlsError::UnsupportedVersion(format!("{min}..{max}")));
    }
    Ok(chosen)
}

/// The certificate and key, re-read when either file changes. Serves as the server's
/// certificate and as the certificate presented when dialing a peer.
#[derive(Debug)]
pub struct ReloadingCertifiedKey {
    cert: PathBuf,
    key: PathBuf,
    provider: Arc<CryptoProvider>,
    pair: FileBacked<Arc<CertifiedKey>>,
}

impl ReloadingCertifiedKey {
    /// Loads the pair now (an error here is a configuration error).
    pub fn load(
        cert: &Path,
        key: &Path,
        provider: Arc<CryptoProvider>,
    ) -> Result<ReloadingCertifiedKey, TlsError> {
        let pair = FileBacked::load(
            "TLS certificate and key",
            vec![cert.to_path_buf(), key.to_path_buf()],
            || Self::read_pair(cert, key, &provider),
        )?;
        Ok(ReloadingCertifiedKey {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            provider,
            pair,
        })
    }

    fn read_pair(
        cert: &Path,
        key: &Path,
        provider: &CryptoProvider,
    ) -> Result<Arc<CertifiedKey>, TlsError> {
        let chain = load_certs(cert)?;
        let key_der = load_key(key)?;
        let pair = CertifiedKey::from_der(chain, key_der, provider).map_err(|e| {
            TlsError::Rustls(format!("{} and {}: {e}", cert.display(), key.display()))
        })?;
        Ok(Arc::new(pair))
    }

    /// The current pair, re-read first if a file changed since it was loaded.
    pub fn current(&self) -> Arc<CertifiedKey> {
        self.pair
            .current(|| Self::read_pair(&self.cert, &self.key, &self.provider))
    }
}

impl ResolvesServerCert for ReloadingCertifiedKey {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

impl rustls::client::ResolvesClientCert for ReloadingCertifiedKey {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// Client-certificate verification against the trusted CA and the CRL, both re-read when
/// their files change. A certificate is required, as etcd requires one whenever it has a CA.
#[derive(Debug)]
struct ReloadingClientVerifier {
    trust: TrustFiles<Arc<dyn ClientCertVerifier>>,
    allowed: AllowedIdentity,
}

impl ReloadingClientVerifier {
    fn build(
        ca: &Path,
        crl: Option<&Path>,
        provider: &Arc<CryptoProvider>,
    ) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
        let mut builder =
            WebPkiClientVerifier::builder_with_provider(load_roots(ca)?, Arc::clone(provider));
        if let Some(crl) = crl {
            // etcd checks the serial numbers of the certificate presented against the CRL.
            builder = builder
                .with_crls(load_crls(crl)?)
                .only_check_end_entity_revocation()
                .allow_unknown_revocation_status();
        }
        builder
            .build()
            .map_err(|e| TlsError::Rustls(format!("client certificate verifier: {e}")))
    }

    fn current(&self) -> Arc<dyn ClientCertVerifier> {
        self.trust.current()
    }
}

/// Makes a verifier from the trusted CA file, the CRL file and the crypto provider.
type BuildVerifier<T> = fn(&Path, Option<&Path>, &Arc<CryptoProvider>) -> Result<T, TlsError>;

/// A verifier made from the trusted CA and CRL files, made again when one of them changed.
#[derive(Debug)]
struct TrustFiles<T> {
    ca: PathBuf,
    crl: Option<PathBuf>,
    provider: Arc<CryptoProvider>,
    build: BuildVerifier<T>,
    verifier: FileBacked<T>,
}

impl<T: Clone> TrustFiles<T> {
    fn load(
        what: &'static str,
        ca: &Path,
        crl: Option<&Path>,
        provider: Arc<CryptoProvider>,
        build: BuildVerifier<T>,
    ) -> Result<TrustFiles<T>, TlsError> {
        let mut paths = vec![ca.to_path_buf()];
        paths.extend(crl.map(Path::to_path_buf));
        let verifier = FileBacked::load(what, paths, || build(ca, crl, &provider))?;
        Ok(TrustFiles {
            ca: ca.to_path_buf(),
            crl: crl.map(Path::to_path_buf),
            provider,
            build,
            verifier,
        })
    }

    fn current(&self) -> T {
        self.verifier
            .current(|| (self.build)(&self.ca, self.crl.as_deref(), &self.provider))
    }
}

impl ClientCertVerifier for ReloadingClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // No hints: a client then sends whatever certificate it has (RFC 8446 4.3.2), which is
        // what etcd's clients do anyway; hints would pin the CA loaded first.
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verdict = self
            .current()
            .verify_client_cert(end_entity, intermediates, now)
            .and_then(|verified| self.allowed.check(end_entity).map(|()| verified));
        if let Err(e) = &verdict {
            tracing::warn!(error = %e, "rejected a client certificate");
        }
        verdict
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.current().verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.current().verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.trust
            .provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Verification of a dialed peer's certificate: against the trusted CA and the CRL, both
/// re-read when their files change (so that a CA rollover or a revocation needs no restart),
/// then the allowed identity.
#[derive(Debug)]
struct ReloadingServerVerifier {
    trust: TrustFiles<Arc<rustls::client::WebPkiServerVerifier>>,
    allowed: AllowedIdentity,
}

impl ReloadingServerVerifier {
    fn build(
        ca: &Path,
        crl: Option<&Path>,
        provider: &Arc<CryptoProvider>,
    ) -> Result<Arc<rustls::client::WebPkiServerVerifier>, TlsError> {
        let mut builder = rustls::client::WebPkiServerVerifier::builder_with_provider(
            load_roots(ca)?,
            Arc::clone(provider),
        );
        if let Some(crl) = crl {
            // etcd checks the serial numbers of the certificate presented against the CRL.
            builder = builder
                .with_crls(load_crls(crl)?)
                .only_check_end_entity_revocation()
                .allow_unknown_revocation_status();
        }
        builder
            .build()
            .map_err(|e| TlsError::Rustls(format!("server certificate verifier: {e}")))
    }

    fn current(&self) -> Arc<rustls::client::WebPkiServerVerifier> {
        self.trust.current()
    }
}

impl ServerCertVerifier for ReloadingServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verified = self.current().verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )?;
        self.allowed.check(end_entity)?;
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.current().verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.current().verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.trust
            .provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// What auto TLS dials with: the server's certificate is not verified (etcd's self-signed
/// certificates chain to nothing), but its signature over the handshake still is.
#[derive(Debug)]
struct AcceptAnyServerCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

impl TlsInfo {
    /// The configuration of a TLS listener: this certificate, and, with a trusted CA, client
    /// certificates required and verified against it (etcd's `ServerConfig`: a trusted CA
    /// file alone already means `RequireAndVerifyClientCert`), `alpn` offered in that order.
    pub fn server_config(&self, alpn: &[&[u8]]) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        let provider = provider(&self.cipher_suites)?;
        let certified = Arc::new(ReloadingCertifiedKey::load(
            &self.cert_file,
            &self.key_file,
            Arc::clone(&provider),
        )?);
        let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_protocol_versions(&versions(&self.min_version, &self.max_version)?)
            .map_err(|e| TlsError::Rustls(e.to_string()))?;
        let builder = match (&self.trusted_ca_file, self.self_signed) {
            (Some(ca), false) => {
                builder.with_client_cert_verifier(Arc::new(ReloadingClientVerifier {
                    trust: TrustFiles::load(
                        "trusted CA and CRL",
                        ca,
                        self.crl_file.as_deref(),
                        Arc::clone(&provider),
                        ReloadingClientVerifier::build,
                    )?,
                    allowed: AllowedIdentity::of(self),
                }))
            }
            (None, false) if self.client_cert_auth => {
                return Err(TlsError::Rustls(
                    "client certificate authentication needs a trusted CA file".into(),
                ));
            }
            _ => builder.with_no_client_auth(),
        };
        let mut config = builder.with_cert_resolver(certified);
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(Arc::new(config))
    }

    /// The configuration for dialing a peer: its certificate verified against the trusted CA
    /// and the CRL, re-read when they change (not at all with auto TLS), this member's
    /// certificate presented.
    pub fn client_config(&self) -> Result<Arc<rustls::ClientConfig>, TlsError> {
        let provider = provider(&self.cipher_suites)?;
        let certified = Arc::new(ReloadingCertifiedKey::load(
            &self.cert_file,
            &self.key_file,
            Arc::clone(&provider),
        )?);
        let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_protocol_versions(&versions(&self.min_version, &self.max_version)?)
            .map_err(|e| TlsError::Rustls(e.to_string()))?;
        let builder = match (&self.trusted_ca_file, self.self_signed) {
            (_, true) => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAnyServerCert(provider))),
            (Some(ca), false) => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(ReloadingServerVerifier {
                    trust: TrustFiles::load(
                        "trusted CA and CRL (dialing)",
                        ca,
                        self.crl_file.as_deref(),
                        Arc::clone(&provider),
                        ReloadingServerVerifier::build,
                    )?,
                    allowed: AllowedIdentity::of(self),
                })),
            (None, false) => {
                return Err(TlsError::Rustls(
                    "dialing over TLS needs a trusted CA to verify the other side's certificate"
                        .into(),
                ));
            }
        };
        Ok(Arc::new(builder.with_client_cert_resolver(certified)))
    }
}

/// etcd's `SelfCert`: a self-signed certificate for `hosts` (IP addresses and names) in
/// `dir/cert.pem` and `dir/key.pem`, valid for `validity_years`, made once and reused while
/// both files exist. The key is written readable by the owner only.
pub fn self_cert(dir: &Path, hosts: &[String], validity_years: u32) -> Result<TlsInfo, TlsError> {
    let cert_file = dir.join("cert.pem");
    let key_file = dir.join("key.pem");
    let info = TlsInfo {
        cert_file: cert_file.clone(),
        key_file: key_file.clone(),
        self_signed: true,
        ..TlsInfo::default()
    };
    if cert_file.is_file() && key_file.is_file() {
        return Ok(info);
    }
    let fail = |reason: String| TlsError::SelfCert {
        dir: dir.to_path_buf(),
        reason,
    };
    let mut params =
        rcgen::CertificateParams::new(hosts.to_vec()).map_err(|e| fail(e.to_string()))?;
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "etcd");
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::minutes(5);
    params.not_after = now + time::Duration::days(365 * i64::from(validity_years.max(1)));
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyEncipherment,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    params.extended_key_usages = vec![
        rcgen::ExtendedKeyUsagePurpose::ServerAuth,
        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let key = rcgen::KeyPair::generate().map_err(|e| fail(e.to_string()))?;
    let cert = params.self_signed(&key).map_err(|e| fail(e.to_string()))?;
    fs::create_dir_all(dir).map_err(|e| fail(e.to_string()))?;
    write_private(&key_file, key.serialize_pem().as_bytes()).map_err(|e| fail(e.to_string()))?;
    fs::write(&cert_file, cert.pem()).map_err(|e| fail(e.to_string()))?;
    tracing::info!(dir = %dir.display(), ?hosts, "generated a self-signed certificate (auto TLS)");
    Ok(info)
}

fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// The name a dialed peer's certificate must be valid for: the host of `host:port`.
pub fn server_name(host_port: &str) -> Result<ServerName<'static>, TlsError> {
    let host = host_port
        .rsplit_once(':')
        .map_or(host_port, |(h, _)| h)
        .trim_start_matches('[')
        .trim_end_matches(']');
    ServerName::try_from(host.to_owned())
        .map_err(|e| TlsError::Rustls(format!("{host:?} is not a valid TLS server name: {e}")))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn self_cert_is_made_once_and_loads() {
        let dir = tempfile::tempdir().unwrap();
        let hosts = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
        let info = self_cert(dir.path(), &hosts, 1).unwrap();
        let first = fs::read(&info.cert_file).unwrap();
        let again = self_cert(dir.path(), &hosts, 1).unwrap();
        assert_eq!(
            fs::read(&again.cert_file).unwrap(),
            first,
            "reused, not regenerated"
        );
        let mode = fs::metadata(&info.key_file).unwrap().permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600
        );
        info.server_config(&[b"h2"]).unwrap();
        info.client_config().unwrap();
    }

    #[test]
    fn cipher_suites_and_versions_are_etcds_names() {
        let p = provider(&["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256".into()]).unwrap();
        let tls12: Vec<_> = p
            .cipher_suites
            .iter()
            .filter(|s| s.version() == &rustls::version::TLS12)
            .collect();
        assert_eq!(tls12.len(), 1);
        assert!(matches!(
            provider(&["TLS_RSA_WITH_3DES_EDE_CBC_SHA".into()]),
            Err(TlsError::UnsupportedCipherSuite(_))
        ));
        assert_eq!(versions("", "").unwrap().len(), 2);
        assert_eq!(versions("TLS1.3", "").unwrap().len(), 1);
        assert!(versions("TLS1.1", "").is_err());
        assert!(versions("TLS1.3", "TLS1.2").is_err());
    }

    #[test]
    fn client_cert_auth_without_a_ca_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut info = self_cert(dir.path(), &["localhost".to_owned()], 1).unwrap();
        info.self_signed = false;
        info.client_cert_auth = true;
        assert!(info.server_config(&[]).is_err());
    }

    fn cert(cn: &str, sans: &[&str]) -> CertificateDer<'static> {
        let mut params =
            rcgen::CertificateParams::new(sans.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())
                .unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().clone()
    }

    #[test]
    fn common_name_of_a_certificate() {
        assert_eq!(
            common_name(cert("root", &["localhost"]).as_ref()),
            Some("root".to_owned())
        );
        assert_eq!(common_name(b"not a certificate"), None);
    }

    #[test]
    fn allowed_common_name_and_hostname() {
        let c = cert(
            "example.com",
            &["localhost", "*.infra.example", "127.0.0.1"],
        );
        let allow = |cn: Option<&str>, host: Option<&str>| AllowedIdentity {
            cn: cn.map(str::to_owned),
            hostname: host.map(str::to_owned),
        };
        assert!(allow(None, None).check(&c).is_ok());
        assert!(allow(Some("example.com"), None).check(&c).is_ok());
        assert!(allow(Some("example2.com"), None).check(&c).is_err());
        assert!(allow(None, Some("localhost")).check(&c).is_ok());
        assert!(allow(None, Some("m1.infra.example")).check(&c).is_ok());
        assert!(allow(None, Some("a.b.infra.example")).check(&c).is_err());
        assert!(allow(None, Some("127.0.0.1")).check(&c).is_ok());
        assert!(allow(None, Some("127.0.0.2")).check(&c).is_err());
        assert!(allow(Some("example.com"), Some("other")).check(&c).is_err());
        // Refused with the alert Go sends for a refused certificate: bad_certificate.
        let Err(rustls::Error::InvalidCertificate(refused)) = allow(Some("x"), None).check(&c)
        else {
            panic!("an identity refusal is an invalid certificate");
        };
        assert_eq!(
            rustls::AlertDescription::from(refused),
            rustls::AlertDescription::BadCertificate
        );
    }

    #[test]
    fn server_names_come_from_host_port() {
        assert!(server_name("localhost:2380").is_ok());
        assert!(server_name("127.0.0.1:2380").is_ok());
        assert!(server_name("[::1]:2380").is_ok());
    }
}
