//! Reach on loopback (issue 10): peers find each other through the DHT, not
//! through addresses anyone handed out, and remember what they found.
//! (Across NATs, with relays and hole punching: tests/it/netns.rs.)

use std::time::Duration;

use backchannel::lab::{Lab, LabConfig};
use backchannel::{Event, MessageId, Multiaddr, PeerId};

use crate::support::{T, room};

/// How long a DHT route may take here: AutoNAT's first probe (every 5 s)
/// makes a node a DHT server, then a record is published and looked up.
const ROUTE: Duration = Duration::from_secs(60);

fn delivered(dm: MessageId) -> impl FnMut(&Event) -> Option<()> {
    move |e| matches!(e, Event::Delivered { id, .. } if *id == dm).then_some(())
}

fn dm_from(from: PeerId, text: &'static str) -> impl FnMut(&Event) -> Option<()> {
    move |e| matches!(e, Event::Dm { from: f, dm, .. } if *f == from && dm.text == text).then_some(())
}

fn new_port() -> Vec<Multiaddr> {
    vec!["/ip4/127.0.0.1/tcp/0".parse().expect("valid")]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_mates_who_met_through_a_third_exchange_dms() {
    // bob and carol each know only alice's address and join her room: no
    // mDNS, no address typed, nothing handed out by the lab.
    let lobby = room("lobby");
    let mut lab = Lab::start(3, LabConfig::default()).await.expect("lab");
    lab.connect_edges(&[(0, 1), (0, 2)], T).await.expect("connect");
    lab.join_all(&lobby, &[(0, 1), (0, 2)], T).await.expect("join");
    let (bob, carol) = (lab.nodes[1].peer_id(), lab.nodes[2].peer_id());

    let dm = lab.nodes[1].handle.send_dm(carol, "hi carol").await.expect("send");
    lab.nodes[1]
        .wait_for("bob's DM delivered", ROUTE, delivered(dm))
        .await
        .expect("delivered");
    lab.nodes[2]
        .wait_for("bob's DM", T, dm_from(bob, "hi carol"))
        .await
        .expect("carol has it");
    let back = lab.nodes[2].handle.send_dm(bob, "hi bob").await.expect("send");
    lab.nodes[2]
        .wait_for("carol's reply delivered", ROUTE, delivered(back))
        .await
        .expect("delivered");
    // Which DHT route bob took is a race, and both are the feature: his
    // room search (carol announced the room) or kad's own queries may
    // connect him to carol before the DM goes out; if not, the DM's dial
    // fails and he looks up carol's address record. (The record lookup
    // alone is what contacts_who_both_moved… exercises: no room there.)
    let stats = lab.nodes[1].handle.stats().await.expect("stats");
    assert!(
        stats.dms_delivered == 1 && stats.connections_established >= 2,
        "bob reached carol as well as alice: {stats:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contacts_who_both_moved_find_each_other_again_and_the_outbox_drains() {
    let mut lab = Lab::start(3, LabConfig::default()).await.expect("lab");
    // alice is a helper; bob and carol know only her, as `--bootstrap`.
    lab.nodes[0].restart_with(|c| c.helper = true).await.expect("helper");
    let helper = lab.nodes[0].addr.clone();
    for i in [1, 2] {
        let helper = helper.clone();
        lab.nodes[i]
            .restart_with(move |c| {
                c.bootstrap = vec![helper];
                c.listen = new_port();
            })
            .await
            .expect("restart with a bootstrap");
    }
    let (bob, carol) = (lab.nodes[1].peer_id(), lab.nodes[2].peer_id());
    let first = lab.nodes[1].handle.send_dm(carol, "first").await.expect("send");
    lab.nodes[1]
        .wait_for("first delivered", ROUTE, delivered(first))
        .await
        .expect("delivered");

    // carol goes away; bob writes anyway, and it waits in his outbox.
    lab.nodes[2].stop().await;
    let waiting = lab.nodes[1]
        .handle
        .send_dm(carol, "while you were away")
        .await
        .expect("send");
    lab.nodes[1]
        .wait_for("queued", ROUTE, |e| {
            matches!(e, Event::DmQueued { id, .. } if *id == waiting).then_some(())
        })
        .await
        .expect("queued");

    // Both come back on new ports, without being told the helper again: it
    // is remembered, and so is everything else they need.
    lab.nodes[1].stop().await;
    for i in [2, 1] {
        lab.nodes[i]
            .restart_with(|c| {
                c.bootstrap.clear();
                c.listen = new_port();
            })
            .await
            .expect("restart elsewhere");
    }
    lab.nodes[1]
        .wait_for("the outbox drained", ROUTE, delivered(waiting))
        .await
        .expect("delivered after both moved");
    lab.nodes[2]
        .wait_for("the waiting DM", T, dm_from(bob, "while you were away"))
        .await
        .expect("carol has it");
    assert!(lab.nodes[1].handle.outbox().await.expect("outbox").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contact_is_reachable_after_a_restart_without_any_helper() {
    let mut lab = Lab::start(2, LabConfig::default()).await.expect("lab");
    lab.connect_edges(&[(0, 1)], T).await.expect("connect");
    let bob = lab.nodes[1].peer_id();
    let first = lab.nodes[0].handle.send_dm(bob, "hello").await.expect("send");
    lab.nodes[0]
        .wait_for("delivered", T, delivered(first))
        .await
        .expect("delivered");

    // alice restarts on a new port with no peer, no helper and no mDNS: she
    // remembers where bob was.
    lab.nodes[0]
        .restart_with(|c| c.listen = new_port())
        .await
        .expect("restart");
    let net = lab.nodes[0].handle.net().await.expect("net");
    assert!(net.remembered >= 1, "{net:?}");
    let again = lab.nodes[0].handle.send_dm(bob, "remember me?").await.expect("send");
    lab.nodes[0]
        .wait_for("delivered again", T, delivered(again))
        .await
        .expect("delivered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_and_net_describe_connections_and_reachability() {
    let mut lab = Lab::start(2, LabConfig::default()).await.expect("lab");
    lab.connect_edges(&[(0, 1)], T).await.expect("connect");
    let bob = lab.nodes[1].peer_id();
    let peers = lab.nodes[0].handle.peers().await.expect("peers");
    let entry = peers.iter().find(|p| p.peer == bob).expect("bob is connected");
    assert!(!entry.connections.is_empty());
    let c = &entry.connections[0];
    assert!(!c.relayed);
    assert_eq!(c.transport, "tcp");
    let net = lab.nodes[0].handle.net().await.expect("net");
    assert!(
        net.listening
            .iter()
            .any(|a| a.to_string().starts_with("/ip4/127.0.0.1/tcp/"))
    );
    assert!(net.bootstrap.is_empty());
}
