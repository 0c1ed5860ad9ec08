//! The signed payload: [`Body`] and every kind it carries, to and from the
//! protobuf `Payload`. Decoding validates every field (sizes, nonces, keys,
//! ids, room ids, clocks); what does not pass is an `InvalidField` (or
//! `UnknownKind`), never a panic.

use libp2p::PeerId;
use prost::Message as _;

use super::pb;
use super::pb::payload::Kind;
use super::pb::room_op::Op;
use crate::group::{GroupChange, GroupId, GroupMessage, GroupOp};
use crate::id::{MessageId, RejectReason, Room, key_of, peer_id_of};
use crate::message::{Body, DirectMessage, HallwayPost, Receipt};
use crate::protocol::{
    MAX_GROUP_NAME_BYTES, MAX_MENTIONS, MAX_NICK_BYTES, MAX_TEXT_BYTES, MAX_WIRE_MEMBERS, NONCE_BYTES,
};
use crate::room::{ChatMode, Presence, QuestionState, Reaction, Role, RoomAction, RoomOp, check_emoji};

/// Encodes `body` as the payload an envelope signs, with `nonce` in the
/// kinds that carry one.
pub(crate) fn encode_payload(body: &Body, nonce: &[u8; NONCE_BYTES]) -> Vec<u8> {
    let nonce = nonce.to_vec();
    let kind = match body {
        Body::Hallway(p) => Kind::HallwayPost(hallway_post(p, nonce)),
        Body::Direct(d) => Kind::DirectMessage(direct_message(d, nonce)),
        Body::RoomOp(op) => Kind::RoomOp(room_op(op, nonce)),
        Body::Presence(p) => Kind::Presence(presence(p, nonce)),
        // A group op carries the group's creation nonce, a receipt none.
        Body::GroupOp(op) => Kind::GroupOp(op.into()),
        Body::Group(m) => Kind::GroupMessage(group_message(m, nonce)),
        Body::Receipt(r) => Kind::Receipt(r.into()),
    };
    pb::Payload { kind: Some(kind) }.encode_to_vec()
}

/// Decodes and validates the payload of an envelope whose signature was
/// checked (or, for the node's own log, was checked before).
pub(crate) fn decode_payload(bytes: &[u8]) -> Result<Body, RejectReason> {
    pb::Payload::decode(bytes)
        .map_err(|_| RejectReason::Malformed)?
        .try_into()
}

impl TryFrom<pb::Payload> for Body {
    type Error = RejectReason;

    fn try_from(payload: pb::Payload) -> Result<Self, RejectReason> {
        Ok(match payload.kind.ok_or(RejectReason::UnknownKind)? {
            Kind::HallwayPost(p) => Body::Hallway(p.try_into()?),
            Kind::DirectMessage(d) => Body::Direct(d.try_into()?),
            Kind::RoomOp(op) => Body::RoomOp(op.try_into()?),
            Kind::Presence(p) => Body::Presence(p.try_into()?),
            Kind::GroupOp(op) => Body::GroupOp(op.try_into()?),
            Kind::GroupMessage(m) => Body::Group(m.try_into()?),
            Kind::Receipt(r) => Body::Receipt(r.try_into()?),
        })
    }
}

fn hallway_post(p: &HallwayPost, nonce: Vec<u8>) -> pb::HallwayPost {
    pb::HallwayPost {
        room: p.room.as_str().to_owned(),
        text: p.text.clone(),
        time_ms: p.time_ms,
        nonce,
        nick: p.nick.clone().unwrap_or_default(),
        clock: p.clock,
        reply_to: p.reply_to.map(|id| id.as_bytes().to_vec()).unwrap_or_default(),
        mentions: p.mentions.iter().map(key_bytes).collect(),
        question: p.question,
        stamp: p.stamp.unwrap_or(0),
    }
}

impl TryFrom<pb::HallwayPost> for HallwayPost {
    type Error = RejectReason;

    fn try_from(p: pb::HallwayPost) -> Result<Self, RejectReason> {
        check_text(&p.text)?;
        check_nonce(&p.nonce)?;
        let clock = effective_clock(p.clock, p.time_ms)?;
        if p.mentions.len() > MAX_MENTIONS {
            return Err(RejectReason::InvalidField);
        }
        Ok(HallwayPost {
            room: room_of(p.room)?,
            text: p.text,
            time_ms: p.time_ms,
            nick: check_nick(p.nick)?,
            clock,
            reply_to: if p.reply_to.is_empty() {
                None
            } else {
                Some(id_of_bytes(&p.reply_to)?)
            },
            mentions: p.mentions.iter().map(|m| peer_of_bytes(m)).collect::<Result<_, _>>()?,
            question: p.question,
            stamp: stamp_of(p.stamp),
        })
    }
}

