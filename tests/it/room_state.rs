//! Room state that stays cheap and leaves nothing behind (issue 15): nodes
//! that receive the same posts and operations in different orders show the
//! same room, and a node that leaves a room keeps nothing about it.

use backchannel::lab::{Lab, LabConfig, Topology};
use backchannel::{Body, Event, HallwayPost, Identity, MessageId, PeerId, Room, Signed};
use backchannel::{ChatMode, QuestionState, Reaction, Role, RoomAction, RoomOp};

use crate::support::raw::RawPeer;
use crate::support::{T, wire};

/// Posts and operations of the convergence test.
const POSTS: usize = 60;
const OPS: usize = 600;
/// Envelopes per pushed page: a page is applied in room order, so late
/// arrivals come from the order of the pages.
const PAGE: usize = 15;

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64
}

/// A seeded xorshift, so that every run sends the same orders.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// A hosted room's history, signed for real: posts by ten participants,
/// then reactions, edits, question marks and deletes among grants,
/// revocations, removals and hallway modes by the host and a moderator, all
/// half an hour old (history, outside the live window).
fn history(host: &Identity, people: &[Identity], room: &Room) -> Vec<Signed> {
    // Every author stamped as a node stamps its own (docs/PROTOCOL.md,
    // "Stamps"): eleven authors new to the room come in one push.
    let bits = backchannel::Limits::default().stamp_bits;
    let stamps: std::collections::HashMap<_, _> = people
        .iter()
        .chain([host])
        .map(|who| {
            let key = backchannel::key_of(&who.peer_id()).expect("ed25519");
            (
                who.peer_id(),
                backchannel::protocol::mint_stamp(room.as_str(), &key, bits),
            )
        })
        .collect();
    let stamp = |who: &Identity| stamps.get(&who.peer_id()).copied();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let start = now_ms() - 30 * 60 * 1000;
    let mut out = Vec::new();
    let mut posts: Vec<MessageId> = Vec::new();
    for i in 0..POSTS {
        let author = &people[rng.below(people.len())];
        let clock = start + 10 * i as u64;
        let post = Signed::sign(
            author,
            Body::Hallway(HallwayPost {
                room: room.clone(),
                text: format!("post {i}"),
                time_ms: clock,
                nick: None,
                clock,
                reply_to: None,
                mentions: Vec::new(),
                question: i % 5 == 0,
                stamp: stamp(author),
            }),
        );
        posts.push(post.id());
        out.push(post);
    }
    let op = |by: &Identity, clock: u64, action: RoomAction| {
        Signed::sign(
            by,
            Body::RoomOp(RoomOp {
                room: room.clone(),
                clock,
                time_ms: clock,
                action,
                stamp: stamp(by),
            }),
        )
    };
    let moderator = &people[0];
    for i in 0..OPS {
        let clock = start + 1_000 + 10 * i as u64;
        let target = posts[rng.below(posts.len())];
        let someone = &people[1 + rng.below(people.len() - 1)];
        let signed = match i % 100 {
            // The moderator is granted, revoked and granted again; a
            // participant is removed for a while; the hallway closes once.
            0 => op(host, clock, grant(moderator.peer_id(), Role::Moderator)),
            40 => op(host, clock, grant(moderator.peer_id(), Role::Listener)),
            20 => op(host, clock, remove(people[1 + i / 100 % 9].peer_id(), false)),
            60 => op(host, clock, remove(people[1 + i / 100 % 9].peer_id(), true)),
            70 => op(moderator, clock, RoomAction::Chat(ChatMode::ReadOnly)),
            75 => op(moderator, clock, RoomAction::Chat(ChatMode::On)),
            n if n % 7 == 0 => op(moderator, clock, RoomAction::Delete(target)),
            n if n % 5 == 0 => op(
                moderator,
                clock,
                RoomAction::Question {
                    target,
                    state: QuestionState::Answered,
                },
            ),
            n if n % 3 == 0 => op(
                someone,
                clock,
                RoomAction::Edit {
                    target,
                    text: format!("edit {i}"),
                },
            ),
            _ => op(
                someone,
                clock,
                RoomAction::React(Reaction {
                    target,
                    emoji: ["👍", "🎉"][rng.below(2)].into(),
                    retract: rng.below(4) == 0,
                }),
            ),
        };
        out.push(signed);
    }
    out
}

fn grant(peer: PeerId, role: Role) -> RoomAction {
    RoomAction::SetRole { peer, role }
}

fn remove(peer: PeerId, restore: bool) -> RoomAction {
    RoomAction::Remove { peer, restore }
}

