//! Rooms that behave like rooms: hosted rooms with roles and moderation that
//! every node checks for itself, presence, replies, reactions, mentions,
//! questions to the stage, one order everywhere, and history for late
//! joiners and healed partitions. Real nodes on loopback; hostile messages
//! are signed for real and published by a raw libp2p peer.

use std::time::Duration;

use backchannel::lab::{Lab, LabConfig, LabNode, Topology};
use backchannel::{
    Body, DmError, Event, HistoryQuery, Identity, MessageId, PostError, RejectReason, Room, RoomOpError, Signed,
};
use backchannel::{ChatMode, QuestionState, Reaction, Role, RoomAction, RoomOp};
use backchannel::{PostOptions, RoomPost};

use prost::Message as _;

use crate::support::raw::RawPeer;
use crate::support::wire;
use crate::support::{T, hallway};

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64
}

/// A lab of `n` nodes in a line, node 0 hosting `name`, everyone in it.
async fn hosted_line(n: usize, name: &str, lab_config: LabConfig) -> (Lab, Room) {
    let mut lab = Lab::start(n, lab_config).await.expect("lab");
    lab.connect(Topology::Line, T).await.expect("connect");
    let room = lab.nodes[0].handle.host(name).await.expect("host");
    assert_eq!(room.host(), Some(lab.nodes[0].peer_id()));
    lab.join_all(&room, &Topology::Line.edges(n, 0), T).await.expect("mesh");
    (lab, room)
}

/// Waits until `node` applied a room operation with this id.
async fn wait_op(node: &mut LabNode, id: MessageId) {
    node.wait_for("a room operation", T, |e| {
        matches!(e, Event::RoomOp { id: got, .. } if *got == id).then_some(())
    })
    .await
    .expect("the operation arrives");
}

/// Waits until every node except `author` applied operation `id`.
async fn everyone_applies(lab: &mut Lab, author: usize, id: MessageId) {
    for node in lab.nodes.iter_mut().filter(|n| n.index != author) {
        wait_op(node, id).await;
    }
}

async fn everyone_shows(lab: &mut Lab, author: usize, id: MessageId) {
    for node in lab.nodes.iter_mut().filter(|n| n.index != author) {
        node.wait_for("a post", T, hallway(id)).await.expect("post arrives");
    }
}

/// The host (node 0) gives node `who` a role; waits until every node applied it.
async fn host_grants(lab: &mut Lab, room: &Room, who: usize, role: Role) {
    let peer = lab.nodes[who].peer_id();
    let grant = lab.nodes[0]
        .handle
        .room_op(room, RoomAction::SetRole { peer, role })
        .await
        .expect("the host grants");
    everyone_applies(lab, 0, grant).await;
}

async fn view(node: &LabNode, room: &Room) -> Vec<RoomPost> {
    node.handle.room_view(room, usize::MAX).await.expect("view")
}

/// What must be identical on every node: ids, texts, question states and
/// reactions, in order.
type Shown = Vec<(MessageId, String, Option<QuestionState>, Vec<(String, usize)>)>;

fn shown(view: &[RoomPost]) -> Shown {
    view.iter()
        .map(|p| (p.id, p.text.clone(), p.question, p.reactions.clone()))
        .collect()
}

/// Signs a room operation as `who` with a fresh clock (for messages that the
/// node's own API would refuse to make).
fn signed_op(who: &Identity, room: &Room, action: RoomAction) -> Vec<u8> {
    let now = now_ms();
    Signed::sign(
        who,
        Body::RoomOp(RoomOp {
            room: room.clone(),
            clock: now + 1_000,
            time_ms: now,
            action,
            stamp: None,
        }),
    )
    .envelope()
    .to_vec()
}

fn signed_post(who: &Identity, room: &Room, text: &str) -> (MessageId, Vec<u8>) {
    let now = now_ms();
    let signed = post_at(who, room, text, now, now + 1_000);
    (signed.id(), signed.envelope().to_vec())
}

/// A post signed as `who` with the given author time and room clock.
fn post_at(who: &Identity, room: &Room, text: &str, time_ms: u64, clock: u64) -> Signed {
    Signed::sign(
        who,
        Body::Hallway(backchannel::HallwayPost {
            room: room.clone(),
            text: text.into(),
            time_ms,
            nick: None,
            clock,
            reply_to: None,
            mentions: Vec::new(),
            question: false,
            stamp: None,
        }),
    )
}

