//! The envelope written out by hand from docs/PROTOCOL.md, independently of
//! the library's code, to build valid, forged and tampered messages.

use ed25519_dalek::{Signer, SigningKey};
use prost::Message;

pub const SIGNING_DOMAIN: &[u8] = b"backchannel/envelope/v1\n";

#[derive(Clone, PartialEq, Message)]
pub struct Envelope {
    #[prost(bytes = "vec", tag = "1")]
    pub payload: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub public_key: Vec<u8>,
    #[prost(bytes = "vec", tag = "3")]
    pub signature: Vec<u8>,
}

#[derive(Clone, PartialEq, Message)]
pub struct HallwayPost {
    #[prost(string, tag = "1")]
    pub room: String,
    #[prost(string, tag = "2")]
    pub text: String,
    #[prost(uint64, tag = "3")]
    pub time_ms: u64,
    #[prost(bytes = "vec", tag = "4")]
    pub nonce: Vec<u8>,
    #[prost(string, tag = "5")]
    pub nick: String,
    #[prost(fixed64, tag = "10")]
    pub stamp: u64,
}

#[derive(Clone, PartialEq, Message)]
pub struct DirectMessage {
    #[prost(bytes = "vec", tag = "1")]
    pub recipient: Vec<u8>,
    #[prost(string, tag = "2")]
    pub text: String,
    #[prost(uint64, tag = "3")]
    pub time_ms: u64,
    #[prost(bytes = "vec", tag = "4")]
    pub nonce: Vec<u8>,
    #[prost(string, tag = "5")]
    pub nick: String,
}

/// A presence announcement (docs/PROTOCOL.md "Presence").
#[derive(Clone, PartialEq, Message)]
pub struct Presence {
    #[prost(string, tag = "1")]
    pub room: String,
    #[prost(uint64, tag = "2")]
    pub time_ms: u64,
    #[prost(bytes = "vec", tag = "3")]
    pub nonce: Vec<u8>,
    #[prost(string, tag = "4")]
    pub nick: String,
    #[prost(uint32, tag = "5")]
    pub ttl_s: u32,
}

/// Payload with an announcement of presence in `room` (field 7), now,
/// holding for 60 s.
pub fn payload_presence(room: &str) -> Vec<u8> {
    let presence = Presence {
        room: room.into(),
        time_ms: now_ms(),
        nonce: rand_nonce(),
        nick: String::new(),
        ttl_s: 60,
    };
    field(7, &presence.encode_to_vec())
}

/// Payload with the hallway post in field 1 or the DM in field 2.
pub fn payload_post(post: &HallwayPost) -> Vec<u8> {
    field(1, &post.encode_to_vec())
}

pub fn payload_dm(dm: &DirectMessage) -> Vec<u8> {
    field(2, &dm.encode_to_vec())
}

/// A length-delimited protobuf field (tags < 16, lengths < 16384).
pub fn field(tag: u8, bytes: &[u8]) -> Vec<u8> {
    let mut out = vec![(tag << 3) | 2];
    prost::encoding::encode_varint(bytes.len() as u64, &mut out);
    out.extend_from_slice(bytes);
    out
}

/// Signs `payload` with `key` and claims `claimed_key` as the author.
pub fn envelope(key: &SigningKey, claimed_key: [u8; 32], payload: Vec<u8>) -> Vec<u8> {
    let mut signed = SIGNING_DOMAIN.to_vec();
    signed.extend_from_slice(&payload);
    let signature = key.sign(&signed).to_bytes().to_vec();
    Envelope {
        payload,
        public_key: claimed_key.to_vec(),
        signature,
    }
    .encode_to_vec()
}

pub fn post(room: &str, text: &str) -> HallwayPost {
    HallwayPost {
        room: room.into(),
        text: text.into(),
        time_ms: now_ms(),
        nonce: rand_nonce(),
        nick: String::new(),
        stamp: 0,
    }
}