fn direct_message(d: &DirectMessage, nonce: Vec<u8>) -> pb::DirectMessage {
    pb::DirectMessage {
        recipient: key_bytes(&d.recipient),
        text: d.text.clone(),
        time_ms: d.time_ms,
        nonce,
        nick: d.nick.clone().unwrap_or_default(),
        reaction: d.reaction.as_ref().map(pb::Reaction::from),
    }
}

impl TryFrom<pb::DirectMessage> for DirectMessage {
    type Error = RejectReason;

    fn try_from(d: pb::DirectMessage) -> Result<Self, RejectReason> {
        check_nonce(&d.nonce)?;
        let reaction = d.reaction.map(Reaction::try_from).transpose()?;
        if reaction.is_some() {
            if !d.text.is_empty() {
                return Err(RejectReason::InvalidField);
            }
        } else {
            check_text(&d.text)?;
        }
        Ok(DirectMessage {
            recipient: peer_of_bytes(&d.recipient)?,
            text: d.text,
            time_ms: d.time_ms,
            nick: check_nick(d.nick)?,
            reaction,
        })
    }
}

fn room_op(op: &RoomOp, nonce: Vec<u8>) -> pb::RoomOp {
    pb::RoomOp {
        room: op.room.as_str().to_owned(),
        clock: op.clock,
        time_ms: op.time_ms,
        nonce,
        op: Some((&op.action).into()),
        stamp: op.stamp.unwrap_or(0),
    }
}

impl TryFrom<pb::RoomOp> for RoomOp {
    type Error = RejectReason;

    fn try_from(op: pb::RoomOp) -> Result<Self, RejectReason> {
        check_nonce(&op.nonce)?;
        let clock = effective_clock(op.clock, op.time_ms)?;
        let action = op.op.ok_or(RejectReason::UnknownKind)?.try_into()?;
        Ok(RoomOp {
            room: room_of(op.room)?,
            clock,
            time_ms: op.time_ms,
            action,
            stamp: stamp_of(op.stamp),
        })
    }
}

impl From<&RoomAction> for Op {
    fn from(action: &RoomAction) -> Self {
        match action {
            RoomAction::SetRole { peer, role } => Op::SetRole(pb::SetRole {
                peer: key_bytes(peer),
                role: pb::Role::from(*role) as i32,
            }),
            RoomAction::Delete(target) => Op::Delete(target.as_bytes().to_vec()),
            RoomAction::Edit { target, text } => Op::Edit(pb::Edit {
                target: target.as_bytes().to_vec(),
                text: text.clone(),
            }),
            RoomAction::Remove { peer, restore } => Op::Remove(pb::Removal {
                peer: key_bytes(peer),
                restore: *restore,
            }),
            RoomAction::Chat(mode) => Op::Chat(pb::ChatMode::from(*mode) as i32),
            RoomAction::Question { target, state } => Op::Question(pb::QuestionMark {
                target: target.as_bytes().to_vec(),
                state: pb::QuestionState::from(*state) as i32,
            }),
            RoomAction::React(r) => Op::React(r.into()),
        }
    }
}

impl TryFrom<Op> for RoomAction {
    type Error = RejectReason;

    fn try_from(op: Op) -> Result<Self, RejectReason> {
        Ok(match op {
            Op::SetRole(r) => RoomAction::SetRole {
                peer: peer_of_bytes(&r.peer)?,
                role: enum_of::<pb::Role>(r.role)?.into(),
            },
            Op::Delete(target) => RoomAction::Delete(id_of_bytes(&target)?),
            Op::Edit(e) => {
                check_text(&e.text)?;
                RoomAction::Edit {
                    target: id_of_bytes(&e.target)?,
                    text: e.text,
                }
            }
            Op::Remove(r) => RoomAction::Remove {
                peer: peer_of_bytes(&r.peer)?,
                restore: r.restore,
            },
            Op::Chat(mode) => RoomAction::Chat(enum_of::<pb::ChatMode>(mode)?.into()),
            Op::Question(q) => RoomAction::Question {
                target: id_of_bytes(&q.target)?,
                state: enum_of::<pb::QuestionState>(q.state)?.into(),
            },
            Op::React(r) => RoomAction::React(r.try_into()?),
        })
    }
}

impl From<Role> for pb::Role {
    fn from(role: Role) -> Self {
        match role {
            // The host's role follows from the room id; it is never granted.
            Role::Listener | Role::Host => pb::Role::Listener,
            Role::Speaker => pb::Role::Speaker,
            Role::Moderator => pb::Role::Moderator,
        }
    }
}

impl From<pb::Role> for Role {
    fn from(role: pb::Role) -> Self {
        match role {
            pb::Role::Listener => Role::Listener,
            pb::Role::Speaker => Role::Speaker,
            pb::Role::Moderator => Role::Moderator,
        }
    }
}

