//! Configuration change requests as they travel in log entries: etcd's `ConfChange` (v1, one
//! change) and `ConfChangeV2` (several changes, possibly through joint consensus), with their
//! protobuf encoding so that entry sizes match etcd's.

use std::fmt;

use super::{ConfChangeSingle, ConfChangeType, EntryType};

/// How a [`ConfChangeV2`] moves through joint consensus.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum ConfChangeTransition {
    /// Joint consensus only if needed (more than one change), left automatically.
    #[default]
    Auto,
    /// Always joint consensus, left automatically.
    JointImplicit,
    /// Always joint consensus, left by an explicit empty change.
    JointExplicit,
}

impl ConfChangeTransition {
    fn number(self) -> u64 {
        match self {
            ConfChangeTransition::Auto => 0,
            ConfChangeTransition::JointImplicit => 1,
            ConfChangeTransition::JointExplicit => 2,
        }
    }

    fn from_number(n: u64) -> Result<Self, DecodeError> {
        match n {
            0 => Ok(ConfChangeTransition::Auto),
            1 => Ok(ConfChangeTransition::JointImplicit),
            2 => Ok(ConfChangeTransition::JointExplicit),
            _ => Err(DecodeError("invalid ConfChangeTransition")),
        }
    }
}

/// A single-change configuration request (etcd's legacy `ConfChange`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct ConfChange {
    /// An application-chosen id (opaque to Raft).
    pub id: u64,
    /// What to do.
    pub change_type: ConfChangeType,
    /// To which node.
    pub node_id: u64,
    /// Application data (opaque to Raft).
    pub context: Vec<u8>,
}

/// A configuration request of any number of changes (etcd's `ConfChangeV2`).
///
/// No changes with [`ConfChangeTransition::Auto`] means "leave the joint configuration".
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct ConfChangeV2 {
    /// How to go through joint consensus.
    pub transition: ConfChangeTransition,
    /// The changes.
    pub changes: Vec<ConfChangeSingle>,
    /// Application data (opaque to Raft).
    pub context: Vec<u8>,
}

/// Why bytes could not be decoded as a configuration change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("proto: {0}")]
pub struct DecodeError(&'static str);

impl ConfChangeV2 {
    /// Whether this change leaves a joint configuration (it is empty apart from the context).
    pub fn leave_joint(&self) -> bool {
        self.transition == ConfChangeTransition::Auto && self.changes.is_empty()
    }

    /// `Some(auto_leave)` if the change goes through joint consensus (more than one change, or
    /// an explicit request), `None` for a simple change.
    pub fn enter_joint(&self) -> Option<bool> {
        if self.transition != ConfChangeTransition::Auto || self.changes.len() > 1 {
            Some(match self.transition {
                ConfChangeTransition::Auto | ConfChangeTransition::JointImplicit => true,
                ConfChangeTransition::JointExplicit => false,
            })
        } else {
            None
        }
    }

    /// The protobuf encoding (etcd's wire format).
    pub fn encode(&self) -> Vec<u8> {
        let mut buf = Vec::new();
        put_key(&mut buf, 1, 0);
        put_varint(&mut buf, self.transition.number());
        for cc in &self.changes {
            let mut inner = Vec::new();
            put_key(&mut inner, 1, 0);
            put_varint(&mut inner, cc.change_type.number() as u64);
            put_key(&mut inner, 2, 0);
            put_varint(&mut inner, cc.node_id);
            put_key(&mut buf, 2, 2);
            put_varint(&mut buf, inner.len() as u64);
            buf.extend_from_slice(&inner);
        }
        if !self.context.is_empty() {
            put_key(&mut buf, 3, 2);
            put_varint(&mut buf, self.context.len() as u64);
            buf.extend_from_slice(&self.context);
        }
        buf
    }

    /// Decodes the protobuf encoding; empty bytes are the empty change (leave joint).
    pub fn decode(mut data: &[u8]) -> Result<Self, DecodeError> {
        let mut cc = ConfChangeV2::default();
        while !data.is_empty() {
            let (field, value) = read_field(&mut data)?;
            match (field, value) {
                (1, Value::Varint(v)) => cc.transition = ConfChangeTransition::from_number(v)?,
                (2, Value::Bytes(mut inner)) => {
                    let mut single = ConfChangeSingle::default();
                    while !inner.is_empty() {
                        match read_field(&mut inner)? {
                            (1, Value::Varint(v)) => single.change_type = change_type(v)?,
                            (2, Value::Varint(v)) => single.node_id = v,
                            _ => {}
                        }
                    }
                    cc.changes.push(single);
                }
                (3, Value::Bytes(b)) => cc.context = b.to_vec(),
                _ => {}
            }
        }
        Ok(cc)
    }
}

impl ConfChange {
    /// The same operation as a [`ConfChangeV2`].
    pub fn as_v2(&self) -> ConfChangeV2 {
        ConfChangeV2 {
            transition: ConfChangeTransition::Auto,
            changes: vec![ConfChangeSingle::new(self.change_type, self.node_id)],
            context: self.context.clone(),
        }
    }

    /// The protobuf encoding (etcd's wire format).
    pub fn encode(&self) -> Vec<u8> {
        let mut buf = Vec::new();
        put_key(&mut buf, 1, 0);
        put_varint(&mut buf, self.id);
        put_key(&mut buf, 2, 0);
        put_varint(&mut buf, self.change_type.number() as u64);
        put_key(&mut buf, 3, 0);
        put_varint(&mut buf, self.node_id);
        if !self.context.is_empty() {
            put_key(&mut buf, 4, 2);
            put_varint(&mut buf, self.context.len() as u64);
            buf.extend_from_slice(&self.context);
        }
        buf
    }

    /// Decodes the protobuf encoding.
    pub fn decode(mut data: &[u8]) -> Result<Self, DecodeError> {
        let mut cc = ConfChange::default();
        while !data.is_empty() {
            match read_field(&mut data)? {
                (1, Value::Varint(v)) => cc.id = v,
                (2, Value::Varint(v)) => cc.change_type = change_type(v)?,
                (3, Value::Varint(v)) => cc.node_id = v,
                (4, Value::Bytes(b)) => cc.context = b.to_vec(),
                _ => {}
            }
        }
        Ok(cc)
    }
}

/// Either kind of configuration change, as proposed or found in the log.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum AnyConfChange {
    /// A legacy single change.
    V1(ConfChange),
    /// A joint-capable change.
    V2(ConfChangeV2),
}