/// The first stamp of at least `bits` for `key` in `room`, as
/// docs/PROTOCOL.md ("Stamps") defines it: leading zero bits of SHA-256 over
/// the domain, the room's length (u16 LE) and bytes, the key and the stamp
/// (u64 LE).
pub fn stamp(room: &str, key: &[u8; 32], bits: u32) -> u64 {
    use sha2::{Digest, Sha256};
    (1u64..)
        .find(|stamp| {
            let digest = Sha256::new()
                .chain_update(b"backchannel/stamp/v1\n")
                .chain_update((room.len() as u16).to_le_bytes())
                .chain_update(room.as_bytes())
                .chain_update(key)
                .chain_update(stamp.to_le_bytes())
                .finalize();
            let zeros = digest.iter().position(|b| *b != 0).unwrap_or(32);
            zeros as u32 * 8 + digest.get(zeros).map_or(0, |b| b.leading_zeros()) >= bits
        })
        .expect("a stamp below 2^64")
}

pub fn rand_nonce() -> Vec<u8> {
    let mut n = vec![0; 16];
    getrandom::fill(&mut n).expect("random");
    n
}

#[derive(Clone, PartialEq, Message)]
pub struct GroupOp {
    #[prost(bytes = "vec", tag = "1")]
    pub group_id: Vec<u8>,
    #[prost(uint64, tag = "2")]
    pub version: u64,
    #[prost(string, tag = "3")]
    pub name: String,
    #[prost(bytes = "vec", repeated, tag = "4")]
    pub members: Vec<Vec<u8>>,
    #[prost(bytes = "vec", tag = "5")]
    pub nonce: Vec<u8>,
    #[prost(bool, tag = "6")]
    pub leave: bool,
    #[prost(uint64, tag = "7")]
    pub time_ms: u64,
}

#[derive(Clone, PartialEq, Message)]
pub struct GroupMessage {
    #[prost(bytes = "vec", tag = "1")]
    pub group_id: Vec<u8>,
    #[prost(string, tag = "2")]
    pub text: String,
    #[prost(uint64, tag = "3")]
    pub time_ms: u64,
    #[prost(bytes = "vec", tag = "4")]
    pub nonce: Vec<u8>,
    #[prost(uint64, tag = "5")]
    pub lamport: u64,
    #[prost(string, tag = "6")]
    pub nick: String,
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as u64
}

/// The history-sync response, decoded field by field (its oneof is a set of
/// optional fields on the wire).
#[derive(Clone, PartialEq, Message)]
pub struct SyncResponse {
    #[prost(bytes = "vec", optional, tag = "1")]
    pub reconcile: Option<Vec<u8>>,
    #[prost(message, optional, tag = "2")]
    pub page: Option<EnvelopeList>,
    #[prost(int32, optional, tag = "3")]
    pub refused: Option<i32>,
    #[prost(uint32, optional, tag = "4")]
    pub pushed: Option<u32>,
    /// Beside the oneof: with a reconcile answer, how many the responder
    /// counts present in the room.
    #[prost(uint32, optional, tag = "5")]
    pub present: Option<u32>,
}

#[derive(Clone, PartialEq, Message)]
pub struct EnvelopeList {
    #[prost(bytes = "vec", repeated, tag = "1")]
    pub envelopes: Vec<Vec<u8>>,
}

/// A sync request: the room (field 1) and one kind: 2 reconcile, 3 fetch
/// (ids), 4 push (envelopes).
pub fn sync_request(room: &str, kind: u8, body: &[u8]) -> Vec<u8> {
    let mut out = field(1, room.as_bytes());
    out.extend(long_field(kind, body));
    out
}

/// A list of byte strings in field 1 (an IdList or EnvelopeList).
pub fn list(items: &[Vec<u8>]) -> Vec<u8> {
    items.iter().flat_map(|i| long_field(1, i)).collect()
}

/// A length-delimited field of any length.
pub fn long_field(tag: u8, bytes: &[u8]) -> Vec<u8> {
    let mut out = vec![(tag << 3) | 2];
    prost::encoding::encode_varint(bytes.len() as u64, &mut out);
    out.extend_from_slice(bytes);
    out
}
