//! Per-connection stream limits: a peer that opens more DM streams than a
//! node takes at once, and holds them open, pins no more than the limit;
//! the node resets the rest at once, answers the ones it took, and keeps
//! serving. The node cannot count the streams it resets: libp2p's
//! request_response drops them with a log line and reports no event
//! (docs/ARCHITECTURE.md, "Bounded everywhere").

use backchannel::lab::{Lab, LabConfig, Topology};
use backchannel::{Event, RejectReason};

use crate::support::T;
use crate::support::raw::HoldingPeer;

/// `MAX_DM_STREAMS` in src/node/behaviour.rs: concurrent DM streams a node
/// takes on one connection.
const MAX_DM_STREAMS: usize = 128;

/// Streams beyond the limit in the test.
const EXCESS: usize = 12;

/// The attacker's streams wait for the node's DM timeout (10 s) before the
/// node gives up on them, so every step here waits for an event well
/// before it: the resets come at once, and the honest DM takes a round trip.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dm_streams_beyond_the_limit_are_refused_and_the_node_keeps_serving() {
    let mut lab = Lab::start(2, LabConfig::default()).await.expect("lab");
    lab.connect(Topology::Full, T).await.expect("connect");
    let target = lab.nodes[0].peer_id();
    let mut attacker = HoldingPeer::start().await;
    attacker.connect(&lab.nodes[0].addr).await;

    // Every stream sends a byte and waits: the node holds each open for the
    // rest of its request (until its DM timeout), or resets it.
    let mut answers = Vec::new();
    for _ in 0..MAX_DM_STREAMS + EXCESS {
        answers.push(attacker.request(target, b"not a DM".to_vec()).await);
    }
    for _ in 0..EXCESS {
        attacker.refused().await;
    }

    // With its DM streams from the attacker full, the node serves others.
    let id = lab.nodes[1].handle.send_dm(target, "still there?").await.expect("send");
    lab.nodes[0]
        .wait_for("the honest DM", T, |e| {
            matches!(e, Event::Dm { id: got, .. } if *got == id).then_some(())
        })
        .await
        .expect("the target shows the honest DM");
    lab.nodes[1]
        .wait_for("delivered", T, |e| {
            matches!(e, Event::Delivered { id: got, .. } if *got == id).then_some(())
        })
        .await
        .expect("the honest DM is acknowledged");
    assert_eq!(attacker.refused_now(), 0, "the node refused only the excess");

    // Released, the streams the node took are answered (each a refusal of
    // what is not a DM, counted), the refused ones failed.
    attacker.release();
    let (mut answered, mut failed) = (0, 0);
    for answer in answers {
        match answer.await.expect("the holding peer answers") {
            Ok(reply) => {
                assert!(!reply.is_empty(), "a refusal is an answer");
                answered += 1;
            }
            Err(_) => failed += 1,
        }
    }
    assert_eq!((answered, failed), (MAX_DM_STREAMS, EXCESS));
    let stats = lab.nodes[0].handle.stats().await.expect("the node answers");
    assert_eq!(
        stats.rejected_by_peer.get(&attacker.peer_id.to_string()).copied(),
        Some(MAX_DM_STREAMS as u64),
        "every request the node read is counted: {stats:?}"
    );
    assert!(
        stats
            .rejected
            .get(&RejectReason::Malformed)
            .is_some_and(|n| *n >= MAX_DM_STREAMS as u64)
    );

    // The limit is on streams at once: the same connection is served again.
    let again = attacker.request(target, b"again".to_vec()).await;
    assert!(
        again.await.expect("answers").is_ok(),
        "a stream after the flood is answered"
    );
    lab.shutdown().await;
}
