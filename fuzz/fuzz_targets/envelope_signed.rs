//! Structured: an arbitrary body, valid or not, signed by a fixed identity,
//! then mutated. Checks that
//! - `open` accepts exactly the bodies the protocol allows (docs/PROTOCOL.md)
//!   and rejects the others with the right reason;
//! - an accepted envelope opens to the same id, author and body, and signing
//!   that body again with the same nonce gives the same bytes;
//! - no mutation of the bytes is accepted unless it leaves the signed
//!   message (id, author, body) as it was; and nothing panics.

#![no_main]

use std::sync::OnceLock;

use arbitrary::Arbitrary;
use backchannel::protocol::{
    MAX_ENVELOPE_BYTES, MAX_GROUP_NAME_BYTES, MAX_NICK_BYTES, MAX_TEXT_BYTES, MAX_WIRE_MEMBERS,
};
use backchannel::{
    Body, DirectMessage, GroupId, HallwayPost, Identity, MessageId, PeerId, Receipt, RejectReason, Room, Signed,
};
use backchannel::{GroupChange, GroupMessage, GroupOp};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input {
    body: BodyIn,
    /// From 240 up, appends 3968 + 512 * (pad - 240) bytes to the text, so
    /// texts and envelopes at and over the limits are reachable from short
    /// inputs (and stay rare: long texts are slow to sign).
    pad: u8,
    nonce: [u8; 16],
    mutations: Vec<Mutation>,
}

#[derive(Arbitrary, Debug)]
enum BodyIn {
    Hallway {
        room: String,
        text: String,
        time_ms: u64,
        nick: Option<String>,
    },
    Direct {
        recipient: u8,
        text: String,
        time_ms: u64,
        nick: Option<String>,
    },
    Receipt {
        message_id: [u8; 32],
        author: u8,
        time_ms: u64,
        accepted: bool,
    },
    GroupState {
        group: [u8; 32],
        nonce: [u8; 16],
        version: u64,
        name: String,
        members: Vec<u8>,
        time_ms: u64,
    },
    GroupLeave {
        group: [u8; 32],
        nonce: [u8; 16],
        version: u64,
        time_ms: u64,
    },
    Group {
        group: [u8; 32],
        text: String,
        time_ms: u64,
        lamport: u64,
        nick: Option<String>,
        version: u64,
    },
}

#[derive(Arbitrary, Debug)]
enum Mutation {
    Flip { at: u16, bit: u8 },
    Set { at: u16, byte: u8 },
    Insert { at: u16, bytes: Vec<u8> },
    Remove { at: u16, len: u8 },
    Truncate { len: u16 },
    Append { bytes: Vec<u8> },
}

fn author() -> &'static Identity {
    static ALICE: OnceLock<Identity> = OnceLock::new();
    ALICE.get_or_init(|| Identity::from_secret([0xa1; 32]))
}

fn peer(i: u8) -> PeerId {
    static PEERS: OnceLock<Vec<PeerId>> = OnceLock::new();
    let peers = PEERS.get_or_init(|| (0..8u8).map(|i| Identity::from_secret([i; 32]).peer_id()).collect());
    peers[i as usize % peers.len()]
}

fn text_ok(t: &str) -> bool {
    !t.is_empty() && t.len() <= MAX_TEXT_BYTES
}

fn nick_ok(n: &Option<String>) -> bool {
    n.as_ref()
        .is_none_or(|n| n.len() <= MAX_NICK_BYTES && !n.chars().any(char::is_control))
}

/// An empty nick is not sent, so it opens as no nick.
fn norm_nick(n: Option<String>) -> Option<String> {
    n.filter(|n| !n.is_empty())
}

