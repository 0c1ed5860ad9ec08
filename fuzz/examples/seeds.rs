//! Writes the seed corpora that need a signature or a key: one valid
//! envelope of each kind (the first three are the test vectors of
//! docs/PROTOCOL.md) and one valid key file. A fuzzer cannot find these by
//! itself. Run from fuzz/: `cargo run --example seeds`.

use std::fs;
use std::path::Path;

use backchannel::group::{GroupChange, GroupMessage, GroupOp, group_id};
use backchannel::identity::KEY_FILE;
use backchannel::{Body, DirectMessage, HallwayPost, Identity, Receipt, Room, Signed};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let alice = Identity::from_secret(std::array::from_fn(|i| i as u8));
    let bob = Identity::from_secret([0x42; 32]);
    let post = Signed::sign_with_nonce(
        &alice,
        Body::Hallway(HallwayPost {
            room: Room::new("lobby")?,
            text: "hello, hallway".into(),
            time_ms: 1_700_000_000_000,
            nick: Some("alice".into()),
            clock: 1_700_000_000_000,
            reply_to: None,
            mentions: Vec::new(),
            question: false,
            stamp: None,
        }),
        [0x11; 16],
    );
    let dm = Signed::sign_with_nonce(
        &alice,
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
            author: alice.peer_id(),
            time_ms: 1_700_000_000_002,
            accepted: true,
        }),
        [0; 16],
    );
    let nonce = [0x33; 16];
    let group = group_id(&alice.peer_id(), &nonce).ok_or("alice is an ed25519 peer")?;
    let state = Signed::sign_with_nonce(
        &alice,
        Body::GroupOp(GroupOp {
            group,
            nonce,
            version: 1,
            change: GroupChange::State {
                name: "mods".into(),
                members: vec![alice.peer_id(), bob.peer_id()],
            },
            time_ms: 1_700_000_000_003,
        }),
        nonce,
    );
    let leave = Signed::sign_with_nonce(
        &bob,
        Body::GroupOp(GroupOp {
            group,
            nonce,
            version: 1,
            change: GroupChange::Leave,
            time_ms: 1_700_000_000_004,
        }),
        nonce,
    );
    let said = Signed::sign_with_nonce(
        &bob,
        Body::Group(GroupMessage {
            group,
            text: "hi mods".into(),
            time_ms: 1_700_000_000_005,
            lamport: 7,
            nick: Some("bob".into()),
            version: 1,
        }),
        [0x44; 16],
    );
    let dir = Path::new("seeds/envelope");
    fs::create_dir_all(dir)?;
    for (name, m) in [
        ("post", &post),
        ("dm", &dm),
        ("receipt", &receipt),
        ("group_state", &state),
        ("group_leave", &leave),
        ("group_message", &said),
    ] {
        fs::write(dir.join(name), m.envelope())?;
    }
    let dir = Path::new("seeds/keyfile");
    let _ = fs::remove_file(dir.join(KEY_FILE));
    alice.save(dir)?;
    fs::rename(dir.join(KEY_FILE), dir.join("ed25519"))?;
    Ok(())
}
