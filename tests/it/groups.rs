//! Group backchannels: signed membership every member verifies, one signed
//! message delivered to each member with a receipt each, the same messages in
//! the same order everywhere, offline members caught up through outboxes.

use std::time::Duration;

use backchannel::lab::{Lab, LabConfig, Topology};
use backchannel::{Event, GroupEdit, GroupId, HistoryQuery, MessageId, PeerId, RejectReason};
use prost::Message;

use crate::support::T;
use crate::support::raw::RawPeer;
use crate::support::wire;

fn quick() -> LabConfig {
    LabConfig {
        seed: 11,
        tweak: |c| {
            c.retry.base = Duration::from_millis(200);
            c.retry.max = Duration::from_secs(1);
            c.redial_interval = Duration::from_millis(300);
        },
        ..LabConfig::default()
    }
}

fn members_are(group: GroupId, n: usize) -> impl FnMut(&Event) -> Option<()> {
    move |e| {
        matches!(e, Event::GroupChanged { group: g, members, .. } if *g == group && members.len() == n).then_some(())
    }
}

fn group_message(id: MessageId) -> impl FnMut(&Event) -> Option<()> {
    move |e| matches!(e, Event::GroupMessage { id: got, .. } if *got == id).then_some(())
}

async fn group_log(lab: &Lab, i: usize, group: GroupId) -> Vec<MessageId> {
    let log = lab.nodes[i]
        .handle
        .history(HistoryQuery::Group(group), 1000)
        .await
        .expect("history");
    log.iter().map(|m| m.message.id()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twelve_members_three_offline_end_with_the_same_messages_in_the_same_order() {
    let mut lab = Lab::start(12, quick()).await.expect("lab");
    lab.connect(Topology::Full, T).await.expect("connect");
    let peers: Vec<PeerId> = lab.nodes.iter().map(|n| n.peer_id()).collect();
    let group = lab.nodes[0]
        .handle
        .group_create("hosts", peers[1..].to_vec())
        .await
        .expect("create");
    for i in 1..12 {
        lab.nodes[i]
            .wait_for("the group", T, members_are(group, 12))
            .await
            .expect("everyone learns it");
    }
    // Three members go offline; the others talk, two messages each.
    for i in 9..12 {
        lab.nodes[i].stop().await;
    }
    let mut sent = Vec::new();
    for round in 0..2 {
        for i in 0..9 {
            sent.push(
                lab.nodes[i]
                    .handle
                    .group_send(group, &format!("{i} says {round}"))
                    .await
                    .expect("send"),
            );
        }
    }
    for i in 0..9 {
        for (k, id) in sent.iter().enumerate() {
            if k % 9 != i {
                lab.nodes[i]
                    .wait_for("a group message", T, group_message(*id))
                    .await
                    .expect("online members get it");
            }
        }
    }
    // The three come back and dial the others; outboxes deliver what they missed.
    let addrs: Vec<_> = lab.nodes.iter().map(|n| n.addr.clone()).collect();
    for i in 9..12 {
        lab.nodes[i].config.peers = addrs[..9].to_vec();
        lab.nodes[i].restart().await.expect("back");
    }
    for i in 9..12 {
        for id in &sent {
            lab.nodes[i]
                .wait_for("a missed message", T, group_message(*id))
                .await
                .expect("caught up");
        }
    }
    let reference = group_log(&lab, 0, group).await;
    assert_eq!(reference.len(), sent.len());
    for i in 1..12 {
        assert_eq!(
            group_log(&lab, i, group).await,
            reference,
            "node {i} shows the same messages in the same order"
        );
    }
    // The author sees "delivered to 11 of 11" for a message sent while three were away.
    let first = sent[0];
    lab.nodes[0]
        .wait_for("all delivered", T, |e| {
            matches!(e, Event::GroupDelivered { id, delivered: 11, of: 11, .. } if *id == first).then_some(())
        })
        .await
        .expect("every receipt");
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removed_members_get_nothing_and_only_the_moderator_changes_membership() {
    let mut lab = Lab::start(4, quick()).await.expect("lab");
    lab.connect(Topology::Full, T).await.expect("connect");
    let p: Vec<PeerId> = lab.nodes.iter().map(|n| n.peer_id()).collect();
    // Node 3 blocked node 2 earlier: being added with it shows a warning.
    lab.nodes[3].handle.block_peer(p[2]).await.expect("block");
    let group = lab.nodes[0]
        .handle
        .group_create("mods", vec![p[1], p[2], p[3]])
        .await
        .expect("create");
    lab.nodes[3]
        .wait_for("warning", T, |e| {
            matches!(e, Event::GroupWarning { blocked, .. } if blocked == &vec![p[2]]).then_some(())
        })
        .await
        .expect("a warning");
    for i in 1..3 {
        lab.nodes[i]
            .wait_for("the group", T, members_are(group, 4))
            .await
            .expect("learns it");
    }
    let not_moderator = lab.nodes[1].handle.group_edit(group, GroupEdit::Add(p[0])).await;
    assert!(not_moderator.is_err(), "only the moderator adds or removes");

    lab.nodes[0]
        .handle
        .group_edit(group, GroupEdit::Remove(p[2]))
        .await
        .expect("remove");
    lab.nodes[1]
        .wait_for("removal", T, members_are(group, 3))
        .await
        .expect("members see it");
    lab.nodes[2]
        .wait_for("removal", T, members_are(group, 3))
        .await
        .expect("the removed member sees it");
    let after = lab.nodes[1]
        .handle
        .group_send(group, "after the removal")
        .await
        .expect("send");
    lab.nodes[0]
        .wait_for("message", T, group_message(after))
        .await
        .expect("members get it");
    lab.nodes[1]
        .wait_for("delivered", T, |e| {
            matches!(e, Event::GroupDelivered { id, delivered: 2, of: 2, .. } if *id == after).then_some(())
        })
        .await
        .expect("sent to the two remaining members only");
    assert!(
        !group_log(&lab, 2, group).await.contains(&after),
        "the removed member gets nothing after removal"
    );
    assert!(lab.nodes[2].handle.group_send(group, "still here?").await.is_err());

    // Anyone may leave.
    lab.nodes[1]
        .handle
        .group_edit(group, GroupEdit::Leave)
        .await
        .expect("leave");
    lab.nodes[0]
        .wait_for("leave", T, members_are(group, 2))
        .await
        .expect("the moderator sees it");
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_group_ops_and_messages_from_non_members_are_refused_and_counted() {
    let mut lab = Lab::start(2, quick()).await.expect("lab");
    lab.connect(Topology::Full, T).await.expect("connect");
    let (n0, n1) = (lab.nodes[0].peer_id(), lab.nodes[1].peer_id());
    let group = lab.nodes[0]
        .handle
        .group_create("real", vec![n1])
        .await
        .expect("create");
    lab.nodes[1]
        .wait_for("group", T, members_are(group, 2))
        .await
        .expect("learns it");

    let mut attacker = RawPeer::start(64 * 1024).await;
    attacker.connect(&lab.nodes[1].addr, n1).await;
    let own = attacker.public_key();
    let key = |p: &PeerId| backchannel::key_of(p).expect("ed25519").to_vec();
    let refused = |reply: Result<Vec<u8>, String>| reply.expect("a reply").get(..2).map(<[u8]>::to_vec);
    // A state op for the real group, signed by the attacker: not the moderator.
    let info = lab.nodes[1].handle.groups().await.expect("groups");
    let forged_op = wire::GroupOp {
        group_id: group.as_bytes().to_vec(),
        version: info[0].version + 1,
        name: "mine now".into(),
        members: vec![key(&n1), own.to_vec()],
        nonce: vec![0; 16],
        leave: false,
        time_ms: 1,
    };
    let env = wire::envelope(&attacker.key, own, wire::field(4, &forged_op.encode_to_vec()));
    assert_eq!(refused(attacker.dm(n1, env).await), Some(vec![0x10, 7]), "NOT_MEMBER");
    // A message to the group from a non-member.
    let msg = wire::GroupMessage {
        group_id: group.as_bytes().to_vec(),
        text: "let me in".into(),
        time_ms: 1,
        nonce: wire::rand_nonce(),
        lamport: 1,
        nick: String::new(),
    };
    let env = wire::envelope(&attacker.key, own, wire::field(5, &msg.encode_to_vec()));
    assert_eq!(refused(attacker.dm(n1, env).await), Some(vec![0x10, 7]), "NOT_MEMBER");

    let stats = lab.nodes[1].handle.stats().await.expect("stats");
    assert_eq!(stats.rejected.get(&RejectReason::NotModerator), Some(&1), "{stats:?}");
    assert_eq!(stats.rejected.get(&RejectReason::NotMember), Some(&1), "{stats:?}");
    assert!(group_log(&lab, 1, group).await.is_empty(), "nothing stored");
    let still = lab.nodes[1].handle.groups().await.expect("groups");
    assert_eq!(still[0].members, vec![n0, n1], "membership unchanged");
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lamport_clocks_continue_after_a_restart() {
    let mut lab = Lab::start(2, quick()).await.expect("lab");
    lab.connect(Topology::Full, T).await.expect("connect");
    let p1 = lab.nodes[1].peer_id();
    let group = lab.nodes[0]
        .handle
        .group_create("pair", vec![p1])
        .await
        .expect("create");
    lab.nodes[1]
        .wait_for("group", T, members_are(group, 2))
        .await
        .expect("learns it");
    let mut sent = Vec::new();
    for text in ["one", "two", "three"] {
        sent.push(lab.nodes[0].handle.group_send(group, text).await.expect("send"));
    }
    lab.nodes[0].restart().await.expect("restart");
    let a1 = lab.nodes[1].addr.clone();
    lab.nodes[0].handle.dial(a1).await.expect("dial");
    sent.push(
        lab.nodes[0]
            .handle
            .group_send(group, "after the restart")
            .await
            .expect("send"),
    );
    assert_eq!(group_log(&lab, 0, group).await, sent, "the newest message stays last");
    // A message in flight when node 0 stopped is retried from its outbox
    // after the restart, so it may arrive after the newer one: wait for all.
    for id in &sent {
        lab.nodes[1]
            .wait_for("a message", T, group_message(*id))
            .await
            .expect("arrives");
    }
    assert_eq!(group_log(&lab, 1, group).await, sent);
    lab.shutdown().await;
}
