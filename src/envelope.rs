//! Signed envelopes: how a message body is signed, and how bytes from the
//! network are verified and opened into a [`Signed`] message.
//!
//! [`Signed::open`] is the only way bytes from the network become a message:
//! it checks sizes, verifies the ed25519 signature (`verify_strict`) over the
//! exact received payload bytes *before* decoding them, then has
//! `crate::wire` convert the payload into validated domain types. Anything
//! else is a [`RejectReason`]. The one exception, [`peek_presence`], reads
//! an unverified envelope only to decide that it is not worth verifying.

use std::collections::HashMap;

use ed25519_dalek::{Signature, Signer, VerifyingKey};
use libp2p::PeerId;

use crate::id::{MessageId, RejectReason, peer_id_of_key_bytes};
use crate::identity::Identity;
use crate::message::Body;
use crate::protocol::{MAX_ENVELOPE_BYTES, NONCE_BYTES, SIGNING_DOMAIN};
use crate::wire::{self, RawEnvelope};

/// A verified message: its signature checked and its payload validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signed {
    id: MessageId,
    author: PeerId,
    body: Body,
    envelope: Vec<u8>,
}

impl Signed {
    /// Signs `body` as `identity` with a fresh random nonce and encodes the
    /// envelope.
    pub fn sign(identity: &Identity, body: Body) -> Self {
        let mut nonce = [0u8; NONCE_BYTES];
        getrandom::fill(&mut nonce).expect("the OS random number generator works");
        Self::sign_with_nonce(identity, body, nonce)
    }

    /// Signs `body` with a given nonce: deterministic, for test vectors.
    pub fn sign_with_nonce(identity: &Identity, body: Body, nonce: [u8; NONCE_BYTES]) -> Self {
        let payload = wire::encode_payload(&body, &nonce);
        let public_key = identity.verifying_key().to_bytes();
        let signature = identity.signing_key().sign(&signed_bytes(&payload));
        let id = MessageId::derive(&public_key, &payload);
        let envelope = RawEnvelope {
            payload,
            public_key: public_key.to_vec(),
            signature: signature.to_bytes().to_vec(),
        }
        .encode();
        Self {
            id,
            author: identity.peer_id(),
            body,
            envelope,
        }
    }

    /// Verifies and decodes an envelope received from the network.
    pub fn open(bytes: &[u8]) -> Result<Self, RejectReason> {
        Self::open_inner(bytes, true, &mut Authors::default())
    }

    /// Verifies and decodes a page of envelopes (history sync): each one
    /// exactly as [`Signed::open`] does, so that a page accepts what live
    /// gossip and DMs accept, no more and no less.
    ///
    /// Pages were once checked with one ed25519 batch verification, about
    /// twice as fast. But batch verification accepts signatures that
    /// `verify_strict` refuses (a small-order R, an R with a torsion
    /// component, a non-canonical R: docs/PROTOCOL.md, "Strict
    /// verification"), so an author could make a post that every node
    /// refuses live and takes through sync. Telling those apart before
    /// batching needs a torsion check of each R, a scalar multiplication
    /// that costs more than the batch saves, so each envelope is verified on
    /// its own. What a page can share is its authors: a page holds many
    /// posts of few authors, and each author's key is decompressed once per
    /// page rather than once per envelope. The
    /// event loop runs pages on blocking threads, several at once
    /// (`node::event_loop::sync`).
    pub fn open_batch(envelopes: &[Vec<u8>]) -> Vec<Result<Self, RejectReason>> {
        let mut authors = Authors::default();
        envelopes
            .iter()
            .map(|bytes| Self::open_inner(bytes, true, &mut authors))
            .collect()
    }

    /// Decodes an envelope this node verified before (its own log) without
    /// checking the signature again.
    pub(crate) fn open_trusted(bytes: &[u8]) -> Result<Self, RejectReason> {
        Self::open_inner(bytes, false, &mut Authors::default())
    }

    fn open_inner(bytes: &[u8], verify: bool, authors: &mut Authors) -> Result<Self, RejectReason> {
        if bytes.len() > MAX_ENVELOPE_BYTES {
            return Err(RejectReason::Oversize);
        }
        let env = RawEnvelope::decode(bytes).ok_or(RejectReason::Malformed)?;
        let public_key: [u8; 32] = env.public_key.as_slice().try_into().map_err(|_| RejectReason::BadKey)?;
        // A trusted envelope had its key and signature checked before it was
        // logged; checking the key alone again (a point decompression) would
        // protect nothing the unchecked signature leaves open.
        if verify {
            let key = authors.key(&public_key)?;
            let signature = Signature::from_slice(&env.signature).map_err(|_| RejectReason::BadSignature)?;
            key.verify_strict(&signed_bytes(&env.payload), &signature)
                .map_err(|_| RejectReason::BadSignature)?;
        }
        let body = wire::decode_payload(&env.payload)?;
        Ok(Self {
            id: MessageId::derive(&public_key, &env.payload),
            author: peer_id_of_key_bytes(&public_key),
            body,
            envelope: bytes.to_vec(),
        })
    }