/// Three nodes, each sent the same room history by a peer of its own in a
/// different order of pages (room order, reversed, shuffled), so that most
/// operations arrive after later ones, grants and removals included; then
/// connected, they sync. Each shows the same posts, texts, reactions,
/// question states and rules.
///
/// The sync is part of converging, by design: a node that applied a
/// moderator's delete before it learned of the earlier revocation that
/// voids it has already made its log forget the post's text, and a node
/// that parked more operations than it keeps (256) has dropped the oldest;
/// both get them back from a peer that has them. The room state itself
/// (`RoomState`) decides the same whatever the order (`room::tests`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_that_receive_operations_in_different_orders_show_the_same_room() {
    let mut lab = Lab::start(3, LabConfig::default()).await.expect("lab");
    let host = Identity::from_secret([41; 32]);
    let people: Vec<Identity> = (0..10u8).map(|i| Identity::from_secret([50 + i; 32])).collect();
    let room = Room::hosted("stage", &host.peer_id()).expect("room");
    let history = history(&host, &people, &room);
    let pages: Vec<Vec<Vec<u8>>> = history
        .chunks(PAGE)
        .map(|page| page.iter().map(|s| s.envelope().to_vec()).collect())
        .collect();
    let mut rng = Rng(7);
    let mut shuffled: Vec<usize> = (0..pages.len()).collect();
    for i in (1..shuffled.len()).rev() {
        shuffled.swap(i, rng.below(i + 1));
    }
    let orders = [
        (0..pages.len()).collect::<Vec<_>>(),
        (0..pages.len()).rev().collect(),
        shuffled,
    ];
    for (node, order) in lab.nodes.iter_mut().zip(&orders) {
        node.handle.join(&room).await.expect("join");
        let mut pusher = RawPeer::start(64 * 1024).await;
        pusher.connect(&node.addr, node.peer_id()).await;
        for &p in order {
            let request = wire::sync_request(room.as_str(), 4, &wire::list(&pages[p]));
            pusher
                .sync(node.peer_id(), request)
                .await
                .expect("the push is answered");
        }
    }
    lab.connect(Topology::Line, T).await.expect("connect");
    let mut views = Vec::new();
    for _round in 0..4 {
        for node in lab.nodes.iter_mut() {
            let started = node.handle.sync(&room).await.expect("sync");
            for _ in 0..started {
                node.wait_for("a sync", T, |e| matches!(e, Event::Synced { .. }).then_some(()))
                    .await
                    .expect("the sync ends");
            }
        }
        views.clear();
        for node in &lab.nodes {
            let posts = node.handle.room_view(&room, usize::MAX).await.expect("view");
            let rules = node.handle.room_rules(&room).await.expect("rules");
            views.push(serde_json::to_value((posts, rules)).expect("json"));
        }
        if views.iter().all(|v| *v == views[0]) {
            break;
        }
    }
    // The room is not trivial: moderation decided something.
    let posts = views[0][0].as_array().expect("posts");
    assert!(posts.len() < POSTS, "some posts are deleted: {}", posts.len());
    assert!(posts.iter().any(|p| p["edited"] == true), "some posts are edited");
    assert!(
        posts.iter().any(|p| p["question"] == "answered"),
        "some questions are answered"
    );
    assert_eq!(views[0], views[1], "room order and reversed pages differ");
    assert_eq!(views[0], views[2], "room order and shuffled pages differ");
}

/// A node that joined a room, synced it with a peer, saw the peer's
/// presence and posted keeps nothing about the room once it leaves: not its
/// rules, presence book or unsent posts, not its sync sessions, requests or
/// cooldowns, not its gossipsub topic or DHT search.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaving_a_room_keeps_nothing_about_it() {
    let mut lab = Lab::start(2, LabConfig::default()).await.expect("lab");
    lab.connect(Topology::Line, T).await.expect("connect");
    let lobby = Room::new("lobby").expect("room");
    lab.join_all(&lobby, &Topology::Line.edges(2, 0), T)
        .await
        .expect("mesh");
    lab.nodes[0].handle.post(&lobby, "before the sync").await.expect("post");
    lab.nodes[1].handle.sync(&lobby).await.expect("sync");
    lab.nodes[1]
        .wait_for("a sync", T, |e| matches!(e, Event::Synced { .. }).then_some(()))
        .await
        .expect("node 1 syncs the lobby");
    let peer = lab.nodes[0].peer_id();
    lab.nodes[1]
        .wait_for("presence", T, |e| {
            matches!(e, Event::Presence { peer: p, present: true, .. } if *p == peer).then_some(())
        })
        .await
        .expect("node 1 sees node 0 present");
    let before = lab.nodes[1].handle.room_footprint(&lobby).await.expect("footprint");
    assert!(
        before.joined && before.posts > 0 && before.present > 0 && before.sync_cooldowns > 0 && before.subscribed,
        "{before:?}"
    );
    lab.nodes[1].handle.leave(&lobby).await.expect("leave");
    let after = lab.nodes[1].handle.room_footprint(&lobby).await.expect("footprint");
    assert!(after.is_empty(), "left, yet kept: {after:?}");
}
