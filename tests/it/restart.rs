//! The log survives restarts, and a restarted node rejoins the conversation.

use backchannel::lab::Topology;
use backchannel::{Delivery, Direction, Event, HistoryQuery};

use crate::support::{T, hallway, mesh, room};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_is_intact_after_a_restart() {
    let lobby = room("lobby");
    let mut lab = mesh(2, Topology::Full, &lobby).await;
    let (a, b) = (lab.nodes[0].peer_id(), lab.nodes[1].peer_id());
    let p0 = lab.nodes[0].handle.post(&lobby, "before restart").await.expect("post");
    let p1 = lab.nodes[1].handle.post(&lobby, "reply").await.expect("post");
    lab.nodes[1].wait_for("post", T, hallway(p0)).await.expect("arrives");
    lab.nodes[0].wait_for("post", T, hallway(p1)).await.expect("arrives");
    let dm = lab.nodes[0].handle.send_dm(b, "see you after").await.expect("dm");
    lab.nodes[0]
        .wait_for("delivered", T, |e| {
            matches!(e, Event::Delivered { id, .. } if *id == dm).then_some(())
        })
        .await
        .expect("delivered");

    let before_room = ids(&lab.nodes[1]
        .handle
        .history(HistoryQuery::Room(lobby.clone()), 100)
        .await
        .expect("h"));
    lab.nodes[1].restart().await.expect("restart");
    let after_room = ids(&lab.nodes[1]
        .handle
        .history(HistoryQuery::Room(lobby.clone()), 100)
        .await
        .expect("h"));
    assert_eq!(before_room, after_room);
    assert_eq!(after_room.len(), 2);
    assert!(after_room.contains(&p0) && after_room.contains(&p1));
    let conv = lab.nodes[1]
        .handle
        .history(HistoryQuery::Peer(a), 100)
        .await
        .expect("h");
    assert_eq!(ids(&conv), vec![dm]);
    assert_eq!(conv[0].direction, Direction::Received);

    lab.nodes[0].restart().await.expect("restart");
    let sent = lab.nodes[0]
        .handle
        .history(HistoryQuery::Peer(b), 100)
        .await
        .expect("h");
    assert_eq!(sent[0].delivery, Delivery::Delivered, "delivery state survives restart");

    // Both restarted; they reconnect and talk again.
    lab.nodes[0].handle.join(&lobby).await.expect("join");
    lab.nodes[1].handle.join(&lobby).await.expect("join");
    lab.connect(Topology::Full, T).await.expect("reconnect");
    let later = lab.nodes[0].handle.post(&lobby, "after restart").await.expect("post");
    lab.nodes[1]
        .wait_for("post", T, hallway(later))
        .await
        .expect("arrives after restart");
    lab.shutdown().await;
}

fn ids(log: &[backchannel::LoggedMessage]) -> Vec<backchannel::MessageId> {
    log.iter().map(|m| m.message.id()).collect()
}
