//! Real certificates for TLS tests, made in the test with rcgen: a CA, certificates it signs
//! (for servers and clients), and CRLs revoking some of them. Files are PEM, as etcd reads
//! them.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    RevokedCertParams, SerialNumber,
};

/// A certificate authority whose files live in `dir`.
pub struct Ca {
    dir: PathBuf,
    name: String,
    issuer: Issuer<'static, KeyPair>,
    /// The CA certificate (PEM).
    pub cert: PathBuf,
}

/// A certificate and its key, as files.
#[derive(Clone, Debug)]
pub struct Issued {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub serial: u64,
}

impl Issued {
    pub fn cert_str(&self) -> &str {
        self.cert.to_str().expect("utf-8 path")
    }

    pub fn key_str(&self) -> &str {
        self.key.to_str().expect("utf-8 path")
    }
}

impl Ca {
    /// A new CA named `name`, its certificate written to `dir/<name>-ca.pem`.
    pub fn new(dir: &Path, name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} CA"));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().expect("CA key");
        let cert = params.self_signed(&key).expect("CA certificate");
        let path = dir.join(format!("{name}-ca.pem"));
        std::fs::write(&path, cert.pem()).expect("writing the CA certificate");
        Ca {
            dir: dir.to_path_buf(),
            name: name.to_owned(),
            issuer: Issuer::new(params, key),
            cert: path,
        }
    }

    pub fn cert_str(&self) -> &str {
        self.cert.to_str().expect("utf-8 path")
    }

    /// A certificate for `common_name` and `sans` (IPs and names), good for server and client
    /// authentication, with serial `serial`, written as `dir/<ca>-<file>.pem` and
    /// `dir/<ca>-<file>-key.pem`.
    pub fn issue(&self, file: &str, common_name: &str, sans: &[&str], serial: u64) -> Issued {
        self.issue_valid(file, common_name, sans, serial, None)
    }

    /// [`Ca::issue`] with a certificate that expired yesterday.
    pub fn issue_expired(&self, file: &str, common_name: &str, serial: u64) -> Issued {
        let now = time::OffsetDateTime::now_utc();
        let validity = (
            now - time::Duration::days(30),
            now - time::Duration::days(1),
        );
        self.issue_valid(file, common_name, &[], serial, Some(validity))
    }

    fn issue_valid(
        &self,
        file: &str,
        common_name: &str,
        sans: &[&str],
        serial: u64,
        validity: Option<(time::OffsetDateTime, time::OffsetDateTime)>,
    ) -> Issued {
        let mut params =
            CertificateParams::new(sans.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())
                .expect("leaf params");
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.serial_number = Some(SerialNumber::from(serial));
        if let Some((not_before, not_after)) = validity {
            params.not_before = not_before;
            params.not_after = not_after;
        }
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = KeyPair::generate().expect("leaf key");
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("signing a certificate");
        let cert_path = self.dir.join(format!("{}-{file}.pem", self.name));
        let key_path = self.dir.join(format!("{}-{file}-key.pem", self.name));
        std::fs::write(&cert_path, cert.pem()).expect("writing a certificate");
        std::fs::write(&key_path, key.serialize_pem()).expect("writing a key");
        Issued {
            cert: cert_path,
            key: key_path,
            serial,
        }
    }

    /// A CRL revoking `revoked`, written to `dir/<ca>-crl.pem`.
    pub fn crl(&self, revoked: &[&Issued]) -> PathBuf {
        let now = time::OffsetDateTime::now_utc();
        let params = CertificateRevocationListParams {
            this_update: now - time::Duration::minutes(1),
            next_update: now + time::Duration::days(1),
            crl_number: SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: revoked
                .iter()
                .map(|c| RevokedCertParams {
                    serial_number: SerialNumber::from(c.serial),
                    revocation_time: now - time::Duration::minutes(1),
                    reason_code: None,
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        let crl = params.signed_by(&self.issuer).expect("signing a CRL");
        let path = self.dir.join(format!("{}-crl.pem", self.name));
        std::fs::write(&path, crl.pem().expect("CRL PEM")).expect("writing a CRL");
        path
    }
}
