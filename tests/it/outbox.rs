//! Offline delivery: a DM to a peer that is away waits in the sender's
//! durable outbox and is delivered when the peer comes back, across restarts
//! of either side, exactly once.

use backchannel::lab::{Lab, LabConfig};
use backchannel::{Delivery, Event, HistoryQuery};

use crate::support::T;

fn quick_retries() -> LabConfig {
    LabConfig {
        seed: 5,
        tweak: |c| {
            c.retry.base = std::time::Duration::from_millis(200);
            c.retry.max = std::time::Duration::from_secs(2);
            c.redial_interval = std::time::Duration::from_millis(300);
        },
        ..LabConfig::default()
    }
}

/// Sends a DM from node 0 to node 1 while node 1 is stopped; optionally
/// restarts node 0 while it waits; then starts node 1, which dials node 0.
async fn offline_delivery(restart_sender: bool) {
    let mut lab = Lab::start(2, quick_retries()).await.expect("lab");
    let (a_addr, b) = (lab.nodes[0].addr.clone(), lab.nodes[1].peer_id());
    lab.nodes[1].stop().await;

    let id = lab.nodes[0]
        .handle
        .send_dm(b, "while you were away")
        .await
        .expect("queued");
    lab.nodes[0]
        .wait_for("queued", T, |e| {
            matches!(e, Event::DmQueued { id: got, .. } if *got == id).then_some(())
        })
        .await
        .expect("queued, visibly");
    let log = lab.nodes[0]
        .handle
        .history(HistoryQuery::Peer(b), 10)
        .await
        .expect("history");
    assert_eq!(log[0].delivery, Delivery::Queued);

    if restart_sender {
        lab.nodes[0].restart().await.expect("sender restarts");
        let waiting = lab.nodes[0].handle.outbox().await.expect("outbox");
        assert_eq!(
            waiting.iter().map(|e| e.id).collect::<Vec<_>>(),
            vec![id],
            "the outbox survives"
        );
    }

    lab.nodes[1].config.peers = vec![a_addr];
    lab.nodes[1].restart().await.expect("recipient comes back");
    lab.nodes[0]
        .wait_for("delivered", T, |e| {
            matches!(e, Event::Delivered { id: got, .. } if *got == id).then_some(())
        })
        .await
        .expect("delivered once the peer is back");
    lab.nodes[1]
        .wait_for("the DM", T, |e| {
            matches!(e, Event::Dm { id: got, .. } if *got == id).then_some(())
        })
        .await
        .expect("shown at the recipient");
    assert!(lab.nodes[0].handle.outbox().await.expect("outbox").is_empty());
    let log = lab.nodes[0]
        .handle
        .history(HistoryQuery::Peer(b), 10)
        .await
        .expect("history");
    assert_eq!(log[0].delivery, Delivery::Delivered);
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dm_to_an_offline_peer_is_delivered_when_it_comes_back() {
    offline_delivery(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_outbox_survives_a_sender_restart() {
    offline_delivery(true).await;
}
