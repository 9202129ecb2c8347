//! etcd's v3 API messages and gRPC stubs, generated at build time from the vendored protos in
//! `proto/` (packages `etcdserverpb`, `mvccpb`, `authpb`, `v3lockpb`, `v3electionpb`, so the
//! wire paths are etcd's).

/// `mvccpb`: key-values and watch events.
#[allow(missing_docs, clippy::all, clippy::pedantic, rust_2018_idioms)]
pub mod mvccpb {
    tonic::include_proto!("mvccpb");
}

/// `authpb`: users, roles and permissions.
#[allow(missing_docs, clippy::all, clippy::pedantic, rust_2018_idioms)]
pub mod authpb {
    tonic::include_proto!("authpb");
}

/// `etcdserverpb`: the KV, Watch, Lease, Cluster, Maintenance and Auth services.
#[allow(missing_docs, clippy::all, clippy::pedantic, rust_2018_idioms)]
pub mod etcdserverpb {
    tonic::include_proto!("etcdserverpb");
}

/// `v3lockpb`: the Lock service (a distributed mutex over the KV API).
#[allow(missing_docs, clippy::all, clippy::pedantic, rust_2018_idioms)]
pub mod v3lockpb {
    tonic::include_proto!("v3lockpb");
}

/// `v3electionpb`: the Election service (leader election over the KV API).
#[allow(missing_docs, clippy::all, clippy::pedantic, rust_2018_idioms)]
pub mod v3electionpb {
    tonic::include_proto!("v3electionpb");
}
