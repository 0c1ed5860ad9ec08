//! The participant node: a cheap-to-clone [`Handle`] driving one event-loop
//! task that owns the libp2p `Swarm`, the local log and all network state.
//!
//! ```text
//!  app / CLI ──Handle (Command + oneshot reply)──▶ EventLoop ──▶ Swarm (gossipsub, dm, identify, ping, mdns)
//!       ▲                                              │
//!       └────────────── Events (bounded mpsc) ◀────────┴──▶ Store (sled) via GroupCommit
//! ```

mod behaviour;
pub(crate) mod codec;
mod commit;
mod dm;
mod event_loop;
mod gossip;
mod hole_punch;
pub mod limits;
mod log_view;
pub mod outbox;
mod presence;
mod reach;
mod rooms;
#[cfg(test)]
mod sim;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use libp2p::{Multiaddr, PeerId};
use tokio::sync::{Mutex, mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::group::{GroupId, GroupMessage};
use crate::id::{MessageId, RejectReason, Room};
use crate::identity::Identity;
use crate::message::{DirectMessage, HallwayPost};
use crate::protocol::{GossipAuth, MAX_NICK_BYTES, MAX_TEXT_BYTES};
use crate::room::{ChatMode, QuestionState, Role, RoomAction};
use crate::store::{LoggedMessage, Store, StoreError};

/// Commands waiting for the event loop. Callers wait (backpressure) when full.
const COMMAND_CAPACITY: usize = 256;

/// Events waiting for the application. When the application does not keep up,
/// further events are dropped and counted in [`Stats::events_dropped`]; the
/// messages themselves stay in the log. Never blocking the event loop on the
/// application rules out deadlocks between the two.
const EVENT_CAPACITY: usize = 8192;

/// How a node is set up. Every field has a default that suits a person
/// running one node; tests and the mesh lab override a few.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the identity and the log live.
    pub data_dir: PathBuf,
    /// The data key of an encrypted data directory ([`crate::data_dir`]):
    /// the log is `sealed/log` and every value in it is sealed. None (the
    /// default) for a plaintext directory; whoever starts the node unlocks
    /// the directory first.
    pub data_key: Option<crate::seal::DataKey>,
    /// Addresses to listen on. Default: a random TCP port on all interfaces.
    pub listen: Vec<Multiaddr>,
    /// Peers to dial at start and redial when lost; each must end in `/p2p/<id>`.
    pub peers: Vec<Multiaddr>,
    /// Helpers (`backchannel serve`) to join the DHT through, and to reserve
    /// relay slots on when this node is not reachable; each must end in
    /// `/p2p/<id>`. Dialled at start and redialled when lost, like `peers`,
    /// and remembered in the log: a later start without any uses the last.
    pub bootstrap: Vec<Multiaddr>,
    /// Run as a helper: a DHT server from the start, with a relay sized for
    /// many clients. `backchannel serve` sets it. Default off.
    pub helper: bool,
    /// Addresses others can reach this node at, declared by its operator
    /// (a server with a public address, a forwarded port). Announced as
    /// confirmed; a helper also announces its listen addresses that are not
    /// loopback. Others are found by AutoNAT.
    pub external: Vec<Multiaddr>,
    /// This node is reachable at the addresses it listens on, loopback
    /// included (a server with a public address, or every node of a mesh on
    /// one machine): they are announced as confirmed at once instead of
    /// waiting for AutoNAT, so it serves the DHT from the start. Default off.
    pub public: bool,
    /// Help others when reachable: an AutoNAT server, and a relay with small
    /// limits that private room-mates may reserve on. Default on.
    pub help_others: bool,
    /// Discover peers on the local network with mDNS. Default on.
    pub mdns: bool,
    /// The display name sent with posts and DMs.
    pub nick: Option<String>,
    /// Rooms joined at start.
    pub rooms: Vec<Room>,
    /// Remember the rooms joined and left, in the log: a node started again
    /// rejoins the rooms it was in (besides `rooms`), and not the ones it
    /// left. Off by default, so that a library user or a test starts in
    /// exactly `rooms`; `backchannel run` turns it on.
    pub remember_rooms: bool,
    /// Gossipsub message authentication; see [`GossipAuth`].
    pub gossip_auth: GossipAuth,
    /// How long a DM waits for its receipt before it fails. 10 s covers a
    /// dial and a round trip on any sane network.
    pub dm_timeout: Duration,
    /// How often lost `peers` are redialled. 5 s reconnects quickly without
    /// hammering a peer that is down.
    pub redial_interval: Duration,
    /// Accept DMs from peers who are not contacts (they land in the requests
    /// inbox); when false they are refused with a "not accepted" receipt and
    /// nothing is stored. Default on, like Clubhouse. `/requests on|off`
    /// changes it and the choice is kept in the log.
    pub accept_requests: bool,
    /// How far an author's clock may be from this node's: posts outside it
    /// (either way) and DMs or group messages ahead of it are rejected.
    /// Ten minutes tolerates unsynchronised phones and laptops while keeping
    /// replays of old posts and "always the newest" timestamps out.
    pub clock_window: Duration,
    /// Members per group at most, moderator included: Clubhouse's 15.
    pub max_group_members: usize,
    /// Group commit: one flush covers every durable action queued while the
    /// previous flush ran. Off means one flush per action; it exists to
    /// measure the difference (`cargo bench --bench dm-pair`).
    pub group_commit: bool,
    /// How unacknowledged DMs are retried, and when they expire.
    pub retry: outbox::RetryPolicy,
    /// How long a connection without active streams stays open. One minute
    /// keeps a DM conversation's connection between messages.
    pub idle_connection_timeout: Duration,
    /// How far back history sync reaches: the room's messages of the last
    /// `history_window` (default 24 hours)...
    pub history_window: Duration,
    /// ...and at most the last `history_max` of them (default 10,000). This
    /// is what a node serves to others and what it asks for.
    pub history_max: usize,
    /// How often a node reconciles each joined room with one random room
    /// peer, besides when it joins and when a peer (re)appears. One minute
    /// repairs what gossip lost within a minute at a few hundred bytes per
    /// room when nothing is missing.
    pub sync_interval: Duration,
    /// Announce presence in joined rooms (and list others'). Default on.
    pub presence: bool,
    /// Rate limits per author and per peer (`limits::Limits::default`).
    pub limits: limits::Limits,
    /// Connection caps.
    pub connections: ConnectionCaps,
}