impl From<ChatMode> for pb::ChatMode {
    fn from(mode: ChatMode) -> Self {
        match mode {
            ChatMode::On => pb::ChatMode::On,
            ChatMode::Off => pb::ChatMode::Off,
            ChatMode::ReadOnly => pb::ChatMode::ReadOnly,
        }
    }
}

impl From<pb::ChatMode> for ChatMode {
    fn from(mode: pb::ChatMode) -> Self {
        match mode {
            pb::ChatMode::On => ChatMode::On,
            pb::ChatMode::Off => ChatMode::Off,
            pb::ChatMode::ReadOnly => ChatMode::ReadOnly,
        }
    }
}

impl From<QuestionState> for pb::QuestionState {
    fn from(state: QuestionState) -> Self {
        match state {
            QuestionState::Open => pb::QuestionState::Open,
            QuestionState::Answered => pb::QuestionState::Answered,
            QuestionState::Dismissed => pb::QuestionState::Dismissed,
        }
    }
}

impl From<pb::QuestionState> for QuestionState {
    fn from(state: pb::QuestionState) -> Self {
        match state {
            pb::QuestionState::Open => QuestionState::Open,
            pb::QuestionState::Answered => QuestionState::Answered,
            pb::QuestionState::Dismissed => QuestionState::Dismissed,
        }
    }
}

impl From<&Reaction> for pb::Reaction {
    fn from(r: &Reaction) -> Self {
        pb::Reaction {
            target: r.target.as_bytes().to_vec(),
            emoji: r.emoji.clone(),
            retract: r.retract,
        }
    }
}

impl TryFrom<pb::Reaction> for Reaction {
    type Error = RejectReason;

    fn try_from(r: pb::Reaction) -> Result<Self, RejectReason> {
        check_emoji(&r.emoji)?;
        Ok(Reaction {
            target: id_of_bytes(&r.target)?,
            emoji: r.emoji,
            retract: r.retract,
        })
    }
}

fn presence(p: &Presence, nonce: Vec<u8>) -> pb::Presence {
    pb::Presence {
        room: p.room.as_str().to_owned(),
        time_ms: p.time_ms,
        nonce,
        nick: p.nick.clone().unwrap_or_default(),
        ttl_s: p.ttl_s,
        leaving: p.leaving,
    }
}

impl TryFrom<pb::Presence> for Presence {
    type Error = RejectReason;

    fn try_from(p: pb::Presence) -> Result<Self, RejectReason> {
        check_nonce(&p.nonce)?;
        Ok(Presence {
            room: room_of(p.room)?,
            time_ms: p.time_ms,
            nick: check_nick(p.nick)?,
            ttl_s: p.ttl_s,
            leaving: p.leaving,
        })
    }
}

impl From<&GroupOp> for pb::GroupOp {
    fn from(op: &GroupOp) -> Self {
        let (name, members, leave) = match &op.change {
            GroupChange::State { name, members } => (name.clone(), members.iter().map(key_bytes).collect(), false),
            GroupChange::Leave => (String::new(), Vec::new(), true),
        };
        pb::GroupOp {
            group_id: op.group.as_bytes().to_vec(),
            version: op.version,
            name,
            members,
            nonce: op.nonce.to_vec(),
            leave,
            time_ms: op.time_ms,
        }
    }
}

impl TryFrom<pb::GroupOp> for GroupOp {
    type Error = RejectReason;

    fn try_from(op: pb::GroupOp) -> Result<Self, RejectReason> {
        let group = group_of_bytes(&op.group_id)?;
        let nonce: [u8; NONCE_BYTES] = op.nonce.as_slice().try_into().map_err(|_| RejectReason::InvalidField)?;
        let change = if op.leave {
            if !op.name.is_empty() || !op.members.is_empty() {
                return Err(RejectReason::InvalidField);
            }
            GroupChange::Leave
        } else {
            if op.name.is_empty()
                || op.name.len() > MAX_GROUP_NAME_BYTES
                || op.name.chars().any(char::is_control)
                || op.members.is_empty()
                || op.members.len() > MAX_WIRE_MEMBERS
            {
                return Err(RejectReason::InvalidField);
            }
            let members = op
                .members
                .iter()
                .map(|m| peer_of_bytes(m))
                .collect::<Result<Vec<_>, _>>()?;
            GroupChange::State { name: op.name, members }
        };
        Ok(GroupOp {
            group,
            nonce,
            version: op.version,
            change,
            time_ms: op.time_ms,
        })
    }
}