/// The body to sign, whether the protocol allows it, and the body that an
/// accepting `open` must return. `None` when the input names no room.
fn build(input: BodyIn, pad: u8) -> Option<(Body, bool, Body)> {
    let pad = match pad {
        0..240 => 0,
        p => MAX_TEXT_BYTES - 128 + 512 * (p as usize - 240),
    };
    let padded = |mut t: String| {
        t.extend(std::iter::repeat_n('x', pad));
        t
    };
    Some(match input {
        BodyIn::Hallway {
            room,
            text,
            time_ms,
            nick,
        } => {
            let text = padded(text);
            let ok = text_ok(&text) && nick_ok(&nick);
            let post = HallwayPost {
                room: Room::new(room).ok()?,
                text,
                time_ms,
                nick,
                clock: time_ms,
                reply_to: None,
                mentions: Vec::new(),
                question: false,
                stamp: None,
            };
            let opened = HallwayPost {
                nick: norm_nick(post.nick.clone()),
                ..post.clone()
            };
            (Body::Hallway(post), ok, Body::Hallway(opened))
        }
        BodyIn::Direct {
            recipient,
            text,
            time_ms,
            nick,
        } => {
            let text = padded(text);
            let ok = text_ok(&text) && nick_ok(&nick);
            let dm = DirectMessage {
                recipient: peer(recipient),
                text,
                time_ms,
                nick,
                reaction: None,
            };
            let opened = DirectMessage {
                nick: norm_nick(dm.nick.clone()),
                ..dm.clone()
            };
            (Body::Direct(dm), ok, Body::Direct(opened))
        }
        BodyIn::Receipt {
            message_id,
            author,
            time_ms,
            accepted,
        } => {
            let r = Body::Receipt(Receipt {
                message_id: MessageId::from_bytes(message_id),
                author: peer(author),
                time_ms,
                accepted,
            });
            (r.clone(), true, r)
        }
        BodyIn::GroupState {
            group,
            nonce,
            version,
            name,
            members,
            time_ms,
        } => {
            // Just over the limit is enough to test it; every member costs
            // a curve point decoding when signing and opening.
            let mut members = members;
            members.truncate(MAX_WIRE_MEMBERS + 2);
            let ok = !name.is_empty()
                && name.len() <= MAX_GROUP_NAME_BYTES
                && !name.chars().any(char::is_control)
                && !members.is_empty()
                && members.len() <= MAX_WIRE_MEMBERS;
            let op = Body::GroupOp(GroupOp {
                group: GroupId::from_bytes(group),
                nonce,
                version,
                change: GroupChange::State {
                    name,
                    members: members.into_iter().map(peer).collect(),
                },
                time_ms,
            });
            (op.clone(), ok, op)
        }
        BodyIn::GroupLeave {
            group,
            nonce,
            version,
            time_ms,
        } => {
            let op = Body::GroupOp(GroupOp {
                group: GroupId::from_bytes(group),
                nonce,
                version,
                change: GroupChange::Leave,
                time_ms,
            });
            (op.clone(), true, op)
        }
        BodyIn::Group {
            group,
            text,
            time_ms,
            lamport,
            nick,
            version,
        } => {
            let text = padded(text);
            let ok = text_ok(&text) && nick_ok(&nick);
            let m = GroupMessage {
                group: GroupId::from_bytes(group),
                text,
                time_ms,
                lamport,
                nick,
                version,
            };
            let opened = GroupMessage {
                nick: norm_nick(m.nick.clone()),
                ..m.clone()
            };
            (Body::Group(m), ok, Body::Group(opened))
        }
    })
}

fn mutate(bytes: &mut Vec<u8>, m: &Mutation) {
    let at = |at: u16, len: usize| if len == 0 { 0 } else { at as usize % len };
    match m {
        Mutation::Flip { at: i, bit } if !bytes.is_empty() => {
            let i = at(*i, bytes.len());
            bytes[i] ^= 1 << (bit % 8);
        }
        Mutation::Set { at: i, byte } if !bytes.is_empty() => {
            let i = at(*i, bytes.len());
            bytes[i] = *byte;
        }
        Mutation::Insert { at: i, bytes: b } => {
            let i = at(*i, bytes.len() + 1);
            bytes.splice(i..i, b.iter().copied());
        }
        Mutation::Remove { at: i, len } if !bytes.is_empty() => {
            let i = at(*i, bytes.len());
            let end = (i + *len as usize).min(bytes.len());
            bytes.drain(i..end);
        }
        Mutation::Truncate { len } => bytes.truncate(*len as usize),
        Mutation::Append { bytes: b } => bytes.extend_from_slice(b),
        _ => {}
    }
}

fuzz_target!(|input: Input| {
    let Some((body, valid, expected)) = build(input.body, input.pad) else {
        return;
    };
    let signed = Signed::sign_with_nonce(author(), body, input.nonce);
    let bytes = signed.envelope().to_vec();
    let opened = Signed::open(&bytes);
    match (&opened, bytes.len() <= MAX_ENVELOPE_BYTES, valid) {
        (Ok(m), true, true) => {
            assert_eq!(
                (m.id(), m.author(), m.body()),
                (signed.id(), author().peer_id(), &expected)
            );
            assert_eq!(m.envelope(), &bytes[..]);
            // Re-encoding what was opened gives the same bytes. A signature
            // is the slowest step here, so only for one input in eight
            // (chosen by the nonce, to stay deterministic).
            if input.nonce[0] < 32 {
                let again = Signed::sign_with_nonce(author(), m.body().clone(), input.nonce);
                assert_eq!(again.envelope(), &bytes[..], "signing the opened body again differs");
            }
        }
        (Err(RejectReason::Oversize), false, _) | (Err(RejectReason::InvalidField), true, false) => {}
        (got, fits, valid) => panic!("open gave {got:?} for a signed body (fits: {fits}, valid: {valid})"),
    }
    let mut changed = bytes.clone();
    for m in &input.mutations {
        mutate(&mut changed, m);
    }
    if changed == bytes {
        return;
    }
    if let Ok(m) = Signed::open(&changed) {
        let original = opened.as_ref().expect("a change made a rejected message acceptable");
        assert_eq!(
            (m.id(), m.author(), m.body()),
            (original.id(), original.author(), original.body()),
            "a change to the bytes changed what was signed"
        );
        assert_eq!(m.envelope(), &changed[..]);
        assert_eq!(Signed::open(m.envelope()).as_ref(), Ok(&m));
    }
});