/// Connection caps: beyond them, new connections are refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionCaps {
    /// Established connections in all: 512.
    pub established: u32,
    /// Established incoming connections: 384 (some room is kept for dialling out).
    pub established_incoming: u32,
    /// Connections per peer: 8. Two peers behind NATs may hold relayed
    /// connections both ways (one each time a hole punch is tried again,
    /// see `reach.rs`), and the direct connection a hole punch makes comes
    /// on top (with 2, the punched connection was refused).
    pub per_peer: u32,
    /// Incoming connections still in their handshake: 64.
    pub pending_incoming: u32,
    /// Outgoing dials in progress: 64.
    pub pending_outgoing: u32,
}

impl Default for ConnectionCaps {
    fn default() -> Self {
        Self {
            established: 512,
            established_incoming: 384,
            per_peer: 8,
            pending_incoming: 64,
            pending_outgoing: 64,
        }
    }
}

impl Config {
    /// The defaults, with the given data directory.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            data_key: None,
            listen: vec![
                "/ip4/0.0.0.0/tcp/0".parse().expect("a valid multiaddr"),
                "/ip4/0.0.0.0/udp/0/quic-v1".parse().expect("a valid multiaddr"),
            ],
            peers: Vec::new(),
            bootstrap: Vec::new(),
            helper: false,
            external: Vec::new(),
            public: false,
            help_others: true,
            mdns: true,
            nick: None,
            rooms: Vec::new(),
            remember_rooms: false,
            gossip_auth: GossipAuth::default(),
            dm_timeout: Duration::from_secs(10),
            redial_interval: Duration::from_secs(5),
            retry: outbox::RetryPolicy::default(),
            accept_requests: true,
            group_commit: true,
            max_group_members: 15,
            clock_window: Duration::from_secs(600),
            idle_connection_timeout: Duration::from_secs(60),
            history_window: Duration::from_secs(24 * 3600),
            history_max: 10_000,
            sync_interval: Duration::from_secs(60),
            presence: true,
            limits: limits::Limits::default(),
            connections: ConnectionCaps::default(),
        }
    }

    /// Where the log lives inside the data directory.
    pub fn log_path(&self) -> PathBuf {
        crate::data_dir::contents(&self.data_dir, self.data_key.is_some()).join(crate::data_dir::LOG_DIR)
    }
}

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
        reason: String,
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
        reason: String,
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
    /// state). Read the room again ([`Handle::room_view`]) to show it.
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
        /// Why, in words.
        reason: String,
    },
    /// Bytes from a peer were rejected (and counted in [`Stats`]).
    Rejected {
        /// The peer that sent them (for gossip: the one that forwarded them).
        from: PeerId,
        /// Why.
        reason: RejectReason,
    },
}

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
    /// Dialling an address failed at once.
    #[error("cannot dial {addr}: {reason}")]
    Dial {
        /// The address.
        addr: Multiaddr,
        /// Why.
        reason: String,
    },
    /// Another node (or `backchannel history`) has this data directory's log open.
    #[error("the log {} is in use by another node: one data directory, one node", .0.display())]
    LogInUse(PathBuf),
    /// The local log failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The log could not be flushed to disk, so what was asked is not
    /// known to be durable. It is in the log in memory, and reaches the disk
    /// with the next flush that succeeds; a post or DM may have been sent.
    #[error("local log flush failed: {0}")]
    Flush(String),
    /// The network stack could not be set up.
    #[error("network setup: {0}")]
    Network(String),
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
    /// An emoji must be 1 to 32 bytes without whitespace.
    #[error("an emoji is 1 to 32 bytes without whitespace")]
    InvalidEmoji,
    /// A room name is invalid.
    #[error(transparent)]
    InvalidRoom(#[from] crate::id::InvalidRoom),
}

