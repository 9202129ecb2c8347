//! Human-readable descriptions of Raft's data, in etcd's exact formats (used in logs and by the
//! conformance tests, which compare them byte for byte).

use std::fmt::Write as _;

use crate::raft::{LOCAL_APPEND_THREAD, LOCAL_APPLY_THREAD, NONE, SoftState};
use crate::raftpb::{
    AnyConfChange, ConfState, Entry, EntryType, HardState, Message, Snapshot,
    conf_changes_to_string,
};
use crate::raw_node::Ready;

/// Formats an entry's application data.
pub type EntryFormatter<'a> = &'a dyn Fn(&[u8]) -> String;

/// `Term:1 Vote:1 Commit:3` (the vote only if set).
pub fn describe_hard_state(hs: &HardState) -> String {
    let mut s = format!("Term:{}", hs.term);
    if hs.vote != 0 {
        let _ = write!(s, " Vote:{}", hs.vote);
    }
    let _ = write!(s, " Commit:{}", hs.commit);
    s
}

/// `Lead:1 State:StateLeader`.
pub fn describe_soft_state(ss: &SoftState) -> String {
    format!("Lead:{} State:{}", ss.lead, ss.raft_state)
}

/// `Voters:[1 2] VotersOutgoing:[] Learners:[] LearnersNext:[] AutoLeave:false`.
pub fn describe_conf_state(cs: &ConfState) -> String {
    cs.to_string()
}

/// `Index:5 Term:1 ConfState:...`.
pub fn describe_snapshot(snap: &Snapshot) -> String {
    format!(
        "Index:{} Term:{} ConfState:{}",
        snap.metadata.index,
        snap.metadata.term,
        describe_conf_state(&snap.metadata.conf_state)
    )
}

/// Go's `%q` of a byte string: a double-quoted, escaped string literal.
pub fn go_quote(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len() + 2);
    out.push('"');
    for chunk in data.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\x07' => out.push_str("\\a"),
                '\x08' => out.push_str("\\b"),
                '\x0c' => out.push_str("\\f"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\x0b' => out.push_str("\\v"),
                c if (c as u32) < 0x20 || c == '\x7f' => {
                    let _ = write!(out, "\\x{:02x}", c as u32);
                }
                c if c.is_control() => {
                    if (c as u32) < 0x10000 {
                        let _ = write!(out, "\\u{:04x}", c as u32);
                    } else {
                        let _ = write!(out, "\\U{:08x}", c as u32);
                    }
                }
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out.push('"');
    out
}

/// The default entry formatter: Go's `%q`.
pub fn default_entry_formatter(data: &[u8]) -> String {
    go_quote(data)
}

/// `1/4 EntryNormal "data"`, or for configuration changes `1/5 EntryConfChangeV2 v2 v3`.
pub fn describe_entry(e: &Entry, f: Option<EntryFormatter<'_>>) -> String {
    let formatted = match e.entry_type {
        EntryType::Normal => match f {
            Some(f) => f(&e.data),
            None => default_entry_formatter(&e.data),
        },
        t => match AnyConfChange::from_entry(t, &e.data) {
            Some(Ok(cc)) => conf_changes_to_string(&cc.as_v2().changes),
            Some(Err(err)) => err.to_string(),
            None => String::new(),
        },
    };
    if formatted.is_empty() {
        format!("{}/{} {}", e.term, e.index, e.entry_type)
    } else {
        format!("{}/{} {} {formatted}", e.term, e.index, e.entry_type)
    }
}

/// One [`describe_entry`] line per entry.
pub fn describe_entries(entries: &[Entry], f: Option<EntryFormatter<'_>>) -> String {
    let mut out = String::new();
    for e in entries {
        out.push_str(&describe_entry(e, f));
        out.push('\n');
    }
    out
}

fn describe_target(id: u64) -> String {
    match id {
        NONE => "None".to_owned(),
        LOCAL_APPEND_THREAD => "AppendThread".to_owned(),
        LOCAL_APPLY_THREAD => "ApplyThread".to_owned(),
        id => format!("{id:x}"),
    }
}

/// `1->2 MsgApp Term:1 Log:1/2 Commit:2 Entries:[...]`, with snapshot and responses on
/// following lines.
pub fn describe_message(m: &Message, f: Option<EntryFormatter<'_>>) -> String {
    describe_message_with_indent("", m, f)
}

