//! Hostile bytes at the boundaries where they enter: forged, tampered,
//! malformed, unknown and misaddressed messages are rejected, counted, never
//! stored, shown or forwarded, and the node keeps running.

use backchannel::lab::{Lab, LabConfig};
use backchannel::protocol::MAX_ENVELOPE_BYTES;
use backchannel::{Event, HistoryQuery, Identity, PeerId, RejectReason};
use prost::Message;

use crate::support::raw::{RawEvent, RawPeer};
use crate::support::wire::{self, Envelope, SyncResponse};
use crate::support::{T, room};

#[derive(Clone, PartialEq, Message)]
struct DmReply {
    #[prost(bytes = "vec", optional, tag = "1")]
    receipt: Option<Vec<u8>>,
    #[prost(int32, optional, tag = "2")]
    refused: Option<i32>,
}

/// The texts of the posts a node showed since the last wait or drain.
fn shown_posts(node: &mut backchannel::lab::LabNode) -> Vec<String> {
    node.drain()
        .into_iter()
        .filter_map(|e| match e {
            Event::Hallway { post, .. } => Some(post.text),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_posts_are_rejected_counted_and_never_forwarded() {
    let lobby = room("lobby");
    let mut lab = Lab::start(1, LabConfig::default()).await.expect("lab");
    lab.nodes[0].handle.join(&lobby).await.expect("join");
    let node = lab.nodes[0].peer_id();
    let addr = lab.nodes[0].addr.clone();

    // attackers -- node -- observer: whatever the observer gets, the node
    // forwarded. Three attackers send two invalid messages each (so each is
    // penalised but none graylisted yet); then the first sends a third.
    let mut attacker = RawPeer::start(64 * 1024).await;
    let mut second = RawPeer::start(64 * 1024).await;
    let mut third = RawPeer::start(64 * 1024).await;
    let mut observer = RawPeer::start(64 * 1024).await;
    for raw in [&mut attacker, &mut second, &mut third, &mut observer] {
        raw.connect(&addr, node).await;
        raw.join("lobby", node).await;
    }
    for peer in [attacker.peer_id, second.peer_id, third.peer_id, observer.peer_id] {
        lab.nodes[0]
            .wait_for("room peer", T, |e| {
                matches!(e, Event::RoomPeerJoined { peer: p, .. } if *p == peer).then_some(())
            })
            .await
            .expect("node sees the raw peers in the room");
    }

    let victim = Identity::generate().verifying_key().to_bytes();
    let own = attacker.public_key();
    let forged = wire::envelope(
        &attacker.key,
        victim,
        wire::payload_post(&wire::post("lobby", "I am the victim")),
    );
    let tampered = {
        let good = wire::envelope(&attacker.key, own, wire::payload_post(&wire::post("lobby", "pay 10")));
        let mut env = Envelope::decode(good.as_slice()).expect("decode");
        let last = env.payload.iter().rposition(|b| *b == b'1').expect("the digit");
        env.payload[last] = b'9';
        env.encode_to_vec()
    };
    let unknown_kind = wire::envelope(&attacker.key, own, wire::field(9, b""));
    let wrong_room = wire::envelope(&attacker.key, own, wire::payload_post(&wire::post("elsewhere", "hi")));
    let empty_text = wire::envelope(&attacker.key, own, wire::payload_post(&wire::post("lobby", "")));
    let malformed = vec![0xff, 0xff, 0xff, 0x01, 0x02];
    let bad = [forged, tampered, unknown_kind, wrong_room, empty_text, malformed];
    for (i, bytes) in bad.iter().enumerate() {
        let from = [&attacker, &second, &third][i / 2];
        from.publish("lobby", bytes.clone()).await;
    }
    // The node rejects all six...
    for _ in 0..bad.len() {
        lab.nodes[0]
            .wait_for("a rejection", T, |e| matches!(e, Event::Rejected { .. }).then_some(()))
            .await
            .expect("rejected");
    }
    // ...and scores each sender down (-10 x invalid messages squared); a
    // third invalid message puts the first attacker below the graylist: from
    // then on the node ignores what it sends on the room.
    let score_of = |peers: &[backchannel::PeerInfo], who| peers.iter().find(|p| p.peer == who).and_then(|p| p.score);
    let peers = lab.nodes[0].handle.peers().await.expect("peers");
    assert!(score_of(&peers, second.peer_id).is_some_and(|s| (-80.0..-20.0).contains(&s)));
    attacker.publish("lobby", vec![0xff, 0xfe, 0x01]).await;
    lab.nodes[0]
        .wait_for("a rejection", T, |e| matches!(e, Event::Rejected { .. }).then_some(()))
        .await
        .expect("rejected");
    let peers = lab.nodes[0].handle.peers().await.expect("peers");
    let score = score_of(&peers, attacker.peer_id);
    assert!(score.is_some_and(|s| s < -80.0), "attacker score {score:?}");
    // A fair post from another peer: once the observer has it, nothing bad
    // came before it (the node's own presence announcements may).
    let mut fair = RawPeer::start(64 * 1024).await;
    fair.connect(&addr, node).await;
    fair.join("lobby", node).await;
    let valid = wire::envelope(
        &fair.key,
        fair.public_key(),
        wire::payload_post(&wire::post("lobby", "a fair post")),
    );
    fair.publish("lobby", valid.clone()).await;
    loop {
        let got = observer.wait(|e| matches!(e, RawEvent::Message(..))).await;
        let RawEvent::Message(_, data) = got else {
            unreachable!()
        };
        assert!(!bad.contains(&data), "an invalid message was forwarded");
        if data == valid {
            break;
        }
    }
    while let Ok(e) = observer.events.try_recv() {
        if let RawEvent::Message(_, data) = e {
            assert!(!bad.contains(&data), "an invalid message was forwarded");
        }
    }

    let stats = lab.nodes[0].handle.stats().await.expect("stats");
    let count = |k: &str| stats.rejected.get(&k.parse().expect("a reason")).copied().unwrap_or(0);
    assert_eq!(count("bad_signature"), 2, "{stats:?}");
    assert_eq!(count("unknown_kind"), 1, "{stats:?}");
    assert_eq!(count("wrong_room"), 1, "{stats:?}");
    assert_eq!(count("invalid_field"), 1, "{stats:?}");
    assert_eq!(count("malformed"), 2, "{stats:?}");
    let by = |p: PeerId| stats.rejected_by_peer.get(&p.to_string()).copied();
    assert_eq!(
        (by(attacker.peer_id), by(second.peer_id), by(third.peer_id)),
        (Some(3), Some(2), Some(2))
    );

    // Only the valid post was shown and logged.
    lab.nodes[0]
        .wait_for("the valid post", T, |e| {
            matches!(e, Event::Hallway { post, .. } if post.text == "a fair post").then_some(())
        })
        .await
        .expect("shown");
    let shown = shown_posts(&mut lab.nodes[0]);
    assert!(shown.is_empty(), "only the valid post is shown: {shown:?}");
    let log = lab.nodes[0]
        .handle
        .history(HistoryQuery::Room(lobby), 100)
        .await
        .expect("history");
    assert_eq!(log.len(), 1);
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_dms_are_refused_counted_and_never_stored() {
    let mut lab = Lab::start(1, LabConfig::default()).await.expect("lab");
    let node = lab.nodes[0].peer_id();
    let node_key = backchannel::key_of(&node).expect("ed25519");
    let mut attacker = RawPeer::start(64 * 1024).await;
    attacker.connect(&lab.nodes[0].addr, node).await;
    let own = attacker.public_key();
    let dm = |recipient: [u8; 32], text: &str| {
        wire::payload_dm(&wire::DirectMessage {
            recipient: recipient.to_vec(),
            text: text.into(),
            time_ms: 1,
            nonce: wire::rand_nonce(),
            nick: String::new(),
        })
    };
    let refusal = |reply: Result<Vec<u8>, String>| {
        DmReply::decode(reply.expect("a reply").as_slice())
            .expect("DmReply")
            .refused
    };

    // A DM for someone else: refused as WRONG_RECIPIENT (2).
    let someone = Identity::generate().verifying_key().to_bytes();
    let for_other = wire::envelope(&attacker.key, own, dm(someone, "not for you"));
    assert_eq!(refusal(attacker.dm(node, for_other).await), Some(2));
    // A forged author: refused as INVALID (1).
    let forged = wire::envelope(&attacker.key, someone, dm(node_key, "from someone"));
    assert_eq!(refusal(attacker.dm(node, forged).await), Some(1));
    // Garbage: INVALID.
    assert_eq!(refusal(attacker.dm(node, vec![1, 2, 3]).await), Some(1));
    // A hallway post on the DM protocol: WRONG_KIND (3).
    let post = wire::envelope(&attacker.key, own, wire::payload_post(&wire::post("lobby", "hi")));
    assert_eq!(refusal(attacker.dm(node, post).await), Some(3));
    // Oversize: the node stops reading and closes the stream without a reply.
    let oversize = attacker.dm(node, vec![0; MAX_ENVELOPE_BYTES + 1]).await;
    assert!(oversize.as_ref().map_or(true, Vec::is_empty), "{oversize:?}");

    // A valid DM still works, and its receipt is signed by the node.
    let good = wire::envelope(&attacker.key, own, dm(node_key, "hello"));
    let reply = DmReply::decode(attacker.dm(node, good).await.expect("reply").as_slice()).expect("DmReply");
    let receipt = backchannel::Signed::open(&reply.receipt.expect("a receipt")).expect("valid receipt");
    assert_eq!(receipt.author(), node);

    let stats = lab.nodes[0].handle.stats().await.expect("stats");
    assert_eq!(stats.rejected.get(&RejectReason::WrongRecipient), Some(&1), "{stats:?}");
    assert_eq!(stats.rejected.get(&RejectReason::BadSignature), Some(&1), "{stats:?}");
    assert_eq!(stats.rejected.get(&RejectReason::Malformed), Some(&1), "{stats:?}");
    assert_eq!(stats.rejected.get(&RejectReason::WrongKind), Some(&1), "{stats:?}");
    let log = lab.nodes[0]
        .handle
        .history(HistoryQuery::Peer(attacker.peer_id), 10)
        .await
        .expect("history");
    assert_eq!(log.len(), 1, "only the valid DM is logged");
    let dms: Vec<_> = lab.nodes[0]
        .drain()
        .into_iter()
        .filter(|e| matches!(e, Event::Dm { .. }))
        .collect();
    assert_eq!(dms.len(), 1);
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receipt_not_signed_by_the_recipient_is_rejected_and_the_dm_not_marked_delivered() {
    let mut lab = Lab::start(1, LabConfig::default()).await.expect("lab");
    let node = lab.nodes[0].peer_id();
    let mut fake = RawPeer::start(64 * 1024).await;
    fake.connect(&lab.nodes[0].addr, node).await;
    // The "recipient" answers with a receipt signed by somebody else.
    let forger = Identity::generate();
    let receipt = {
        let dm = backchannel::Signed::sign(
            &forger,
            backchannel::Body::Direct(backchannel::DirectMessage {
                recipient: node,
                text: "x".into(),
                time_ms: 1,
                nick: None,
                reaction: None,
            }),
        );
        backchannel::Signed::sign(
            &forger,
            backchannel::Body::Receipt(backchannel::Receipt {
                message_id: dm.id(),
                author: node,
                time_ms: 1,
                accepted: true,
            }),
        )
    };
    *fake.answer.lock().expect("answer") = DmReply {
        receipt: Some(receipt.envelope().to_vec()),
        refused: None,
    }
    .encode_to_vec();
    let id = lab.nodes[0]
        .handle
        .send_dm(fake.peer_id, "are you real?")
        .await
        .expect("send");
    let reason = lab.nodes[0]
        .wait_for("failure", crate::support::T, |e| match e {
            Event::DmFailed { id: got, reason, .. } if *got == id => Some(reason.clone()),
            _ => None,
        })
        .await
        .expect("the DM fails instead of being marked delivered");
    assert_eq!(reason, backchannel::DmFailure::InvalidReceipt, "{reason}");
    let stats = lab.nodes[0].handle.stats().await.expect("stats");
    assert_eq!(stats.rejected.get(&RejectReason::BadReceipt), Some(&1), "{stats:?}");
    let log = lab.nodes[0]
        .handle
        .history(HistoryQuery::Peer(fake.peer_id), 10)
        .await
        .expect("history");
    assert!(matches!(log[0].delivery, backchannel::Delivery::Failed(_)));
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn posts_and_dms_with_clocks_outside_the_window_are_rejected() {
    let lobby = room("lobby");
    let mut lab = Lab::start(1, LabConfig::default()).await.expect("lab");
    lab.nodes[0].handle.join(&lobby).await.expect("join");
    let node = lab.nodes[0].peer_id();
    let mut peer = RawPeer::start(64 * 1024).await;
    peer.connect(&lab.nodes[0].addr, node).await;
    peer.join("lobby", node).await;
    lab.nodes[0]
        .wait_for("room peer", T, |e| {
            matches!(e, Event::RoomPeerJoined { .. }).then_some(())
        })
        .await
        .expect("in the room");
    let own = peer.public_key();
    let hour = 3_600_000;
    let mut future = wire::post("lobby", "from the future");
    future.time_ms += hour;
    let mut replay = wire::post("lobby", "from last year");
    replay.time_ms -= 365 * 24 * hour;
    for p in [&future, &replay] {
        peer.publish("lobby", wire::envelope(&peer.key, own, wire::payload_post(p)))
            .await;
    }
    let fair = wire::post("lobby", "on time");
    peer.publish("lobby", wire::envelope(&peer.key, own, wire::payload_post(&fair)))
        .await;
    lab.nodes[0]
        .wait_for("the fair post", T, |e| {
            matches!(e, Event::Hallway { post, .. } if post.text == "on time").then_some(())
        })
        .await
        .expect("shown");
    // A DM dated an hour ahead is refused.
    let node_key = backchannel::key_of(&node).expect("ed25519");
    let dm = wire::payload_dm(&wire::DirectMessage {
        recipient: node_key.to_vec(),
        text: "early".into(),
        time_ms: wire::now_ms() + hour,
        nonce: wire::rand_nonce(),
        nick: String::new(),
    });
    let reply = peer
        .dm(node, wire::envelope(&peer.key, own, dm))
        .await
        .expect("a reply");
    assert_eq!(DmReply::decode(reply.as_slice()).expect("reply").refused, Some(1));

    let stats = lab.nodes[0].handle.stats().await.expect("stats");
    assert_eq!(stats.rejected.get(&RejectReason::FutureTime), Some(&2), "{stats:?}");
    assert_eq!(stats.rejected.get(&RejectReason::Stale), Some(&1), "{stats:?}");
    let shown = shown_posts(&mut lab.nodes[0]);
    assert!(shown.is_empty(), "{shown:?}");
    let log = lab.nodes[0]
        .handle
        .history(HistoryQuery::Room(lobby), 10)
        .await
        .expect("history");
    assert_eq!(log.len(), 1, "only the post on time is stored");
    lab.shutdown().await;
}

/// The history-sync protocol is a boundary too: every request is checked,
/// refused with a reason and counted; a page served holds only that room's
/// messages; pushed envelopes are verified like gossip; a flood is told to
/// wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_sync_requests_are_refused_counted_and_never_leak() {
    const INVALID: i32 = 2;
    const NOT_IN_ROOM: i32 = 1;
    const BUSY: i32 = 3;
    let lobby = room("lobby");
    let mut lab = Lab::start(1, LabConfig::default()).await.expect("lab");
    let node = lab.nodes[0].peer_id();
    lab.nodes[0].handle.join(&lobby).await.expect("join");
    let post = lab.nodes[0].handle.post(&lobby, "on the record").await.expect("post");
    let mut raw = RawPeer::start(64 * 1024).await;
    raw.connect(&lab.nodes[0].addr, node).await;
    // A DM the node sent: it must never come out of the sync protocol.
    let dm = lab.nodes[0].handle.send_dm(raw.peer_id, "private").await.expect("dm");

    let answer = |bytes: Result<Vec<u8>, String>| {
        SyncResponse::decode(bytes.expect("a response").as_slice()).expect("SyncResponse")
    };
    // Garbage, an unknown room, a broken reconciliation, too many ids.
    assert_eq!(answer(raw.sync(node, vec![0xff, 0x01]).await).refused, Some(INVALID));
    let elsewhere = wire::sync_request("elsewhere", 2, &[0x61]);
    assert_eq!(answer(raw.sync(node, elsewhere).await).refused, Some(NOT_IN_ROOM));
    // Not a negentropy message (no protocol version byte 0x6_).
    let broken = wire::sync_request("lobby", 2, &[0x10, 0xff, 0xff]);
    assert_eq!(answer(raw.sync(node, broken).await).refused, Some(INVALID));
    let many: Vec<Vec<u8>> = (0..300u32)
        .map(|i| [i.to_be_bytes().to_vec(), vec![0; 28]].concat())
        .collect();
    let too_many = wire::sync_request("lobby", 3, &wire::list(&many));
    assert_eq!(answer(raw.sync(node, too_many).await).refused, Some(INVALID));

    // A fetch serves the room's post, and neither the DM nor unknown ids.
    let ids = vec![post.as_bytes().to_vec(), dm.as_bytes().to_vec(), vec![7; 32]];
    let page = answer(raw.sync(node, wire::sync_request("lobby", 3, &wire::list(&ids))).await)
        .page
        .expect("a page");
    assert_eq!(page.envelopes.len(), 1);
    let served = backchannel::Signed::open(&page.envelopes[0]).expect("a valid envelope");
    assert_eq!(served.id(), post);

    // A push of a forged post and of another room's post stores nothing.
    let own = raw.public_key();
    let victim = Identity::generate().verifying_key().to_bytes();
    let forged = wire::envelope(&raw.key, victim, wire::payload_post(&wire::post("lobby", "forged")));
    let other_room = wire::envelope(&raw.key, own, wire::payload_post(&wire::post("elsewhere", "hi")));
    let push = wire::sync_request("lobby", 4, &wire::list(&[forged, other_room]));
    assert_eq!(answer(raw.sync(node, push).await).pushed, Some(0));
    let stats = lab.nodes[0].handle.stats().await.expect("stats");
    let count = |k: &str| stats.rejected.get(&k.parse().expect("a reason")).copied().unwrap_or(0);
    assert!(count("malformed") >= 2, "{stats:?}");
    assert_eq!(
        (count("bad_signature"), count("wrong_room"), count("oversize")),
        (1, 1, 1),
        "{stats:?}"
    );
    let log = lab.nodes[0]
        .handle
        .history(HistoryQuery::Room(lobby.clone()), 100)
        .await
        .expect("history");
    assert_eq!(log.len(), 1, "only the node's own post");

    // A flood of requests is told to wait, and counted.
    let mut busy = false;
    for _ in 0..700 {
        let fetch = wire::sync_request("lobby", 3, &wire::list(&[vec![9; 32]]));
        if answer(raw.sync(node, fetch).await).refused == Some(BUSY) {
            busy = true;
            break;
        }
    }
    assert!(busy, "20 requests a second, bursts of 200");
    let stats = lab.nodes[0].handle.stats().await.expect("stats");
    assert!(stats.rejected.get(&RejectReason::RateLimited).copied().unwrap_or(0) >= 1);
    lab.shutdown().await;
}
