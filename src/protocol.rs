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

/// Domain of a stamp's hash (see [`stamp_strength`]).
pub const STAMP_DOMAIN: &[u8] = b"backchannel/stamp/v1\n";

/// How much work a stamp shows for an author in a room: the number of
/// leading zero bits of `SHA-256(STAMP_DOMAIN || u16 LE length of the room
/// id || room id || the author's 32-byte ed25519 public key || stamp as u64
/// LE)`. A stamp is bound to one room and one key, so it cannot be reused
/// for another key or carried to another room; it costs its author about
/// 2^bits hashes once per room and costs a receiver one hash to check.
/// Zero is never a stamp (the wire's "none").
pub fn stamp_strength(room: &str, key: &[u8; 32], stamp: u64) -> u32 {
    if stamp == 0 {
        return 0;
    }
    StampHash::new(room, key).strength(stamp)
}

/// The first stamp (counting from 1) with at least `bits` of work for `key`
/// in `room`: about 2^bits hashes (2^18 take ~0.03 s on one core of the
/// project's test machine, in a release build). Deterministic, so a node that lost its cached
/// stamp finds the same one again. `bits` above 40 would not finish in a
/// lifetime; callers bound it.
pub fn mint_stamp(room: &str, key: &[u8; 32], bits: u32) -> u64 {
    let hash = StampHash::new(room, key);
    (1..=u64::MAX)
        .find(|stamp| hash.strength(*stamp) >= bits)
        .expect("a stamp exists below 2^64 for any bits a caller asks")
}

/// SHA-256 of a stamp's bytes with everything but the stamp done once: the
/// blocks before it compressed, and the last one or two laid out with the
/// padding. Each try costs one or two block compressions in `sha2` (which
/// is optimised even in a debug build, where the generic `Digest` path is
/// not), so minting is as fast in tests as in the product.
struct StampHash {
    state: [u32; 8],
    tail: [[u8; 64]; 2],
    blocks: usize,
    at: usize,
}

/// SHA-256's initial state (FIPS 180-4, 5.3.3).
const SHA256_H0: [u32; 8] = [
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];

impl StampHash {
    fn new(room: &str, key: &[u8; 32]) -> Self {
        // Room ids are at most MAX_ROOM_BYTES, so the length fits in a u16.
        let mut prefix = STAMP_DOMAIN.to_vec();
        prefix.extend_from_slice(&(room.len() as u16).to_le_bytes());
        prefix.extend_from_slice(room.as_bytes());
        prefix.extend_from_slice(key);
        let mut state = SHA256_H0;
        let full = prefix.len() / 64 * 64;
        for block in prefix[..full].chunks_exact(64) {
            sha2::block_api::compress256(&mut state, &[block.try_into().expect("64 bytes")]);
        }
        // The rest, the 8 stamp bytes, 0x80, zeros, the length in bits.
        let rest = &prefix[full..];
        let blocks = if rest.len() + 8 + 1 + 8 <= 64 { 1 } else { 2 };
        let mut bytes = [0u8; 128];
        bytes[..rest.len()].copy_from_slice(rest);
        bytes[rest.len() + 8] = 0x80;
        let bits = ((prefix.len() + 8) as u64) * 8;
        bytes[blocks * 64 - 8..blocks * 64].copy_from_slice(&bits.to_be_bytes());
        let mut tail = [[0u8; 64]; 2];
        tail[0].copy_from_slice(&bytes[..64]);
        tail[1].copy_from_slice(&bytes[64..]);
        Self {
            state,
            tail,
            blocks,
            at: rest.len(),
        }
    }

    /// The digest of the bytes with `stamp`, as SHA-256's state words (the
    /// digest is their big-endian bytes).
    fn digest_words(&self, stamp: u64) -> [u32; 8] {
        let mut tail = self.tail;
        for (i, byte) in stamp.to_le_bytes().into_iter().enumerate() {
            let at = self.at + i;
            tail[at / 64][at % 64] = byte;
        }
        let mut state = self.state;
        sha2::block_api::compress256(&mut state, &tail[..self.blocks]);
        state
    }

