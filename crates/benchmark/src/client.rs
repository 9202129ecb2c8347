//! gRPC connections to the endpoints.

use std::time::Duration;

use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

use crate::BenchError;

/// `--conns` connections, spread round-robin over the endpoints (connection `j` goes to
/// endpoint `j % endpoints`); clients share them round-robin.
#[derive(Clone, Debug)]
pub struct Pool {
    channels: Vec<Channel>,
}

/// `host:port` or a URL; a missing scheme means `http://`.
pub fn endpoint_url(endpoint: &str) -> String {
    if endpoint.contains("://") {
        endpoint.to_owned()
    } else {
        format!("http://{endpoint}")
    }
}

/// TLS for https endpoints: the CA the members' certificates must chain to (`--cacert`).
pub fn tls_config(cacert_pem: Vec<u8>) -> ClientTlsConfig {
    ClientTlsConfig::new().ca_certificate(Certificate::from_pem(cacert_pem))
}

/// One connection to `endpoint`, opened within `timeout`, over TLS with `tls` (which an https
/// endpoint needs).
pub async fn connect(
    endpoint: &str,
    timeout: Duration,
    tls: Option<&ClientTlsConfig>,
) -> Result<Channel, BenchError> {
    let url = endpoint_url(endpoint);
    let mut ep = Endpoint::from_shared(url.clone())
        .map_err(|source| BenchError::Endpoint {
            endpoint: endpoint.to_owned(),
            source,
        })?
        .connect_timeout(timeout)
        .tcp_nodelay(true);
    if let Some(tls) = tls {
        ep = ep
            .tls_config(tls.clone())
            .map_err(|source| BenchError::Endpoint {
                endpoint: endpoint.to_owned(),
                source,
            })?;
    }
    ep.connect().await.map_err(|source| BenchError::Connect {
        endpoint: url,
        source,
    })
}

impl Pool {
    /// Opens `conns` connections (at least one) to `endpoints`.
    pub async fn connect(
        endpoints: &[String],
        conns: usize,
        timeout: Duration,
        tls: Option<&ClientTlsConfig>,
    ) -> Result<Self, BenchError> {
        if endpoints.is_empty() {
            return Err(BenchError::NoEndpoints);
        }
        let mut channels = Vec::with_capacity(conns.max(1));
        for j in 0..conns.max(1) {
            channels.push(connect(&endpoints[j % endpoints.len()], timeout, tls).await?);
        }
        Ok(Self { channels })
    }

    /// The connection client `i` uses.
    pub fn channel(&self, i: usize) -> Channel {
        self.channels[i % self.channels.len()].clone()
    }

    /// How many connections are open.
    pub fn len(&self) -> usize {
        self.channels.len()
    }

    /// Whether the pool has no connection (never, once connected).
    pub fn is_empty(&self) -> bool {
        self.channels.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_default_to_http() {
        assert_eq!(endpoint_url("127.0.0.1:2379"), "http://127.0.0.1:2379");
        assert_eq!(endpoint_url("https://h:1"), "https://h:1");
    }
}
