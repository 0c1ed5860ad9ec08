//! The test vectors published in docs/PROTOCOL.md are checked against the
//! code, so the document cannot drift from the wire.

use backchannel::{Body, Signed};
use curve25519_dalek::edwards::EdwardsPoint;
use curve25519_dalek::scalar::Scalar;
use ed25519_dalek::{Signature, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::support::crafted::{self, Crafter};
use crate::support::wire::Envelope;

/// Reads `name: value` lines from the "Test vectors" section of the spec.
fn vectors() -> std::collections::HashMap<String, String> {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/PROTOCOL.md")).expect("PROTOCOL.md");
    let section = doc.split("## Test vectors").nth(1).expect("a Test vectors section");
    section
        .lines()
        .filter_map(|l| {
            let l = l.trim().strip_prefix("- ")?;
            let (k, v) = l.split_once(": ")?;
            let v = v.trim().trim_matches('`');
            (!v.is_empty() && !v.contains(' ')).then(|| (k.trim().to_owned(), v.to_owned()))
        })
        .collect()
}

/// A documented hex vector.
fn hex_of(v: &std::collections::HashMap<String, String>, k: &str) -> Vec<u8> {
    hex::decode(v.get(k).unwrap_or_else(|| panic!("vector {k} missing"))).expect("hex")
}

#[test]
fn the_documented_vectors_hold() {
    let v = vectors();
    let get = |k: &str| hex_of(&v, k);

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
        let key = backchannel::key_of(&opened.author()).expect("ed25519");
        assert_eq!(key.to_vec(), get(&format!("{author} public key")), "{name}");
    }
    // Only the post travels on gossipsub, so only it has a gossipsub id: the
    // document lists none for the DM and the receipt (issue 15).
    let post = get("post envelope");
    let gossip: [u8; 32] = Sha256::digest(&post).into();
    assert_eq!(gossip.to_vec(), get("post gossipsub message id"));
    for name in ["dm", "receipt"] {
        assert!(!v.contains_key(&format!("{name} gossipsub message id")), "{name}");
    }

    // Signing the documented post again gives byte-identical output.
    let post = Signed::open(&get("post envelope")).expect("valid");
    let Body::Hallway(body) = post.body().clone() else {
        panic!("a post")
    };
    let again = Signed::sign_with_nonce(&alice, Body::Hallway(body), [0x11; 16]);
    assert_eq!(again.envelope(), get("post envelope").as_slice());
}

/// The verification edge cases (docs/PROTOCOL.md, "Strict verification"),
/// each built from the documented post's payload and Alice's key.
struct Edge {
    name: &'static str,
    envelope: Vec<u8>,
}

/// Builds the edge-case envelopes exactly as the document describes them.
fn edges(seed: &[u8; 32], post: &[u8]) -> Vec<Edge> {
    let valid = <Envelope as prost::Message>::decode(post).expect("envelope");
    let payload = valid.payload;
    let c = Crafter::new(seed, &payload);
    let good: [u8; 64] = valid.signature.as_slice().try_into().expect("64 bytes");
    let identity = EdwardsPoint::default().compress().to_bytes();
    let weak_key_signature = |key: [u8; 32]| {
        let r = crafted::nonce("small-order key", 0);
        let r_bytes = EdwardsPoint::mul_base(&r).compress().to_bytes();
        crafted::sign_raw(&Scalar::ZERO, &key, &r, r_bytes, &c.message)
    };
    let (mixed_key, mixed_signature, _) = crafted::mixed_order_key_signature(&c.a, &c.message, "mixed-order key");
    let mut off_curve_r = good;
    off_curve_r[..32].copy_from_slice(&crafted::not_a_point());
    let env = |key, sig| crafted::envelope(&payload, key, sig);
    vec![
        Edge {
            name: "E1",
            envelope: env(c.key, crafted::add_l(good)),
        },
        Edge {
            name: "E2",
            envelope: env(c.key, c.identity_r(identity)),
        },
        Edge {
            name: "E3",
            envelope: env(c.key, c.identity_r(crafted::IDENTITY_Y_P_PLUS_1)),
        },
        Edge {
            name: "E4",
            envelope: env(c.key, c.torsion_r(&crafted::nonce("torsion R", 0), crafted::order_2())),
        },
        Edge {
            name: "E5",
            envelope: env(identity, weak_key_signature(identity)),
        },
        Edge {
            name: "E6",
            envelope: env(
                crafted::IDENTITY_Y_P_PLUS_1,
                weak_key_signature(crafted::IDENTITY_Y_P_PLUS_1),
            ),
        },
        Edge {
            name: "E7",
            envelope: env(mixed_key, mixed_signature),
        },
        Edge {
            name: "E8",
            envelope: env(crafted::not_a_point(), good),
        },
        Edge {
            name: "E9",
            envelope: env(c.key, off_curve_r),
        },
    ]
}

/// The parts of an edge-case envelope.
fn parts(envelope: &[u8]) -> ([u8; 32], [u8; 32], [u8; 32], Vec<u8>) {
    let e = <Envelope as prost::Message>::decode(envelope).expect("envelope");
    let key: [u8; 32] = e.public_key.as_slice().try_into().expect("32");
    let r: [u8; 32] = e.signature[..32].try_into().expect("R");
    let s: [u8; 32] = e.signature[32..].try_into().expect("S");
    (key, r, s, crafted::signing_input(&e.payload))
}

/// What plain (cofactorless, non-strict) verification says: the contrast
/// that makes each case an edge case.
fn plain_verify(envelope: &[u8]) -> bool {
    let (key, r, s, message) = parts(envelope);
    let Ok(key) = VerifyingKey::from_bytes(&key) else {
        return false;
    };
    let sig = Signature::from_components(r, s);
    ed25519_dalek::Verifier::verify(&key, &message, &sig).is_ok()
}