/// What to read back from the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HistoryQuery {
    /// A room's hallway.
    Room(Room),
    /// The direct messages exchanged with a peer.
    Peer(PeerId),
    /// A group's messages, in the order every member shows them.
    Group(GroupId),
}

/// Extras of a post: a reply, mentions, a question to the stage.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PostOptions {
    /// The post this one answers.
    pub reply_to: Option<MessageId>,
    /// Mark the post as a question to the stage.
    pub question: bool,
    /// Participants mentioned. Words `@<peer id>` and `@<nickname>` (of a
    /// participant present in the room) in the text are added by the node.
    pub mentions: Vec<PeerId>,
}

/// A post as a room shows it: the latest text, reactions, question state.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RoomPost {
    /// The post's id.
    #[serde(with = "crate::id::as_text")]
    pub id: MessageId,
    /// Its author.
    #[serde(with = "crate::id::as_text")]
    pub author: PeerId,
    /// The author's nickname when posting.
    pub nick: Option<String>,
    /// The author's role now.
    pub role: Role,
    /// The text (the latest edit, if any).
    pub text: String,
    /// Edited by its author.
    pub edited: bool,
    /// The room clock: the room's order is (clock, id).
    pub clock: u64,
    /// The author's clock, ms since the Unix epoch.
    pub time_ms: u64,
    /// The post it answers.
    #[serde(with = "crate::id::as_text::option")]
    pub reply_to: Option<MessageId>,
    /// Participants mentioned.
    #[serde(with = "crate::id::as_text::vec")]
    pub mentions: Vec<PeerId>,
    /// For a question: its state.
    pub question: Option<QuestionState>,
    /// Reactions: emoji and how many.
    pub reactions: Vec<(String, usize)>,
    /// Sent by this node.
    pub mine: bool,
}

/// What a node keeps about one room, counted across the event loop's state
/// ([`Handle::room_footprint`]). A room the node has left has none of it:
/// [`RoomFootprint::is_empty`]. For tests and diagnostics.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct RoomFootprint {
    /// The room is joined: it has rules, a presence book, unsent posts and
    /// parked operations (the counts below).
    pub joined: bool,
    /// Posts its rules know.
    pub posts: usize,
    /// Participants in its presence book.
    pub present: usize,
    /// Own posts not yet taken by gossipsub.
    pub unsent: usize,
    /// History sync sessions running with its peers.
    pub sync_sessions: usize,
    /// Sync requests in flight for it.
    pub sync_requests: usize,
    /// Per-peer sync cooldowns kept for it.
    pub sync_cooldowns: usize,
    /// Its last spread of a repair is remembered.
    pub sync_spread: bool,
    /// Its waiting posts were last reported as a number.
    pub waiting_reported: bool,
    /// Its gossipsub topic is subscribed.
    pub subscribed: bool,
    /// Its DHT search (members lookup, provider record) is scheduled.
    pub dht_search: bool,
}

impl RoomFootprint {
    /// Nothing at all is kept about the room.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// A room's rules now.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RoomRules {
    /// The host (None: an open room).
    #[serde(with = "crate::id::as_text::option")]
    pub host: Option<PeerId>,
    /// Who may post.
    pub mode: ChatMode,
    /// Participants with a role above listener, host first.
    pub roles: Vec<(String, Role)>,
    /// Removed participants.
    #[serde(with = "crate::id::as_text::vec")]
    pub removed: Vec<PeerId>,
}

/// Someone in a room now.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Participant {
    /// The peer.
    #[serde(with = "crate::id::as_text")]
    pub peer: PeerId,
    /// Its nickname.
    pub nick: Option<String>,
    /// Its role.
    pub role: Role,
    /// This node.
    pub me: bool,
}

