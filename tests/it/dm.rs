//! Backchannel DMs: delivered only to their recipient, acknowledged by a
//! receipt signed by that recipient, logged on both sides.

use backchannel::lab::{Lab, LabConfig, Topology};
use backchannel::{Delivery, Direction, Event, HistoryQuery, Identity};

use crate::support::T;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dm_reaches_only_its_recipient_and_comes_back_delivered() {
    let mut lab = Lab::start(3, LabConfig::default()).await.expect("lab");
    lab.connect(Topology::Full, T).await.expect("connect");
    let (a, b, c) = (lab.nodes[0].peer_id(), lab.nodes[1].peer_id(), lab.nodes[2].peer_id());

    let id = lab.nodes[0].handle.send_dm(b, "psst, B").await.expect("send");
    let (from, text) = lab.nodes[1]
        .wait_for("the DM", T, |e| match e {
            Event::Dm { id: got, from, dm, .. } if *got == id => Some((*from, dm.text.clone())),
            _ => None,
        })
        .await
        .expect("B gets the DM");
    assert_eq!((from, text.as_str()), (a, "psst, B"));
    lab.nodes[0]
        .wait_for("delivered", T, |e| {
            matches!(e, Event::Delivered { id: got, to } if *got == id && *to == b).then_some(())
        })
        .await
        .expect("A sees it delivered");

    // Both logs hold it; A's says delivered. C has nothing.
    let sent = lab.nodes[0]
        .handle
        .history(HistoryQuery::Peer(b), 10)
        .await
        .expect("history");
    assert_eq!(sent.len(), 1);
    assert_eq!(
        (sent[0].direction, &sent[0].delivery),
        (Direction::Sent, &Delivery::Delivered)
    );
    let got = lab.nodes[1]
        .handle
        .history(HistoryQuery::Peer(a), 10)
        .await
        .expect("history");
    assert_eq!((got.len(), got[0].direction), (1, Direction::Received));
    assert!(
        lab.nodes[2]
            .handle
            .history(HistoryQuery::Peer(a), 10)
            .await
            .expect("history")
            .is_empty()
    );
    assert!(!lab.nodes[2].drain().iter().any(|e| matches!(e, Event::Dm { .. })));
    let _ = c;
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_text_twice_is_two_messages() {
    let mut lab = Lab::start(2, LabConfig::default()).await.expect("lab");
    lab.connect(Topology::Full, T).await.expect("connect");
    let b = lab.nodes[1].peer_id();
    let first = lab.nodes[0].handle.send_dm(b, "same").await.expect("send");
    let second = lab.nodes[0].handle.send_dm(b, "same").await.expect("send");
    assert_ne!(first, second);
    for id in [first, second] {
        lab.nodes[1]
            .wait_for("DM", T, |e| {
                matches!(e, Event::Dm { id: got, .. } if *got == id).then_some(())
            })
            .await
            .expect("both arrive");
    }
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dm_to_an_unreachable_peer_is_queued_then_expires_visibly() {
    let config = LabConfig {
        seed: 1,
        tweak: |c| {
            c.retry.base = std::time::Duration::from_millis(100);
            c.retry.max = std::time::Duration::from_millis(200);
            c.retry.expiry = std::time::Duration::from_millis(1500);
        },
        ..LabConfig::default()
    };
    let mut lab = Lab::start(1, config).await.expect("lab");
    let nobody = Identity::generate().peer_id();
    let id = lab.nodes[0]
        .handle
        .send_dm(nobody, "hello?")
        .await
        .expect("logged and queued");
    let reason = lab.nodes[0]
        .wait_for("queued", T, |e| match e {
            Event::DmQueued { id: got, reason, .. } if *got == id => Some(reason.clone()),
            _ => None,
        })
        .await
        .expect("the failed attempt is an event");
    assert!(reason.is_retried(), "{reason}");
    assert_eq!(lab.nodes[0].handle.outbox().await.expect("outbox").len(), 1);
    let failed = lab.nodes[0]
        .wait_for("expiry", T, |e| match e {
            Event::DmFailed { id: got, reason, .. } if *got == id => Some(reason.clone()),
            _ => None,
        })
        .await
        .expect("expiry is shown, never silent");
    assert!(matches!(failed, backchannel::DmFailure::Expired { .. }), "{failed}");
    assert!(lab.nodes[0].handle.outbox().await.expect("outbox").is_empty());
    let log = lab.nodes[0]
        .handle
        .history(HistoryQuery::Peer(nobody), 10)
        .await
        .expect("history");
    assert!(matches!(log[0].delivery, Delivery::Failed(_)), "{:?}", log[0].delivery);
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_from_the_api_are_errors_not_panics() {
    let lab = Lab::start(1, LabConfig::default()).await.expect("lab");
    let h = &lab.nodes[0].handle;
    let me = h.peer_id();
    assert!(h.send_dm(me, "to myself").await.is_err());
    let other = Identity::generate().peer_id();
    assert!(h.send_dm(other, "").await.is_err());
    assert!(h.send_dm(other, &"x".repeat(4097)).await.is_err());
    let lobby = crate::support::room("lobby");
    assert!(h.post(&lobby, "not joined").await.is_err());
    // The node is still fine.
    h.join(&lobby).await.expect("join");
    h.post(&lobby, "ok").await.expect("post");
}
