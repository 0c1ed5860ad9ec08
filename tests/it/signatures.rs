//! One verification rule everywhere (issue 15): signatures crafted so that
//! batch or plain ed25519 verification accepts them while strict
//! verification refuses them are refused, and counted, on every path a
//! signed message enters by: live gossip, a DM, and a page of history sync.

use backchannel::lab::{Lab, LabConfig};
use backchannel::{Event, HistoryQuery, RejectReason};
use curve25519_dalek::edwards::EdwardsPoint;
use ed25519_dalek::{Signature, VerifyingKey};
use prost::Message;

use crate::support::crafted::{self, Crafter};
use crate::support::raw::RawPeer;
use crate::support::wire::{self, SyncResponse};
use crate::support::{T, room};

#[derive(Clone, PartialEq, Message)]
struct DmReply {
    #[prost(bytes = "vec", optional, tag = "1")]
    receipt: Option<Vec<u8>>,
    #[prost(int32, optional, tag = "2")]
    refused: Option<i32>,
}

/// How a crafted signature is made.
#[derive(Clone, Copy, Debug)]
enum Craft {
    /// R is the identity (small order) and S = k·a: plain and batch
    /// verification accept it.
    IdentityR,
    /// R = [r]B + a point of order 2: batch verification accepts it for
    /// every even multiplier.
    TorsionR,
}

/// An envelope of `payload` by the holder of `seed`, with a crafted signature.
fn crafted(seed: &[u8; 32], payload: Vec<u8>, craft: Craft) -> Vec<u8> {
    let c = Crafter::new(seed, &payload);
    let signature = match craft {
        Craft::IdentityR => c.identity_r(EdwardsPoint::default().compress().to_bytes()),
        Craft::TorsionR => c.torsion_r(&crafted::nonce("live torsion R", 0), crafted::order_2()),
    };
    crafted::envelope(&payload, c.key, signature)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crafted_signatures_are_refused_and_counted_on_every_path() {
    const INVALID: i32 = 1;
    let lobby = room("lobby");
    let mut lab = Lab::start(1, LabConfig::default()).await.expect("lab");
    lab.nodes[0].handle.join(&lobby).await.expect("join");
    let node = lab.nodes[0].peer_id();
    let node_key = backchannel::key_of(&node).expect("ed25519");
    let mut raw = RawPeer::start(64 * 1024).await;
    raw.connect(&lab.nodes[0].addr, node).await;
    raw.join("lobby", node).await;
    lab.nodes[0]
        .wait_for("room peer", T, |e| {
            matches!(e, Event::RoomPeerJoined { peer, .. } if *peer == raw.peer_id).then_some(())
        })
        .await
        .expect("the raw peer is in the room");
    let seed = raw.key.to_bytes();
    let own = raw.public_key();
    let post = |text: &str| wire::payload_post(&wire::post("lobby", text));

    // Live gossip: two crafted posts (two, so that the sender stays above
    // the graylist), then a fair one; once the fair one is shown, the
    // crafted ones were judged.
    for craft in [Craft::IdentityR, Craft::TorsionR] {
        raw.publish("lobby", crafted(&seed, post(&format!("live {craft:?}")), craft))
            .await;
    }
    raw.publish("lobby", wire::envelope(&raw.key, own, post("fair live")))
        .await;
    lab.nodes[0]
        .wait_for("the fair post", T, |e| {
            matches!(e, Event::Hallway { post, .. } if post.text == "fair live").then_some(())
        })
        .await
        .expect("shown");

    // A DM with a crafted signature is refused as INVALID.
    let dm = wire::payload_dm(&wire::DirectMessage {
        recipient: node_key.to_vec(),
        text: "crafted".into(),
        time_ms: wire::now_ms(),
        nonce: wire::rand_nonce(),
        nick: String::new(),
    });
    let reply = raw
        .dm(node, crafted(&seed, dm, Craft::IdentityR))
        .await
        .expect("a reply");
    assert_eq!(DmReply::decode(reply.as_slice()).expect("reply").refused, Some(INVALID));

    // History sync: a page of a valid post and a crafted one. The page
    // passes ed25519 batch verification (the identity adds nothing to the
    // batch equation), so a node that trusted the batch would take both.
    let fair = wire::envelope(&raw.key, own, post("fair pushed"));
    let bad = crafted(&seed, post("pushed IdentityR"), Craft::IdentityR);
    let batch_accepts = {
        let parts: Vec<(Vec<u8>, VerifyingKey, Signature)> = [&fair, &bad]
            .iter()
            .map(|env| {
                let e = wire::Envelope::decode(env.as_slice()).expect("envelope");
                let key = VerifyingKey::from_bytes(&e.public_key.try_into().expect("32")).expect("key");
                let sig = Signature::from_slice(&e.signature).expect("64");
                (crafted::signing_input(&e.payload), key, sig)
            })
            .collect();
        let messages: Vec<&[u8]> = parts.iter().map(|(m, ..)| m.as_slice()).collect();
        let sigs: Vec<Signature> = parts.iter().map(|(_, _, s)| *s).collect();
        let keys: Vec<VerifyingKey> = parts.iter().map(|(_, k, _)| *k).collect();
        ed25519_dalek::verify_batch(&messages, &sigs, &keys).is_ok()
    };
    assert!(batch_accepts, "the crafted page fools a batch verifier");
    let answer = |bytes: Result<Vec<u8>, String>| {
        SyncResponse::decode(bytes.expect("a response").as_slice()).expect("SyncResponse")
    };
    let push = wire::sync_request("lobby", 4, &wire::list(&[fair, bad]));
    assert_eq!(answer(raw.sync(node, push).await).pushed, Some(1), "only the fair post");
    let torsion = crafted(&seed, post("pushed TorsionR"), Craft::TorsionR);
    let push = wire::sync_request("lobby", 4, &wire::list(&[torsion]));
    assert_eq!(answer(raw.sync(node, push).await).pushed, Some(0));

    // Every crafted signature was counted, against the peer that sent it,
    // and nothing crafted was stored.
    let stats = lab.nodes[0].handle.stats().await.expect("stats");
    assert_eq!(stats.rejected.get(&RejectReason::BadSignature), Some(&5), "{stats:?}");
    assert_eq!(
        stats.rejected_by_peer.get(&raw.peer_id.to_string()),
        Some(&5),
        "{stats:?}"
    );
    let mut texts: Vec<String> = lab.nodes[0]
        .handle
        .history(HistoryQuery::Room(lobby), 100)
        .await
        .expect("history")
        .into_iter()
        .filter_map(|m| match m.message.body() {
            backchannel::Body::Hallway(p) => Some(p.text.clone()),
            _ => None,
        })
        .collect();
    texts.sort();
    assert_eq!(texts, ["fair live", "fair pushed"]);
    lab.shutdown().await;
}