/// A connected peer.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PeerInfo {
    /// The peer id.
    #[serde(with = "crate::id::as_text")]
    pub peer: PeerId,
    /// The joined rooms this peer is in.
    pub rooms: Vec<String>,
    /// Its gossipsub score here (docs/SECURITY.md, "Peer scoring"): below
    /// -80 it is graylisted, and everything it sends on rooms is ignored.
    pub score: Option<f64>,
    /// Its connections: direct or through a relay, and over what.
    #[serde(default)]
    pub connections: Vec<Connection>,
}

/// One connection to a peer.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Connection {
    /// The peer's address on it.
    #[serde(with = "crate::id::as_text")]
    pub addr: Multiaddr,
    /// Through a relay (a "limited" connection: relays cap time and bytes).
    pub relayed: bool,
    /// `tcp`, `quic`, `relay` or `memory`.
    pub transport: String,
    /// This node dialled it.
    pub outbound: bool,
}

pub use log_view::{LogRooms, LogView};
pub use reach::Reachability;

/// What the node knows of its place in the network (`/net`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct NetInfo {
    /// Whether others can dial this node directly.
    pub reachability: Reachability,
    /// The addresses others were seen to reach it at, relayed ones included.
    #[serde(with = "crate::id::as_text::vec")]
    pub external: Vec<Multiaddr>,
    /// The addresses it listens on.
    #[serde(with = "crate::id::as_text::vec")]
    pub listening: Vec<Multiaddr>,
    /// Relays it holds a reservation on (or asked for one).
    pub relays: Vec<RelaySlot>,
    /// Whether it serves the DHT to others.
    pub dht_server: bool,
    /// DHT servers in its routing table.
    pub dht_peers: usize,
    /// The helpers it was given or remembered, and whether each is connected.
    pub bootstrap: Vec<BootstrapPeer>,
    /// Peers whose addresses it remembers across restarts.
    pub remembered: usize,
}

/// A relay reservation.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RelaySlot {
    /// The circuit address others reach this node at through the relay.
    #[serde(with = "crate::id::as_text")]
    pub addr: Multiaddr,
    /// The relay accepted it.
    pub accepted: bool,
}

/// A configured or remembered helper.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BootstrapPeer {
    /// Its address.
    #[serde(with = "crate::id::as_text")]
    pub addr: Multiaddr,
    /// Connected now.
    pub connected: bool,
}

/// A joined room.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RoomInfo {
    /// The room.
    pub room: String,
    /// Peers known to be in it.
    pub peers: usize,
    /// Posts logged but waiting for the room's first peer.
    pub unsent: usize,
}

/// A change to a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupEdit {
    /// Add a member (moderator only).
    Add(PeerId),
    /// Remove a member (moderator only).
    Remove(PeerId),
    /// Rename the group (moderator only).
    Rename(String),
    /// Leave the group.
    Leave,
}

/// A group as this node knows it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct GroupInfo {
    /// The id.
    #[serde(with = "crate::id::as_text")]
    pub id: GroupId,
    /// The name.
    pub name: String,
    /// The moderator.
    #[serde(with = "crate::id::as_text")]
    pub moderator: PeerId,
    /// The members now.
    #[serde(with = "crate::id::as_text::vec")]
    pub members: Vec<PeerId>,
    /// The version of its latest state.
    pub version: u64,
}

/// A peer in the requests inbox: DMs from someone who is not a contact.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Request {
    /// The peer.
    #[serde(with = "crate::id::as_text")]
    pub peer: PeerId,
    /// How many DMs it sent.
    pub messages: usize,
    /// The text of the latest.
    pub last: String,
}

/// Counters: what the node did and what it refused.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Stats {
    /// Rejected inputs by reason.
    pub rejected: BTreeMap<String, u64>,
    /// Rejected inputs by the peer that sent them (at most
    /// [`Stats::MAX_PEERS_TRACKED`] peers).
    pub rejected_by_peer: BTreeMap<String, u64>,
    /// Valid messages seen again (not shown twice).
    pub duplicates: u64,
    /// Hallway posts received and shown.
    pub hallway_received: u64,
    /// DMs received and shown.
    pub dms_received: u64,
    /// Posts this node published.
    pub posts_sent: u64,
    /// DMs this node sent.
    pub dms_sent: u64,
    /// DMs acknowledged by a valid receipt.
    pub dms_delivered: u64,
    /// DMs that failed.
    pub dms_failed: u64,
    /// DMs from non-contacts refused because requests are off.
    pub requests_refused: u64,
    /// Posts and DMs from blocked peers, dropped before being stored or shown.
    pub dropped_blocked: u64,
    /// Events the application did not take in time (the messages are in the log).
    pub events_dropped: u64,
    /// Room operations received and applied.
    pub room_ops_received: u64,
    /// Reconciliations this node started, and how many completed.
    pub syncs_started: u64,
    /// Reconciliations completed.
    pub syncs_completed: u64,
    /// Posts and operations received through history sync.
    pub synced_received: u64,
    /// Posts and operations sent to peers that lacked them (fetched or pushed).
    pub synced_sent: u64,
    /// Bytes of sync requests and responses this node received.
    pub sync_bytes_in: u64,
    /// Bytes of sync requests and responses this node sent.
    pub sync_bytes_out: u64,
    /// `Event::Rejected` events not emitted because rejections came faster
    /// than 20 a second (they are all counted in `rejected`).
    pub rejected_events_suppressed: u64,
    /// Relayed connections upgraded to direct ones by hole punching.
    #[serde(default)]
    pub hole_punches: u64,
    /// Hole punches that failed (the connection stays relayed).
    #[serde(default)]
    pub hole_punch_failures: u64,
    /// DHT lookups of a peer's addresses, and how many found them.
    #[serde(default)]
    pub peer_lookups: u64,
    /// Lookups that found a peer's address record.
    #[serde(default)]
    pub peer_lookups_found: u64,
}

