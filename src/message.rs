//! The message bodies: what a signed envelope carries (a hallway post, a DM,
//! a receipt, a group op or message, a room op, a presence announcement);
//! the reply to a DM request; and what the log records about a message
//! (its direction and, for a DM this node sent, its delivery). Plain data:
//! signing and verifying are in `crate::envelope`, the protobuf conversion
//! in `crate::wire`.

use libp2p::PeerId;

use crate::group::{GroupMessage, GroupOp};
use crate::id::{MessageId, Room};
use crate::room::{Presence, Reaction, RoomOp};

/// A post to a room's hallway.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HallwayPost {
    /// The room.
    pub room: Room,
    /// The text.
    pub text: String,
    /// The author's clock, ms since the Unix epoch.
    pub time_ms: u64,
    /// The author's display name, if any.
    pub nick: Option<String>,
    /// The room clock (docs/PROTOCOL.md, "Room clocks and order"): orders the room.
    pub clock: u64,
    /// The post this one answers.
    pub reply_to: Option<MessageId>,
    /// Participants mentioned.
    pub mentions: Vec<PeerId>,
    /// A question to the stage.
    pub question: bool,
    /// The author's stamp for the room, if it has one: work bound to the
    /// room and the key (`protocol::stamp_strength`), which lets a node
    /// admit a new author who paid for its key more readily than a free one.
    pub stamp: Option<u64>,
}

/// A private backchannel message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirectMessage {
    /// The recipient.
    pub recipient: PeerId,
    /// The text.
    pub text: String,
    /// The author's clock, ms since the Unix epoch.
    pub time_ms: u64,
    /// The author's display name, if any.
    pub nick: Option<String>,
    /// A reaction to a message of the conversation (then `text` is empty).
    pub reaction: Option<Reaction>,
}

/// A recipient's acknowledgement that it stored a direct message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Receipt {
    /// The direct message acknowledged.
    pub message_id: MessageId,
    /// The author of that direct message.
    pub author: PeerId,
    /// The recipient's clock when it stored the message.
    pub time_ms: u64,
    /// False when the recipient refused a message request and stored nothing.
    pub accepted: bool,
}

/// What a signed envelope carries.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Body {
    /// A hallway post.
    Hallway(HallwayPost),
    /// A direct message.
    Direct(DirectMessage),
    /// A delivery receipt.
    Receipt(Receipt),
    /// A change to a group's membership or name.
    GroupOp(GroupOp),
    /// A message to a group.
    Group(GroupMessage),
    /// An operation on a room (moderation, edit, reaction, question state).
    RoomOp(RoomOp),
    /// A presence announcement in a room.
    Presence(Presence),
}

impl Body {
    /// The room a room message (post or op) belongs to, with its clock.
    pub fn room_clock(&self) -> Option<(&Room, u64)> {
        match self {
            Body::Hallway(p) => Some((&p.room, p.clock)),
            Body::RoomOp(op) => Some((&op.room, op.clock)),
            _ => None,
        }
    }
}

/// The answer to a DM-protocol request: the recipient's signed receipt, or
/// why it refused. Encoded and decoded by `crate::wire`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum DmReply {
    /// An encoded receipt envelope; the sender opens and checks it.
    Receipt(Vec<u8>),
    /// A refusal. It is not signed: the Noise channel it arrives on
    /// authenticates it.
    Refused(Refusal),
}

/// Why a recipient refused a DM-protocol request (`Refusal` in
/// proto/backchannel.proto).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// No reason given.
    Unspecified,
    /// The envelope could not be decoded, or its signature is invalid.
    Invalid,
    /// The message names another recipient.
    WrongRecipient,
    /// The request is not a direct message (or group op or message).
    WrongKind,
    /// The recipient could not store the message: worth another try.
    Storage,
    /// The recipient does not accept messages from this sender.
    NotAccepted,
    /// A group the recipient does not know (yet): worth another try.
    UnknownGroup,
    /// A group op or message its author may not send.
    NotMember,
    /// The sender exceeded the recipient's rate limit: later.
    Busy,
    /// A code this version does not know (a newer peer).
    Unknown(i32),
}

/// Whether a logged message was sent or received by this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Received from the network.
    Received,
    /// Sent by this node.
    Sent,
}

/// The delivery state of a direct message this node sent.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", tag = "state", content = "reason")]
pub enum Delivery {
    /// Not a sent DM (posts, received messages).
    None,
    /// Logged and waiting in the outbox for its recipient.
    Queued,
    /// On the wire to its recipient; no receipt yet.
    Sent,
    /// A valid receipt from the recipient arrived.
    Delivered,
    /// Delivery failed, with the reason.
    Failed(String),
}
