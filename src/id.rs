//! The vocabulary every other module speaks: ids (`MessageId`, and the
//! `hex_id!` macro for every 32-byte id), room ids (`Room`), why input was
//! refused (`RejectReason`), and the conversion between a peer id and its
//! ed25519 key. A leaf: it imports nothing of the crate but the wire
//! constants of [`crate::protocol`], so every other module can use it
//! without a circle.

use std::fmt;
use std::str::FromStr;

use ed25519_dalek::VerifyingKey;
use libp2p::PeerId;
use sha2::{Digest, Sha256};

use crate::protocol::{HOST_SEPARATOR, ID_DOMAIN, MAX_ROOM_BYTES};

/// Defines a 32-byte id type shown as hex: `as_bytes`, `from_bytes`,
/// `short`, `Display` (64 hex digits), `Debug` and `FromStr`.
macro_rules! hex_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name([u8; 32]);

        impl $name {
            /// The id's bytes.
            pub fn as_bytes(&self) -> &[u8; 32] {
                &self.0
            }

            /// Builds an id from 32 bytes.
            pub fn from_bytes(bytes: [u8; 32]) -> Self {
                Self(bytes)
            }

            /// The first 8 hex digits, for display.
            pub fn short(&self) -> String {
                hex::encode(&self.0[..4])
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&hex::encode(self.0))
            }
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self.short())
            }
        }

        impl std::str::FromStr for $name {
            type Err = hex::FromHexError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                let mut out = [0; 32];
                hex::decode_to_slice(s, &mut out)?;
                Ok(Self(out))
            }
        }
    };
}
pub(crate) use hex_id;

hex_id! {
    /// A message id: SHA-256 over [`ID_DOMAIN`], the author's public key and the
    /// signed payload bytes. Every post carries a random nonce, so the same text
    /// sent twice gives two ids.
    MessageId
}

impl MessageId {
    /// The id of the envelope whose signer has `public_key` and whose
    /// signed payload is `payload`.
    pub(crate) fn derive(public_key: &[u8; 32], payload: &[u8]) -> Self {
        let mut h = Sha256::new();
        h.update(ID_DOMAIN);
        h.update(public_key);
        h.update(payload);
        Self(h.finalize().into())
    }
}

/// A room id. An open room's id is its name: 1..=64 bytes of UTF-8 without
/// control characters, `~` or surrounding whitespace. A hosted room's id is
/// `NAME~HOST` with the host's peer id (base58), so the host is verifiable
/// from the id itself.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct Room(String);

/// Why a room name is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid room name {name:?}: {why}")]
pub struct InvalidRoom {
    name: String,
    why: &'static str,
}

impl Room {
    /// Validates a room id: an open room's name, or a hosted room's
    /// `NAME~HOST` (see [`Room::hosted`]).
    pub fn new(id: impl Into<String>) -> Result<Self, InvalidRoom> {
        let id = id.into();
        let (name, host) = match id.rsplit_once(HOST_SEPARATOR) {
            Some((name, host)) => (name, Some(host)),
            None => (id.as_str(), None),
        };
        let why = if let Some(why) = name_problem(name) {
            Some(why)
        } else if let Some(host) = host {
            match host.parse::<PeerId>() {
                Ok(peer) if key_of(&peer).is_some() && peer.to_base58() == host => None,
                _ => Some("a ~ must be followed by the host's peer id"),
            }
        } else {
            None
        };
        match why {
            Some(why) => Err(InvalidRoom { name: id, why }),
            None => Ok(Self(id)),
        }
    }

    /// The id of the room `host` creates as `name`: `NAME~HOST`, so that
    /// everyone can tell who the host is from the id alone.
    pub fn hosted(name: &str, host: &PeerId) -> Result<Self, InvalidRoom> {
        if let Some(why) = name_problem(name) {
            return Err(InvalidRoom {
                name: name.to_owned(),
                why,
            });
        }
        Self::new(format!("{name}{HOST_SEPARATOR}{host}"))
    }

    /// The room id (the string people join by).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name part of the id.
    pub fn name(&self) -> &str {
        self.0
            .rsplit_once(HOST_SEPARATOR)
            .map_or(self.0.as_str(), |(name, _)| name)
    }

    /// The host of a hosted room (None: an open room).
    pub fn host(&self) -> Option<PeerId> {
        let (_, host) = self.0.rsplit_once(HOST_SEPARATOR)?;
        host.parse().ok()
    }
}

fn name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("it is empty")
    } else if name.len() > MAX_ROOM_BYTES {
        Some("it is longer than 64 bytes")
    } else if name.chars().any(char::is_control) {
        Some("it contains control characters")
    } else if name.trim() != name {
        Some("it starts or ends with whitespace")
    } else if name.contains(HOST_SEPARATOR) {
        Some("a ~ must be followed by the host's peer id")
    } else {
        None
    }
}

