//! The constants of the wire protocol, specified in docs/PROTOCOL.md.
//!
//! Everything here is part of the protocol: another implementation must use
//! the same values to join a room. Changing one is a protocol version bump.
//! Bounds that are only this node's policy (how many sync rounds it allows,
//! how long a presence announcement holds) live with the code that applies
//! them. A leaf: this module imports nothing else of the crate.

use std::time::Duration;

use libp2p::StreamProtocol;
use libp2p::gossipsub::{self, IdentTopic, MessageId as GossipId};
use sha2::{Digest, Sha256};

/// The prefix of every signed byte string: ed25519 signs `SIGNING_DOMAIN ||
/// payload`, so an envelope signature can never be confused with a libp2p
/// signature (gossipsub's `libp2p-pubsub:`, Noise's handshake payload).
pub const SIGNING_DOMAIN: &[u8] = b"backchannel/envelope/v1\n";

/// The prefix hashed before a message's key and payload to form its id.
pub const ID_DOMAIN: &[u8] = b"backchannel/id/v1\n";

/// Gossipsub topics of rooms are this prefix followed by the room name.
pub const TOPIC_PREFIX: &str = "backchannel/v1/room/";

/// The request-response protocol that carries direct messages and receipts.
pub const DM_PROTOCOL: StreamProtocol = StreamProtocol::new("/backchannel/dm/1.0.0");

/// The request-response protocol of history sync (`crate::sync`).
pub const SYNC_PROTOCOL: StreamProtocol = StreamProtocol::new("/backchannel/sync/1.0.0");

/// The protocol version announced by identify.
pub const IDENTIFY_PROTOCOL: &str = "/backchannel/1.0.0";

/// Longest text of a post or DM, in UTF-8 bytes: a long chat message, far
/// below gossipsub's frame limits.
pub const MAX_TEXT_BYTES: usize = 4096;

/// Longest display name, in UTF-8 bytes.
pub const MAX_NICK_BYTES: usize = 32;

/// Longest room name, in UTF-8 bytes.
pub const MAX_ROOM_BYTES: usize = 64;

/// Largest encoded envelope accepted anywhere (gossipsub data, DM request).
/// A maximal post (text, nick, room, nonce, key, signature and protobuf
/// framing) is about 4.3 KiB; anything bigger is hostile.
pub const MAX_ENVELOPE_BYTES: usize = 8192;

/// Largest gossipsub RPC frame a node reads (libp2p's default). Larger
/// than [`MAX_ENVELOPE_BYTES`] on purpose: a message up to this size reaches
/// the application, which rejects an envelope over [`MAX_ENVELOPE_BYTES`] as
/// `oversize` and counts it against the peer that sent it; only a frame over
/// this limit is cut by gossipsub's decoder unseen (and uncounted).
pub const MAX_GOSSIP_FRAME_BYTES: usize = 65_536;

/// Largest encoded `DmReply` accepted: a receipt envelope is under 200 bytes.
pub const MAX_REPLY_BYTES: usize = 1024;

/// Length of the random nonce in posts and DMs.
pub const NONCE_BYTES: usize = 16;

/// What separates a hosted room's name from its host's peer id.
pub const HOST_SEPARATOR: char = '~';

/// Participants a post may mention at most.
pub const MAX_MENTIONS: usize = 16;

/// Longest emoji (a reaction), in UTF-8 bytes.
pub const MAX_EMOJI_BYTES: usize = 32;

/// Prefix of the hash that derives a group id.
pub const GROUP_DOMAIN: &[u8] = b"backchannel/group/v1\n";

/// Members per group at most on the wire; nodes enforce a lower, configurable
/// limit (Clubhouse's 15 by default).
pub const MAX_WIRE_MEMBERS: usize = 64;

/// Longest group name, in UTF-8 bytes.
pub const MAX_GROUP_NAME_BYTES: usize = 64;

/// Largest negentropy message either side of a history sync sends; a round
/// that would be larger is split over more rounds.
pub const FRAME_LIMIT: u64 = 60_000;

