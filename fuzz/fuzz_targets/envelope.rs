//! Any bytes from the network through `Signed::open` (size check, decode,
//! `verify_strict`, validation): rejected with a reason or accepted, never a
//! panic; and an accepted envelope is exactly the bytes received and opens
//! again to the same message.

#![no_main]

use backchannel::key_of;
use backchannel::protocol::{MAX_ENVELOPE_BYTES, MAX_NICK_BYTES, MAX_TEXT_BYTES};
use backchannel::{Body, MessageId, Signed};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(signed) = Signed::open(data) else {
        return;
    };
    assert!(data.len() <= MAX_ENVELOPE_BYTES);
    assert_eq!(signed.envelope(), data, "the envelope is kept exactly as received");
    assert_eq!(
        Signed::open(signed.envelope()).as_ref(),
        Ok(&signed),
        "opens again the same"
    );
    assert!(key_of(&signed.author()).is_some(), "authors are ed25519 peers");
    assert_eq!(signed.id().to_string().parse::<MessageId>(), Ok(signed.id()));
    // What validation promises about the fields.
    let text_ok = |t: &str| !t.is_empty() && t.len() <= MAX_TEXT_BYTES;
    let nick_ok = |n: &Option<String>| {
        n.as_ref()
            .is_none_or(|n| !n.is_empty() && n.len() <= MAX_NICK_BYTES && !n.chars().any(char::is_control))
    };
    match signed.body() {
        Body::Hallway(p) => {
            assert!(text_ok(&p.text) && nick_ok(&p.nick) && p.clock >= p.time_ms && p.mentions.len() <= 16)
        }
        // A DM carries text, or a reaction and no text.
        Body::Direct(d) => assert!(
            (text_ok(&d.text) || (d.reaction.is_some() && d.text.is_empty()))
                && nick_ok(&d.nick)
                && key_of(&d.recipient).is_some()
        ),
        Body::RoomOp(op) => assert!(op.clock >= op.time_ms),
        Body::Group(m) => assert!(text_ok(&m.text) && nick_ok(&m.nick)),
        Body::Receipt(r) => assert!(key_of(&r.author).is_some()),
        _ => {}
    }
});
