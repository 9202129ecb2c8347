//! etcd's v3 API messages and gRPC stubs, generated at build time from the vendored protos in
//! `proto/` (packages `etcdserverpb`, `mvccpb`, `authpb`, so the wire paths are etcd's).

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