#[test]
fn the_documented_verification_edge_cases_hold_on_every_path() {
    let v = vectors();
    let seed: [u8; 32] = hex_of(&v, "alice secret key").try_into().expect("32");
    let post = hex_of(&v, "post envelope");
    for edge in edges(&seed, &post) {
        let name = edge.name;
        let documented = hex_of(&v, &format!("{name} envelope"));
        assert_eq!(
            hex::encode(&documented),
            hex::encode(&edge.envelope),
            "{name}: the document's envelope is the one its text describes"
        );
        let verdict = v
            .get(&format!("{name} verdict"))
            .unwrap_or_else(|| panic!("{name} verdict missing"));
        let outcome = |r: &Result<Signed, backchannel::RejectReason>| match r {
            Ok(_) => "accept".to_owned(),
            Err(reason) => reason.as_str().to_owned(),
        };
        // One by one, alone in a page, and among valid envelopes in a page:
        // the same verdict every time.
        assert_eq!(&outcome(&Signed::open(&documented)), verdict, "{name} open");
        let alone = Signed::open_batch(std::slice::from_ref(&documented));
        assert_eq!(&outcome(&alone[0]), verdict, "{name} in a page alone");
        let page = Signed::open_batch(&[post.clone(), documented.clone(), post.clone()]);
        let outcomes: Vec<String> = page.iter().map(outcome).collect();
        assert_eq!(outcomes, ["accept", verdict.as_str(), "accept"], "{name} in a page");
    }
}

/// Each edge case is what the document says it is, checked with curve
/// arithmetic rather than with the verifier under test.
#[test]
fn each_edge_case_is_what_its_name_says() {
    let v = vectors();
    let get = |k: &str| hex_of(&v, k);
    let (_, good_r, good_s, _) = parts(&get("post envelope"));
    let decoded = |b: &[u8; 32]| crafted::point(b);
    let small = |b: &[u8; 32]| decoded(b).is_some_and(|p| p.is_small_order());
    let torsion_free = |b: &[u8; 32]| decoded(b).is_some_and(|p| p.is_torsion_free());
    let canonical_s = |s: [u8; 32]| bool::from(Scalar::from_canonical_bytes(s).is_some());

    // E1: the valid signature with S + l, which fits in 253 bits.
    let (key, r, s, _) = parts(&get("E1 envelope"));
    assert_eq!((key.to_vec(), r), (get("alice public key"), good_r));
    assert!(!canonical_s(s) && canonical_s(good_s) && s[31] & 0xe0 == 0);
    // E2, E3: R is the identity, canonical and not; plain verification
    // accepts both encodings that it compares equal (only the canonical one).
    let (_, r, s, _) = parts(&get("E2 envelope"));
    assert!(small(&r) && crafted::is_canonical(&r) && canonical_s(s));
    assert!(plain_verify(&get("E2 envelope")), "E2 passes plain verification");
    let (_, r, _, _) = parts(&get("E3 envelope"));
    assert!(small(&r) && !crafted::is_canonical(&r));
    // E4: R has a torsion component: of large order, but not torsion-free.
    let (_, r, _, _) = parts(&get("E4 envelope"));
    assert!(!small(&r) && !torsion_free(&r) && crafted::is_canonical(&r));
    // E5, E6: small-order keys, canonical and not; plain verification
    // accepts E5.
    let (key, ..) = parts(&get("E5 envelope"));
    assert!(small(&key) && crafted::is_canonical(&key));
    assert!(plain_verify(&get("E5 envelope")), "E5 passes plain verification");
    let (key, ..) = parts(&get("E6 envelope"));
    assert!(small(&key) && !crafted::is_canonical(&key));
    // E7: Alice's key plus the documented point of order 8, with a
    // signature every verifier accepts.
    let t8 = decoded(&get("T8 point").try_into().expect("32")).expect("a point");
    assert!(t8.is_small_order());
    assert_ne!(t8 + t8 + t8 + t8, EdwardsPoint::default(), "order 8, not 4");
    let alice = decoded(&get("alice public key").try_into().expect("32")).expect("a point");
    let (key, r, _, _) = parts(&get("E7 envelope"));
    assert_eq!(key, (alice + t8).compress().to_bytes());
    assert!(!small(&key) && !torsion_free(&key) && torsion_free(&r));
    assert!(plain_verify(&get("E7 envelope")));
    // E8: a key that is no point; E9: an R that is no point.
    let (key, ..) = parts(&get("E8 envelope"));
    assert!(decoded(&key).is_none());
    let (_, r, _, _) = parts(&get("E9 envelope"));
    assert!(decoded(&r).is_none());
}

#[test]
#[ignore = "prints the verification edge cases for docs/PROTOCOL.md"]
fn print_edge_cases() {
    let v = vectors();
    let seed: [u8; 32] = hex_of(&v, "alice secret key").try_into().expect("32");
    println!(
        "- T8 point: `{}`",
        hex::encode(crafted::order_8().compress().to_bytes())
    );
    let post = <Envelope as prost::Message>::decode(hex_of(&v, "post envelope").as_slice()).expect("post");
    let c = Crafter::new(&seed, &post.payload);
    let (.., i) = crafted::mixed_order_key_signature(&c.a, &c.message, "mixed-order key");
    println!("E7 nonce index {i}");
    for edge in edges(&seed, &hex_of(&v, "post envelope")) {
        println!("- {} envelope: `{}`", edge.name, hex::encode(&edge.envelope));
        let verdict = match Signed::open(&edge.envelope) {
            Ok(_) => "accept",
            Err(reason) => reason.as_str(),
        };
        println!("- {} verdict: {verdict}", edge.name);
    }
}
