//! `grpc.health.v1.Health` on the client port, as load balancers and Kubernetes gRPC probes
//! ask it: the server as a whole is SERVING; an unknown service is NOT_FOUND.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use common::Ferrocd;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

#[test]
fn the_server_as_a_whole_is_serving() {
    let f = Ferrocd::start();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let channel = tonic::transport::Channel::from_shared(f.client_url())
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut client = HealthClient::new(channel);
        let overall = client
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(overall.status, ServingStatus::Serving as i32);
        let unknown = client
            .check(HealthCheckRequest {
                service: "no.such.Service".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(unknown.code(), tonic::Code::NotFound);
    });
}