/// Ids per sync fetch request at most.
pub const MAX_FETCH_IDS: usize = 256;

/// Bytes of envelopes per sync page (fetch response or push) at most.
pub const MAX_PAGE_BYTES: usize = 1 << 20;

/// Largest sync request or response on the wire: a page and its framing.
pub const MAX_SYNC_MESSAGE_BYTES: usize = MAX_PAGE_BYTES + 64 * 1024;

/// The Kademlia DHT protocol id. Backchannel runs its own DHT, apart from
/// the public IPFS one: its servers are Backchannel nodes and helpers, and
/// what they store is limited to the two kinds of entries below.
pub const DHT_PROTOCOL: StreamProtocol = StreamProtocol::new("/backchannel/kad/1.0.0");

/// Domain of the DHT key under which a peer publishes its signed addresses.
pub const PEER_KEY_DOMAIN: &[u8] = b"backchannel/dht/peer/v1\n";

/// Domain of the DHT key under which a room's members are providers.
pub const ROOM_KEY_DOMAIN: &[u8] = b"backchannel/dht/room/v1\n";

/// Largest DHT record value a node stores or accepts: a signed libp2p peer
/// record of [`MAX_RECORD_ADDRS`] addresses fits with room to spare.
pub const MAX_RECORD_BYTES: usize = 4096;

/// Addresses at most in a peer's address record.
pub const MAX_RECORD_ADDRS: usize = 16;

/// The circuit relay v2 hop protocol: a peer that lists it in identify
/// relays for others.
pub const RELAY_HOP_PROTOCOL: &str = "/libp2p/circuit/relay/0.2.0/hop";

/// The DHT key of `peer`'s address record: SHA-256 of [`PEER_KEY_DOMAIN`]
/// and the peer id's bytes.
pub fn peer_key(peer: &libp2p::PeerId) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(PEER_KEY_DOMAIN);
    h.update(peer.to_bytes());
    h.finalize().into()
}

/// The DHT key whose providers are the members of the room with id `room`:
/// SHA-256 of [`ROOM_KEY_DOMAIN`] and the room id's UTF-8 bytes.
pub fn room_key(room: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(ROOM_KEY_DOMAIN);
    h.update(room.as_bytes());
    h.finalize().into()
}

/// The gossipsub topic of the room with id `room` (`Room::as_str`). It takes
/// the id as text so that this module stays a leaf.
pub fn topic(room: &str) -> IdentTopic {
    IdentTopic::new(format!("{TOPIC_PREFIX}{room}"))
}

/// The gossipsub message id: SHA-256 of the message data (the encoded
/// envelope, exactly as published). Content addressing is required because
/// anonymous gossipsub messages carry no source or sequence number.
pub fn gossip_message_id(message: &gossipsub::Message) -> GossipId {
    GossipId::new(&Sha256::digest(&message.data))
}

/// How gossipsub messages are authenticated.
///
/// Backchannel signs every envelope itself, so by default gossipsub adds no
/// signature of its own ([`GossipAuth::Anonymous`], the `StrictNoSign` policy
/// of js-libp2p and py-libp2p). [`GossipAuth::Signed`] exists to measure the
/// difference (docs/PERFORMANCE.md) and is not interoperable with the default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GossipAuth {
    /// No gossipsub signature, source or sequence number (the protocol).
    #[default]
    Anonymous,
    /// Gossipsub signs and strictly verifies every message as well.
    Signed,
}

/// The gossipsub configuration every Backchannel node uses.
pub fn gossipsub_config(auth: GossipAuth) -> gossipsub::Config {
    let mode = match auth {
        GossipAuth::Anonymous => gossipsub::ValidationMode::Anonymous,
        GossipAuth::Signed => gossipsub::ValidationMode::Strict,
    };
    gossipsub::ConfigBuilder::default()
        .validation_mode(mode)
        // The application verifies each envelope before it is forwarded.
        .validate_messages()
        .message_id_fn(gossip_message_id)
        .max_transmit_size(MAX_GOSSIP_FRAME_BYTES)
        // Repair (IHAVE/IWANT) starts one second after start instead of six.
        .heartbeat_initial_delay(Duration::from_secs(1))
        .build()
        .expect("the gossipsub configuration is valid")
}