    /// The message id.
    pub fn id(&self) -> MessageId {
        self.id
    }

    /// The author, whose key signed the message.
    pub fn author(&self) -> PeerId {
        self.author
    }

    /// What the message carries.
    pub fn body(&self) -> &Body {
        &self.body
    }

    /// The encoded envelope, exactly as signed (and as sent on the wire).
    pub fn envelope(&self) -> &[u8] {
        &self.envelope
    }
}

/// The author of a presence announcement, and whether it says it leaves,
/// read from envelope bytes *without* checking the signature: None for
/// anything else (or bytes that are no envelope). A receiver uses it only to
/// skip verifying an announcement it would not take anyway (a new
/// participant while the room is over its announcement budget:
/// `node::presence`); nothing read here is stored, forwarded or shown. It
/// decodes with the same decoder [`Signed::open`] uses after verifying.
pub(crate) fn peek_presence(bytes: &[u8]) -> Option<(PeerId, bool)> {
    if bytes.len() > MAX_ENVELOPE_BYTES {
        return None;
    }
    let env = RawEnvelope::decode(bytes)?;
    let public_key: [u8; 32] = env.public_key.as_slice().try_into().ok()?;
    match wire::decode_payload(&env.payload).ok()? {
        Body::Presence(p) => Some((peer_id_of_key_bytes(&public_key), p.leaving)),
        _ => None,
    }
}

/// The authors' keys met so far in one call: the decompressed key, or why
/// the bytes are no key. Decompressing a key costs a field exponentiation,
/// and depends on the 32 bytes alone, so a cached answer is exactly the one
/// a fresh decompression would give. It lives for one call, so it is bounded
/// by the page.
#[derive(Default)]
struct Authors(HashMap<[u8; 32], Result<VerifyingKey, RejectReason>>);

impl Authors {
    fn key(&mut self, public_key: &[u8; 32]) -> Result<VerifyingKey, RejectReason> {
        *self
            .0
            .entry(*public_key)
            .or_insert_with(|| VerifyingKey::from_bytes(public_key).map_err(|_| RejectReason::BadKey))
    }
}

/// Checks an author's timestamp against this node's clock: never more than
/// `window` ahead; and, when `past` is true (live hallway posts, which
/// gossip delivers within seconds), never more than `window` behind either.
/// DMs and group messages may arrive days late through an outbox, so only
/// the future is checked for them.
pub fn check_time(time_ms: u64, now_ms: u64, window_ms: u64, past: bool) -> Result<(), RejectReason> {
    if time_ms > now_ms.saturating_add(window_ms) {
        return Err(RejectReason::FutureTime);
    }
    if past && time_ms < now_ms.saturating_sub(window_ms) {
        return Err(RejectReason::Stale);
    }
    Ok(())
}

fn signed_bytes(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(SIGNING_DOMAIN.len() + payload.len());
    out.extend_from_slice(SIGNING_DOMAIN);
    out.extend_from_slice(payload);
    out
}

#[cfg(test)]
mod tests {
    use sha2::{Digest, Sha256};

    use super::*;
    use crate::id::Room;
    use crate::message::{DirectMessage, HallwayPost, Receipt};

    fn alice() -> Identity {
        let mut secret = [0u8; 32];
        for (i, b) in secret.iter_mut().enumerate() {
            *b = i as u8;
        }
        Identity::from_secret(secret)
    }

    fn lobby_post() -> Body {
        Body::Hallway(HallwayPost {
            room: Room::new("lobby").unwrap(),
            text: "hello, hallway".into(),
            time_ms: 1_700_000_000_000,
            nick: Some("alice".into()),
            clock: 1_700_000_000_000,
            reply_to: None,
            mentions: Vec::new(),
            question: false,
            stamp: None,
        })
    }