/// A raw peer attached to `node` and subscribed to `room`, with the node's
/// view of it joined.
async fn attacker_at(node: &mut LabNode, room: &Room) -> (RawPeer, Identity) {
    let mut raw = RawPeer::start(64 * 1024).await;
    raw.connect(&node.addr, node.peer_id()).await;
    raw.join(room.as_str(), node.peer_id()).await;
    let peer = raw.peer_id;
    node.wait_for("the raw peer in the room", T, |e| {
        matches!(e, Event::RoomPeerJoined { peer: p, .. } if *p == peer).then_some(())
    })
    .await
    .expect("the node sees the raw peer");
    let identity = Identity::from_secret(raw.key.to_bytes());
    (raw, identity)
}

async fn wait_rejected(node: &mut LabNode, reason: RejectReason) {
    node.wait_for("a rejection", T, |e| {
        matches!(e, Event::Rejected { reason: r, .. } if *r == reason).then_some(())
    })
    .await
    .expect("the node rejects it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moderators_delete_hides_a_post_everywhere_and_a_listeners_changes_nothing() {
    let (mut lab, room) = hosted_line(4, "stage", LabConfig::default()).await;
    host_grants(&mut lab, &room, 1, Role::Moderator).await;
    let spam = lab.nodes[2].handle.post(&room, "buy my stuff").await.expect("post");
    everyone_shows(&mut lab, 2, spam).await;

    // A listener's own node refuses to make the delete...
    let refused = lab.nodes[3].handle.room_op(&room, RoomAction::Delete(spam)).await;
    assert!(
        matches!(
            refused,
            Err(RoomOpError::NotAllowed {
                reason: RejectReason::NotAllowed,
                ..
            })
        ),
        "{refused:?}"
    );
    // ...and one signed and published anyway is rejected and not forwarded.
    let (attacker, forger) = attacker_at(&mut lab.nodes[3], &room).await;
    attacker
        .publish(room.as_str(), signed_op(&forger, &room, RoomAction::Delete(spam)))
        .await;
    wait_rejected(&mut lab.nodes[3], RejectReason::NotAllowed).await;
    for node in &lab.nodes {
        assert!(
            view(node, &room).await.iter().any(|p| p.id == spam),
            "node {}",
            node.index
        );
    }

    // The moderator's delete hides it on every node and drops its text.
    let delete = lab.nodes[1]
        .handle
        .room_op(&room, RoomAction::Delete(spam))
        .await
        .expect("a moderator deletes");
    everyone_applies(&mut lab, 1, delete).await;
    for node in &lab.nodes {
        assert!(
            !view(node, &room).await.iter().any(|p| p.id == spam),
            "node {}",
            node.index
        );
        let log = node
            .handle
            .history(HistoryQuery::Room(room.clone()), 1000)
            .await
            .expect("history");
        assert!(
            !log.iter().any(|m| m.message.id() == spam),
            "node {} keeps the deleted text",
            node.index
        );
    }
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_participants_later_posts_reach_no_one() {
    let (mut lab, room) = hosted_line(3, "stage", LabConfig::default()).await;
    // node 2 is the removed one; a raw peer behind node 1 publishes what node
    // 2's key signs (its own node would refuse).
    let removed = lab.nodes[2].identity.clone();
    let remove = lab.nodes[0]
        .handle
        .room_op(
            &room,
            RoomAction::Remove {
                peer: removed.peer_id(),
                restore: false,
            },
        )
        .await
        .expect("the host removes");
    everyone_applies(&mut lab, 0, remove).await;
    let own = lab.nodes[2].handle.post(&room, "let me in").await;
    assert!(
        matches!(
            own,
            Err(PostError::NotAllowed {
                reason: RejectReason::Removed,
                ..
            })
        ),
        "{own:?}"
    );

    let (attacker, honest) = attacker_at(&mut lab.nodes[1], &room).await;
    let (banned, banned_bytes) = signed_post(&removed, &room, "still here");
    attacker.publish(room.as_str(), banned_bytes).await;
    wait_rejected(&mut lab.nodes[1], RejectReason::Removed).await;
    // A fair post after it: once the host shows it, node 1 handled both.
    let (fair, fair_bytes) = signed_post(&honest, &room, "a fair post");
    attacker.publish(room.as_str(), fair_bytes).await;
    lab.nodes[0]
        .wait_for("the fair post", T, hallway(fair))
        .await
        .expect("shown");
    for node in &mut lab.nodes {
        let shown_banned = node
            .drain()
            .iter()
            .any(|e| matches!(e, Event::Hallway { id, .. } if *id == banned));
        assert!(!shown_banned, "node {} showed a removed participant's post", node.index);
        assert!(!view(node, &room).await.iter().any(|p| p.id == banned));
    }
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authors_edit_and_delete_their_own_posts_and_the_hallway_can_close() {
    let (mut lab, room) = hosted_line(3, "stage", LabConfig::default()).await;
    let post = lab.nodes[1].handle.post(&room, "helo").await.expect("post");
    everyone_shows(&mut lab, 1, post).await;
    let edit = lab.nodes[1]
        .handle
        .room_op(
            &room,
            RoomAction::Edit {
                target: post,
                text: "hello".into(),
            },
        )
        .await
        .expect("the author edits");
    everyone_applies(&mut lab, 1, edit).await;
    let not_mine = lab.nodes[2]
        .handle
        .room_op(
            &room,
            RoomAction::Edit {
                target: post,
                text: "hijacked".into(),
            },
        )
        .await;
    assert!(matches!(not_mine, Err(RoomOpError::NotAllowed { .. })), "{not_mine:?}");
    for node in &lab.nodes {
        let v = view(node, &room).await;
        let p = v.iter().find(|p| p.id == post).expect("the post");
        assert_eq!((p.text.as_str(), p.edited), ("hello", true), "node {}", node.index);
    }

    // Read-only: listeners may not post, but may still ask the stage.
    let mode = lab.nodes[0]
        .handle
        .room_op(&room, RoomAction::Chat(ChatMode::ReadOnly))
        .await
        .expect("the host sets the mode");
    everyone_applies(&mut lab, 0, mode).await;
    let closed = lab.nodes[2].handle.post(&room, "hello?").await;
    assert!(
        matches!(
            closed,
            Err(PostError::NotAllowed {
                reason: RejectReason::ChatClosed,
                ..
            })
        ),
        "{closed:?}"
    );
    let question = PostOptions {
        question: true,
        ..PostOptions::default()
    };
    let asked = lab.nodes[2]
        .handle
        .post_with(&room, "can I ask?", question)
        .await
        .expect("questions still go");
    everyone_shows(&mut lab, 2, asked).await;
    let rules = lab.nodes[1].handle.room_rules(&room).await.expect("rules");
    assert_eq!(rules.mode, ChatMode::ReadOnly);

    // The author deletes their own post.
    let delete = lab.nodes[1]
        .handle
        .room_op(&room, RoomAction::Delete(post))
        .await
        .expect("the author deletes");
    everyone_applies(&mut lab, 1, delete).await;
    for node in &lab.nodes {
        assert!(!view(node, &room).await.iter().any(|p| p.id == post));
    }
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_reactions_mentions_and_the_question_queue() {
    let (mut lab, room) = hosted_line(3, "stage", LabConfig::default()).await;
    host_grants(&mut lab, &room, 1, Role::Speaker).await;

    let first = lab.nodes[2]
        .handle
        .post_with(
            &room,
            "what about pricing?",
            PostOptions {
                question: true,
                ..Default::default()
            },
        )
        .await
        .expect("ask");
    let second = lab.nodes[2]
        .handle
        .post_with(
            &room,
            "and the roadmap?",
            PostOptions {
                question: true,
                ..Default::default()
            },
        )
        .await
        .expect("ask");
    everyone_shows(&mut lab, 2, first).await;
    everyone_shows(&mut lab, 2, second).await;
    // A listener cannot mark questions; the speaker can.
    let listener_marks = lab.nodes[2]
        .handle
        .room_op(
            &room,
            RoomAction::Question {
                target: first,
                state: QuestionState::Answered,
            },
        )
        .await;
    assert!(matches!(listener_marks, Err(RoomOpError::NotAllowed { .. })));
    let answered = lab.nodes[1]
        .handle
        .room_op(
            &room,
            RoomAction::Question {
                target: first,
                state: QuestionState::Answered,
            },
        )
        .await
        .expect("the speaker marks it");
    everyone_applies(&mut lab, 1, answered).await;

    // A reply that mentions the asker (by peer id: a nickname resolves once
    // that participant's presence has arrived), and reactions.
    let asker = lab.nodes[2].peer_id();
    let reply = lab.nodes[1]
        .handle
        .post_with(
            &room,
            &format!("@{asker}, it is free"),
            PostOptions {
                reply_to: Some(first),
                ..Default::default()
            },
        )
        .await
        .expect("reply");
    let got = lab.nodes[2]
        .wait_for("the reply", T, |e| match e {
            Event::Hallway { id, post, .. } if *id == reply => Some(post.clone()),
            _ => None,
        })
        .await
        .expect("reply arrives");
    assert_eq!(got.reply_to, Some(first));
    assert_eq!(got.mentions, vec![asker]);
    let react = |retract| {
        RoomAction::React(Reaction {
            target: first,
            emoji: "👍".into(),
            retract,
        })
    };
    for i in [0, 1] {
        let id = lab.nodes[i].handle.room_op(&room, react(false)).await.expect("react");
        everyone_applies(&mut lab, i, id).await;
    }
    let undo = lab.nodes[0].handle.room_op(&room, react(true)).await.expect("retract");
    everyone_applies(&mut lab, 0, undo).await;

    let mut views = Vec::new();
    for node in &lab.nodes {
        let questions = node.handle.questions(&room).await.expect("questions");
        let states: Vec<_> = questions.iter().map(|q| (q.id, q.question)).collect();
        assert_eq!(
            states,
            vec![
                (first, Some(QuestionState::Answered)),
                (second, Some(QuestionState::Open))
            ],
            "node {}",
            node.index
        );
        let v = view(node, &room).await;
        let p = v.iter().find(|p| p.id == first).expect("question");
        assert_eq!(p.reactions, vec![("👍".to_string(), 1)], "node {}", node.index);
        views.push(shown(&v));
    }
    assert!(views.windows(2).all(|w| w[0] == w[1]), "one order everywhere");
    lab.shutdown().await;
}

/// An application that prepares a room before joining it (when it shows
/// the room's link) has the node mint its stamp then, once: the join and the
/// posts after it use that stamp.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prepared_room_is_joined_with_the_stamp_minted_before() {
    let lobby = Room::new("lobby").expect("room");
    let mut lab = Lab::start(2, LabConfig::default()).await.expect("lab");
    let minted = |s: backchannel::Stats| s.stamps_minted;
    lab.nodes[0].handle.prepare_room(&lobby).await.expect("prepare");
    assert_eq!(minted(lab.nodes[0].handle.stats().await.expect("stats")), 1);
    lab.nodes[0].handle.prepare_room(&lobby).await.expect("again");
    assert_eq!(
        minted(lab.nodes[0].handle.stats().await.expect("stats")),
        1,
        "kept: not minted again"
    );
    lab.connect(Topology::Line, T).await.expect("connect");
    lab.join_all(&lobby, &Topology::Line.edges(2, 0), T)
        .await
        .expect("join");
    let id = lab.nodes[0].handle.post(&lobby, "stamped").await.expect("post");
    let stamp = lab.nodes[1]
        .wait_for("the post", T, |e| match e {
            Event::Hallway { id: got, post, .. } if *got == id => Some(post.stamp),
            _ => None,
        })
        .await
        .expect("delivered");
    assert!(stamp.is_some(), "the post carries the prepared stamp");
    assert_eq!(
        minted(lab.nodes[0].handle.stats().await.expect("stats")),
        1,
        "the join used the prepared stamp"
    );
    assert_eq!(
        minted(lab.nodes[1].handle.stats().await.expect("stats")),
        1,
        "the other node minted at its join"
    );
    lab.shutdown().await;
}

/// A node answering a reconciliation says how many it counts present in
/// the room (docs/PROTOCOL.md, `SyncResponse.present`): the hint a node that
/// just joined uses to spread its first announcement over the room's window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconcile_answer_tells_how_many_are_present() {
    let (mut lab, room) = hosted_line(3, "stage", LabConfig::default()).await;
    let peers: Vec<_> = lab.nodes.iter().map(LabNode::peer_id).collect();
    for (j, peer) in peers.iter().enumerate().skip(1) {
        lab.nodes[0]
            .wait_for("presence", T, |e| {
                matches!(e, Event::Presence { peer: p, present: true, .. } if p == peer).then_some(())
            })
            .await
            .unwrap_or_else(|e| panic!("node {j} announced: {e}"));
    }
    let mut raw = RawPeer::start(64 * 1024).await;
    raw.connect(&lab.nodes[0].addr, peers[0]).await;
    // Negentropy v1's first message for an empty set: one range up to
    // infinity (timestamp 0, no id prefix) in IdList mode with no ids.
    let empty = [0x61, 0x00, 0x00, 0x02, 0x00];
    let ask = wire::sync_request(room.as_str(), 2, &empty);
    let bytes = raw.sync(peers[0], ask).await.expect("an answer");
    let answer = wire::SyncResponse::decode(bytes.as_slice()).expect("SyncResponse");
    assert!(answer.reconcile.is_some(), "{answer:?}");
    assert_eq!(answer.present, Some(3), "itself and the two it lists");
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_shows_who_is_in_the_room_with_roles() {
    let (mut lab, room) = hosted_line(3, "stage", LabConfig::default()).await;
    let peers: Vec<_> = lab.nodes.iter().map(LabNode::peer_id).collect();
    // Each node hears the others announce themselves.
    for node in lab.nodes.iter_mut() {
        for (j, peer) in peers.iter().enumerate() {
            if j == node.index {
                continue;
            }
            node.wait_for("presence", T, |e| {
                matches!(e, Event::Presence { peer: p, present: true, .. } if p == peer).then_some(())
            })
            .await
            .expect("presence arrives");
        }
    }
    let who = lab.nodes[2].handle.who(&room).await.expect("who");
    assert_eq!(who.len(), 3, "{who:?}");
    assert_eq!((who[0].peer, who[0].role), (peers[0], Role::Host));
    assert!(who.iter().any(|p| p.me && p.peer == peers[2]));
    assert!(who.iter().any(|p| p.nick.as_deref() == Some("node1")));

    // Leaving is announced.
    lab.nodes[2].handle.leave(&room).await.expect("leave");
    let gone = peers[2];
    lab.nodes[1]
        .wait_for("a leave", T, |e| {
            matches!(e, Event::Presence { peer, present: false, .. } if *peer == gone).then_some(())
        })
        .await
        .expect("the leave arrives");
    assert_eq!(lab.nodes[1].handle.who(&room).await.expect("who").len(), 2);
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dm_reactions_reach_the_other_participant() {
    let mut lab = Lab::start(2, LabConfig::default()).await.expect("lab");
    lab.connect(Topology::Line, T).await.expect("connect");
    let b = lab.nodes[1].peer_id();
    let dm = lab.nodes[0].handle.send_dm(b, "lunch?").await.expect("dm");
    lab.nodes[1]
        .wait_for("the dm", T, |e| {
            matches!(e, Event::Dm { id, .. } if *id == dm).then_some(())
        })
        .await
        .expect("dm arrives");
    lab.nodes[1].handle.react_dm(dm, "🍕", false).await.expect("react");
    let got = lab.nodes[0]
        .wait_for("the reaction", T, |e| match e {
            Event::Dm { dm: m, .. } => m.reaction.clone(),
            _ => None,
        })
        .await
        .expect("the reaction arrives");
    assert_eq!((got.target, got.emoji.as_str(), got.retract), (dm, "🍕", false));
    assert!(matches!(
        lab.nodes[1].handle.react_dm(dm, "not an emoji", false).await,
        Err(DmError::InvalidEmoji)
    ));
    lab.shutdown().await;
}

fn quick_sync(config: &mut backchannel::Config) {
    config.sync_interval = Duration::from_secs(1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_joiner_gets_the_rooms_history_in_the_same_order() {
    let (mut lab, room) = hosted_line(3, "stage", LabConfig::default()).await;
    let mut ids = Vec::new();
    for round in 0..10 {
        for i in 0..3 {
            ids.push((
                i,
                lab.nodes[i]
                    .handle
                    .post(&room, &format!("{round}:{i}"))
                    .await
                    .expect("post"),
            ));
        }
    }
    for (author, id) in ids.clone() {
        everyone_shows(&mut lab, author, id).await;
    }
    let delete = lab.nodes[0]
        .handle
        .room_op(&room, RoomAction::Delete(ids[4].1))
        .await
        .expect("delete");
    everyone_applies(&mut lab, 0, delete).await;

    let cfg = LabConfig::default();
    let late = lab.add_node(&cfg).await.expect("late node");
    let addr = lab.nodes[2].addr.clone();
    lab.nodes[late].handle.dial(addr).await.expect("dial");
    lab.nodes[late].handle.join(&room).await.expect("join");
    let synced = lab.nodes[late]
        .wait_for("history", T, |e| match e {
            Event::Synced { received, .. } if *received > 0 => Some(*received),
            _ => None,
        })
        .await
        .expect("history arrives");
    assert_eq!(synced, 30, "29 posts and the delete (the deleted post is not served)");
    let reference = shown(&view(&lab.nodes[0], &room).await);
    assert_eq!(reference.len(), 29);
    for node in &lab.nodes {
        assert_eq!(shown(&view(node, &room).await), reference, "node {}", node.index);
    }
    // After the room ends (everyone leaves), its hallway stays readable.
    for node in &lab.nodes {
        node.handle.leave(&room).await.expect("leave");
        assert_eq!(shown(&view(node, &room).await), reference, "node {}", node.index);
    }
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_split_room_converges_to_identical_logs_after_healing() {
    let cfg = LabConfig {
        tweak: quick_sync,
        ..LabConfig::default()
    };
    let n = 6;
    let (mut lab, room) = hosted_line(n, "stage", cfg).await;
    let old = lab.nodes[3].handle.post(&room, "before the split").await.expect("post");
    everyone_shows(&mut lab, 3, old).await;

    // Cut the line between 2 and 3.
    let (a, b) = (lab.nodes[2].peer_id(), lab.nodes[3].peer_id());
    lab.nodes[2].handle.block_peer(b).await.expect("cut");
    lab.nodes[3].handle.block_peer(a).await.expect("cut");
    for node in lab.nodes[2..4].iter_mut() {
        node.wait_for("the cut", T, |e| {
            matches!(e, Event::PeerDisconnected { .. }).then_some(())
        })
        .await
        .expect("disconnected");
    }
    // Both halves talk; one side moderates (the host deletes the old post),
    // the other reacts to it.
    for round in 0..5 {
        for i in 0..n {
            lab.nodes[i]
                .handle
                .post(&room, &format!("split {round} from {i}"))
                .await
                .expect("post");
        }
    }
    lab.nodes[0]
        .handle
        .room_op(&room, RoomAction::Delete(old))
        .await
        .expect("delete");
    lab.nodes[5]
        .handle
        .room_op(
            &room,
            RoomAction::React(Reaction {
                target: old,
                emoji: "🔥".into(),
                retract: false,
            }),
        )
        .await
        .expect("react");

    // Heal and wait, event by event, until every node shows the same room.
    lab.nodes[2].handle.unblock_peer(b).await.expect("heal");
    lab.nodes[3].handle.unblock_peer(a).await.expect("heal");
    lab.connect_edges(&[(2, 3)], T).await.expect("reconnect");
    let deadline = tokio::time::Instant::now() + T;
    loop {
        let mut views = Vec::new();
        for node in &lab.nodes {
            views.push(shown(&view(node, &room).await));
        }
        if views.windows(2).all(|w| w[0] == w[1]) {
            // 30 posts from the split; the old post is deleted everywhere.
            assert_eq!(views[0].len(), 30, "{:?}", views[0]);
            assert!(!views[0].iter().any(|p| p.0 == old));
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no convergence: {views:#?}");
        // Wait for the next thing any node learns from sync.
        let _ = lab.nodes[0]
            .wait_for("sync", Duration::from_millis(500), |e| {
                matches!(e, Event::Synced { .. } | Event::Hallway { .. } | Event::RoomOp { .. }).then_some(())
            })
            .await;
        for node in lab.nodes.iter_mut() {
            node.drain();
        }
    }
    // Identical logs: the same posts and operations, in the same order.
    let mut logs = Vec::new();
    for node in &lab.nodes {
        let log = node
            .handle
            .history(HistoryQuery::Room(room.clone()), 10_000)
            .await
            .expect("history");
        logs.push(log.iter().map(|m| m.message.id()).collect::<Vec<_>>());
    }
    assert!(logs.windows(2).all(|w| w[0] == w[1]), "logs differ: {logs:?}");
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_clocks_far_in_the_future_are_rejected() {
    let (mut lab, room) = hosted_line(2, "stage", LabConfig::default()).await;
    let (attacker, who) = attacker_at(&mut lab.nodes[1], &room).await;
    let now = now_ms();
    let post = |text: &str, clock: u64| post_at(&who, &room, text, now, clock);
    let ahead = post("always on top", now + 3_600_000);
    attacker.publish(room.as_str(), ahead.envelope().to_vec()).await;
    wait_rejected(&mut lab.nodes[1], RejectReason::FutureTime).await;
    assert!(!view(&lab.nodes[1], &room).await.iter().any(|p| p.id == ahead.id()));
    // A clock behind its own timestamp is malformed.
    let behind = post("from the past", now - 1);
    attacker.publish(room.as_str(), behind.envelope().to_vec()).await;
    wait_rejected(&mut lab.nodes[1], RejectReason::InvalidField).await;
    lab.shutdown().await;
}
