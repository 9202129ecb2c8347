//! etcd's protobuf messages as JSON, the way etcd 3.4's gateway (grpc-gateway v1 with
//! golang/protobuf's jsonpb, `OrigName: true`) writes and reads them.
//!
//! Written: the proto field names (`create_revision`), 64-bit integers as strings, bytes as
//! standard base64, enums by name, fields at their zero value left out. Read: proto or
//! lowerCamel names, integers as numbers or strings, enums by name or number; unknown fields
//! are ignored, as grpc-gateway's decoder ignores them (`AllowUnknownFields`).

use std::sync::LazyLock;

use prost_reflect::{
    DescriptorError, DescriptorPool, DeserializeOptions, DynamicMessage, MessageDescriptor,
    MethodDescriptor, SerializeOptions,
};

/// The file descriptor set of etcd's protos, written by the build script.
const DESCRIPTORS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/etcd_descriptors.bin"));

static POOL: LazyLock<Result<DescriptorPool, DescriptorError>> =
    LazyLock::new(|| DescriptorPool::decode(DESCRIPTORS));

/// Why a message could not be mapped.
#[derive(Debug, thiserror::Error)]
pub enum JsonError {
    /// The embedded descriptors do not decode (a broken build).
    #[error("gateway: the embedded protobuf descriptors are unusable: {0}")]
    Descriptors(String),
    /// A method the gateway routes to is not among the descriptors (a broken build).
    #[error("gateway: no gRPC method {0}")]
    NoMethod(String),
    /// The request body is not a JSON form of the request message.
    #[error("{0}")]
    BadRequest(String),
    /// A response message did not decode (it came from this server's own gRPC side).
    #[error("gateway: undecodable response: {0}")]
    BadResponse(String),
}

/// The method `service`/`method` (e.g. `etcdserverpb.KV`, `Range`) among etcd's descriptors.
pub fn method(service: &str, method: &str) -> Result<MethodDescriptor, JsonError> {
    let pool = POOL
        .as_ref()
        .map_err(|e| JsonError::Descriptors(e.to_string()))?;
    pool.get_service_by_name(service)
        .and_then(|s| s.methods().find(|m| m.name() == method))
        .ok_or_else(|| JsonError::NoMethod(format!("{service}/{method}")))
}

/// The protobuf encoding of the JSON `json`, read as a `desc` message (straight from the
/// bytes: no intermediate JSON tree).
pub fn decode_request(desc: &MessageDescriptor, json: &[u8]) -> Result<Vec<u8>, JsonError> {
    let bad = |e: serde_json::Error| JsonError::BadRequest(e.to_string());
    let mut de = serde_json::Deserializer::from_slice(json);
    let options = DeserializeOptions::new().deny_unknown_fields(false);
    let message =
        DynamicMessage::deserialize_with_options(desc.clone(), &mut de, &options).map_err(bad)?;
    de.end().map_err(bad)?;
    Ok(prost::Message::encode_to_vec(&message))
}

