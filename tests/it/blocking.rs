//! Blocking: a blocked peer's posts (whoever forwards them) and DMs never
//! appear, its connections are refused, the block survives a restart, and
//! unblocking restores new messages.

use backchannel::lab::{Lab, LabConfig, Topology};
use backchannel::{Event, HistoryQuery};

use crate::support::{T, hallway, room};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_peers_messages_never_appear() {
    let lobby = room("lobby");
    let config = LabConfig {
        seed: 9,
        tweak: |c| {
            c.retry.base = std::time::Duration::from_millis(200);
            c.retry.max = std::time::Duration::from_millis(500);
        },
        ..LabConfig::default()
    };
    let mut lab = Lab::start(3, config).await.expect("lab");
    // A line 0 - 1 - 2: node 2's posts reach node 0 only through node 1.
    lab.connect(Topology::Line, T).await.expect("connect");
    lab.join_all(&lobby, &Topology::Line.edges(3, 0), T)
        .await
        .expect("mesh");
    let (n0, n2) = (lab.nodes[0].peer_id(), lab.nodes[2].peer_id());
    lab.nodes[0].handle.block_peer(n2).await.expect("block");
    lab.nodes[1].drain(); // only events after node 0's restart count below
    lab.nodes[0].restart().await.expect("the block survives a restart");
    lab.nodes[0].handle.join(&lobby).await.expect("join");
    let a1 = lab.nodes[1].addr.clone();
    lab.nodes[0].handle.dial(a1).await.expect("dial");
    let n1 = lab.nodes[1].peer_id();
    lab.nodes[0]
        .wait_for("node 1 in the room", T, |e| {
            matches!(e, Event::RoomPeerJoined { peer, .. } if *peer == n1).then_some(())
        })
        .await
        .expect("rejoined");
    // Node 1 grafts node 0 into its mesh when it sees node 0 subscribe, so
    // from then on it forwards node 2's posts to node 0.
    lab.nodes[1]
        .wait_for("node 0 back in the room", T, |e| {
            matches!(e, Event::RoomPeerJoined { peer, .. } if *peer == n0).then_some(())
        })
        .await
        .expect("node 1 sees node 0");

    let blocked_post = lab.nodes[2]
        .handle
        .post(&lobby, "from the blocked one")
        .await
        .expect("post");
    lab.nodes[1]
        .wait_for("post", T, hallway(blocked_post))
        .await
        .expect("node 1 sees it");
    // Node 1 forwards in order, so once its own later post reached node 0,
    // the blocked post had reached node 0 too, and was dropped there.
    let control = lab.nodes[1].handle.post(&lobby, "control").await.expect("post");
    lab.nodes[0]
        .wait_for("control post", T, hallway(control))
        .await
        .expect("node 0 gets the control");
    // Node 2 knows where node 0 is, dials it, and is refused.
    let a0 = lab.nodes[0].addr.clone();
    lab.nodes[2].handle.add_peer_address(n0, a0).await.expect("address");
    let dm = lab.nodes[2].handle.send_dm(n0, "let me in").await.expect("queued");
    lab.nodes[2]
        .wait_for("refused or queued", T, |e| match e {
            Event::DmQueued { id, .. } | Event::DmFailed { id, .. } if *id == dm => Some(()),
            _ => None,
        })
        .await
        .expect("the DM does not get through");

    let shown: Vec<_> = lab.nodes[0]
        .drain()
        .into_iter()
        .filter(|e| matches!(e, Event::Hallway { from, .. } | Event::Dm { from, .. } if *from == n2))
        .collect();
    assert!(shown.is_empty(), "{shown:?}");
    let log = lab.nodes[0]
        .handle
        .history(HistoryQuery::Room(lobby.clone()), 100)
        .await
        .expect("history");
    assert!(
        log.iter().all(|m| m.message.author() != n2),
        "nothing from the blocked peer is stored"
    );
    let stats = lab.nodes[0].handle.stats().await.expect("stats");
    assert!(stats.dropped_blocked >= 1, "{stats:?}");
    assert!(
        !lab.nodes[0]
            .handle
            .peers()
            .await
            .expect("peers")
            .iter()
            .any(|p| p.peer == n2)
    );

    // Unblocked, new posts from node 2 appear again.
    lab.nodes[0].handle.unblock_peer(n2).await.expect("unblock");
    let after = lab.nodes[2].handle.post(&lobby, "hello again").await.expect("post");
    lab.nodes[0]
        .wait_for("post after unblock", T, hallway(after))
        .await
        .expect("shown");
    lab.shutdown().await;
}
