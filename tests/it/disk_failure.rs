//! What a user sees when the disk fails: real nodes on loopback whose logs
//! are in-memory engines that fail writes or flushes on demand. Nothing is
//! acknowledged before it is durable, the node keeps running, and what the
//! failure left in memory reaches the disk with the next successful flush.

use std::collections::VecDeque;
use std::time::Duration;

use backchannel::{
    Config, Delivery, DmError, Event, HistoryQuery, Identity, MessageId, Multiaddr, Node, PeerId, PostError, Room,
    Store,
};
use backchannel::{Faults, MemoryEngine};
use tokio::sync::mpsc;
use tokio::time::{Instant, timeout_at};

use crate::support::{T, room, stats_once};

/// A node whose log is a [`MemoryEngine`] the test can make fail.
struct Peer {
    handle: backchannel::Handle,
    events: mpsc::Receiver<Event>,
    backlog: VecDeque<Event>,
    engine: MemoryEngine,
    addr: Multiaddr,
    _dir: tempfile::TempDir,
}

impl Peer {
    async fn start(seed: u8) -> Peer {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = Config::new(dir.path());
        config.listen = vec!["/ip4/127.0.0.1/tcp/0".parse().expect("valid")];
        config.mdns = false;
        let engine = MemoryEngine::new();
        let Node { handle, events } = Node::start_with_store(
            config,
            Identity::from_secret([seed; 32]),
            Store::with_engine(engine.clone()),
        )
        .await
        .expect("node starts");
        let mut peer = Peer {
            handle,
            events,
            backlog: VecDeque::new(),
            engine,
            addr: Multiaddr::empty(),
            _dir: dir,
        };
        peer.addr = peer
            .wait_for("a listen address", |e| match e {
                Event::Listening { addr } => Some(addr.clone()),
                _ => None,
            })
            .await;
        peer
    }

    fn peer_id(&self) -> PeerId {
        self.handle.peer_id()
    }

    /// Waits (at most [`T`]) for the first event `pick` takes, keeping the
    /// others for later waits and checks.
    async fn wait_for<R>(&mut self, what: &str, mut pick: impl FnMut(&Event) -> Option<R>) -> R {
        if let Some(pos) = self.backlog.iter().position(|e| pick(e).is_some()) {
            let event = self.backlog.remove(pos).expect("a valid position");
            return pick(&event).expect("picked before");
        }
        let deadline = Instant::now() + T;
        loop {
            let event = timeout_at(deadline, self.events.recv())
                .await
                .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
                .unwrap_or_else(|| panic!("the node stopped while waiting for {what}"));
            if let Some(found) = pick(&event) {
                return found;
            }
            self.backlog.push_back(event);
        }
    }

    /// Every event received so far, without waiting.
    fn drain(&mut self) -> Vec<Event> {
        let mut out: Vec<Event> = self.backlog.drain(..).collect();
        while let Ok(event) = self.events.try_recv() {
            out.push(event);
        }
        out
    }

    /// Dials `other` and waits until both see the connection.
    async fn connect(&mut self, other: &mut Peer) {
        self.handle.dial(other.addr.clone()).await.expect("dial");
        let (me, them) = (self.peer_id(), other.peer_id());
        self.wait_for("a connection", |e| {
            matches!(e, Event::PeerConnected { peer } if *peer == them).then_some(())
        })
        .await;
        other
            .wait_for("a connection", |e| {
                matches!(e, Event::PeerConnected { peer } if *peer == me).then_some(())
            })
            .await;
    }

    /// Waits until `peer` is in `room` with this node.
    async fn room_peer(&mut self, room: &Room, peer: PeerId) {
        self.wait_for("a room peer", |e| {
            matches!(e, Event::RoomPeerJoined { room: r, peer: p } if r == room && *p == peer).then_some(())
        })
        .await;
    }

    /// Whether a message survives a crash now: it was flushed.
    fn durable(&self, id: &MessageId) -> bool {
        Store::with_engine(self.engine.after_crash())
            .contains(id)
            .expect("the in-memory engine reads")
    }
}