impl fmt::Display for Room {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Room {
    type Err = InvalidRoom;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

/// Declares [`RejectReason`] from one list of variants and their names, so
/// each name is spelled once and [`RejectReason::ALL`] cannot miss a variant.
macro_rules! reject_reasons {
    ($($(#[doc = $doc:literal])* $variant:ident => $name:literal,)*) => {
        /// Why bytes from the network were rejected. Each reason is counted
        /// ([`crate::Stats::rejected`]) under its stable snake_case name
        /// ([`RejectReason::as_str`]), which is also its `Display`, its serde
        /// form and what [`FromStr`] reads back.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        #[non_exhaustive]
        pub enum RejectReason {
            $($(#[doc = $doc])* $variant,)*
        }

        impl RejectReason {
            /// Every reason, in declaration order.
            pub const ALL: [RejectReason; [$($name),*].len()] = [$(RejectReason::$variant),*];

            /// The reason as a stable snake_case name (used in stats and JSON).
            pub fn as_str(&self) -> &'static str {
                match self {
                    $(RejectReason::$variant => $name,)*
                }
            }
        }
    };
}

reject_reasons! {
    /// The bytes are not a protobuf envelope or payload.
    Malformed => "malformed",
    /// Larger than the protocol allows.
    Oversize => "oversize",
    /// The public key is not a valid ed25519 key.
    BadKey => "bad_key",
    /// The signature does not verify.
    BadSignature => "bad_signature",
    /// The payload carries no kind this node knows.
    UnknownKind => "unknown_kind",
    /// A field is out of range (empty text, bad nonce, long nick...).
    InvalidField => "invalid_field",
    /// A post names a different room than the topic it arrived on.
    WrongRoom => "wrong_room",
    /// A direct message for another participant.
    WrongRecipient => "wrong_recipient",
    /// The right envelope on the wrong channel (a receipt on a room topic...).
    WrongKind => "wrong_kind",
    /// A receipt that does not match the message it answers.
    BadReceipt => "bad_receipt",
    /// A group state op not signed by the group's moderator.
    NotModerator => "not_moderator",
    /// A group op or message from someone who is not a member.
    NotMember => "not_member",
    /// The author's clock is further ahead than the allowed window.
    FutureTime => "future_time",
    /// A live post older than the allowed window (a replay).
    Stale => "stale",
    /// A room operation its author had no right to make.
    NotAllowed => "not_allowed",
    /// A post or operation by a participant removed from the room.
    Removed => "removed",
    /// A post while the hallway is off (or read-only, for listeners).
    ChatClosed => "chat_closed",
    /// A sender that exceeded its rate limit.
    RateLimited => "rate_limited",
    /// A DHT record that is not a peer's own signed address record under
    /// its key (docs/PROTOCOL.md, "Discovery").
    BadRecord => "bad_record",
    /// A gossip message carrying a gossipsub signature, sequence number or
    /// source (js-libp2p's default `StrictSign`): rooms use anonymous
    /// gossipsub messages only (docs/PROTOCOL.md, "Rooms and the hallway").
    GossipSigned => "gossip_signed",
    /// A gossip message from a peer whose score is below the graylist
    /// threshold, ignored unseen.
    Graylisted => "graylisted",
    /// A gossip message on a topic this node has not joined.
    NotJoined => "not_joined",
    /// A post or operation by a newcomer to the room, forwarded by a peer
    /// that has forwarded its share of newcomers' messages for now
    /// (`Limits::newcomers_per_peer`).
    NewcomerLimit => "newcomer_limit",
    /// A post or operation below the room's horizon: the room keeps its
    /// bound of newer ones, so this one would be evicted at once
    /// (`Config::room_bound`, docs/PROTOCOL.md "Bounded rooms"). Not the
    /// sender's fault: a peer that holds fewer messages keeps it.
    BelowHorizon => "below_horizon",
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::error::Error for RejectReason {}

/// A name that is not a [`RejectReason`]'s.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown reject reason {0:?}")]
pub struct UnknownReason(pub String);

impl FromStr for RejectReason {
    type Err = UnknownReason;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|r| r.as_str() == name)
            .ok_or_else(|| UnknownReason(name.to_owned()))
    }
}

impl serde::Serialize for RejectReason {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for RejectReason {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

/// The PeerId of an ed25519 public key.
pub fn peer_id_of(key: &VerifyingKey) -> PeerId {
    peer_id_of_key_bytes(key.as_bytes())
}

/// The PeerId of the ed25519 public key with these bytes, without checking
/// that they are a key: for bytes checked already (a [`VerifyingKey`]), or
/// checked when they were logged. libp2p's PeerId of an ed25519 key is the
/// identity multihash of the key's protobuf encoding (`KeyType` 1, then the
/// 32 bytes: 36 bytes, within the 42 libp2p hashes with identity). It is
/// built here from those bytes because going through `libp2p::identity`
/// decompresses the point again, a field exponentiation per message that
/// history sync and log reads paid for nothing.
pub(crate) fn peer_id_of_key_bytes(key: &[u8; 32]) -> PeerId {
    let mut encoded = [0u8; 36];
    encoded[..4].copy_from_slice(&[0x08, 0x01, 0x12, 0x20]);
    encoded[4..].copy_from_slice(key);
    // Neither can fail: 36 bytes fit a 64-byte multihash, and an identity
    // multihash of at most 42 bytes is a valid PeerId.
    let hash = libp2p::multihash::Multihash::<64>::wrap(0, &encoded).expect("36 bytes fit a multihash");
    PeerId::from_multihash(hash).expect("an identity multihash of 36 bytes is a PeerId")
}

/// The ed25519 public key inside an ed25519 PeerId, if it is one.
pub fn key_of(peer: &PeerId) -> Option<[u8; 32]> {
    let mh: &libp2p::multihash::Multihash<64> = peer.as_ref();
    if mh.code() != 0 {
        return None;
    }
    let pk = libp2p::identity::PublicKey::try_decode_protobuf(mh.digest()).ok()?;
    Some(pk.try_into_ed25519().ok()?.to_bytes())
}

/// Serde for values written as their `Display` text and read back with
/// `FromStr` (peer ids, message and group ids, rooms, addresses): scripts see
/// the same strings people do, and parsing checks them as the CLI would.
pub(crate) mod as_text {
    use std::fmt::Display;
    use std::str::FromStr;

    use serde::{Deserialize, Deserializer, Serializer, de::Error as _};

    /// Writes `value`'s `Display` text.
    pub(crate) fn serialize<T: Display, S: Serializer>(value: &T, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(value)
    }

    /// Parses a string with `FromStr`.
    pub(crate) fn deserialize<'de, T, D>(d: D) -> Result<T, D::Error>
    where
        T: FromStr,
        T::Err: Display,
        D: Deserializer<'de>,
    {
        String::deserialize(d)?.parse().map_err(D::Error::custom)
    }

    /// The same for an optional value (null when absent).
    pub(crate) mod option {
        use super::*;

        /// Writes the text, or null.
        pub(crate) fn serialize<T: Display, S: Serializer>(value: &Option<T>, s: S) -> Result<S::Ok, S::Error> {
            match value {
                Some(v) => s.collect_str(v),
                None => s.serialize_none(),
            }
        }

        /// Parses a string, or null.
        pub(crate) fn deserialize<'de, T, D>(d: D) -> Result<Option<T>, D::Error>
        where
            T: FromStr,
            T::Err: Display,
            D: Deserializer<'de>,
        {
            Option::<String>::deserialize(d)?
                .map(|s| s.parse().map_err(D::Error::custom))
                .transpose()
        }
    }

    /// The same for a list.
    pub(crate) mod vec {
        use super::*;

        /// Writes a list of texts.
        pub(crate) fn serialize<T: Display, S: Serializer>(values: &[T], s: S) -> Result<S::Ok, S::Error> {
            s.collect_seq(values.iter().map(ToString::to_string))
        }

        /// Parses a list of strings.
        pub(crate) fn deserialize<'de, T, D>(d: D) -> Result<Vec<T>, D::Error>
        where
            T: FromStr,
            T::Err: Display,
            D: Deserializer<'de>,
        {
            Vec::<String>::deserialize(d)?
                .into_iter()
                .map(|s| s.parse().map_err(D::Error::custom))
                .collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reject_reason_reads_back_from_its_one_name() {
        let names: std::collections::HashSet<&str> = RejectReason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(names.len(), RejectReason::ALL.len(), "two reasons share a name");
        for reason in RejectReason::ALL {
            assert_eq!(reason.as_str().parse::<RejectReason>(), Ok(reason));
            assert_eq!(reason.to_string(), reason.as_str());
            let json = serde_json::to_string(&reason).expect("serialises");
            assert_eq!(json, format!("\"{}\"", reason.as_str()));
            assert_eq!(serde_json::from_str::<RejectReason>(&json).expect("reads back"), reason);
        }
        assert_eq!(
            "no_such_reason".parse::<RejectReason>(),
            Err(UnknownReason("no_such_reason".into()))
        );
    }

    #[test]
    fn room_names_are_validated() {
        assert!(Room::new("lobby").is_ok());
        assert!(Room::new("café ☕ talk").is_ok());
        for bad in ["", " x", "x ", "a\nb", &"r".repeat(65)] {
            assert!(Room::new(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_peer_id_of_key_bytes_is_libp2ps() {
        for seed in 0..32u8 {
            let key = ed25519_dalek::SigningKey::from_bytes(&[seed; 32]).verifying_key();
            let libp2p_key = libp2p::identity::ed25519::PublicKey::try_from_bytes(key.as_bytes()).unwrap();
            let expected = libp2p::identity::PublicKey::from(libp2p_key).to_peer_id();
            assert_eq!(peer_id_of(&key), expected);
            assert_eq!(key_of(&expected), Some(key.to_bytes()));
        }
    }
}
