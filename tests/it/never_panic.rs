//! Property tests at the boundaries where bytes and text enter: any input is
//! accepted or rejected with a reason, never a panic; and what a node signs
//! always opens to the same message.

use backchannel::lab::scenario::Scenario;
use backchannel::{Body, DirectMessage, HallwayPost, Identity, Room, Signed};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn any_bytes_open_or_are_rejected(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = Signed::open(&bytes);
    }

    #[test]
    fn a_signed_envelope_with_any_byte_changed_never_panics(pos in 0usize..400, byte in any::<u8>()) {
        let alice = Identity::from_secret([9; 32]);
        let signed = Signed::sign(&alice, Body::Hallway(HallwayPost {
            room: Room::new("lobby").unwrap(),
            text: "hello".into(),
            time_ms: 1,
            nick: None,
            clock: 1,
            reply_to: None,
            mentions: Vec::new(),
            question: false,
            stamp: None,
        }));
        let mut bytes = signed.envelope().to_vec();
        let pos = pos % bytes.len();
        bytes[pos] = byte;
        if let Ok(opened) = Signed::open(&bytes) {
            // Only framing bytes that decode to the same fields can pass.
            prop_assert_eq!(opened.body(), signed.body());
        }
    }

    #[test]
    fn what_is_signed_opens_to_the_same_message(text in "\\PC{1,200}", time in any::<u64>(), nick in proptest::option::of("[a-z]{1,32}")) {
        let alice = Identity::from_secret([7; 32]);
        let bob = Identity::from_secret([8; 32]).peer_id();
        let body = Body::Direct(DirectMessage { recipient: bob, text, time_ms: time, nick, reaction: None, });
        let signed = Signed::sign(&alice, body.clone());
        let opened = Signed::open(signed.envelope()).unwrap();
        prop_assert_eq!(opened.body(), &body);
        prop_assert_eq!(opened.author(), alice.peer_id());
        prop_assert_eq!(opened.id(), signed.id());
    }

    #[test]
    fn any_typed_line_parses_or_is_an_error(line in "\\PC{0,120}") {
        let _ = backchannel::command::parse(&line);
    }

    #[test]
    fn any_scenario_text_parses_or_is_an_error(text in "\\PC{0,300}") {
        let _ = Scenario::parse(&text);
    }
}