/// The gossipsub message authenticity matching [`gossipsub_config`].
pub fn gossipsub_authenticity(auth: GossipAuth, keypair: &libp2p::identity::Keypair) -> gossipsub::MessageAuthenticity {
    match auth {
        GossipAuth::Anonymous => gossipsub::MessageAuthenticity::Anonymous,
        GossipAuth::Signed => gossipsub::MessageAuthenticity::Signed(keypair.clone()),
    }
}

/// Gossipsub peer scoring tuned for chat (docs/SECURITY.md, "Peer scoring").
///
/// - **P4, invalid messages** (per room topic, [`chat_topic_params`]): a peer
///   that forwards a message this node `Reject`s (bad signature, malformed,
///   oversize, wrong kind or room) loses 10 × count², the count decaying by
///   0.1% a second: three invalid messages put a peer without positive
///   credit past the graylist for 59 s, four for 346 s (docs/PROTOCOL.md,
///   "Peer scoring", has the formula; a graylisted peer's messages are not
///   seen, so they cannot keep it there; a long decay does). Gossipsub
///   counts a message with a gossipsub signature, seqno or source here too.
/// - **P5, application score** (weight 1): minus the peer's rate-limit
///   penalty (`node::limits::Penalties`): one point per violation, decaying
///   by 0.5% a second. A peer flooding faster than its limits reaches the
///   graylist after ~80 violations and stays there for minutes.
/// - **Off on purpose:** P3/P3b (mesh delivery deficits) penalise every peer
///   of a quiet room; P6 (IP colocation) penalises peers behind one NAT and
///   every test on loopback; the slow-peer penalty punishes a busy machine,
///   not a hostile one.
/// - Kept from libp2p: P7 behaviour penalty (broken promises, GRAFT
///   flooding), and P1/P2 small positive credit for time in the mesh and
///   first deliveries, capped so that it cannot buy an attacker more than
///   one invalid message.
pub fn peer_score_params() -> gossipsub::PeerScoreParams {
    gossipsub::PeerScoreParams {
        app_specific_weight: 1.0,
        ip_colocation_factor_weight: 0.0,
        slow_peer_weight: 0.0,
        topic_score_cap: 10.0,
        ..gossipsub::PeerScoreParams::default()
    }
}

/// The score thresholds: below -10 a peer gets no gossip (IHAVE), below -50
/// it is not published to, below -80 everything it sends is ignored
/// (graylisted). libp2p's defaults, made explicit.
pub fn peer_score_thresholds() -> gossipsub::PeerScoreThresholds {
    gossipsub::PeerScoreThresholds {
        gossip_threshold: -10.0,
        publish_threshold: -50.0,
        graylist_threshold: -80.0,
        accept_px_threshold: 10.0,
        opportunistic_graft_threshold: 5.0,
    }
}

/// The score parameters of a room topic (see [`peer_score_params`]).
pub fn chat_topic_params() -> gossipsub::TopicScoreParams {
    gossipsub::TopicScoreParams {
        topic_weight: 1.0,
        time_in_mesh_weight: 0.01,
        time_in_mesh_quantum: Duration::from_secs(1),
        time_in_mesh_cap: 300.0,
        first_message_deliveries_weight: 0.05,
        first_message_deliveries_decay: 0.9,
        first_message_deliveries_cap: 100.0,
        mesh_message_deliveries_weight: 0.0,
        mesh_failure_penalty_weight: 0.0,
        invalid_message_deliveries_weight: -10.0,
        invalid_message_deliveries_decay: 0.999,
        ..gossipsub::TopicScoreParams::default()
    }
}
