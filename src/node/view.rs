//! What a node answers when asked: read models of rooms, peers, the
//! network and groups, as plain data (serde, for the local API and `--json`).

use libp2p::{Multiaddr, PeerId};

use super::Reachability;
use crate::group::GroupId;
use crate::id::{MessageId, Room};
use crate::room::{ChatMode, QuestionState, Role};

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
    /// Participants mentioned, at most
    /// [`MAX_MENTIONS`](crate::protocol::MAX_MENTIONS) (more is
    /// [`NodeError::TooManyMentions`](crate::NodeError::TooManyMentions)).
    /// Words `@<peer id>` and `@<nickname>` (of a participant present in the
    /// room) in the text are added by the node, up to that bound in all.
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
/// ([`crate::Handle::room_footprint`]). A room the node has left has none of it:
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