impl AnyConfChange {
    /// The operation as a [`ConfChangeV2`].
    pub fn as_v2(&self) -> ConfChangeV2 {
        match self {
            AnyConfChange::V1(cc) => cc.as_v2(),
            AnyConfChange::V2(cc) => cc.clone(),
        }
    }

    /// The entry type and data that carry this change in the log.
    pub fn to_entry_data(&self) -> (EntryType, Vec<u8>) {
        match self {
            AnyConfChange::V1(cc) => (EntryType::ConfChange, cc.encode()),
            AnyConfChange::V2(cc) => (EntryType::ConfChangeV2, cc.encode()),
        }
    }

    /// The change carried by an entry of type `entry_type`, if it is a configuration change.
    pub fn from_entry(entry_type: EntryType, data: &[u8]) -> Option<Result<Self, DecodeError>> {
        match entry_type {
            EntryType::Normal => None,
            EntryType::ConfChange => Some(ConfChange::decode(data).map(AnyConfChange::V1)),
            EntryType::ConfChangeV2 => Some(ConfChangeV2::decode(data).map(AnyConfChange::V2)),
        }
    }
}

impl From<ConfChange> for AnyConfChange {
    fn from(cc: ConfChange) -> Self {
        AnyConfChange::V1(cc)
    }
}

impl From<ConfChangeV2> for AnyConfChange {
    fn from(cc: ConfChangeV2) -> Self {
        AnyConfChange::V2(cc)
    }
}

/// Go's `%v` of a byte slice: the bytes in decimal, space separated, in brackets.
struct GoBytes<'a>(&'a [u8]);

impl fmt::Display for GoBytes<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        for (i, b) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{b}")?;
        }
        f.write_str("]")
    }
}

impl fmt::Display for AnyConfChange {
    /// Go's `%v` rendering of the change, as etcd logs it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // Go prints the fields in declaration order: Type, NodeID, Context, ID.
            AnyConfChange::V1(cc) => write!(
                f,
                "{{{} {} {} {}}}",
                cc.change_type,
                cc.node_id,
                GoBytes(&cc.context),
                cc.id
            ),
            AnyConfChange::V2(cc) => {
                let transition = match cc.transition {
                    ConfChangeTransition::Auto => "ConfChangeTransitionAuto",
                    ConfChangeTransition::JointImplicit => "ConfChangeTransitionJointImplicit",
                    ConfChangeTransition::JointExplicit => "ConfChangeTransitionJointExplicit",
                };
                write!(f, "{{{transition} [")?;
                for (i, c) in cc.changes.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" ")?;
                    }
                    write!(f, "{{{} {}}}", c.change_type, c.node_id)?;
                }
                write!(f, "] {}}}", GoBytes(&cc.context))
            }
        }
    }
}

/// Parses etcd's compact form of changes: space-separated `v1` (voter), `l2` (learner), `r3`
/// (remove), `u4` (update).
pub fn conf_changes_from_string(s: &str) -> Result<Vec<ConfChangeSingle>, String> {
    let mut ccs = Vec::new();
    let s = s.trim();
    if s.is_empty() {
        return Ok(ccs);
    }
    for tok in s.split(' ') {
        if tok.len() < 2 {
            return Err(format!("unknown token {tok}"));
        }
        let change_type = match tok.as_bytes()[0] {
            b'v' => ConfChangeType::AddNode,
            b'l' => ConfChangeType::AddLearnerNode,
            b'r' => ConfChangeType::RemoveNode,
            b'u' => ConfChangeType::UpdateNode,
            _ => return Err(format!("unknown input: {tok}")),
        };
        let node_id = crate::datadriven::parse_uint(&tok[1..])?;
        ccs.push(ConfChangeSingle::new(change_type, node_id));
    }
    Ok(ccs)
}