impl Stats {
    /// Peers tracked in `rejected_by_peer`; more would let an attacker grow
    /// memory by rotating identities.
    pub const MAX_PEERS_TRACKED: usize = 1024;

    /// All rejections.
    pub fn rejected_total(&self) -> u64 {
        self.rejected.values().sum()
    }
}

/// A running node: its handle, its events, and the task to await on exit.
pub struct Node {
    /// Drives the node; clone it freely.
    pub handle: Handle,
    /// Everything that happens, in order.
    pub events: mpsc::Receiver<Event>,
}

/// A cheap-to-clone handle to a running node.
#[derive(Clone)]
pub struct Handle {
    peer_id: PeerId,
    commands: mpsc::Sender<Command>,
    task: Arc<Mutex<Option<JoinHandle<()>>>>,
}

enum Command {
    Join(Room, oneshot::Sender<Result<(), NodeError>>),
    Leave(Room, oneshot::Sender<Result<usize, NodeError>>),
    SendDm(PeerId, String, oneshot::Sender<Result<MessageId, NodeError>>),
    History(
        HistoryQuery,
        usize,
        oneshot::Sender<Result<Vec<LoggedMessage>, NodeError>>,
    ),
    Peers(oneshot::Sender<Vec<PeerInfo>>),
    Net(oneshot::Sender<NetInfo>),
    Rooms(oneshot::Sender<Vec<RoomInfo>>),
    Stats(oneshot::Sender<Stats>),
    Footprint(Room, oneshot::Sender<RoomFootprint>),
    Outbox(oneshot::Sender<Vec<outbox::OutboxEntry>>),
    Contacts(oneshot::Sender<Vec<(PeerId, String)>>),
    GroupCreate(String, Vec<PeerId>, oneshot::Sender<Result<GroupId, NodeError>>),
    GroupEdit(GroupId, GroupEdit, oneshot::Sender<Result<(), NodeError>>),
    GroupSend(GroupId, String, oneshot::Sender<Result<MessageId, NodeError>>),
    Groups(oneshot::Sender<Vec<GroupInfo>>),
    SetContact(PeerId, String, oneshot::Sender<Result<(), NodeError>>),
    Decline(PeerId, oneshot::Sender<Result<usize, NodeError>>),
    Requests(oneshot::Sender<Result<Vec<Request>, NodeError>>),
    AcceptRequests(bool, oneshot::Sender<Result<(), NodeError>>),
    ListenAddrs(oneshot::Sender<Vec<Multiaddr>>),
    Dial(Multiaddr, oneshot::Sender<Result<(), NodeError>>),
    Block(PeerId, bool, oneshot::Sender<Result<(), NodeError>>),
    AddAddress(PeerId, Multiaddr, oneshot::Sender<()>),
    Host(String, oneshot::Sender<Result<Room, NodeError>>),
    PostWith(Room, String, PostOptions, oneshot::Sender<Result<MessageId, NodeError>>),
    RoomOp(Room, RoomAction, oneshot::Sender<Result<MessageId, NodeError>>),
    ReactDm(MessageId, String, bool, oneshot::Sender<Result<MessageId, NodeError>>),
    RoomView(Room, usize, oneshot::Sender<Result<Vec<RoomPost>, NodeError>>),
    RoomPage(
        Room,
        Option<MessageId>,
        usize,
        oneshot::Sender<Result<(Vec<RoomPost>, bool), NodeError>>,
    ),
    LogView(LogRooms, usize, oneshot::Sender<Result<LogView, NodeError>>),
    Rules(Room, oneshot::Sender<Result<RoomRules, NodeError>>),
    Who(Room, oneshot::Sender<Result<Vec<Participant>, NodeError>>),
    Sync(Room, oneshot::Sender<Result<usize, NodeError>>),
    Shutdown(oneshot::Sender<()>),
}

