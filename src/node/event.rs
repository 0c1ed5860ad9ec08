//! [`Event`]: what a node tells its application, in order.

use libp2p::{Multiaddr, PeerId};

use super::{DialFailure, DmFailure};
use crate::group::{GroupId, GroupMessage};
use crate::id::{MessageId, RejectReason, Room};
use crate::message::{DirectMessage, HallwayPost};
use crate::room::RoomAction;

/// Something that happened on the node, in the order it happened.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Event {
    /// The node listens on this address (ends in `/p2p/<own id>`).
    Listening {
        /// The address others can dial.
        addr: Multiaddr,
    },
    /// A first connection to a peer opened.
    PeerConnected {
        /// The peer.
        peer: PeerId,
    },
    /// The last connection to a peer closed.
    PeerDisconnected {
        /// The peer.
        peer: PeerId,
    },
    /// A peer joined a room this node is in.
    RoomPeerJoined {
        /// The room.
        room: Room,
        /// The peer.
        peer: PeerId,
    },
    /// A peer left a room this node is in.
    RoomPeerLeft {
        /// The room.
        room: Room,
        /// The peer.
        peer: PeerId,
    },
    /// A post that was waiting for the room's peers has now been published.
    PostSent {
        /// The room.
        room: Room,
        /// The post.
        id: MessageId,
    },
    /// This node's own posts wait to go out at the pace its peers accept
    /// from one author (5 a second by default): `waiting` are left in the
    /// room; 0 when all are sent. Reported at most once a second, when the
    /// number changes.
    PostsWaiting {
        /// The room.
        room: Room,
        /// Posts still waiting.
        waiting: usize,
    },
    /// A verified hallway post from another participant, now in the log.
    Hallway {
        /// The message id.
        id: MessageId,
        /// The author.
        from: PeerId,
        /// The post.
        post: HallwayPost,
    },
    /// A verified direct message for this node, now in the log.
    Dm {
        /// The message id.
        id: MessageId,
        /// The author.
        from: PeerId,
        /// The message.
        dm: DirectMessage,
        /// The author is not a contact: the DM is in the requests inbox.
        request: bool,
    },
    /// A DM is waiting in the outbox: its last attempt failed and it will be
    /// retried at `retry_at_ms`, or sooner when the recipient is seen.
    DmQueued {
        /// The DM.
        id: MessageId,
        /// The recipient.
        to: PeerId,
        /// When the next attempt is due (ms since the Unix epoch).
        retry_at_ms: u64,
        /// Why the last attempt failed.
        reason: DmFailure,
    },
    /// An attempt to deliver a DM is on the wire.
    DmSent {
        /// The DM.
        id: MessageId,
        /// The recipient.
        to: PeerId,
        /// Which attempt (1 = first).
        attempt: u32,
    },
    /// A DM this node sent was acknowledged by a valid receipt from its recipient.
    Delivered {
        /// The DM.
        id: MessageId,
        /// The recipient.
        to: PeerId,
    },
    /// A DM this node sent failed for good (refused, invalid receipt, expired).
    DmFailed {
        /// The DM.
        id: MessageId,
        /// The recipient.
        to: PeerId,
        /// Why.
        reason: DmFailure,
    },
    /// A group's membership or name changed (or this node learned of it).
    GroupChanged {
        /// The group.
        group: GroupId,
        /// Its name.
        name: String,
        /// Its moderator.
        moderator: PeerId,
        /// Its members now.
        members: Vec<PeerId>,
    },
    /// This node was added to a group that includes peers it blocked.
    GroupWarning {
        /// The group.
        group: GroupId,
        /// Its name.
        name: String,
        /// The blocked members.
        blocked: Vec<PeerId>,
    },
    /// A verified message from a member of a group, now in the log.
    GroupMessage {
        /// The group.
        group: GroupId,
        /// The message id.
        id: MessageId,
        /// The author.
        from: PeerId,
        /// The message.
        message: GroupMessage,
    },
    /// A group message this node sent reached one more member.
    GroupDelivered {
        /// The group.
        group: GroupId,
        /// The message.
        id: MessageId,
        /// Members holding it now.
        delivered: usize,
        /// Members it was sent to.
        of: usize,
    },
    /// A peer became a contact (a request accepted) or got a new petname.
    ContactChanged {
        /// The peer.
        peer: PeerId,
        /// Its local name (empty: none).
        petname: String,
    },
    /// A request was declined and its DMs deleted.
    RequestDeclined {
        /// The peer.
        peer: PeerId,
        /// DMs deleted.
        deleted: usize,
    },
    /// Requests from non-contacts are now accepted (or refused).
    RequestsSetting {
        /// Accepted?
        accept: bool,
    },
    /// A peer was blocked or unblocked.
    BlockChanged {
        /// The peer.
        peer: PeerId,
        /// Blocked now?
        blocked: bool,
    },
    /// A verified room operation from another participant took effect
    /// (a delete, edit, reaction, role, removal, hallway mode or question
    /// state). Read the room again ([`crate::Handle::room_view`]) to show it.
    RoomOp {
        /// The room.
        room: Room,
        /// The operation's id.
        id: MessageId,
        /// Its author.
        from: PeerId,
        /// What it does.
        action: RoomAction,
    },
    /// A participant appeared in a room, changed nickname, left or vanished.
    Presence {
        /// The room.
        room: Room,
        /// The participant.
        peer: PeerId,
        /// Its nickname.
        nick: Option<String>,
        /// Present now?
        present: bool,
    },
    /// History sync with a peer brought in messages this node lacked.
    Synced {
        /// The room.
        room: Room,
        /// The peer.
        peer: PeerId,
        /// Posts and operations new to this node.
        received: usize,
        /// Messages this node sent to the peer because it lacked them.
        sent: usize,
    },
    /// A connection this node tried to open failed: a `--peer` or `/dial`
    /// address that is wrong or down, a peer whose known addresses are all
    /// stale. Dials that are given up on purpose (already connected, already
    /// dialling) are not reported.
    DialFailed {
        /// The peer it was meant to reach, if the dial named one.
        peer: Option<PeerId>,
        /// The address that failed, if the error names one.
        addr: Option<Multiaddr>,
        /// Why.
        reason: DialFailure,
    },
    /// Bytes from a peer were rejected (and counted in [`crate::Stats`]).
    Rejected {
        /// The peer that sent them (for gossip: the one that forwarded them).
        from: PeerId,
        /// Why.
        reason: RejectReason,
    },
}

impl Event {
    /// The room an event is about, wherever the variant keeps it (a
    /// [`Event::Hallway`] post names its room inside the post): the events
    /// a [`crate::RoomHandle::subscribe`] stream carries.
    pub fn room(&self) -> Option<&Room> {
        match self {
            Event::Hallway { post, .. } => Some(&post.room),
            Event::RoomPeerJoined { room, .. }
            | Event::RoomPeerLeft { room, .. }
            | Event::PostSent { room, .. }
            | Event::PostsWaiting { room, .. }
            | Event::RoomOp { room, .. }
            | Event::Presence { room, .. }
            | Event::Synced { room, .. } => Some(room),
            _ => None,
        }
    }
}
