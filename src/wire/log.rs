//! The store's records (proto/store.proto): never on the wire, but
//! protobuf-encoded, so they are converted here with the rest. `crate::store`
//! reads and writes them as [`LogRecord`] and [`OutboxRecord`].

use libp2p::PeerId;
use prost::Message as _;

use super::store_pb;
use crate::message::{Delivery, Direction};

/// What the log keeps for each message (key `m` + id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LogRecord {
    /// The envelope exactly as signed and sent or received.
    pub(crate) envelope: Vec<u8>,
    /// Sent or received.
    pub(crate) direction: Direction,
    /// Local clock when the message was logged, ms since the Unix epoch.
    pub(crate) logged_ms: u64,
    /// Delivery state of a sent DM.
    pub(crate) delivery: Delivery,
    /// The receipt that proved delivery (sent DMs), or the receipt this
    /// node sent (received DMs); empty if none.
    pub(crate) receipt: Vec<u8>,
    /// Local log sequence number (orders a room or conversation).
    pub(crate) seq: u64,
}

impl LogRecord {
    /// Decodes a record; None if the bytes are not one.
    pub(crate) fn decode(bytes: &[u8]) -> Option<Self> {
        let record = store_pb::LogRecord::decode(bytes).ok()?;
        let delivery = match record.delivery {
            1 => Delivery::Sent,
            4 => Delivery::Queued,
            2 => Delivery::Delivered,
            3 => Delivery::Failed(record.failure),
            _ => Delivery::None,
        };
        Some(Self {
            envelope: record.envelope,
            direction: if record.direction == 1 {
                Direction::Sent
            } else {
                Direction::Received
            },
            logged_ms: record.logged_ms,
            delivery,
            receipt: record.receipt,
            seq: record.seq,
        })
    }

    /// The record's bytes.
    pub(crate) fn encode(&self) -> Vec<u8> {
        // The codes of proto/store.proto, and 4 for a DM queued but not yet
        // on the wire.
        let (delivery, failure) = match &self.delivery {
            Delivery::None => (0, String::new()),
            Delivery::Sent => (1, String::new()),
            Delivery::Queued => (4, String::new()),
            Delivery::Delivered => (2, String::new()),
            Delivery::Failed(reason) => (3, reason.clone()),
        };
        store_pb::LogRecord {
            envelope: self.envelope.clone(),
            direction: match self.direction {
                Direction::Received => 0,
                Direction::Sent => 1,
            },
            logged_ms: self.logged_ms,
            delivery,
            failure,
            receipt: self.receipt.clone(),
            seq: self.seq,
        }
        .encode_to_vec()
    }
}

/// An outbox entry's value (key `o` + id + recipient): a sent DM still
/// waiting for its receipt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OutboxRecord {
    /// The recipient.
    pub(crate) to: PeerId,
    /// Attempts made.
    pub(crate) attempts: u32,
    /// When the next attempt is due, ms since the Unix epoch.
    pub(crate) next_ms: u64,
    /// When the DM expires, ms since the Unix epoch.
    pub(crate) expires_ms: u64,
}

impl OutboxRecord {
    /// Decodes an entry; None if the bytes are not one or name no valid peer.
    pub(crate) fn decode(bytes: &[u8]) -> Option<Self> {
        let record = store_pb::OutboxRecord::decode(bytes).ok()?;
        Some(Self {
            to: PeerId::from_bytes(&record.to).ok()?,
            attempts: record.attempts,
            next_ms: record.next_ms,
            expires_ms: record.expires_ms,
        })
    }

    /// The entry's bytes.
    pub(crate) fn encode(&self) -> Vec<u8> {
        store_pb::OutboxRecord {
            to: self.to.to_bytes(),
            attempts: self.attempts,
            next_ms: self.next_ms,
            expires_ms: self.expires_ms,
        }
        .encode_to_vec()
    }
}
