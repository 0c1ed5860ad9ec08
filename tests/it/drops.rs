//! What gossipsub drops before the application sees it is counted too, by
//! reason and by the peer that sent it (issue 15): a message carrying a
//! gossipsub signature, an oversize message, and gossip from a graylisted
//! peer. Real libp2p peers send each kind to a real node on loopback.

use backchannel::lab::{Lab, LabConfig, LabNode};
use backchannel::protocol::{MAX_REPLY_BYTES, MAX_SYNC_MESSAGE_BYTES};
use backchannel::{Event, PeerId, RejectReason};

use crate::support::raw::RawPeer;
use crate::support::{T, room, wire};

/// Waits until `node` rejected something from `from` for `reason`.
async fn rejected(node: &mut LabNode, from: PeerId, reason: RejectReason) {
    node.wait_for(reason.as_str(), T, |e| {
        matches!(e, Event::Rejected { from: f, reason: r } if *f == from && *r == reason).then_some(())
    })
    .await
    .unwrap_or_else(|_| panic!("{reason} from {from} is counted"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_gossipsub_drops_unseen_is_counted_by_reason_and_peer() {
    let lobby = room("lobby");
    let mut lab = Lab::start(1, LabConfig::default()).await.expect("lab");
    lab.nodes[0].handle.join(&lobby).await.expect("join");
    let node = lab.nodes[0].peer_id();
    let addr = lab.nodes[0].addr.clone();

    // js-libp2p's default: gossipsub signs, with a seqno and a source.
    let mut signer = RawPeer::start_signed(64 * 1024).await;
    let mut big = RawPeer::start(64 * 1024).await;
    let mut attacker = RawPeer::start(64 * 1024).await;
    for raw in [&mut signer, &mut big, &mut attacker] {
        raw.connect(&addr, node).await;
        raw.join("lobby", node).await;
    }
    for peer in [signer.peer_id, big.peer_id, attacker.peer_id] {
        lab.nodes[0]
            .wait_for("room peer", T, |e| {
                matches!(e, Event::RoomPeerJoined { peer: p, .. } if *p == peer).then_some(())
            })
            .await
            .expect("the node sees the raw peers in the room");
    }
    let post = |raw: &RawPeer, text: &str| {
        wire::envelope(
            &raw.key,
            raw.public_key(),
            wire::payload_post(&wire::post("lobby", text)),
        )
    };

    // A valid post, but in a message gossipsub signed.
    signer.publish("lobby", post(&signer, "signed twice")).await;
    rejected(&mut lab.nodes[0], signer.peer_id, RejectReason::GossipSigned).await;

    // A message over the envelope limit, within gossipsub's frame limit.
    big.publish("lobby", vec![0x0a; 20_000]).await;
    rejected(&mut lab.nodes[0], big.peer_id, RejectReason::Oversize).await;

    // Three malformed messages put the attacker below the graylist; from
    // then on gossipsub ignores what it sends, a valid post included.
    for i in 0..3u8 {
        attacker.publish("lobby", vec![0xff, 0xfe, i]).await;
        rejected(&mut lab.nodes[0], attacker.peer_id, RejectReason::Malformed).await;
    }
    attacker.publish("lobby", post(&attacker, "after the graylist")).await;
    rejected(&mut lab.nodes[0], attacker.peer_id, RejectReason::Graylisted).await;

    let stats = lab.nodes[0].handle.stats().await.expect("stats");
    for reason in ["gossip_signed", "oversize", "graylisted"] {
        assert!(
            stats
                .rejected
                .get(&reason.parse().expect("a reason"))
                .is_some_and(|n| *n >= 1),
            "{reason}: {stats:?}"
        );
    }
    for (peer, at_least) in [(signer.peer_id, 1), (big.peer_id, 1), (attacker.peer_id, 4)] {
        let n = stats.rejected_by_peer.get(&peer.to_string()).copied().unwrap_or(0);
        assert!(n >= at_least, "{peer}: {n} rejections counted");
    }
    let shown = lab.nodes[0]
        .drain()
        .into_iter()
        .any(|e| matches!(e, Event::Hallway { .. }));
    assert!(!shown, "nothing dropped is shown");
}

/// An oversize answer to a DM or a sync request fails the request, and the
/// node counts it against the peer that sent it (the connection names it).
/// An oversize *request* is counted by reason only: request_response
/// reports nothing the peer could be read from (docs/SECURITY.md).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_dm_and_sync_answers_are_counted_against_their_sender() {
    let lobby = room("lobby");
    let mut lab = Lab::start(1, LabConfig::default()).await.expect("lab");
    lab.nodes[0].handle.join(&lobby).await.expect("join");
    let node = lab.nodes[0].peer_id();
    let addr = lab.nodes[0].addr.clone();

    // A DM recipient whose reply is one byte over the reply limit.
    let mut recipient = RawPeer::start(64 * 1024).await;
    *recipient.answer.lock().expect("answer") = vec![0x0a; MAX_REPLY_BYTES + 1];
    recipient.connect(&addr, node).await;
    lab.nodes[0]
        .handle
        .send_dm(recipient.peer_id, "hello")
        .await
        .expect("send");
    recipient
        .wait(|e| matches!(e, crate::support::raw::RawEvent::Request(_)))
        .await;
    rejected(&mut lab.nodes[0], recipient.peer_id, RejectReason::Oversize).await;

    // A room peer whose answer to a sync request is over the sync limit.
    let mut syncer = RawPeer::start_answering_sync(64 * 1024, vec![0x0a; MAX_SYNC_MESSAGE_BYTES + 1]).await;
    syncer.connect(&addr, node).await;
    syncer.join("lobby", node).await;
    lab.nodes[0]
        .wait_for("room peer", T, |e| {
            matches!(e, Event::RoomPeerJoined { peer: p, .. } if *p == syncer.peer_id).then_some(())
        })
        .await
        .expect("the node sees the raw peer in the room");
    lab.nodes[0].handle.sync(&lobby).await.expect("sync");
    rejected(&mut lab.nodes[0], syncer.peer_id, RejectReason::Oversize).await;

    let stats = lab.nodes[0].handle.stats().await.expect("stats");
    for peer in [recipient.peer_id, syncer.peer_id] {
        let n = stats.rejected_by_peer.get(&peer.to_string()).copied().unwrap_or(0);
        assert!(n >= 1, "{peer}: {n} rejections counted");
    }
    assert!(
        stats.rejected.get(&RejectReason::Oversize).is_some_and(|n| *n >= 2),
        "{stats:?}"
    );
}
