//! The test vectors published in docs/PROTOCOL.md are checked against the
//! code, so the document cannot drift from the wire.

use backchannel::{Body, Signed};
use sha2::{Digest, Sha256};

/// Reads `name: <hex>` lines from the "Test vectors" section of the spec.
fn vectors() -> std::collections::HashMap<String, String> {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/PROTOCOL.md")).expect("PROTOCOL.md");
    let section = doc.split("## Test vectors").nth(1).expect("a Test vectors section");
    section
        .lines()
        .filter_map(|l| {
            let l = l.trim().trim_start_matches("- ");
            let (k, v) = l.split_once(": ")?;
            let v = v.trim().trim_matches('`');
            (!v.is_empty() && v.chars().all(|c| c.is_ascii_hexdigit())).then(|| (k.trim().to_owned(), v.to_owned()))
        })
        .collect()
}

#[test]
fn the_documented_vectors_hold() {
    let v = vectors();
    let get = |k: &str| hex::decode(v.get(k).unwrap_or_else(|| panic!("vector {k} missing"))).expect("hex");

    let secret: [u8; 32] = get("alice secret key").try_into().expect("32 bytes");
    let alice = backchannel::Identity::from_secret(secret);
    assert_eq!(get("alice public key"), alice.verifying_key().to_bytes());

    for (name, author) in [("post", "alice"), ("dm", "alice"), ("receipt", "bob")] {
        let envelope = get(&format!("{name} envelope"));
        let opened = Signed::open(&envelope).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            opened.id().as_bytes().to_vec(),
            get(&format!("{name} message id")),
            "{name}"
        );
        let gossip: [u8; 32] = Sha256::digest(&envelope).into();
        assert_eq!(gossip.to_vec(), get(&format!("{name} gossipsub message id")), "{name}");
        let key = backchannel::id::key_of(&opened.author()).expect("ed25519");
        assert_eq!(key.to_vec(), get(&format!("{author} public key")), "{name}");
    }

    // Signing the documented post again gives byte-identical output.
    let post = Signed::open(&get("post envelope")).expect("valid");
    let Body::Hallway(body) = post.body().clone() else {
        panic!("a post")
    };
    let again = Signed::sign_with_nonce(&alice, Body::Hallway(body), [0x11; 16]);
    assert_eq!(again.envelope(), get("post envelope").as_slice());
}