impl Node {
    /// Opens the log, starts the network and spawns the event loop. Must be
    /// called inside a tokio runtime.
    pub async fn start(config: Config, identity: Identity) -> Result<Node, NodeError> {
        check_nick(&config)?;
        let store = open_store(&config).await?;
        Self::start_with_store(config, identity, store).await
    }

    /// [`Node::start`] on a log the caller opened, instead of the one in
    /// `config.data_dir`: tests give a [`Store::with_engine`] whose engine
    /// they make fail. The node flushes and uses it as its own; a clone kept
    /// by the caller sees the same log.
    pub async fn start_with_store(config: Config, identity: Identity, store: Store) -> Result<Node, NodeError> {
        check_nick(&config)?;
        let (commands_tx, commands_rx) = mpsc::channel(COMMAND_CAPACITY);
        let (events_tx, events_rx) = mpsc::channel(EVENT_CAPACITY);
        let peer_id = identity.peer_id();
        let event_loop = event_loop::EventLoop::new(config, identity, store, commands_rx, events_tx)?;
        let task = tokio::spawn(event_loop.run());
        Ok(Node {
            handle: Handle {
                peer_id,
                commands: commands_tx,
                task: Arc::new(Mutex::new(Some(task))),
            },
            events: events_rx,
        })
    }
}

/// Opens the log, waiting briefly for a node that just stopped in this
/// process to release it.
async fn open_store(config: &Config) -> Result<Store, NodeError> {
    let path = config.log_path();
    let key = config.data_key.clone();
    let opened =
        tokio::task::spawn_blocking(move || Store::open_keyed_waiting(&path, key.as_ref(), Duration::from_secs(2)))
            .await
            .map_err(|e| NodeError::Network(format!("opening the log: {e}")))?;
    match opened {
        Err(e) if e.is_locked() => Err(NodeError::LogInUse(config.log_path())),
        other => Ok(other?),
    }
}

fn check_nick(config: &Config) -> Result<(), NodeError> {
    if let Some(nick) = &config.nick
        && (nick.len() > MAX_NICK_BYTES || nick.chars().any(char::is_control))
    {
        return Err(NodeError::InvalidNick);
    }
    Ok(())
}

fn check_group_name(name: &str) -> Result<(), NodeError> {
    if name.is_empty() || name.len() > crate::protocol::MAX_GROUP_NAME_BYTES || name.chars().any(char::is_control) {
        return Err(NodeError::InvalidGroupName);
    }
    Ok(())
}

impl Handle {
    /// This node's peer id.
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> Result<T, NodeError> {
        let (tx, rx) = oneshot::channel();
        self.commands.send(make(tx)).await.map_err(|_| NodeError::Stopped)?;
        rx.await.map_err(|_| NodeError::Stopped)
    }

    /// Joins a room: subscribes to its hallway.
    pub async fn join(&self, room: &Room) -> Result<(), NodeError> {
        self.ask(|tx| Command::Join(room.clone(), tx)).await?
    }

    /// Leaves a room. Returns how many posts were still waiting for peers
    /// (they stay in the log but are not sent).
    pub async fn leave(&self, room: &Room) -> Result<usize, NodeError> {
        self.ask(|tx| Command::Leave(room.clone(), tx)).await?
    }

    /// Posts to a room's hallway. Returns once the post is signed, durably
    /// logged and handed to gossipsub (or queued until the room has peers).
    /// [`NodeError::Flush`] means it is signed, logged in memory and handed
    /// on, but not (yet) on disk: posting it again would post it twice.
    pub async fn post(&self, room: &Room, text: &str) -> Result<MessageId, NodeError> {
        self.post_with(room, text, PostOptions::default()).await
    }

    /// Sends a direct message. Returns once it is signed, durably logged and
    /// sent; [`Event::Delivered`] or [`Event::DmFailed`] follows.
    /// [`NodeError::Flush`] means it is not (yet) on disk, but it is in the
    /// outbox and those events still follow.
    pub async fn send_dm(&self, to: PeerId, text: &str) -> Result<MessageId, NodeError> {
        self.ask(|tx| Command::SendDm(to, text.to_owned(), tx)).await?
    }

    /// The last `limit` messages of a room or a conversation, oldest first.
    pub async fn history(&self, query: HistoryQuery, limit: usize) -> Result<Vec<LoggedMessage>, NodeError> {
        self.ask(|tx| Command::History(query, limit, tx)).await?
    }

    /// The connected peers.
    pub async fn peers(&self) -> Result<Vec<PeerInfo>, NodeError> {
        self.ask(Command::Peers).await
    }

    /// Reachability, external addresses, relays and the DHT (`/net`).
    pub async fn net(&self) -> Result<NetInfo, NodeError> {
        self.ask(Command::Net).await
    }

