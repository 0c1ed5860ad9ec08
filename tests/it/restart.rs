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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_peer_is_dialled_at_start_and_redialled_after_it_restarts() {
    use backchannel::lab::{Lab, LabConfig};
    let mut lab = Lab::start(1, LabConfig::default()).await.expect("lab");
    let a_addr = lab.nodes[0].addr.clone();
    let a = lab.nodes[0].peer_id();
    // Node 1 is configured with node 0 as a --peer.
    let tweak = LabConfig {
        seed: 2,
        tweak: |c| c.redial_interval = std::time::Duration::from_millis(200),
        ..LabConfig::default()
    };
    let b_index = lab.add_node(&tweak).await.expect("node");
    lab.nodes[b_index].stop().await;
    lab.nodes[b_index].config.peers = vec![a_addr];
    lab.nodes[b_index].restart().await.expect("start with --peer");
    let connected = |e: &Event| matches!(e, Event::PeerConnected { peer } if *peer == a).then_some(());
    lab.nodes[b_index]
        .wait_for("dial at start", T, connected)
        .await
        .expect("connects");

    lab.nodes[0]
        .restart()
        .await
        .expect("node 0 restarts on the same address");
    lab.nodes[b_index]
        .wait_for("lost", T, |e| {
            matches!(e, Event::PeerDisconnected { peer } if *peer == a).then_some(())
        })
        .await
        .expect("sees the loss");
    lab.nodes[b_index]
        .wait_for("redial", T, connected)
        .await
        .expect("redials");
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_data_directory_serves_one_node() {
    use backchannel::lab::{Lab, LabConfig};
    let lab = Lab::start(1, LabConfig::default()).await.expect("lab");
    let node = &lab.nodes[0];
    let second = backchannel::Node::start(node.config.clone(), node.identity.clone()).await;
    let Err(e) = second else {
        panic!("a second node on the same data directory must fail")
    };
    assert!(matches!(e, backchannel::StartError::LogInUse(_)), "{e}");
}
