//! Why an operation on a node failed: [`StartError`] for [`crate::Node::start`];
//! for the operations of a running node, one enum per operation family
//! whose failures differ ([`JoinError`], [`PostError`], [`RoomOpError`],
//! [`DmError`], [`GroupError`]), listing only what that family can answer,
//! and [`NodeError`] for the rest (queries, contacts, dial, block, leave,
//! sync, ...).
//!
//! Each family converts into [`NodeError`] variant for same-named variant,
//! with the same text, so `?` into `NodeError` keeps working and the local
//! API keeps one status mapping. There is no conversion the other way: it
//! would need a catch-all for the variants a family cannot have.
//!
//! A variant carries a typed cause where a caller can branch on it
//! ([`DialFailure`], [`StoreError`], an [`std::io::Error`] with its kind). A
//! variant with a `#[source]` does not repeat its source's text: printed
//! with its chain (`{:#}` in the binary) it reads once. `Flush` is the
//! exception: the local API answers with its text alone.

use std::path::PathBuf;
use std::sync::Arc;

use libp2p::gossipsub::SubscriptionError;
use libp2p::{Multiaddr, PeerId};

use super::DialFailure;
use crate::group::GroupId;
use crate::id::{InvalidRoom, MessageId, RejectReason, Room};
use crate::protocol::{MAX_MENTIONS, MAX_NICK_BYTES, MAX_TEXT_BYTES};
use crate::store::StoreError;

