//! How a node is set up: [`Config`] and its [`ConnectionCaps`].

use std::path::PathBuf;
use std::time::Duration;

use libp2p::Multiaddr;

use crate::id::Room;

use super::{limits, outbox};
use crate::protocol::GossipAuth;

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
    /// Posts, and apart the operations anyone may make (reactions, edits,
    /// deletes, question marks), that a node keeps per room, in memory and
    /// in its log
    /// (default 10,000, `room::DEFAULT_ROOM_BOUND`: as many as
    /// history sync serves). Beyond it the oldest in room order are
    /// evicted, by a rule every node applies alike (docs/PROTOCOL.md,
    /// "Bounded rooms"); the rules (roles, removals, the hallway's mode)
    /// are never evicted. Every node of a room should use the same value:
    /// a node with a smaller one refuses what a larger one keeps.
    pub room_bound: usize,
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
            room_bound: crate::room::DEFAULT_ROOM_BOUND,
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