/// The JSON form of the protobuf bytes of a `desc` message, its fields in the order the proto
/// declares them, as jsonpb writes them.
pub fn encode_response(desc: &MessageDescriptor, bytes: &[u8]) -> Result<Vec<u8>, JsonError> {
    let message = DynamicMessage::decode(desc.clone(), bytes)
        .map_err(|e| JsonError::BadResponse(e.to_string()))?;
    let options = SerializeOptions::new()
        .use_proto_field_name(true)
        .stringify_64_bit_integers(true)
        .skip_default_fields(true)
        .use_enum_numbers(false);
    let mut out = Vec::with_capacity(bytes.len() * 2 + 16);
    message
        .serialize_with_options(&mut serde_json::Serializer::new(&mut out), &options)
        .map_err(|e| JsonError::BadResponse(e.to_string()))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use prost::Message;
    use serde_json::json;

    use super::*;
    use crate::proto::etcdserverpb as pb;
    use crate::proto::mvccpb;

    /// `json!` as bytes.
    macro_rules! json_bytes {
        ($($t:tt)*) => {
            &serde_json::to_vec(&json!($($t)*)).unwrap()
        };
    }

    fn input(service: &str, name: &str) -> MessageDescriptor {
        method(service, name).unwrap().input()
    }

    fn output(service: &str, name: &str) -> MessageDescriptor {
        method(service, name).unwrap().output()
    }

    fn encode(service: &str, name: &str, bytes: &[u8]) -> String {
        String::from_utf8(encode_response(&output(service, name), bytes).unwrap()).unwrap()
    }

    #[test]
    fn requests_read_go_json_and_jsonpb_names_numbers_and_strings() {
        // What etcd's e2e tests send: Go's json.Marshal of the gogoproto structs (proto names,
        // int64 as numbers), and jsonpb (lowerCamel, int64 as strings, enums by number).
        let bytes = decode_request(
            &input("etcdserverpb.Watch", "Watch"),
            json_bytes!({"create_request": {"key": "Zm9v", "start_revision": 1}}),
        )
        .unwrap();
        let watch = pb::WatchRequest::decode(bytes.as_slice()).unwrap();
        let Some(pb::watch_request::RequestUnion::CreateRequest(create)) = watch.request_union
        else {
            panic!("a create request: {watch:?}");
        };
        assert_eq!(create.key, b"foo");
        assert_eq!(create.start_revision, 1);

        let bytes = decode_request(
            &input("etcdserverpb.KV", "Txn"),
            json_bytes!({"compare": [{"key": "Zm9v", "result": 0, "target": "CREATE",
                                "createRevision": "0"}],
                   "success": [{"requestPut": {"key": "Zm9v", "value": "YmFy"}}]}),
        )
        .unwrap();
        let txn = pb::TxnRequest::decode(bytes.as_slice()).unwrap();
        assert_eq!(
            txn.compare[0].target,
            pb::compare::CompareTarget::Create as i32
        );
        // A oneof member at its zero value is still set.
        assert_eq!(
            txn.compare[0].target_union,
            Some(pb::compare::TargetUnion::CreateRevision(0))
        );
        assert_eq!(txn.success.len(), 1);
    }

    #[test]
    fn unknown_fields_are_ignored_and_bad_values_refused() {
        let txn = input("etcdserverpb.KV", "Txn");
        // etcd's e2e "malformed" txn: Go field names that are not JSON names, ignored as
        // grpc-gateway ignores them (etcd then refuses the empty request op).
        let malformed = json_bytes!({"compare": [{"result": 0, "target": 1, "key": "Zm9v",
                                            "TargetUnion": null}],
                                     "success": [{"Request": {"RequestPut": {"key": "Zm9v"}}}]});
        let bytes = decode_request(&txn, malformed).unwrap();
        let txn = pb::TxnRequest::decode(bytes.as_slice()).unwrap();
        assert_eq!(txn.compare[0].key, b"foo");
        assert_eq!(txn.success, [pb::RequestOp { request: None }]);
        let put = input("etcdserverpb.KV", "Put");
        assert!(matches!(
            decode_request(&put, b"{\"key\": \"Zm9v\"} trailing"),
            Err(JsonError::BadRequest(_))
        ));
        assert!(matches!(
            decode_request(&put, json_bytes!({"key": "not base64!"})),
            Err(JsonError::BadRequest(_))
        ));
        assert!(matches!(
            decode_request(&put, json_bytes!({"key": 5})),
            Err(JsonError::BadRequest(_))
        ));
    }

    #[test]
    fn responses_are_written_as_etcds_gateway_writes_them() {
        let resp = pb::RangeResponse {
            header: Some(pb::ResponseHeader {
                cluster_id: 12_585_971_608_760_269_493,
                member_id: 13_847_567_121_247_652_255,
                revision: 2,
                raft_term: 3,
            }),
            kvs: vec![mvccpb::KeyValue {
                key: b"foo".to_vec(),
                create_revision: 2,
                mod_revision: 2,
                version: 1,
                value: b"bar".to_vec(),
                lease: 0,
            }],
            more: false,
            count: 1,
        };
        let json = encode("etcdserverpb.KV", "Range", &resp.encode_to_vec());
        // etcd 3.4's answer to the same range, byte for byte.
        assert_eq!(
            json,
            r#"{"header":{"cluster_id":"12585971608760269493","member_id":"13847567121247652255","revision":"2","raft_term":"3"},"kvs":[{"key":"Zm9v","create_revision":"2","mod_revision":"2","version":"1","value":"YmFy"}],"count":"1"}"#
        );
        let txn = pb::TxnResponse {
            header: None,
            succeeded: true,
            responses: vec![pb::ResponseOp {
                response: Some(pb::response_op::Response::ResponsePut(pb::PutResponse {
                    header: Some(pb::ResponseHeader {
                        revision: 2,
                        ..Default::default()
                    }),
                    prev_kv: None,
                })),
            }],
        };
        let json = encode("etcdserverpb.KV", "Txn", &txn.encode_to_vec());
        assert_eq!(
            json,
            r#"{"succeeded":true,"responses":[{"response_put":{"header":{"revision":"2"}}}]}"#
        );
        assert_eq!(encode("etcdserverpb.KV", "Compact", &[]), "{}");
    }

    #[test]
    fn enums_are_written_by_name() {
        let resp = pb::WatchResponse {
            events: vec![mvccpb::Event {
                r#type: mvccpb::event::EventType::Delete as i32,
                kv: None,
                prev_kv: None,
            }],
            ..Default::default()
        };
        let json = encode("etcdserverpb.Watch", "Watch", &resp.encode_to_vec());
        assert_eq!(json, r#"{"events":[{"type":"DELETE"}]}"#);
    }
}