fn group_message(m: &GroupMessage, nonce: Vec<u8>) -> pb::GroupMessage {
    pb::GroupMessage {
        group_id: m.group.as_bytes().to_vec(),
        text: m.text.clone(),
        time_ms: m.time_ms,
        nonce,
        lamport: m.lamport,
        nick: m.nick.clone().unwrap_or_default(),
        version: m.version,
    }
}

impl TryFrom<pb::GroupMessage> for GroupMessage {
    type Error = RejectReason;

    fn try_from(m: pb::GroupMessage) -> Result<Self, RejectReason> {
        check_text(&m.text)?;
        check_nonce(&m.nonce)?;
        Ok(GroupMessage {
            group: group_of_bytes(&m.group_id)?,
            text: m.text,
            time_ms: m.time_ms,
            lamport: m.lamport,
            nick: check_nick(m.nick)?,
            version: m.version,
        })
    }
}

impl From<&Receipt> for pb::Receipt {
    fn from(r: &Receipt) -> Self {
        let status = if r.accepted {
            pb::ReceiptStatus::Delivered
        } else {
            pb::ReceiptStatus::NotAccepted
        };
        pb::Receipt {
            message_id: r.message_id.as_bytes().to_vec(),
            author: key_bytes(&r.author),
            time_ms: r.time_ms,
            status: status as i32,
        }
    }
}

impl TryFrom<pb::Receipt> for Receipt {
    type Error = RejectReason;

    fn try_from(r: pb::Receipt) -> Result<Self, RejectReason> {
        Ok(Receipt {
            message_id: id_of_bytes(&r.message_id)?,
            author: peer_of_bytes(&r.author)?,
            time_ms: r.time_ms,
            accepted: match enum_of::<pb::ReceiptStatus>(r.status)? {
                pb::ReceiptStatus::Delivered => true,
                pb::ReceiptStatus::NotAccepted => false,
            },
        })
    }
}

/// The 32-byte key of a peer named in a message. Every peer a body names
/// was checked to be an ed25519 peer when the body was built (the node's
/// handle refuses others), so this cannot fail for a body that exists.
fn key_bytes(peer: &PeerId) -> Vec<u8> {
    key_of(peer).expect("peers in messages are ed25519 peers").to_vec()
}

/// A protobuf enum's value, known to this version of the protocol.
fn enum_of<E: TryFrom<i32>>(value: i32) -> Result<E, RejectReason> {
    E::try_from(value).map_err(|_| RejectReason::InvalidField)
}

/// A stamp on the wire: 0 is none. Its strength is the receiver's to judge
/// (`protocol::stamp_strength`), never a reason to refuse the message.
fn stamp_of(stamp: u64) -> Option<u64> {
    (stamp != 0).then_some(stamp)
}

fn room_of(room: String) -> Result<Room, RejectReason> {
    Room::new(room).map_err(|_| RejectReason::InvalidField)
}

pub(super) fn id_of_bytes(bytes: &[u8]) -> Result<MessageId, RejectReason> {
    Ok(MessageId::from_bytes(
        bytes.try_into().map_err(|_| RejectReason::InvalidField)?,
    ))
}

fn group_of_bytes(bytes: &[u8]) -> Result<GroupId, RejectReason> {
    Ok(GroupId::from_bytes(
        bytes.try_into().map_err(|_| RejectReason::InvalidField)?,
    ))
}

/// A room clock is a hybrid Lamport clock: never behind its own timestamp.
/// Zero (absent: a sender that keeps no room clock) stands for `time_ms`.
fn effective_clock(clock: u64, time_ms: u64) -> Result<u64, RejectReason> {
    match clock {
        0 => Ok(time_ms),
        c if c < time_ms => Err(RejectReason::InvalidField),
        c => Ok(c),
    }
}

fn peer_of_bytes(bytes: &[u8]) -> Result<PeerId, RejectReason> {
    let bytes: [u8; 32] = bytes.try_into().map_err(|_| RejectReason::InvalidField)?;
    let key = ed25519_dalek::VerifyingKey::from_bytes(&bytes).map_err(|_| RejectReason::InvalidField)?;
    Ok(peer_id_of(&key))
}

fn check_text(text: &str) -> Result<(), RejectReason> {
    if text.is_empty() || text.len() > MAX_TEXT_BYTES {
        return Err(RejectReason::InvalidField);
    }
    Ok(())
}

fn check_nonce(nonce: &[u8]) -> Result<(), RejectReason> {
    if nonce.len() != NONCE_BYTES {
        return Err(RejectReason::InvalidField);
    }
    Ok(())
}

fn check_nick(nick: String) -> Result<Option<String>, RejectReason> {
    if nick.len() > MAX_NICK_BYTES || nick.chars().any(char::is_control) {
        return Err(RejectReason::InvalidField);
    }
    Ok((!nick.is_empty()).then_some(nick))
}