/// Why an operation of a running node failed: the operations without an
/// enum of their own (queries, contacts, dial, block, leave, sync, ...) fail
/// with it, and every family's enum converts into it (`From`), variant for
/// same-named variant with the same text.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// The node has stopped.
    #[error("the node is not running")]
    Stopped,
    /// Text is empty or longer than the protocol allows.
    #[error("text must be 1 to {MAX_TEXT_BYTES} bytes")]
    InvalidText,
    /// The display name is too long or has control characters.
    #[error("a nickname is at most {MAX_NICK_BYTES} bytes without control characters")]
    InvalidNick,
    /// The peer id is not an ed25519 peer, or is this node itself.
    #[error("cannot send a DM to {0}")]
    InvalidPeer(PeerId),
    /// Posting to a room the node has not joined.
    #[error("not in room {0}: /join it first")]
    NotJoined(Room),
    /// A group name must be 1 to 64 bytes without control characters.
    #[error("a group name is 1 to 64 bytes without control characters")]
    InvalidGroupName,
    /// No such group here.
    #[error("unknown group {}", .0.short())]
    UnknownGroup(GroupId),
    /// Only the moderator adds, removes or renames.
    #[error("only the moderator of group {} can do that", .0.short())]
    NotModerator(GroupId),
    /// This node is not a member of the group.
    #[error("not a member of group {}", .0.short())]
    NotMember(GroupId),
    /// More members than the limit, or a membership without its moderator.
    #[error("group {} would have too many members", .0.short())]
    GroupTooLarge(GroupId),
    /// Declining a peer who is a contact (not a request).
    #[error("{0} is a contact, not a request")]
    NotARequest(PeerId),
    /// Too many DMs wait for receipts.
    #[error("{0} DMs are already waiting for receipts")]
    OutboxFull(usize),
    /// Too many posts are waiting for the room's first peer.
    #[error("{0} posts are already waiting for peers in room {1}")]
    Backlog(usize, Room),
    /// Dialling an address failed at once (a failure after the dial
    /// started is [`crate::Event::DialFailed`]).
    #[error("cannot dial {addr}: {reason}")]
    Dial {
        /// The address.
        addr: Multiaddr,
        /// Why.
        reason: DialFailure,
    },
    /// The local log failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The log could not be flushed to disk, so what was asked is not
    /// known to be durable. It is in the log in memory, and reaches the disk
    /// with the next flush that succeeds; a post or DM may have been sent.
    #[error("local log flush failed: {0}")]
    Flush(#[source] Arc<StoreError>),
    /// Gossipsub refused to subscribe to the room's topic.
    #[error("cannot subscribe to room {room}")]
    Subscribe {
        /// The room.
        room: Room,
        /// Gossipsub's refusal.
        #[source]
        source: SubscriptionError,
    },
    /// The room's rules do not let this node do that (not the host, not a
    /// moderator, not the author, removed, hallway closed).
    #[error("not allowed in room {room}: {reason}")]
    NotAllowed {
        /// The room.
        room: Room,
        /// Which rule.
        reason: RejectReason,
    },
    /// No such message in the room (or conversation).
    #[error("no message {} here", .0.short())]
    UnknownMessage(MessageId),
    /// Taking back a reaction this node has not made.
    #[error("you have not reacted with that to [{}]", .0.short())]
    NoSuchReaction(MessageId),
    /// More participants mentioned than a post may carry.
    #[error("a post mentions at most {MAX_MENTIONS} participants")]
    TooManyMentions,
    /// An emoji must be 1 to 32 bytes without whitespace.
    #[error("an emoji is 1 to 32 bytes without whitespace")]
    InvalidEmoji,
    /// A room name is invalid.
    #[error(transparent)]
    InvalidRoom(#[from] InvalidRoom),
}

/// Why [`crate::Handle::join`], [`crate::Handle::host`] or
/// [`crate::Handle::prepare_room`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JoinError {
    /// The node has stopped.
    #[error("the node is not running")]
    Stopped,
    /// The name of a room to host is not a valid room name.
    #[error(transparent)]
    InvalidRoom(#[from] InvalidRoom),
    /// Gossipsub refused to subscribe to the room's topic.
    #[error("cannot subscribe to room {room}")]
    Subscribe {
        /// The room.
        room: Room,
        /// Gossipsub's refusal.
        #[source]
        source: SubscriptionError,
    },
}

/// Why a post to a room's hallway failed ([`crate::Handle::post`],
/// [`crate::Handle::post_with`] and their [`crate::RoomHandle`] forms).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PostError {
    /// The node has stopped.
    #[error("the node is not running")]
    Stopped,
    /// Text is empty or longer than the protocol allows.
    #[error("text must be 1 to {MAX_TEXT_BYTES} bytes")]
    InvalidText,
    /// Posting to a room the node has not joined.
    #[error("not in room {0}: /join it first")]
    NotJoined(Room),
    /// More participants mentioned than a post may carry.
    #[error("a post mentions at most {MAX_MENTIONS} participants")]
    TooManyMentions,
    /// Too many posts are waiting for the room's first peer.
    #[error("{0} posts are already waiting for peers in room {1}")]
    Backlog(usize, Room),
    /// The room's rules do not let this node post now (removed, hallway
    /// closed to it, a question where questions are not taken).
    #[error("not allowed in room {room}: {reason}")]
    NotAllowed {
        /// The room.
        room: Room,
        /// Which rule.
        reason: RejectReason,
    },
    /// The post replied to is not a post of the room.
    #[error("no message {} here", .0.short())]
    UnknownMessage(MessageId),
    /// The local log failed: the post was not logged, nor sent.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The log could not be flushed to disk: the post is signed, logged in
    /// memory and handed on (it reaches the disk with the next flush that
    /// succeeds); posting it again would post it twice.
    #[error("local log flush failed: {0}")]
    Flush(#[source] Arc<StoreError>),
}

/// Why a room operation failed ([`crate::Handle::room_op`],
/// [`crate::RoomHandle::op`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RoomOpError {
    /// The node has stopped.
    #[error("the node is not running")]
    Stopped,
    /// An edit's new text is empty or longer than the protocol allows.
    #[error("text must be 1 to {MAX_TEXT_BYTES} bytes")]
    InvalidText,
    /// A reaction's emoji must be 1 to 32 bytes without whitespace.
    #[error("an emoji is 1 to 32 bytes without whitespace")]
    InvalidEmoji,
    /// An operation in a room the node has not joined.
    #[error("not in room {0}: /join it first")]
    NotJoined(Room),
    /// The post the operation is about is not a post of the room.
    #[error("no message {} here", .0.short())]
    UnknownMessage(MessageId),
    /// Taking back a reaction this node has not made.
    #[error("you have not reacted with that to [{}]", .0.short())]
    NoSuchReaction(MessageId),
    /// The room's rules do not let this node do that (not the host, not a
    /// moderator, not the author, removed).
    #[error("not allowed in room {room}: {reason}")]
    NotAllowed {
        /// The room.
        room: Room,
        /// Which rule.
        reason: RejectReason,
    },
    /// The local log failed: the operation was not logged, nor sent.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The log could not be flushed to disk: the operation is signed,
    /// logged in memory, applied and handed on, but not (yet) on disk.
    #[error("local log flush failed: {0}")]
    Flush(#[source] Arc<StoreError>),
}

/// Why a direct message or a reaction to one failed
/// ([`crate::Handle::send_dm`], [`crate::Handle::react_dm`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DmError {
    /// The node has stopped.
    #[error("the node is not running")]
    Stopped,
    /// Text is empty or longer than the protocol allows.
    #[error("text must be 1 to {MAX_TEXT_BYTES} bytes")]
    InvalidText,
    /// The peer id is not an ed25519 peer, or is this node itself.
    #[error("cannot send a DM to {0}")]
    InvalidPeer(PeerId),
    /// A reaction's emoji must be 1 to 32 bytes without whitespace.
    #[error("an emoji is 1 to 32 bytes without whitespace")]
    InvalidEmoji,
    /// The DM reacted to is not a DM of a conversation here.
    #[error("no message {} here", .0.short())]
    UnknownMessage(MessageId),
    /// Too many DMs wait for receipts.
    #[error("{0} DMs are already waiting for receipts")]
    OutboxFull(usize),
    /// The local log failed: the DM was not logged, nor sent.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The log could not be flushed to disk: the DM is not (yet) on disk,
    /// but it is in the outbox, and [`crate::Event::Delivered`] or
    /// [`crate::Event::DmFailed`] still follows.
    #[error("local log flush failed: {0}")]
    Flush(#[source] Arc<StoreError>),
}

/// Why creating, changing or sending to a group failed
/// ([`crate::Handle::group_create`], [`crate::Handle::group_edit`],
/// [`crate::Handle::group_send`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GroupError {
    /// The node has stopped.
    #[error("the node is not running")]
    Stopped,
    /// A group message's text is empty or longer than the protocol allows.
    #[error("text must be 1 to {MAX_TEXT_BYTES} bytes")]
    InvalidText,
    /// A group name must be 1 to 64 bytes without control characters.
    #[error("a group name is 1 to 64 bytes without control characters")]
    InvalidGroupName,
    /// A member to add is not an ed25519 peer.
    #[error("cannot send a DM to {0}")]
    InvalidPeer(PeerId),
    /// No such group here.
    #[error("unknown group {}", .0.short())]
    UnknownGroup(GroupId),
    /// Only the moderator adds, removes or renames.
    #[error("only the moderator of group {} can do that", .0.short())]
    NotModerator(GroupId),
    /// This node is not a member of the group.
    #[error("not a member of group {}", .0.short())]
    NotMember(GroupId),
    /// More members than the limit, or a membership without its moderator.
    #[error("group {} would have too many members", .0.short())]
    GroupTooLarge(GroupId),
    /// The group's messages for its members would not fit in the outbox
    /// (DMs waiting for receipts).
    #[error("{0} DMs are already waiting for receipts")]
    OutboxFull(usize),
    /// The local log failed: nothing was sent.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The log could not be flushed to disk: the change or message is
    /// logged in memory and in the outbox, but not (yet) on disk.
    #[error("local log flush failed: {0}")]
    Flush(#[source] Arc<StoreError>),
}

/// Why [`crate::Node::start`] failed: nothing was started.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// `Config::nick` is too long or has control characters.
    #[error("a nickname is at most {MAX_NICK_BYTES} bytes without control characters")]
    InvalidNick,
    /// Another node (or `backchannel history`) has this data directory's log open.
    #[error("the log {} is in use by another node: one data directory, one node", .0.display())]
    LogInUse(PathBuf),
    /// The local log could not be opened or read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The network stack could not be built (its transports or behaviours).
    #[error("network setup")]
    Network(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Listening on an address of `Config::listen` failed; `source`'s
    /// [`kind`](std::io::Error::kind) says why: `AddrInUse`,
    /// `AddrNotAvailable` (not an address of this host), `Unsupported` (not
    /// a TCP or QUIC address), ...
    #[error("network setup: listen on {addr}")]
    Listen {
        /// The address.
        addr: Multiaddr,
        /// The transport's error.
        #[source]
        source: std::io::Error,
    },
    /// An address of `Config::peers` does not end in `/p2p/<peer id>`.
    #[error("cannot dial {0}: a peer address must end in /p2p/<peer id>")]
    PeerWithoutId(Multiaddr),
    /// An address of `Config::bootstrap` does not end in `/p2p/<peer id>`.
    #[error("cannot dial {0}: a bootstrap address must end in /p2p/<peer id>")]
    BootstrapWithoutId(Multiaddr),
}

impl From<JoinError> for NodeError {
    fn from(e: JoinError) -> Self {
        match e {
            JoinError::Stopped => NodeError::Stopped,
            JoinError::InvalidRoom(e) => NodeError::InvalidRoom(e),
            JoinError::Subscribe { room, source } => NodeError::Subscribe { room, source },
        }
    }
}

impl From<PostError> for NodeError {
    fn from(e: PostError) -> Self {
        match e {
            PostError::Stopped => NodeError::Stopped,
            PostError::InvalidText => NodeError::InvalidText,
            PostError::NotJoined(room) => NodeError::NotJoined(room),
            PostError::TooManyMentions => NodeError::TooManyMentions,
            PostError::Backlog(n, room) => NodeError::Backlog(n, room),
            PostError::NotAllowed { room, reason } => NodeError::NotAllowed { room, reason },
            PostError::UnknownMessage(id) => NodeError::UnknownMessage(id),
            PostError::Store(e) => NodeError::Store(e),
            PostError::Flush(e) => NodeError::Flush(e),
        }
    }
}

impl From<RoomOpError> for NodeError {
    fn from(e: RoomOpError) -> Self {
        match e {
            RoomOpError::Stopped => NodeError::Stopped,
            RoomOpError::InvalidText => NodeError::InvalidText,
            RoomOpError::InvalidEmoji => NodeError::InvalidEmoji,
            RoomOpError::NotJoined(room) => NodeError::NotJoined(room),
            RoomOpError::UnknownMessage(id) => NodeError::UnknownMessage(id),
            RoomOpError::NoSuchReaction(id) => NodeError::NoSuchReaction(id),
            RoomOpError::NotAllowed { room, reason } => NodeError::NotAllowed { room, reason },
            RoomOpError::Store(e) => NodeError::Store(e),
            RoomOpError::Flush(e) => NodeError::Flush(e),
        }
    }
}

impl From<DmError> for NodeError {
    fn from(e: DmError) -> Self {
        match e {
            DmError::Stopped => NodeError::Stopped,
            DmError::InvalidText => NodeError::InvalidText,
            DmError::InvalidPeer(peer) => NodeError::InvalidPeer(peer),
            DmError::InvalidEmoji => NodeError::InvalidEmoji,
            DmError::UnknownMessage(id) => NodeError::UnknownMessage(id),
            DmError::OutboxFull(n) => NodeError::OutboxFull(n),
            DmError::Store(e) => NodeError::Store(e),
            DmError::Flush(e) => NodeError::Flush(e),
        }
    }
}

impl From<GroupError> for NodeError {
    fn from(e: GroupError) -> Self {
        match e {
            GroupError::Stopped => NodeError::Stopped,
            GroupError::InvalidText => NodeError::InvalidText,
            GroupError::InvalidGroupName => NodeError::InvalidGroupName,
            GroupError::InvalidPeer(peer) => NodeError::InvalidPeer(peer),
            GroupError::UnknownGroup(group) => NodeError::UnknownGroup(group),
            GroupError::NotModerator(group) => NodeError::NotModerator(group),
            GroupError::NotMember(group) => NodeError::NotMember(group),
            GroupError::GroupTooLarge(group) => NodeError::GroupTooLarge(group),
            GroupError::OutboxFull(n) => NodeError::OutboxFull(n),
            GroupError::Store(e) => NodeError::Store(e),
            GroupError::Flush(e) => NodeError::Flush(e),
        }
    }
}

// ---- failures shared by several families -------------------------------------
//
// The helpers the handle and the event loop share answer with these small
// types; each converts into every family that has the variant, so a helper
// never names a family, and a family never gains a variant it cannot have.

/// The event loop is gone: the node has stopped (`Handle::ask`).
pub(crate) struct Stopped;

/// Text is empty or too long (`check_text`).
pub(crate) struct InvalidText;

/// The room is not joined (`EventLoop::joined`).
pub(crate) struct NotJoined(pub(crate) Room);

/// Logging an own message failed: it was not logged (`Store`), or it is
/// logged but its flush failed (`Flush`).
pub(crate) enum LogFailure {
    Store(StoreError),
    Flush(Arc<StoreError>),
}

/// `impl From<$shared> for` each family listed: the shared failure becomes
/// the family's variant of the same name, with the same field.
macro_rules! shared_into {
    ($shared:ident => $($family:ident),+) => {
        $(
            impl From<$shared> for $family {
                fn from(_: $shared) -> Self {
                    $family::$shared
                }
            }
        )+
    };
    ($shared:ident($field:ident) => $($family:ident),+) => {
        $(
            impl From<$shared> for $family {
                fn from($shared($field): $shared) -> Self {
                    $family::$shared($field)
                }
            }
        )+
    };
}

shared_into!(Stopped => NodeError, JoinError, PostError, RoomOpError, DmError, GroupError);
shared_into!(InvalidText => PostError, RoomOpError, DmError, GroupError);
shared_into!(NotJoined(room) => NodeError, PostError, RoomOpError);

/// `impl From<LogFailure> for` each durable family.
macro_rules! log_failure_into {
    ($($family:ident),+) => {
        $(
            impl From<LogFailure> for $family {
                fn from(e: LogFailure) -> Self {
                    match e {
                        LogFailure::Store(e) => $family::Store(e),
                        LogFailure::Flush(e) => $family::Flush(e),
                    }
                }
            }
        )+
    };
}

log_failure_into!(PostError, RoomOpError, DmError, GroupError);

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::fmt::{Debug, Display};

    use super::*;

    /// Each error of a family becomes, as a [`NodeError`], the variant of
    /// the same name with the same fields (the same `Debug`) and the same
    /// text (the API answers with it; tests and the CLI compare it).
    /// `all` holds one error per variant of the family.
    fn converts_to_the_same_variant<E: Debug + Display + Into<NodeError>>(family: &str, all: Vec<E>) {
        let mut variants = HashSet::new();
        for e in all {
            let (text, debug) = (e.to_string(), format!("{e:?}"));
            let node: NodeError = e.into();
            assert_eq!(node.to_string(), text, "{family}: {debug}");
            assert_eq!(format!("{node:?}"), debug, "{family}: the same variant");
            let variant: String = debug.chars().take_while(char::is_ascii_alphanumeric).collect();
            assert!(variants.insert(variant), "{family}: one sample per variant: {debug}");
        }
    }

    fn room() -> Room {
        Room::new("lobby").expect("a room name")
    }

    fn store_error() -> StoreError {
        StoreError::Engine("injected".into())
    }

    #[test]
    fn every_family_converts_into_the_same_named_node_error_with_the_same_text() {
        let (message, group, peer) = (
            MessageId::from_bytes([1; 32]),
            GroupId::from_bytes([2; 32]),
            PeerId::random(),
        );
        converts_to_the_same_variant(
            "JoinError",
            vec![
                JoinError::Stopped,
                JoinError::InvalidRoom(Room::new("").expect_err("an empty name")),
                JoinError::Subscribe {
                    room: room(),
                    source: SubscriptionError::NotAllowed,
                },
            ],
        );
        converts_to_the_same_variant(
            "PostError",
            vec![
                PostError::Stopped,
                PostError::InvalidText,
                PostError::NotJoined(room()),
                PostError::TooManyMentions,
                PostError::Backlog(7, room()),
                PostError::NotAllowed {
                    room: room(),
                    reason: RejectReason::Removed,
                },
                PostError::UnknownMessage(message),
                PostError::Store(store_error()),
                PostError::Flush(Arc::new(store_error())),
            ],
        );
        converts_to_the_same_variant(
            "RoomOpError",
            vec![
                RoomOpError::Stopped,
                RoomOpError::InvalidText,
                RoomOpError::InvalidEmoji,
                RoomOpError::NotJoined(room()),
                RoomOpError::UnknownMessage(message),
                RoomOpError::NoSuchReaction(message),
                RoomOpError::NotAllowed {
                    room: room(),
                    reason: RejectReason::NotAllowed,
                },
                RoomOpError::Store(store_error()),
                RoomOpError::Flush(Arc::new(store_error())),
            ],
        );
        converts_to_the_same_variant(
            "DmError",
            vec![
                DmError::Stopped,
                DmError::InvalidText,
                DmError::InvalidPeer(peer),
                DmError::InvalidEmoji,
                DmError::UnknownMessage(message),
                DmError::OutboxFull(10_000),
                DmError::Store(store_error()),
                DmError::Flush(Arc::new(store_error())),
            ],
        );
        converts_to_the_same_variant(
            "GroupError",
            vec![
                GroupError::Stopped,
                GroupError::InvalidText,
                GroupError::InvalidGroupName,
                GroupError::InvalidPeer(peer),
                GroupError::UnknownGroup(group),
                GroupError::NotModerator(group),
                GroupError::NotMember(group),
                GroupError::GroupTooLarge(group),
                GroupError::OutboxFull(10_000),
                GroupError::Store(store_error()),
                GroupError::Flush(Arc::new(store_error())),
            ],
        );
    }
}
