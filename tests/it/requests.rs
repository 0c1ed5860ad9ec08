//! The requests inbox: DMs from people who are not contacts land in
//! `requests`; accepting makes them conversation, declining deletes them, and
//! with requests off the sender is told "not accepted" and nothing is stored.

use backchannel::lab::{Lab, LabConfig, Topology};
use backchannel::{Event, HistoryQuery, MessageId};

use crate::support::T;

fn dm_event(id: MessageId) -> impl FnMut(&Event) -> Option<bool> {
    move |e| match e {
        Event::Dm { id: got, request, .. } if *got == id => Some(*request),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_land_apart_and_are_accepted_declined_or_refused() {
    let mut lab = Lab::start(4, LabConfig::default()).await.expect("lab");
    lab.connect(Topology::Full, T).await.expect("connect");
    let (a, b, c, d) = (
        lab.nodes[0].peer_id(),
        lab.nodes[1].peer_id(),
        lab.nodes[2].peer_id(),
        lab.nodes[3].peer_id(),
    );

    // B writes to A out of the blue: a request.
    let first = lab.nodes[1]
        .handle
        .send_dm(a, "hi, we met in the lobby")
        .await
        .expect("send");
    assert!(
        lab.nodes[0]
            .wait_for("B's DM", T, dm_event(first))
            .await
            .expect("arrives"),
        "a request"
    );
    let requests = lab.nodes[0].handle.requests().await.expect("requests");
    assert_eq!(requests.iter().map(|r| r.peer).collect::<Vec<_>>(), vec![b]);
    assert_eq!(requests[0].last, "hi, we met in the lobby");

    // A accepts with a petname: B's next DM is conversation.
    lab.nodes[0].handle.set_contact(b, "Bee").await.expect("accept");
    assert_eq!(
        lab.nodes[0].handle.contacts().await.expect("contacts"),
        vec![(b, "Bee".to_string())]
    );
    let second = lab.nodes[1].handle.send_dm(a, "thanks").await.expect("send");
    assert!(
        !lab.nodes[0]
            .wait_for("B again", T, dm_event(second))
            .await
            .expect("arrives"),
        "a conversation"
    );
    assert!(lab.nodes[0].handle.requests().await.expect("requests").is_empty());

    // C's request is declined: deleted.
    let from_c = lab.nodes[2].handle.send_dm(a, "buy my course").await.expect("send");
    lab.nodes[0]
        .wait_for("C's DM", T, dm_event(from_c))
        .await
        .expect("arrives");
    assert_eq!(lab.nodes[0].handle.decline(c).await.expect("decline"), 1);
    assert!(
        lab.nodes[0]
            .handle
            .history(HistoryQuery::Peer(c), 10)
            .await
            .expect("h")
            .is_empty()
    );
    assert!(
        lab.nodes[0].handle.decline(b).await.is_err(),
        "a contact is not a request"
    );

    // Requests off: D is told "not accepted"; nothing is stored at A.
    lab.nodes[0].handle.accept_requests(false).await.expect("off");
    let from_d = lab.nodes[3].handle.send_dm(a, "hello?").await.expect("send");
    let reason = lab.nodes[3]
        .wait_for("refusal", T, |e| match e {
            Event::DmFailed { id, reason, .. } if *id == from_d => Some(reason.clone()),
            _ => None,
        })
        .await
        .expect("D learns it");
    assert_eq!(reason, backchannel::DmFailure::NotAccepted, "{reason}");
    assert!(
        lab.nodes[0]
            .handle
            .history(HistoryQuery::Peer(d), 10)
            .await
            .expect("h")
            .is_empty()
    );
    assert_eq!(lab.nodes[0].handle.stats().await.expect("stats").requests_refused, 1);
    // Contacts still get through, and so does anyone A wrote to first.
    let third = lab.nodes[1].handle.send_dm(a, "still here").await.expect("send");
    lab.nodes[0]
        .wait_for("B", T, dm_event(third))
        .await
        .expect("a contact gets through");
    lab.nodes[0]
        .handle
        .send_dm(c, "sorry, who are you?")
        .await
        .expect("send");
    let reply = lab.nodes[2].handle.send_dm(a, "the course guy").await.expect("send");
    assert!(
        !lab.nodes[0]
            .wait_for("C's reply", T, dm_event(reply))
            .await
            .expect("arrives"),
        "a conversation"
    );
    assert!(
        !lab.nodes[0]
            .drain()
            .iter()
            .any(|e| matches!(e, Event::Dm { from, .. } if *from == d))
    );

    // The setting and the contacts survive a restart.
    lab.nodes[0].restart().await.expect("restart");
    let contacts = lab.nodes[0].handle.contacts().await.expect("contacts");
    assert!(contacts.contains(&(b, "Bee".to_string())) && contacts.iter().any(|(p, _)| *p == c));
    lab.shutdown().await;
}