    /// The joined rooms.
    pub async fn rooms(&self) -> Result<Vec<RoomInfo>, NodeError> {
        self.ask(Command::Rooms).await
    }

    /// Creates a group with this node as moderator and `members` (up to
    /// [`Config::max_group_members`] with the moderator). Returns once the
    /// creation is on disk; members learn of it through their outboxes.
    pub async fn group_create(&self, name: &str, members: Vec<PeerId>) -> Result<GroupId, NodeError> {
        check_group_name(name)?;
        self.ask(|tx| Command::GroupCreate(name.to_owned(), members, tx))
            .await?
    }

    /// Adds, removes or renames (moderator) or leaves (anyone).
    pub async fn group_edit(&self, group: GroupId, edit: GroupEdit) -> Result<(), NodeError> {
        if let GroupEdit::Rename(name) = &edit {
            check_group_name(name)?;
        }
        self.ask(|tx| Command::GroupEdit(group, edit, tx)).await?
    }

    /// Sends a message to a group: signed once, delivered to each member with
    /// a receipt each ([`Event::GroupDelivered`]).
    pub async fn group_send(&self, group: GroupId, text: &str) -> Result<MessageId, NodeError> {
        self.ask(|tx| Command::GroupSend(group, text.to_owned(), tx)).await?
    }

    /// The groups this node knows.
    pub async fn groups(&self) -> Result<Vec<GroupInfo>, NodeError> {
        self.ask(Command::Groups).await
    }

    /// The contacts and their petnames (empty: none set).
    pub async fn contacts(&self) -> Result<Vec<(PeerId, String)>, NodeError> {
        self.ask(Command::Contacts).await
    }

    /// Makes `peer` a contact (accepting its request) with a local petname,
    /// or renames a contact.
    pub async fn set_contact(&self, peer: PeerId, petname: &str) -> Result<(), NodeError> {
        if petname.len() > MAX_NICK_BYTES || petname.chars().any(char::is_control) {
            return Err(NodeError::InvalidNick);
        }
        self.ask(|tx| Command::SetContact(peer, petname.to_owned(), tx)).await?
    }

    /// Declines a request: deletes that peer's DMs. Returns how many.
    pub async fn decline(&self, peer: PeerId) -> Result<usize, NodeError> {
        self.ask(|tx| Command::Decline(peer, tx)).await?
    }

    /// The requests inbox: peers who are not contacts and sent DMs.
    pub async fn requests(&self) -> Result<Vec<Request>, NodeError> {
        self.ask(Command::Requests).await?
    }

    /// Accepts (true) or refuses (false) DMs from non-contacts from now on.
    pub async fn accept_requests(&self, on: bool) -> Result<(), NodeError> {
        self.ask(|tx| Command::AcceptRequests(on, tx)).await?
    }

    /// The DMs waiting for receipts, soonest expiry first.
    pub async fn outbox(&self) -> Result<Vec<outbox::OutboxEntry>, NodeError> {
        self.ask(Command::Outbox).await
    }

    /// The node's counters.
    pub async fn stats(&self) -> Result<Stats, NodeError> {
        self.ask(Command::Stats).await
    }

    /// What the node keeps about `room` now, joined or not (empty once it
    /// has left the room).
    pub async fn room_footprint(&self, room: &Room) -> Result<RoomFootprint, NodeError> {
        self.ask(|tx| Command::Footprint(room.clone(), tx)).await
    }

    /// The addresses the node listens on, each ending in `/p2p/<id>`.
    pub async fn listen_addrs(&self) -> Result<Vec<Multiaddr>, NodeError> {
        self.ask(Command::ListenAddrs).await
    }

    /// Dials an address.
    pub async fn dial(&self, addr: Multiaddr) -> Result<(), NodeError> {
        self.ask(|tx| Command::Dial(addr, tx)).await?
    }

    /// Tells the node where `peer` can be reached (as mDNS or identify would),
    /// so a DM to a peer it is not connected to can dial it.
    pub async fn add_peer_address(&self, peer: PeerId, addr: Multiaddr) -> Result<(), NodeError> {
        self.ask(|tx| Command::AddAddress(peer, addr, tx)).await
    }

    /// Blocks `peer` until [`Handle::unblock_peer`], across restarts: its
    /// connections are closed and refused in both directions, and its posts
    /// (whoever forwards them) and DMs are dropped before they are stored or
    /// shown, counted in [`Stats::dropped_blocked`]. The mesh lab also cuts
    /// partitions with it.
    pub async fn block_peer(&self, peer: PeerId) -> Result<(), NodeError> {
        self.ask(|tx| Command::Block(peer, true, tx)).await?
    }