    fn strength(&self, stamp: u64) -> u32 {
        let mut bits = 0;
        for word in self.digest_words(stamp) {
            bits += word.leading_zeros();
            if word != 0 {
                break;
            }
        }
        bits
    }
}

#[cfg(test)]
fn leading_zero_bits(digest: &[u8]) -> u32 {
    let mut bits = 0;
    for byte in digest {
        bits += byte.leading_zeros();
        if *byte != 0 {
            break;
        }
    }
    bits
}

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

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: [u8; 32] = [7; 32];

    #[test]
    fn a_minted_stamp_has_the_work_asked_and_only_for_its_room_and_key() {
        let stamp = mint_stamp("general", &KEY, 12);
        assert!(stamp_strength("general", &KEY, stamp) >= 12);
        // The same work does not carry to another room or key: a stamp of 12
        // bits for them would be a 1 in 4,096 chance, and these are fixed.
        assert!(stamp_strength("general2", &KEY, stamp) < 12);
        assert!(stamp_strength("general", &[8; 32], stamp) < 12);
        // Deterministic: a node that lost its stamp finds the same one.
        assert_eq!(mint_stamp("general", &KEY, 12), stamp);
        // No stamp is no work.
        assert_eq!(stamp_strength("general", &KEY, 0), 0);
    }

    #[test]
    fn the_fast_hash_is_sha256_for_every_room_length() {
        // Room ids of 1 to 64 bytes put the stamp in the first or second
        // block and the padding in one or two: all of them agree with the
        // plain digest.
        for len in 1..=MAX_ROOM_BYTES {
            let room = "r".repeat(len);
            for stamp in [1u64, 42, 0x0102_0304_0506_0708, u64::MAX] {
                let mut bytes = STAMP_DOMAIN.to_vec();
                bytes.extend_from_slice(&(len as u16).to_le_bytes());
                bytes.extend_from_slice(room.as_bytes());
                bytes.extend_from_slice(&KEY);
                bytes.extend_from_slice(&stamp.to_le_bytes());
                let digest = Sha256::digest(&bytes);
                let words: Vec<u32> = digest
                    .chunks(4)
                    .map(|w| u32::from_be_bytes(w.try_into().unwrap()))
                    .collect();
                let state = StampHash::new(&room, &KEY).digest_words(stamp);
                assert_eq!(state.to_vec(), words, "room of {len} bytes, stamp {stamp}");
                assert_eq!(stamp_strength(&room, &KEY, stamp), leading_zero_bits(&digest));
            }
        }
    }

    #[test]
    fn strength_counts_leading_zero_bits_across_bytes() {
        assert_eq!(leading_zero_bits(&[0x80, 0]), 0);
        assert_eq!(leading_zero_bits(&[0x01, 0xff]), 7);
        assert_eq!(leading_zero_bits(&[0, 0x10]), 11);
        assert_eq!(leading_zero_bits(&[0, 0]), 16);
    }

    #[test]
    fn the_hash_is_the_one_the_protocol_specifies() {
        // docs/PROTOCOL.md gives this construction; another implementation
        // checks its own against the same bytes.
        let stamp = 42u64;
        let mut bytes = STAMP_DOMAIN.to_vec();
        bytes.extend_from_slice(&7u16.to_le_bytes());
        bytes.extend_from_slice(b"general");
        bytes.extend_from_slice(&KEY);
        bytes.extend_from_slice(&stamp.to_le_bytes());
        let digest = Sha256::digest(&bytes);
        assert_eq!(bytes.len(), 70);
        assert_eq!(
            digest.as_slice(),
            hex("fa9ae8f38c1bd7647bb719c55558209f04a79dd67e7bf1e14e7561fac26c7763")
        );
        assert_eq!(stamp_strength("general", &KEY, stamp), 0);
        // The vector docs/PROTOCOL.md gives for a stamp of 18 bits.
        assert_eq!(mint_stamp("general", &KEY, 18), 574_692);
        assert_eq!(stamp_strength("general", &KEY, 574_692), 18);
    }

    fn hex(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
            .collect()
    }
}
