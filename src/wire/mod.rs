//! The wire: the generated protobuf types, private to this module, and every
//! conversion between them and the domain types. Bytes from the network (and
//! the log's records) become domain values here and nowhere else; what does
//! not convert is a [`crate::id::RejectReason`], never a panic.
//!
//! - `body`: the signed payload ([`crate::message::Body`] and its kinds).
//! - [`RawEnvelope`]: an envelope's fields, before anything is verified
//!   (`crate::envelope` verifies them).
//! - `dm`: the reply to a DM request ([`crate::message::DmReply`]).
//! - `sync`: history-sync requests and responses ([`crate::sync::SyncRequest`],
//!   [`crate::sync::SyncResponse`]).
//! - `log`: the store's records ([`LogRecord`], [`OutboxRecord`]); local,
//!   never on the wire, but protobuf-encoded too.
//!
//! Encoding and decoding are `encode` / `decode` methods on the domain types
//! (written here, next to the generated types they use) and per-type
//! `From` / `TryFrom` between them and the generated types.

mod body;
mod dm;
mod log;
mod sync;

use prost::Message as _;

pub(crate) use body::{decode_payload, encode_payload};
pub(crate) use log::{LogRecord, OutboxRecord};

#[allow(missing_docs, clippy::all)]
mod pb {
    include!(concat!(env!("OUT_DIR"), "/backchannel.v1.rs"));
}

#[allow(missing_docs, clippy::all)]
mod store_pb {
    include!(concat!(env!("OUT_DIR"), "/backchannel.store.v1.rs"));
}

/// An envelope's three fields as received: nothing in it is verified yet.
pub(crate) struct RawEnvelope {
    /// The encoded payload, exactly the bytes that were signed.
    pub(crate) payload: Vec<u8>,
    /// The author's public key (32 bytes, if well formed).
    pub(crate) public_key: Vec<u8>,
    /// The signature (64 bytes, if well formed).
    pub(crate) signature: Vec<u8>,
}

impl RawEnvelope {
    /// Splits encoded envelope bytes into their fields; None if they are not
    /// an envelope.
    pub(crate) fn decode(bytes: &[u8]) -> Option<Self> {
        let env = pb::Envelope::decode(bytes).ok()?;
        Some(Self {
            payload: env.payload,
            public_key: env.public_key,
            signature: env.signature,
        })
    }

    /// The envelope's bytes.
    pub(crate) fn encode(self) -> Vec<u8> {
        pb::Envelope {
            payload: self.payload,
            public_key: self.public_key,
            signature: self.signature,
        }
        .encode_to_vec()
    }
}