    #[test]
    fn a_peek_tells_a_presence_announcements_author_and_nothing_else() {
        let a = alice();
        let presence = |leaving| {
            Signed::sign(
                &a,
                Body::Presence(crate::room::Presence {
                    room: Room::new("lobby").unwrap(),
                    time_ms: 1_700_000_000_000,
                    nick: None,
                    ttl_s: 60,
                    leaving,
                }),
            )
        };
        assert_eq!(peek_presence(presence(false).envelope()), Some((a.peer_id(), false)));
        assert_eq!(peek_presence(presence(true).envelope()), Some((a.peer_id(), true)));
        assert_eq!(peek_presence(Signed::sign(&a, lobby_post()).envelope()), None);
        assert_eq!(peek_presence(b"no envelope"), None);
        // Unverified: a broken signature still peeks (it is only ever used
        // to skip verifying), and `open` still refuses it.
        let mut forged = presence(false).envelope().to_vec();
        let last = forged.len() - 1;
        forged[last] ^= 1;
        assert_eq!(peek_presence(&forged), Some((a.peer_id(), false)));
        assert!(Signed::open(&forged).is_err());
    }

    #[test]
    #[ignore = "prints the test vectors for docs/PROTOCOL.md"]
    fn print_vectors() {
        let a = alice();
        let post = Signed::sign_with_nonce(&a, lobby_post(), [0x11; 16]);
        let bob = Identity::from_secret([0x42; 32]);
        let dm = Signed::sign_with_nonce(
            &a,
            Body::Direct(DirectMessage {
                recipient: bob.peer_id(),
                text: "psst".into(),
                time_ms: 1_700_000_000_001,
                nick: None,
                reaction: None,
            }),
            [0x22; 16],
        );
        let receipt = Signed::sign_with_nonce(
            &bob,
            Body::Receipt(Receipt {
                message_id: dm.id(),
                author: a.peer_id(),
                time_ms: 1_700_000_000_002,
                accepted: true,
            }),
            [0; 16],
        );
        println!("alice peer {}", a.peer_id());
        println!("alice pub {}", hex::encode(a.verifying_key().to_bytes()));
        println!("bob peer {}", bob.peer_id());
        println!("bob pub {}", hex::encode(bob.verifying_key().to_bytes()));
        for (name, m) in [("post", &post), ("dm", &dm), ("receipt", &receipt)] {
            println!("{name} envelope {}", hex::encode(m.envelope()));
            println!("{name} id {}", m.id());
            println!("{name} gossip id {}", hex::encode(Sha256::digest(m.envelope())));
        }
    }

    #[test]
    fn sign_open_round_trip() {
        let a = alice();
        let signed = Signed::sign(&a, lobby_post());
        let opened = Signed::open(signed.envelope()).unwrap();
        assert_eq!(opened, signed);
        assert_eq!(opened.author(), a.peer_id());
        assert_eq!(opened.body(), &lobby_post());
    }

    #[test]
    fn the_same_body_signed_twice_has_two_ids() {
        let a = alice();
        assert_ne!(Signed::sign(&a, lobby_post()).id(), Signed::sign(&a, lobby_post()).id());
    }

    #[test]
    fn any_changed_byte_is_rejected_or_changes_nothing_signed() {
        let signed = Signed::sign(&alice(), lobby_post());
        let bytes = signed.envelope().to_vec();
        for i in 0..bytes.len() {
            let mut changed = bytes.clone();
            changed[i] ^= 0x01;
            if let Ok(m) = Signed::open(&changed) {
                // Only a change to protobuf framing that decodes the same
                // fields could pass; then the signed content is identical.
                assert_eq!(
                    (m.id(), m.author(), m.body()),
                    (signed.id(), signed.author(), signed.body())
                );
            }
        }
    }

    #[test]
    fn oversize_and_garbage_are_rejected() {
        assert_eq!(
            Signed::open(&vec![0; MAX_ENVELOPE_BYTES + 1]),
            Err(RejectReason::Oversize)
        );
        assert_eq!(Signed::open(&[0xff, 0xff]), Err(RejectReason::Malformed));
        assert_eq!(Signed::open(&[]), Err(RejectReason::BadKey));
    }

    #[test]
    fn author_clocks_are_checked_against_a_window() {
        let (now, w) = (1_000_000, 600_000);
        assert_eq!(check_time(now + w, now, w, true), Ok(()));
        assert_eq!(check_time(now + w + 1, now, w, false), Err(RejectReason::FutureTime));
        assert_eq!(check_time(now - w - 1, now, w, true), Err(RejectReason::Stale));
        assert_eq!(check_time(1, now, w, false), Ok(()), "a DM may arrive days late");
        assert_eq!(check_time(u64::MAX, now, w, false), Err(RejectReason::FutureTime));
    }
}
