//! The reply to a DM (`DmReply`: a receipt envelope or a refusal) through
//! `judge_reply`, what the sender's node does with every reply. Alice sent a
//! DM to Bob; Mallory is anyone else. Checks that
//! - any bytes give a verdict, never a panic, and "delivered" always carries
//!   a receipt that Bob signed for that DM by Alice;
//! - every well-formed reply (built here with an independent protobuf
//!   encoder) gets exactly the verdict docs/PROTOCOL.md gives it;
//! - no change to the bytes turns a reply into "delivered" or "not
//!   accepted" unless it still carries Bob's genuine receipt.

#![no_main]

use std::sync::OnceLock;

use arbitrary::Arbitrary;
use backchannel::fuzzing::{ReplyVerdict, judge_reply};
use backchannel::{Body, Identity, MessageId, Receipt, Signed};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
enum Input {
    /// Any bytes as the reply.
    Raw(Vec<u8>),
    /// A receipt, right or wrong in each respect, then changed.
    Receipt {
        /// 0: Bob (the recipient), 1: Mallory, 2: Alice herself.
        signer: u8,
        right_id: bool,
        right_author: bool,
        accepted: bool,
        changes: Vec<(u16, u8)>,
    },
    /// A refusal with any code, then changed.
    Refused { code: i32, changes: Vec<(u16, u8)> },
}

struct Cast {
    alice: Identity,
    bob: Identity,
    dm: MessageId,
    /// Every receipt `Input::Receipt` can name, signed once (a signature
    /// per run would cost more than the rest of the run), by
    /// `receipt_index`.
    receipts: Vec<Vec<u8>>,
}

fn receipt_index(signer: u8, right_id: bool, right_author: bool, accepted: bool) -> usize {
    (signer % 3) as usize * 8 + right_id as usize * 4 + right_author as usize * 2 + accepted as usize
}

fn cast() -> &'static Cast {
    static CAST: OnceLock<Cast> = OnceLock::new();
    CAST.get_or_init(|| {
        let alice = Identity::from_secret([1; 32]);
        let bob = Identity::from_secret([2; 32]);
        let mallory = Identity::from_secret([3; 32]);
        let dm = MessageId::from_bytes([0xd3; 32]);
        let mut receipts = vec![Vec::new(); 24];
        for signer in 0..3u8 {
            for bits in 0..8u8 {
                let (right_id, right_author, accepted) = (bits & 4 != 0, bits & 2 != 0, bits & 1 != 0);
                let key = [&bob, &mallory, &alice][signer as usize];
                let body = Body::Receipt(Receipt {
                    message_id: if right_id {
                        dm
                    } else {
                        MessageId::from_bytes([0x44; 32])
                    },
                    author: if right_author {
                        alice.peer_id()
                    } else {
                        mallory.peer_id()
                    },
                    time_ms: 1_700_000_000_000 + bits as u64,
                    accepted,
                });
                receipts[receipt_index(signer, right_id, right_author, accepted)] =
                    Signed::sign_with_nonce(key, body, [signer; 16]).envelope().to_vec();
            }
        }
        Cast {
            alice,
            bob,
            dm,
            receipts,
        }
    })
}

fn judge(reply: &[u8]) -> ReplyVerdict {
    let c = cast();
    judge_reply(reply, c.dm, c.bob.peer_id(), c.alice.peer_id())
}

fn varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// `DmReply { receipt = 1 }`, encoded by hand.
fn receipt_reply(receipt: &[u8]) -> Vec<u8> {
    let mut out = vec![0x0a];
    varint(receipt.len() as u64, &mut out);
    out.extend_from_slice(receipt);
    out
}

/// `DmReply { refused = 2 }` (an int32 enum: negative values take ten bytes).
fn refused_reply(code: i32) -> Vec<u8> {
    let mut out = vec![0x10];
    varint(code as i64 as u64, &mut out);
    out
}

/// The verdict docs/PROTOCOL.md gives a refusal code.
fn refusal_verdict(code: i32) -> ReplyVerdict {
    match code {
        // STORAGE, UNKNOWN_GROUP and BUSY (a rate limit) are worth a retry.
        4 | 6 | 8 => return ReplyVerdict::Retry(backchannel::DmFailure::Busy),
        _ => {}
    }
    ReplyVerdict::Refused(match code {
        0 => "REFUSAL_UNSPECIFIED",
        1 => "REFUSAL_INVALID",
        2 => "REFUSAL_WRONG_RECIPIENT",
        3 => "REFUSAL_WRONG_KIND",
        5 => "REFUSAL_NOT_ACCEPTED",
        7 => "REFUSAL_NOT_MEMBER",
        _ => "unknown",
    })
}

/// A delivered or not-accepted verdict is backed by Bob's genuine receipt.
fn check_backed(verdict: &ReplyVerdict, reply: &[u8]) {
    let c = cast();
    let receipt = match verdict {
        ReplyVerdict::Delivered(r) => r,
        _ => return,
    };
    assert!(
        !receipt.is_empty() && reply.windows(receipt.len()).any(|w| w == &receipt[..]),
        "the kept receipt is not from the reply"
    );
    let opened = Signed::open(receipt).expect("a delivered verdict keeps a valid receipt");
    assert_eq!(opened.author(), c.bob.peer_id());
    match opened.body() {
        Body::Receipt(r) => assert!(r.accepted && r.message_id == c.dm && r.author == c.alice.peer_id()),
        other => panic!("delivered on {other:?}"),
    }
}

fn changed(mut bytes: Vec<u8>, changes: &[(u16, u8)]) -> Vec<u8> {
    for &(at, byte) in changes {
        if bytes.is_empty() {
            break;
        }
        let i = at as usize % bytes.len();
        bytes[i] ^= byte;
    }
    bytes
}

fuzz_target!(|input: Input| {
    let c = cast();
    match input {
        Input::Raw(bytes) => {
            let verdict = judge(&bytes);
            check_backed(&verdict, &bytes);
        }
        Input::Refused { code, changes } => {
            let reply = refused_reply(code);
            match (judge(&reply), refusal_verdict(code)) {
                (ReplyVerdict::Retry(_), ReplyVerdict::Retry(_)) => {}
                (got, want) => assert_eq!(got, want, "refusal {code}"),
            }
            let reply = changed(reply, &changes);
            let verdict = judge(&reply);
            check_backed(&verdict, &reply);
            assert_ne!(verdict, ReplyVerdict::NotAccepted);
        }
        Input::Receipt {
            signer,
            right_id,
            right_author,
            accepted,
            changes,
        } => {
            let receipt = c.receipts[receipt_index(signer, right_id, right_author, accepted)].clone();
            let genuine = signer % 3 == 0 && right_id && right_author;
            let want = match (genuine, accepted) {
                (true, true) => ReplyVerdict::Delivered(receipt.clone()),
                (true, false) => ReplyVerdict::NotAccepted,
                (false, _) => ReplyVerdict::BadReceipt,
            };
            let reply = receipt_reply(&receipt);
            let sent = changed(reply.clone(), &changes);
            let verdict = judge(&sent);
            if sent == reply {
                assert_eq!(verdict, want);
            }
            check_backed(&verdict, &sent);
            match verdict {
                ReplyVerdict::Delivered(_) => assert!(genuine && accepted, "a change made a receipt valid"),
                ReplyVerdict::NotAccepted => assert!(genuine && !accepted, "a change made a receipt valid"),
                _ => {}
            }
        }
    }
});