fn describe_message_with_indent(
    indent: &str,
    m: &Message,
    f: Option<EntryFormatter<'_>>,
) -> String {
    let mut buf = format!(
        "{indent}{}->{} {} Term:{} Log:{}/{}",
        describe_target(m.from),
        describe_target(m.to),
        m.msg_type,
        m.term,
        m.log_term,
        m.index
    );
    if m.reject {
        let _ = write!(buf, " Rejected (Hint: {})", m.reject_hint);
    }
    if m.commit != 0 {
        let _ = write!(buf, " Commit:{}", m.commit);
    }
    if m.vote != 0 {
        let _ = write!(buf, " Vote:{}", m.vote);
    }
    match m.entries.as_slice() {
        [] => {}
        [e] => {
            let _ = write!(buf, " Entries:[{}]", describe_entry(e, f));
        }
        ents => {
            buf.push_str(" Entries:[");
            for e in ents {
                let _ = write!(buf, "\n{indent}  {}", describe_entry(e, f));
            }
            let _ = write!(buf, "\n{indent}]");
        }
    }
    if let Some(s) = m.snapshot.as_ref().filter(|s| !s.is_empty()) {
        let _ = write!(buf, "\n{indent}  Snapshot: {}", describe_snapshot(s));
    }
    if !m.responses.is_empty() {
        buf.push_str(" Responses:[");
        let inner = format!("{indent}  ");
        for r in &m.responses {
            buf.push('\n');
            buf.push_str(&describe_message_with_indent(&inner, r, f));
        }
        let _ = write!(buf, "\n{indent}]");
    }
    buf
}

/// Everything a [`Ready`] holds, or `<empty Ready>`.
pub fn describe_ready(rd: &Ready, f: Option<EntryFormatter<'_>>) -> String {
    let mut buf = String::new();
    if let Some(ss) = &rd.soft_state {
        buf.push_str(&describe_soft_state(ss));
        buf.push('\n');
    }
    if !rd.hard_state.is_empty() {
        let _ = writeln!(buf, "HardState {}", describe_hard_state(&rd.hard_state));
    }
    if !rd.read_states.is_empty() {
        buf.push_str("ReadStates [");
        for (i, rs) in rd.read_states.iter().enumerate() {
            if i > 0 {
                buf.push(' ');
            }
            let bytes: Vec<String> = rs.request_ctx.iter().map(u8::to_string).collect();
            let _ = write!(buf, "{{{} [{}]}}", rs.index, bytes.join(" "));
        }
        buf.push_str("]\n");
    }
    if !rd.entries.is_empty() {
        buf.push_str("Entries:\n");
        buf.push_str(&describe_entries(&rd.entries, f));
    }
    if !rd.snapshot.is_empty() {
        let _ = writeln!(buf, "Snapshot {}", describe_snapshot(&rd.snapshot));
    }
    if !rd.committed_entries.is_empty() {
        buf.push_str("CommittedEntries:\n");
        buf.push_str(&describe_entries(&rd.committed_entries, f));
    }
    if !rd.messages.is_empty() {
        buf.push_str("Messages:\n");
        for m in &rd.messages {
            buf.push_str(&describe_message(m, f));
            buf.push('\n');
        }
    }
    if buf.is_empty() {
        "<empty Ready>".to_owned()
    } else {
        format!("Ready MustSync={}:\n{buf}", rd.must_sync)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raftpb::{ConfChangeSingle, ConfChangeType, ConfChangeV2, MessageType};

    #[test]
    fn quotes_like_go() {
        assert_eq!(go_quote(b""), "\"\"");
        assert_eq!(go_quote(b"foo"), "\"foo\"");
        assert_eq!(
            go_quote(b"a\"b\\c\n\x01\xff"),
            "\"a\\\"b\\\\c\\n\\x01\\xff\""
        );
        assert_eq!(go_quote("é".as_bytes()), "\"é\"");
    }

    #[test]
    fn describes_entries_and_messages() {
        let cc = ConfChangeV2 {
            changes: vec![
                ConfChangeSingle::new(ConfChangeType::AddNode, 2),
                ConfChangeSingle::new(ConfChangeType::AddLearnerNode, 3),
            ],
            ..ConfChangeV2::default()
        };
        let e = Entry::new(1, 4, EntryType::ConfChangeV2, cc.encode());
        assert_eq!(describe_entry(&e, None), "1/4 EntryConfChangeV2 v2 l3");
        let e = Entry::new(1, 5, EntryType::ConfChangeV2, Vec::new());
        assert_eq!(describe_entry(&e, None), "1/5 EntryConfChangeV2");
        let mut m = Message::new(MessageType::MsgAppResp, 2, 1);
        m.term = 1;
        m.index = 3;
        m.reject = true;
        m.reject_hint = 2;
        assert_eq!(
            describe_message(&m, None),
            "2->1 MsgAppResp Term:1 Log:0/3 Rejected (Hint: 2)"
        );
        let mut outer = Message::new(MessageType::MsgStorageAppend, 1, LOCAL_APPEND_THREAD);
        outer.entries = vec![
            Entry::new(1, 1, EntryType::Normal, b"a".to_vec()),
            Entry::new(1, 2, EntryType::Normal, b"b".to_vec()),
        ];
        outer.responses = vec![Message::new(MessageType::MsgAppResp, 1, 1)];
        assert_eq!(
            describe_message(&outer, None),
            "1->AppendThread MsgStorageAppend Term:0 Log:0/0 Entries:[\n  1/1 EntryNormal \"a\"\n  1/2 EntryNormal \"b\"\n] Responses:[\n  1->1 MsgAppResp Term:0 Log:0/0\n]"
        );
        assert_eq!(describe_ready(&Ready::default(), None), "<empty Ready>");
        assert_eq!(
            describe_hard_state(&HardState {
                term: 2,
                vote: 0,
                commit: 5
            }),
            "Term:2 Commit:5"
        );
    }
}
