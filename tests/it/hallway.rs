//! Hallway chat: every participant of a room sees every post exactly once.

use backchannel::lab::{Lab, LabConfig, Topology};
use backchannel::{Event, HistoryQuery};

use crate::support::{T, hallway, mesh, room, stats_once};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_in_a_room_receives_every_post_once() {
    let lobby = room("lobby");
    // A line, so posts must be forwarded by the nodes in between.
    let mut lab = mesh(4, Topology::Line, &lobby).await;
    let mut ids = Vec::new();
    for (i, node) in lab.nodes.iter().enumerate() {
        ids.push(
            node.handle
                .post(&lobby, &format!("hello from {i}"))
                .await
                .expect("post"),
        );
    }
    for (i, node) in lab.nodes.iter_mut().enumerate() {
        for (j, id) in ids.iter().enumerate() {
            if i != j {
                let text = node.wait_for("a post", T, hallway(*id)).await.expect("post arrives");
                assert_eq!(text, format!("hello from {j}"));
            }
        }
    }
    // Nothing is shown twice, and each log holds all four posts in the room.
    for node in lab.nodes.iter_mut() {
        let shown = node
            .drain()
            .iter()
            .filter(|e| matches!(e, Event::Hallway { .. }))
            .count();
        assert_eq!(shown, 0, "node {} showed a post twice", node.index);
        let log = node
            .handle
            .history(HistoryQuery::Room(lobby.clone()), 100)
            .await
            .expect("history");
        let mut logged: Vec<_> = log.iter().map(|m| m.message.id()).collect();
        logged.sort();
        let mut expected = ids.clone();
        expected.sort();
        assert_eq!(logged, expected, "node {}", node.index);
    }
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_made_before_the_room_has_peers_is_sent_once_it_has() {
    let lobby = room("lobby");
    let mut lab = Lab::start(2, LabConfig::default()).await.expect("lab");
    lab.nodes[0].handle.join(&lobby).await.expect("join");
    let early = lab.nodes[0]
        .handle
        .post(&lobby, "anyone here?")
        .await
        .expect("posting alone is fine");
    let rooms = lab.nodes[0].handle.rooms().await.expect("rooms");
    assert_eq!(rooms[0].unsent, 1, "the post waits for peers");

    lab.nodes[1].handle.join(&lobby).await.expect("join");
    lab.connect(Topology::Full, T).await.expect("connect");
    let text = lab.nodes[1]
        .wait_for("the early post", T, hallway(early))
        .await
        .expect("delivered");
    assert_eq!(text, "anyone here?");
    lab.nodes[0]
        .wait_for("post sent", T, |e| {
            matches!(e, Event::PostSent { id, .. } if *id == early).then_some(())
        })
        .await
        .expect("sender sees it sent");
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_are_separate() {
    let (a, b) = (room("a"), room("b"));
    let mut lab = mesh(3, Topology::Full, &a).await;
    // Node 2 is in both rooms; nodes 0 and 1 only in room a.
    lab.nodes[2].handle.join(&b).await.expect("join b");
    let in_b = lab.nodes[2].handle.post(&b, "only b").await.expect("post b");
    let in_a = lab.nodes[2].handle.post(&a, "in a").await.expect("post a");
    // Posts travel in order from one publisher, so once "in a" arrived the
    // earlier post to room b would have arrived too had it been forwarded.
    for i in 0..2 {
        lab.nodes[i]
            .wait_for("room a post", T, hallway(in_a))
            .await
            .expect("a post");
        let log = lab.nodes[i]
            .handle
            .history(HistoryQuery::Room(b.clone()), 10)
            .await
            .expect("history");
        assert!(log.is_empty(), "node {i} is not in room b");
        assert!(
            !lab.nodes[i]
                .drain()
                .iter()
                .any(|e| matches!(e, Event::Hallway { id, .. } if *id == in_b))
        );
    }
    lab.shutdown().await;
}

/// Waits for the post `id` on a room's own stream.
async fn on_room_stream(stream: &mut tokio::sync::mpsc::Receiver<Event>, id: backchannel::MessageId) -> String {
    let found = tokio::time::timeout(T, async {
        while let Some(event) = stream.recv().await {
            assert_eq!(event.room().map(|r| r.as_str()), Some("lobby"), "{event:?}");
            if let Some(text) = hallway(id)(&event) {
                return Some(text);
            }
        }
        None
    })
    .await;
    found
        .expect("the post reaches the room's stream in time")
        .expect("the stream stays open")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_handle_carries_the_rooms_events_apart_from_the_node_stream() {
    let lobby = room("lobby");
    let mut lab = mesh(2, Topology::Line, &lobby).await;
    let peer = lab.nodes[0].handle.peer_id();
    // Node 0 opens the room's own stream; node 1 posts.
    let room0 = lab.nodes[0].handle.join(&lobby).await.expect("joined already: fine");
    assert_eq!(room0.room(), &lobby);
    let mut stream = room0.subscribe().await.expect("subscribe");
    let first = lab.nodes[1]
        .handle
        .post(&lobby, "to the room's stream")
        .await
        .expect("post");
    assert_eq!(on_room_stream(&mut stream, first).await, "to the room's stream");

    // The node's stream did not get the post: a DM sent after it arrives
    // there, with no hallway event before it.
    lab.nodes[1]
        .handle
        .send_dm(peer, "to the node's stream")
        .await
        .expect("dm");
    lab.nodes[0]
        .wait_for("the DM", T, |e| matches!(e, Event::Dm { .. }).then_some(()))
        .await
        .expect("DM on the node stream");
    let leaked: Vec<Event> = lab.nodes[0]
        .drain()
        .into_iter()
        .filter(|e| matches!(e, Event::Hallway { .. }))
        .collect();
    assert!(leaked.is_empty(), "room events leaked to the node stream: {leaked:?}");

    // With the room's stream dropped, its events go to the node's stream again.
    drop(stream);
    let second = lab.nodes[1]
        .handle
        .post(&lobby, "back to the node")
        .await
        .expect("post");
    let text = lab.nodes[0]
        .wait_for("the post", T, hallway(second))
        .await
        .expect("on the node stream");
    assert_eq!(text, "back to the node");

    // A room handle's operations name its room; leaving ends its streams.
    let view = room0.view(10).await.expect("view");
    assert_eq!(
        view.iter().map(|p| p.text.as_str()).collect::<Vec<_>>(),
        ["to the room's stream", "back to the node"]
    );
    let mut stream = room0.subscribe().await.expect("subscribe again");
    room0.clone().leave().await.expect("leave");
    let end = tokio::time::timeout(T, async { while stream.recv().await.is_some() {} }).await;
    assert!(end.is_ok(), "leaving the room ends its stream");
    assert!(
        matches!(room0.subscribe().await, Err(backchannel::NodeError::NotJoined(_))),
        "a left room has no stream"
    );
    assert!(room0.footprint().await.expect("footprint").is_empty());
    lab.shutdown().await;
}

/// An application that stops reading a stream loses the events beyond its
/// capacity (a room's stream 4,096, the node's 8,192), counted in
/// `Stats::events_dropped`: never the messages (they are in the log) and
/// never the node (the loop does not wait for the reader).
/// docs/ARCHITECTURE.md, "Bounded everywhere".
async fn a_stalled_reader(room_stream: bool) {
    let capacity = if room_stream { 4_096 } else { 8_192 };
    let posts = capacity + 400;
    let lobby = room("lobby");
    // Limits far above the test's pace: one author posts thousands at once.
    let config = LabConfig {
        limits: Some(backchannel::Limits::unlimited()),
        ..LabConfig::default()
    };
    let mut lab = Lab::start(2, config).await.expect("lab");
    lab.connect_edges(&[(0, 1)], T).await.expect("connect");
    lab.join_all(&lobby, &[(0, 1)], T).await.expect("join");
    let room0 = lab.nodes[0].handle.join(&lobby).await.expect("joined already: fine");
    let mut stalled = if room_stream {
        room0.subscribe().await.expect("subscribe")
    } else {
        lab.nodes[0].take_events()
    };
    for i in 0..posts {
        lab.nodes[1]
            .handle
            .post(&lobby, &format!("line {i}"))
            .await
            .expect("post");
    }
    // The node keeps answering while nobody reads the stream.
    let stats = stats_once(&lab.nodes[0].handle, "every post received", T * 3, |s| {
        s.hallway_received >= posts as u64
    })
    .await;
    let mut queued = 0;
    while stalled.try_recv().is_ok() {
        queued += 1;
    }
    assert_eq!(queued, capacity, "the stream held what it could");
    assert!(
        stats.events_dropped >= (posts - capacity) as u64,
        "{} events dropped: {stats:?}",
        stats.events_dropped
    );
    let logged = lab.nodes[0]
        .handle
        .history(HistoryQuery::Room(lobby.clone()), posts * 2)
        .await
        .expect("history");
    assert_eq!(logged.len(), posts, "every post is in the log");
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_stalls_loses_counted_events_never_the_log_nor_the_node() {
    a_stalled_reader(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_application_that_stops_reading_the_node_stream_loses_counted_events_only() {
    a_stalled_reader(false).await;
}