/// The inverse of [`conf_changes_from_string`].
pub fn conf_changes_to_string(ccs: &[ConfChangeSingle]) -> String {
    let mut out = String::new();
    for (i, cc) in ccs.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push(match cc.change_type {
            ConfChangeType::AddNode => 'v',
            ConfChangeType::AddLearnerNode => 'l',
            ConfChangeType::RemoveNode => 'r',
            ConfChangeType::UpdateNode => 'u',
        });
        out.push_str(&cc.node_id.to_string());
    }
    out
}

fn change_type(v: u64) -> Result<ConfChangeType, DecodeError> {
    i32::try_from(v)
        .ok()
        .and_then(ConfChangeType::from_number)
        .ok_or(DecodeError("invalid ConfChangeType"))
}

fn put_varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

fn put_key(buf: &mut Vec<u8>, field: u64, wire_type: u64) {
    put_varint(buf, (field << 3) | wire_type);
}

enum Value<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Other,
}

fn read_varint(data: &mut &[u8]) -> Result<u64, DecodeError> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let (&b, rest) = data.split_first().ok_or(DecodeError("unexpected EOF"))?;
        *data = rest;
        v |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return Ok(v);
        }
    }
    Err(DecodeError("integer overflow"))
}

fn read_field<'a>(data: &mut &'a [u8]) -> Result<(u64, Value<'a>), DecodeError> {
    let key = read_varint(data)?;
    let field = key >> 3;
    let value = match key & 7 {
        0 => Value::Varint(read_varint(data)?),
        1 | 5 => {
            let n = if key & 7 == 1 { 8 } else { 4 };
            if data.len() < n {
                return Err(DecodeError("unexpected EOF"));
            }
            *data = &data[n..];
            Value::Other
        }
        2 => {
            let len =
                usize::try_from(read_varint(data)?).map_err(|_| DecodeError("invalid length"))?;
            if data.len() < len {
                return Err(DecodeError("unexpected EOF"));
            }
            let (bytes, rest) = data.split_at(len);
            *data = rest;
            Value::Bytes(bytes)
        }
        _ => return Err(DecodeError("illegal wire type")),
    };
    Ok((field, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displays_as_go_v() {
        let v1: AnyConfChange = ConfChange {
            change_type: ConfChangeType::AddNode,
            node_id: 2,
            context: vec![1, 20],
            id: 7,
        }
        .into();
        assert_eq!(v1.to_string(), "{ConfChangeAddNode 2 [1 20] 7}");
        let v2: AnyConfChange = ConfChangeV2 {
            transition: ConfChangeTransition::Auto,
            changes: vec![
                ConfChangeSingle::new(ConfChangeType::AddNode, 2),
                ConfChangeSingle::new(ConfChangeType::AddLearnerNode, 3),
            ],
            context: Vec::new(),
        }
        .into();
        assert_eq!(
            v2.to_string(),
            "{ConfChangeTransitionAuto [{ConfChangeAddNode 2} {ConfChangeAddLearnerNode 3}] []}"
        );
        assert_eq!(
            AnyConfChange::from(ConfChangeV2::default()).to_string(),
            "{ConfChangeTransitionAuto [] []}"
        );
    }

    #[test]
    fn round_trips() {
        let v2 = ConfChangeV2 {
            transition: ConfChangeTransition::JointExplicit,
            changes: vec![
                ConfChangeSingle::new(ConfChangeType::AddNode, 2),
                ConfChangeSingle::new(ConfChangeType::RemoveNode, 300),
            ],
            context: b"ctx".to_vec(),
        };
        assert_eq!(ConfChangeV2::decode(&v2.encode()), Ok(v2.clone()));
        let v1 = ConfChange {
            id: 7,
            change_type: ConfChangeType::AddLearnerNode,
            node_id: 4,
            context: Vec::new(),
        };
        assert_eq!(ConfChange::decode(&v1.encode()), Ok(v1.clone()));
        assert_eq!(ConfChangeV2::decode(&[]), Ok(ConfChangeV2::default()));
        assert!(ConfChangeV2::default().leave_joint());
        assert_eq!(v2.enter_joint(), Some(false));
        assert_eq!(v1.as_v2().enter_joint(), None);
    }

    #[test]
    fn string_forms() {
        let ccs = conf_changes_from_string(" v1 l2 r3 u4 ").unwrap_or_default();
        assert_eq!(conf_changes_to_string(&ccs), "v1 l2 r3 u4");
        assert!(conf_changes_from_string("x1").is_err());
        assert!(conf_changes_from_string("v").is_err());
    }
}