    /// Unblocks `peer`: new messages from it are accepted again.
    pub async fn unblock_peer(&self, peer: PeerId) -> Result<(), NodeError> {
        self.ask(|tx| Command::Block(peer, false, tx)).await?
    }

    /// Creates a hosted room named `name` with this node as its host, and
    /// joins it. The returned room's id (`NAME~PEERID`) is what others join.
    pub async fn host(&self, name: &str) -> Result<Room, NodeError> {
        self.ask(|tx| Command::Host(name.to_owned(), tx)).await?
    }

    /// Posts with extras: a reply, mentions, or a question to the stage.
    pub async fn post_with(&self, room: &Room, text: &str, options: PostOptions) -> Result<MessageId, NodeError> {
        self.ask(|tx| Command::PostWith(room.clone(), text.to_owned(), options, tx))
            .await?
    }

    /// Signs, logs and publishes a room operation, if this node has the
    /// right ([`NodeError::NotAllowed`] otherwise): roles, deletes, edits,
    /// removals, the hallway's mode, question states, reactions.
    pub async fn room_op(&self, room: &Room, action: RoomAction) -> Result<MessageId, NodeError> {
        if let RoomAction::React(r) = &action {
            crate::room::check_emoji(&r.emoji).map_err(|_| NodeError::InvalidEmoji)?;
        }
        self.ask(|tx| Command::RoomOp(room.clone(), action, tx)).await?
    }

    /// Reacts to a DM of a conversation (or takes the reaction back): sent to
    /// the other participant as a DM with a receipt.
    pub async fn react_dm(&self, target: MessageId, emoji: &str, retract: bool) -> Result<MessageId, NodeError> {
        crate::room::check_emoji(emoji).map_err(|_| NodeError::InvalidEmoji)?;
        self.ask(|tx| Command::ReactDm(target, emoji.to_owned(), retract, tx))
            .await?
    }

    /// The last `limit` posts a room shows, in the room's order (the same on
    /// every node): deleted posts and posts the rules refuse left out, edits
    /// applied, reactions counted. Works for rooms left or ended too.
    pub async fn room_view(&self, room: &Room, limit: usize) -> Result<Vec<RoomPost>, NodeError> {
        self.ask(|tx| Command::RoomView(room.clone(), limit, tx)).await?
    }

    /// A page of what [`Handle::room_view`] shows: the `limit` posts just
    /// before the post `before` (default: the latest), in the room's order,
    /// and whether older ones exist. For a joined room it reads only as far
    /// back as the page needs, so a long room opens as fast as a short one
    /// (the local API pages rooms with it). [`NodeError::UnknownMessage`]
    /// when `before` is not a post of the room.
    pub async fn room_page(
        &self,
        room: &Room,
        before: Option<MessageId>,
        limit: usize,
    ) -> Result<(Vec<RoomPost>, bool), NodeError> {
        self.ask(|tx| Command::RoomPage(room.clone(), before, limit, tx))
            .await?
    }

    /// The log as `backchannel history` shows it: each room of `rooms` as
    /// [`Handle::room_view`] shows it and each DM conversation, the last
    /// `limit` of each, and the contacts (see [`LogView`]).
    pub async fn log_view(&self, rooms: LogRooms, limit: usize) -> Result<LogView, NodeError> {
        self.ask(|tx| Command::LogView(rooms, limit, tx)).await?
    }

    /// A room's rules now: host, hallway mode, roles, removals.
    pub async fn room_rules(&self, room: &Room) -> Result<RoomRules, NodeError> {
        self.ask(|tx| Command::Rules(room.clone(), tx)).await?
    }

    /// Who is in a joined room now, with nicknames and roles (this node too).
    pub async fn who(&self, room: &Room) -> Result<Vec<Participant>, NodeError> {
        self.ask(|tx| Command::Who(room.clone(), tx)).await?
    }

    /// A room's questions to the stage, in the room's order, with states.
    pub async fn questions(&self, room: &Room) -> Result<Vec<RoomPost>, NodeError> {
        let view = self.room_view(room, usize::MAX).await?;
        Ok(view.into_iter().filter(|p| p.question.is_some()).collect())
    }

    /// Starts history sync of a joined room with every peer in it now.
    /// Returns how many syncs started; [`Event::Synced`] reports each.
    pub async fn sync(&self, room: &Room) -> Result<usize, NodeError> {
        self.ask(|tx| Command::Sync(room.clone(), tx)).await?
    }

    /// Stops the node: closes the network, flushes the log and waits until
    /// the log is closed. Safe to call more than once.
    pub async fn shutdown(&self) {
        let _ = self.ask(Command::Shutdown).await;
        if let Some(task) = self.task.lock().await.take() {
            let _ = task.await;
        }
    }
}
