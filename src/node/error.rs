//! Why an operation on a node failed: [`StartError`] for [`crate::Node::start`],
//! [`NodeError`] for the operations of a running node.
//!
//! A variant carries a typed cause where a caller can branch on it
//! ([`DialFailure`], [`StoreError`], an [`std::io::Error`] with its kind). A
//! variant with a `#[source]` does not repeat its source's text: printed
//! with its chain (`{:#}` in the binary) it reads once. `NodeError::Flush`
//! is the exception: the local API answers with its text alone.

use std::path::PathBuf;

use libp2p::{Multiaddr, PeerId};

use super::DialFailure;
use crate::group::GroupId;
use crate::id::{MessageId, RejectReason, Room};
use crate::protocol::{MAX_MENTIONS, MAX_NICK_BYTES, MAX_TEXT_BYTES};
use crate::store::StoreError;

/// Why a node operation failed.
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
    Flush(#[source] std::sync::Arc<StoreError>),
    /// Gossipsub refused to subscribe to the room's topic.
    #[error("cannot subscribe to room {room}")]
    Subscribe {
        /// The room.
        room: Room,
        /// Gossipsub's refusal.
        #[source]
        source: libp2p::gossipsub::SubscriptionError,
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
    InvalidRoom(#[from] crate::id::InvalidRoom),
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