/// Waits until `done` holds, checking every few milliseconds, for at most [`T`].
async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + T;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_whose_flush_fails_is_an_error_and_reaches_disk_with_the_next_flush() {
    let a = Peer::start(1).await;
    let lobby = room("lobby");
    a.handle.join(&lobby).await.expect("join");

    a.engine.fail_flushes(Faults::Always);
    let failed = a.handle.post(&lobby, "lost?").await;
    assert!(
        matches!(failed, Err(PostError::Flush(_))),
        "not acknowledged: {failed:?}"
    );

    // The node runs on; the post is in its log in memory (it was signed and
    // queued for the room's peers before the flush), but not on disk.
    let view = a
        .handle
        .history(HistoryQuery::Room(lobby.clone()), 10)
        .await
        .expect("the node still answers");
    assert_eq!(view.len(), 1);
    let first = view[0].message.id();
    assert!(!a.durable(&first), "a failed flush made nothing durable");

    // Once the disk works again, the next flush covers what the failed one did not.
    a.engine.heal();
    let second = a.handle.post(&lobby, "and now").await.expect("a post after recovery");
    assert!(a.durable(&first) && a.durable(&second));
    a.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dm_whose_flush_fails_is_an_error_and_is_kept_like_a_sent_one() {
    let (mut a, mut b) = (Peer::start(1).await, Peer::start(2).await);
    a.connect(&mut b).await;

    a.engine.fail_flushes(Faults::Always);
    let failed = a.handle.send_dm(b.peer_id(), "are you there?").await;
    assert!(matches!(failed, Err(DmError::Flush(_))), "not acknowledged: {failed:?}");

    // The DM was on the wire before the flush failed: it stays in the
    // outbox and the log (in memory), B acknowledges it and A says so.
    let id = b
        .wait_for("the DM", |e| match e {
            Event::Dm { id, .. } => Some(*id),
            _ => None,
        })
        .await;
    a.wait_for("delivered", |e| {
        matches!(e, Event::Delivered { id: got, .. } if *got == id).then_some(())
    })
    .await;
    assert!(!a.durable(&id), "nothing reached A's disk");

    // Recovered, A's next flush persists the DM with its receipt.
    a.engine.heal();
    a.handle
        .send_dm(b.peer_id(), "good")
        .await
        .expect("a DM after recovery");
    let kept = Store::with_engine(a.engine.after_crash())
        .get(&id)
        .expect("reads")
        .expect("durable now");
    assert_eq!(kept.delivery, Delivery::Delivered);
    a.handle.shutdown().await;
    b.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_received_dm_whose_flush_fails_is_not_acknowledged_and_is_shown_once_after_recovery() {
    let (mut a, mut b) = (Peer::start(1).await, Peer::start(2).await);
    a.connect(&mut b).await;

    b.engine.fail_flushes(Faults::Always);
    let id = a.handle.send_dm(b.peer_id(), "hello B").await.expect("A's disk works");
    let reason = a
        .wait_for("the DM queued for a retry", |e| match e {
            Event::DmQueued { id: got, reason, .. } if *got == id => Some(reason.clone()),
            _ => None,
        })
        .await;
    assert_eq!(reason, backchannel::DmFailure::RecipientStorage, "{reason}");
    assert!(
        !b.drain().iter().any(|e| matches!(e, Event::Dm { .. })),
        "B shows nothing it could not make durable"
    );
    assert!(!b.durable(&id));
    assert!(
        !a.drain().iter().any(|e| matches!(e, Event::Delivered { .. })),
        "no receipt was sent"
    );

    // B's disk recovers; A's next retry is stored, acknowledged and shown.
    b.engine.heal();
    b.wait_for("the DM", |e| {
        matches!(e, Event::Dm { id: got, .. } if *got == id).then_some(())
    })
    .await;
    a.wait_for("delivered", |e| {
        matches!(e, Event::Delivered { id: got, .. } if *got == id).then_some(())
    })
    .await;
    assert!(b.durable(&id));

    // Exactly once: a later DM arrives after anything A could still have
    // sent about the first, and B showed the first only once.
    let marker = a.handle.send_dm(b.peer_id(), "marker").await.expect("send");
    b.wait_for("the marker", |e| {
        matches!(e, Event::Dm { id: got, .. } if *got == marker).then_some(())
    })
    .await;
    assert!(
        !b.drain()
            .iter()
            .any(|e| matches!(e, Event::Dm { id: got, .. } if *got == id))
    );
    let log = b
        .handle
        .history(HistoryQuery::Peer(a.peer_id()), 10)
        .await
        .expect("history");
    assert_eq!(log.iter().filter(|m| m.message.id() == id).count(), 1);
    a.handle.shutdown().await;
    b.handle.shutdown().await;
}

/// Waits for the history sync two peers start when they meet in a room: the
/// one with the smaller peer id starts it and reports it `Synced`.
async fn join_time_sync(x: &mut Peer, y: &mut Peer) {
    let (starter, other) = if x.peer_id() < y.peer_id() {
        (x, y.peer_id())
    } else {
        (y, x.peer_id())
    };
    starter
        .wait_for("the join-time sync", |e| {
            matches!(e, Event::Synced { peer, .. } if *peer == other).then_some(())
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_received_post_whose_write_fails_is_neither_shown_nor_forwarded() {
    // A line: A - B - C. C hears A only through B.
    let (mut a, mut b, mut c) = (Peer::start(1).await, Peer::start(2).await, Peer::start(3).await);
    a.connect(&mut b).await;
    b.connect(&mut c).await;
    let lobby = room("lobby");
    for peer in [&a, &b, &c] {
        peer.handle.join(&lobby).await.expect("join");
    }
    let (ia, ib, ic) = (a.peer_id(), b.peer_id(), c.peer_id());
    a.room_peer(&lobby, ib).await;
    b.room_peer(&lobby, ia).await;
    b.room_peer(&lobby, ic).await;
    c.room_peer(&lobby, ib).await;
    // The history syncs that meeting in the room starts are over before B's
    // disk fails: one still running could fetch the lost post from A once
    // B's disk heals, and show it (rightly: sync repairs what was lost).
    join_time_sync(&mut a, &mut b).await;
    join_time_sync(&mut b, &mut c).await;

    b.engine.fail_writes(Faults::Always);
    let lost = a.handle.post(&lobby, "into the void").await.expect("A's disk works");
    until("B's write to fail", || b.engine.failed_writes() > 0).await;
    b.engine.heal();

    // The node runs on: the next post is stored, shown and forwarded. Gossip
    // keeps order on each link, so had B shown or forwarded the first post,
    // B and C would have had it before this one.
    let next = a.handle.post(&lobby, "still here").await.expect("post");
    for peer in [&mut b, &mut c] {
        peer.wait_for("the second post", crate::support::hallway(next)).await;
        assert!(
            !peer
                .drain()
                .iter()
                .any(|e| matches!(e, Event::Hallway { id, .. } if *id == lost)),
            "the post B could not log is neither shown nor forwarded"
        );
    }
    let view = b
        .handle
        .history(HistoryQuery::Room(lobby.clone()), 10)
        .await
        .expect("history");
    assert!(view.iter().all(|m| m.message.id() != lost));
    for peer in [&a, &b, &c] {
        peer.handle.shutdown().await;
    }
}

/// A received hallway post is shown before it is on disk, and the node
/// queues a flush for it on its own (`POST_FLUSH_DELAY`, 200 ms after it):
/// once the node's stats say nothing awaits a flush, the post survives a
/// crash, with nothing else happening on the node. A flush that fails is
/// tried again, so the same holds once the disk works again. (How soon the
/// flush is queued is `node::commit::tests`' to check, with the time
/// passed in: timing it here would test the machine's load.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_received_post_reaches_disk_by_itself_even_after_a_failed_flush() {
    let (mut a, mut b) = (Peer::start(1).await, Peer::start(2).await);
    a.connect(&mut b).await;
    let lobby = room("lobby");
    for peer in [&a, &b] {
        peer.handle.join(&lobby).await.expect("join");
    }
    let (ia, ib) = (a.peer_id(), b.peer_id());
    a.room_peer(&lobby, ib).await;
    b.room_peer(&lobby, ia).await;
    let flushed = |s: &backchannel::Stats| !s.awaiting_flush;

    let first = a.handle.post(&lobby, "kept").await.expect("post");
    b.wait_for("the post", crate::support::hallway(first)).await;
    stats_once(&b.handle, "B's flush of the post", T, flushed).await;
    assert!(b.durable(&first), "B said it flushed, so the post survives a crash");

    b.engine.fail_flushes(Faults::Always);
    let failed_before = b.engine.failed_flushes();
    let second = a.handle.post(&lobby, "kept too").await.expect("A's disk works");
    b.wait_for("the post", crate::support::hallway(second)).await;
    until("B's flush to fail", || b.engine.failed_flushes() > failed_before).await;
    let stats = b.handle.stats().await.expect("the node answers");
    assert!(stats.awaiting_flush, "a failed flush made nothing durable");
    assert!(!b.durable(&second));

    b.engine.heal();
    stats_once(&b.handle, "B's flush after the disk healed", T, flushed).await;
    assert!(b.durable(&second), "the post reached disk with the flush tried again");
    a.handle.shutdown().await;
    b.handle.shutdown().await;
}
