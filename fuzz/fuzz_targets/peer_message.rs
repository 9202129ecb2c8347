//! The postcard payloads of peer frames: `raft_core::raftpb::Message` (message streams),
//! `wire::SnapshotHeader` (snapshot streams), `ClusterInfo` (members query answers) and
//! `membership::Member` (the `members` bucket): a value or an error, and what decodes
//! round-trips.

#![no_main]

use ferrocd_fuzz::postcard_round_trip;
use libfuzzer_sys::fuzz_target;
use node::membership::Member;
use node::transport::tcp::wire::{ClusterInfo, SnapshotHeader};
use raft_core::raftpb::Message;

fuzz_target!(|data: &[u8]| {
    let Some((&which, bytes)) = data.split_first() else {
        return;
    };
    match which % 4 {
        0 => {
            let _ = postcard_round_trip::<Message>(bytes);
        }
        1 => {
            let _ = postcard_round_trip::<SnapshotHeader>(bytes);
        }
        2 => {
            let _ = postcard_round_trip::<ClusterInfo>(bytes);
        }
        _ => {
            let _ = postcard_round_trip::<Member>(bytes);
        }
    }
});
