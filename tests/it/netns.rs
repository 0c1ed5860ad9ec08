//! The NAT lab (issue 10): real traffic between network namespaces checks the
//! lab itself (address translation, filtering, port mapping, netem,
//! teardown), then real `backchannel` processes show what reaches across
//! NATs today. These tests need root, `ip`, `tc` and `iptables`; without them
//! they fail with an error that says what is missing (`.ci/run` installs the
//! tools).

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::process::Stdio;
use std::time::{Duration, Instant};

use backchannel::lab::netns::{Nat, NatLab, Netem};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpSocket, TcpStream, UdpSocket};

use crate::cli::{BIN, Proc, is};
use crate::support::T;

/// How long a connection that must not happen is given to happen.
const NEGATIVE: Duration = Duration::from_secs(2);

fn new_lab() -> NatLab {
    NatLab::new().unwrap_or_else(|e| panic!("the NAT lab cannot run here: {e}"))
}

/// A listener inside `host`'s namespace.
fn listen(lab: &NatLab, host: &str, port: u16) -> TcpListener {
    let std = lab
        .run_in(host, || std::net::TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)))
        .expect("enter the namespace")
        .expect("bind");
    std.set_nonblocking(true).expect("nonblocking");
    TcpListener::from_std(std).expect("register")
}

/// A UDP socket inside `host`'s namespace.
fn udp(lab: &NatLab, host: &str, port: u16) -> UdpSocket {
    let std = lab
        .run_in(host, || std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, port)))
        .expect("enter the namespace")
        .expect("bind");
    std.set_nonblocking(true).expect("nonblocking");
    UdpSocket::from_std(std).expect("register")
}

/// Connects from inside `host`'s namespace (from `port`, or any port if 0)
/// to `to`, giving up after `limit`.
async fn connect(lab: &NatLab, host: &str, port: u16, to: SocketAddr, limit: Duration) -> std::io::Result<TcpStream> {
    let socket = lab
        .run_in(host, || {
            let socket = TcpSocket::new_v4()?;
            socket.bind((Ipv4Addr::UNSPECIFIED, port).into())?;
            Ok::<_, std::io::Error>(socket)
        })
        .expect("enter the namespace")?;
    tokio::time::timeout(limit, socket.connect(to))
        .await
        .map_err(|_| std::io::ErrorKind::TimedOut)?
}

async fn accept(listener: &TcpListener) -> (TcpStream, SocketAddr) {
    tokio::time::timeout(T, listener.accept())
        .await
        .expect("a connection in time")
        .expect("accept")
}

async fn recv_from(socket: &UdpSocket) -> (Vec<u8>, SocketAddr) {
    let mut buf = [0; 64];
    let (n, from) = tokio::time::timeout(T, socket.recv_from(&mut buf))
        .await
        .expect("a datagram in time")
        .expect("recv");
    (buf[..n].to_vec(), from)
}

fn at(ip: Ipv4Addr, port: u16) -> SocketAddr {
    SocketAddrV4::new(ip, port).into()
}

/// The namespaces that exist now (`ip netns list`).
fn namespaces() -> Vec<String> {
    let out = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip runs");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_home_reaches_a_helper_which_sees_the_nat_public_address() {
    let lab = new_lab()
        .helper("h1")
        .and_then(|l| l.home("alice", Nat::Easy))
        .expect("lab builds");
    let (h1, alice) = (lab.host("h1").expect("h1"), lab.host("alice").expect("alice"));
    assert_ne!(alice.addr(), alice.public_addr());
    let route = lab.exec("alice", &["ip", "-4", "route"]).expect("ip route in alice");
    assert!(String::from_utf8_lossy(&route.stdout).contains("default via 10.0.1.1"));

    let listener = listen(&lab, "h1", 7000);
    let mut out = connect(&lab, "alice", 0, at(h1.addr(), 7000), T)
        .await
        .expect("alice connects");
    let (mut seen, from) = accept(&listener).await;
    assert_eq!(from.ip(), alice.public_addr(), "the helper sees the NAT, not the home");

    // Real bytes both ways over the translated connection.
    out.write_all(b"ping").await.expect("write");
    let mut buf = [0; 4];
    seen.read_exact(&mut buf).await.expect("read at the helper");
    assert_eq!(&buf, b"ping");
    seen.write_all(b"pong").await.expect("write back");
    out.read_exact(&mut buf).await.expect("read at home");
    assert_eq!(&buf, b"pong");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_public_side_cannot_reach_into_a_home() {
    let lab = new_lab()
        .helper("h1")
        .and_then(|l| l.home("alice", Nat::Easy))
        .expect("lab builds");
    let alice = lab.host("alice").expect("alice").clone();
    let listener = listen(&lab, "alice", 7000);
    // The listener is there: the home itself reaches it.
    connect(&lab, "alice", 0, at(alice.addr(), 7000), T)
        .await
        .expect("alice reaches her own listener");
    accept(&listener).await;

    // Unsolicited traffic to the NAT's public side is dropped, not refused.
    let err = connect(&lab, "h1", 0, at(alice.public_addr(), 7000), NEGATIVE)
        .await
        .expect_err("a helper must not connect into a home");
    assert_eq!(err.kind(), std::io::ErrorKind::TimedOut, "dropped silently: {err}");
    // The home's private address is not routed on the public side at all.
    connect(&lab, "h1", 0, at(alice.addr(), 7000), NEGATIVE)
        .await
        .expect_err("a private address is unreachable from the public side");
    let nothing = tokio::time::timeout(Duration::from_millis(200), listener.accept()).await;
    assert!(nothing.is_err(), "nothing arrived at the home's listener");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_easy_nat_keeps_the_source_port_and_a_hard_nat_changes_it() {
    let lab = new_lab()
        .helper("h1")
        .and_then(|l| l.helper("h2"))
        .and_then(|l| l.home("alice", Nat::Easy))
        .and_then(|l| l.home("carol", Nat::Hard))
        .expect("lab builds");
    let (h1, h2) = (lab.host("h1").expect("h1").addr(), lab.host("h2").expect("h2").addr());
    let listener = listen(&lab, "h1", 7000);
    let (u1, u2) = (udp(&lab, "h1", 7001), udp(&lab, "h2", 7001));

    for (home, source) in [("alice", 40000), ("carol", 40000)] {
        let public = lab.host(home).expect("home").public_addr();
        let _conn = connect(&lab, home, source, at(h1, 7000), T).await.expect("connects");
        let (_, tcp) = accept(&listener).await;
        // One UDP socket sends to two helpers: the mapping per destination.
        let socket = udp(&lab, home, source + 1);
        socket.send_to(b"to h1", at(h1, 7001)).await.expect("send");
        socket.send_to(b"to h2", at(h2, 7001)).await.expect("send");
        let ((d1, via1), (d2, via2)) = (recv_from(&u1).await, recv_from(&u2).await);
        assert_eq!((d1.as_slice(), d2.as_slice()), (&b"to h1"[..], &b"to h2"[..]));
        assert_eq!(
            [tcp.ip(), via1.ip(), via2.ip()],
            [public; 3].map(std::net::IpAddr::from)
        );
        match lab.host(home).expect("home").nat() {
            Some(Nat::Easy) => {
                assert_eq!(tcp.port(), source, "an easy NAT keeps a free port");
                assert_eq!(
                    (via1.port(), via2.port()),
                    (source + 1, source + 1),
                    "one mapping for all"
                );
            }
            // A random port could equal the source port, or both random
            // ports each other, by chance: about 1 in 64 000 each.
            Some(Nat::Hard) => {
                assert_ne!(tcp.port(), source, "a hard NAT picks a random port");
                assert_ne!(via1.port(), via2.port(), "a hard NAT maps per destination");
            }
            None => unreachable!("homes have NATs"),
        }
    }
}

/// The time a TCP handshake from `home` to `to` takes (the best of three):
/// one round trip.
async fn handshake(lab: &NatLab, home: &str, to: SocketAddr, listener: &TcpListener) -> Duration {
    let mut best = Duration::MAX;
    for _ in 0..3 {
        let start = Instant::now();
        let _conn = connect(lab, home, 0, to, T).await.expect("connects");
        best = best.min(start.elapsed());
        accept(listener).await;
    }
    best
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn netem_delays_and_drops_packets_on_a_public_link() {
    let lab = new_lab()
        .helper("h1")
        .and_then(|l| l.home("alice", Nat::Easy))
        .expect("lab builds");
    let to = at(lab.host("h1").expect("h1").addr(), 7000);
    let listener = listen(&lab, "h1", 7000);

    let quick = handshake(&lab, "alice", to, &listener).await;
    assert!(quick < Duration::from_millis(60), "no delay without netem: {quick:?}");
    // 30 ms each way on the helper's link.
    let delay = Netem {
        delay: Duration::from_millis(30),
        loss: 0.0,
    };
    lab.netem("h1", delay).expect("netem on h1");
    let slow = handshake(&lab, "alice", to, &listener).await;
    assert!(
        slow >= Duration::from_millis(60),
        "a round trip crosses the link twice: {slow:?}"
    );
    // Both public links of the path add up.
    lab.netem(
        "alice",
        Netem {
            delay: Duration::from_millis(20),
            ..delay
        },
    )
    .expect("netem on alice");
    let slower = handshake(&lab, "alice", to, &listener).await;
    assert!(slower >= Duration::from_millis(100), "2 × (30 + 20) ms: {slower:?}");

    // Loss: a link that drops everything carries nothing.
    lab.netem(
        "h1",
        Netem {
            delay: Duration::ZERO,
            loss: 100.0,
        },
    )
    .expect("netem loss");
    connect(&lab, "alice", 0, to, NEGATIVE)
        .await
        .expect_err("every packet is lost");
    lab.netem("h1", Netem::default()).expect("netem cleared");
    connect(&lab, "alice", 0, to, T)
        .await
        .expect("connects again once cleared");
    assert!(
        lab.netem("h1", Netem { loss: 101.0, ..delay }).is_err(),
        "loss over 100% is refused"
    );
}

/// The root namespace's links, addresses, routes and firewall rules: what
/// a lab must not touch (docs/ARCHITECTURE.md, "NAT lab traffic stays
/// inside namespaces the lab made").
fn root_network() -> String {
    let run = |args: &[&str]| {
        let out = std::process::Command::new(args[0])
            .args(&args[1..])
            .output()
            .expect("the tool runs");
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // Link names (not their counters or state), then the rest as listed.
    let links: Vec<String> = run(&["ip", "-o", "link", "show"])
        .lines()
        .filter_map(|l| l.split(": ").nth(1).map(str::to_owned))
        .collect();
    let addrs: Vec<String> = run(&["ip", "-o", "addr", "show"])
        .lines()
        .map(|l| l.split_whitespace().take(4).collect::<Vec<_>>().join(" "))
        .collect();
    format!(
        "links {links:?}\naddrs {addrs:?}\nroutes\n{}\nfilter\n{}\nnat\n{}",
        run(&["ip", "route", "show"]),
        run(&["iptables", "-S"]),
        run(&["iptables", "-t", "nat", "-S"]),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_lab_kills_its_processes_and_leaves_no_namespace() {
    let root = root_network();
    let lab = new_lab()
        .helper("h1")
        .and_then(|l| l.home("alice", Nat::Easy))
        .and_then(|l| l.home("carol", Nat::Hard))
        .expect("lab builds");
    // A whole lab runs without a link, address, route or rule in the root
    // namespace.
    assert_eq!(root_network(), root, "the lab changed the root namespace");
    let ours = lab.namespaces().to_vec();
    assert_eq!(ours.len(), 6, "public, h1, two homes and their NATs");
    assert!(ours.iter().all(|n| namespaces().contains(n)));
    // The lab, not the command, must end this process.
    let mut sleeper = lab
        .command("alice", "sleep")
        .expect("command")
        .arg("1000")
        .kill_on_drop(false)
        .spawn()
        .expect("sleep starts in alice");
    drop(lab);
    let status = tokio::time::timeout(T, sleeper.wait())
        .await
        .expect("the lab ends its processes")
        .expect("wait");
    assert!(!status.success(), "killed, not finished: {status}");
    let left = namespaces();
    assert!(ours.iter().all(|n| !left.contains(n)), "left behind: {left:?}");
    assert_eq!(root_network(), root, "the root namespace after the lab");

    // A panic inside a test tears the lab down too.
    let mut names = Vec::new();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let lab = new_lab().helper("h1").expect("lab builds");
        names = lab.namespaces().to_vec();
        panic!("a failing test");
    }));
    assert!(result.is_err());
    assert_eq!(names.len(), 2);
    let left = namespaces();
    assert!(
        names.iter().all(|n| !left.contains(n)),
        "left behind after a panic: {left:?}"
    );
}

#[test]
fn a_lab_left_by_a_dead_process_is_removed_by_the_next() {
    // No process can have an id above pid_max: this lab's owner is dead.
    let pid_max: u64 = std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .expect("pid_max")
        .trim()
        .parse()
        .expect("a number");
    let stale = format!("bcl{}-0-pub", pid_max + 1);
    let live = format!("bcl{}-999-pub", std::process::id());
    for name in [&stale, &live] {
        let made = std::process::Command::new("ip")
            .args(["netns", "add", name])
            .status()
            .expect("ip runs");
        assert!(made.success(), "ip netns add {name}");
    }
    let lab = new_lab();
    let left = namespaces();
    // Clean up before asserting, so a failure leaves nothing behind either.
    let _ = std::process::Command::new("ip").args(["netns", "del", &live]).status();
    assert!(!left.contains(&stale), "a dead process's lab is removed");
    assert!(left.contains(&live), "a living process's lab is kept");
    drop(lab);
}

/// A `backchannel run --json` process inside a lab host.
fn node(lab: &NatLab, host: &str, dir: &std::path::Path, extra: &[&str]) -> Proc {
    let listen = format!("/ip4/{}/tcp/4001", lab.host(host).expect("host").addr());
    let mut child = lab
        .command(host, BIN)
        .expect("command")
        .arg("--data-dir")
        .arg(dir)
        .args([
            "run",
            "--json",
            "--no-mdns",
            "--name",
            host,
            "--room",
            "lobby",
            "--listen",
            &listen,
        ])
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the binary starts in the lab");
    Proc {
        stdin: child.stdin.take(),
        lines: BufReader::new(child.stdout.take().expect("stdout")).lines(),
        child,
    }
}

async fn type_line(proc: &mut Proc, line: &str) {
    let stdin = proc.stdin.as_mut().expect("stdin open");
    stdin.write_all(format!("{line}\n").as_bytes()).await.expect("write");
    stdin.flush().await.expect("flush");
}

/// Starts a helper node and two home nodes (easy and hard NAT) that know
/// only the helper's address; returns them with their peer ids once each
/// home has the helper in the room and the helper has both homes.
async fn helper_and_homes(lab: &NatLab, dir: &std::path::Path) -> [(Proc, String); 3] {
    let mut helper = node(lab, "h1", &dir.join("h1"), &[]);
    let (helper_id, helper_addr) = helper.identity_and_addr().await;
    let mut homes = Vec::new();
    for name in ["alice", "carol"] {
        let mut home = node(lab, name, &dir.join(name), &["--peer", &helper_addr]);
        let (id, _) = home.identity_and_addr().await;
        home.wait("the helper in the room", |v| {
            is(v, "room_peer_joined") && v["peer"] == helper_id.as_str()
        })
        .await;
        homes.push((home, id));
    }
    for (_, id) in &homes {
        helper
            .wait("a home in the room", |v| {
                is(v, "room_peer_joined") && v["peer"] == id.as_str()
            })
            .await;
    }
    let [alice, carol] = <[_; 2]>::try_from(homes).unwrap_or_else(|_| unreachable!("two homes"));
    [(helper, helper_id), alice, carol]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hallway_posts_cross_nats_both_ways_through_a_helper() {
    let lab = new_lab()
        .helper("h1")
        .and_then(|l| l.home("alice", Nat::Easy))
        .and_then(|l| l.home("carol", Nat::Hard))
        .expect("lab builds");
    let tmp = tempfile::tempdir().expect("tmp");
    let [(mut helper, _), (mut alice, alice_id), (mut carol, carol_id)] = helper_and_homes(&lab, tmp.path()).await;

    type_line(&mut alice, "hello from behind an easy NAT").await;
    let post = carol
        .wait("alice's post", |v| is(v, "hallway") && v["from"] == alice_id.as_str())
        .await;
    assert_eq!(post["text"].as_str(), Some("hello from behind an easy NAT"));

    type_line(&mut carol, "hello from behind a hard NAT").await;
    let post = alice
        .wait("carol's post", |v| is(v, "hallway") && v["from"] == carol_id.as_str())
        .await;
    assert_eq!(post["text"].as_str(), Some("hello from behind a hard NAT"));
    for from in [&alice_id, &carol_id] {
        helper
            .wait("both posts at the helper", |v| {
                is(v, "hallway") && v["from"] == from.as_str()
            })
            .await;
    }
}

/// How long reach may take in the lab: a DHT round, a relay reservation,
/// AutoNAT's first probes and a hole punch, with room to spare.
const REACH: Duration = Duration::from_secs(60);

/// A `backchannel serve` helper inside a lab host; returns it with its
/// address (ending in `/p2p/<id>`) once it listens.
async fn serve(lab: &NatLab, host: &str, dir: &std::path::Path, extra: &[&str]) -> (Proc, String) {
    let listen = format!("/ip4/{}/tcp/4001", lab.host(host).expect("host").addr());
    let mut child = lab
        .command(host, BIN)
        .expect("command")
        .arg("--data-dir")
        .arg(dir)
        .args(["serve", "--json", "--listen", &listen])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the binary starts in the lab");
    let mut proc = Proc {
        stdin: None,
        lines: BufReader::new(child.stdout.take().expect("stdout")).lines(),
        child,
    };
    let (_, addr) = proc.identity_and_addr().await;
    (proc, addr)
}

/// A participant in a home that knows only a helper (no mDNS, no peer).
async fn participant(lab: &NatLab, host: &str, dir: &std::path::Path, helper: &str) -> (Proc, String) {
    let mut proc = node(lab, host, &dir.join(host), &["--bootstrap", helper]);
    let (id, _) = proc.identity_and_addr().await;
    (proc, id)
}

/// Waits until `proc` lists `peer` in `/peers` with a connection whose
/// `relayed` flag is `relayed`; returns that peer's entry.
async fn wait_for_path(proc: &mut Proc, peer: &str, relayed: bool) -> serde_json::Value {
    let deadline = Instant::now() + REACH;
    loop {
        type_line(proc, "/peers").await;
        let list = proc.wait_within(REACH, "the peer list", |v| is(v, "peers")).await;
        let entry = list["peers"]
            .as_array()
            .expect("peers")
            .iter()
            .find(|p| p["peer"] == peer)
            .cloned();
        if let Some(entry) = entry
            && entry["connections"]
                .as_array()
                .is_some_and(|c| c.iter().any(|c| c["relayed"] == relayed))
        {
            return entry;
        }
        assert!(
            Instant::now() < deadline,
            "no {} connection to {peer}: {list}",
            if relayed { "relayed" } else { "direct" }
        );
        // Poll the node's state again after a moment (this is a query, not
        // an event: there is nothing to wait on).
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Sends a DM from `from` to `to` and waits until it is delivered there.
async fn dm_arrives(from: &mut Proc, from_id: &str, to: &mut Proc, to_id: &str, text: &str) {
    type_line(from, &format!("/dm {to_id} {text}")).await;
    let dm = to
        .wait_within(REACH, "the DM", |v| is(v, "dm") && v["text"] == text)
        .await;
    assert_eq!(dm["from"].as_str(), Some(from_id));
    from.wait_within(REACH, "the receipt", |v| is(v, "delivered") && v["to"] == to_id)
        .await;
}

/// Posts in the lobby from `from` and waits until `to` shows it.
async fn post_arrives(from: &mut Proc, from_id: &str, to: &mut Proc, text: &str) {
    type_line(from, text).await;
    to.wait_within(REACH, "the post", |v| {
        is(v, "hallway") && v["from"] == from_id && v["text"] == text
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_homes_find_each_other_by_room_through_a_helper_and_end_up_direct() {
    let lab = new_lab()
        .helper("h1")
        .and_then(|l| l.home("alice", Nat::Easy))
        .and_then(|l| l.home("bob", Nat::Easy))
        .expect("lab builds");
    let tmp = tempfile::tempdir().expect("tmp");
    let (_helper, h1) = serve(&lab, "h1", &tmp.path().join("h1"), &[]).await;
    let (mut alice, alice_id) = participant(&lab, "alice", tmp.path(), &h1).await;
    let (mut bob, bob_id) = participant(&lab, "bob", tmp.path(), &h1).await;

    // They find each other by the room's name alone: the helper is in no room.
    alice
        .wait_within(REACH, "bob in the lobby", |v| {
            is(v, "room_peer_joined") && v["peer"] == bob_id.as_str()
        })
        .await;
    post_arrives(&mut alice, &alice_id, &mut bob, "hello bob, from behind a NAT").await;
    post_arrives(&mut bob, &bob_id, &mut alice, "hello alice, from behind another").await;
    dm_arrives(&mut alice, &alice_id, &mut bob, &bob_id, "a private word").await;
    dm_arrives(&mut bob, &bob_id, &mut alice, &alice_id, "and one back").await;
    // Hole punching made the connection between the homes direct.
    wait_for_path(&mut alice, &bob_id, false).await;
    wait_for_path(&mut bob, &alice_id, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_home_behind_a_hard_nat_still_chats_and_gets_dms_through_a_relay() {
    let lab = new_lab()
        .helper("h1")
        .and_then(|l| l.home("alice", Nat::Easy))
        .and_then(|l| l.home("carol", Nat::Hard))
        .expect("lab builds");
    let tmp = tempfile::tempdir().expect("tmp");
    let (_helper, h1) = serve(&lab, "h1", &tmp.path().join("h1"), &[]).await;
    let (mut alice, alice_id) = participant(&lab, "alice", tmp.path(), &h1).await;
    let (mut carol, carol_id) = participant(&lab, "carol", tmp.path(), &h1).await;

    post_arrives(&mut alice, &alice_id, &mut carol, "can you read me through the relay?").await;
    post_arrives(&mut carol, &carol_id, &mut alice, "loud and clear").await;
    dm_arrives(&mut alice, &alice_id, &mut carol, &carol_id, "a DM to a hard NAT").await;
    dm_arrives(&mut carol, &carol_id, &mut alice, &alice_id, "and one from it").await;
    // `/peers` says the connection is relayed, and over the relay transport.
    let entry = wait_for_path(&mut alice, &carol_id, true).await;
    let conn = entry["connections"]
        .as_array()
        .expect("connections")
        .iter()
        .find(|c| c["relayed"] == true)
        .expect("relayed");
    assert_eq!(conn["transport"].as_str(), Some("relay"));
    // `/net` shows the reservation and the helper, and, once AutoNAT tried
    // to dial carol back, that she is not reachable directly.
    let deadline = Instant::now() + REACH;
    let net = loop {
        type_line(&mut carol, "/net").await;
        let net = carol.wait("the network state", |v| is(v, "net")).await;
        if net["net"]["reachability"] == "private" {
            break net;
        }
        assert!(Instant::now() < deadline, "reachability never found: {net}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(
        net["net"]["relays"]
            .as_array()
            .is_some_and(|r| r.iter().any(|r| r["accepted"] == true)),
        "{net}"
    );
    assert_eq!(net["net"]["bootstrap"][0]["connected"], true, "{net}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_a_helper_dies_direct_connections_keep_chatting_and_newcomers_use_another() {
    let lab = new_lab()
        .helper("h1")
        .and_then(|l| l.helper("h2"))
        .and_then(|l| l.home("alice", Nat::Easy))
        .and_then(|l| l.home("bob", Nat::Easy))
        .and_then(|l| l.home("dave", Nat::Easy))
        .expect("lab builds");
    let tmp = tempfile::tempdir().expect("tmp");
    let (mut h1_proc, h1) = serve(&lab, "h1", &tmp.path().join("h1"), &[]).await;
    let (_h2_proc, h2) = serve(&lab, "h2", &tmp.path().join("h2"), &["--bootstrap", &h1]).await;
    let (mut alice, alice_id) = participant(&lab, "alice", tmp.path(), &h1).await;
    let (mut bob, bob_id) = participant(&lab, "bob", tmp.path(), &h1).await;
    post_arrives(&mut alice, &alice_id, &mut bob, "before").await;
    wait_for_path(&mut alice, &bob_id, false).await;

    h1_proc.child.kill().await.expect("kill the first helper");
    post_arrives(&mut alice, &alice_id, &mut bob, "the helper is gone, we are not").await;
    post_arrives(&mut bob, &bob_id, &mut alice, "still here").await;

    let (mut dave, dave_id) = participant(&lab, "dave", tmp.path(), &h2).await;
    post_arrives(&mut alice, &alice_id, &mut dave, "welcome, dave").await;
    post_arrives(
        &mut dave,
        &dave_id,
        &mut bob,
        "thanks, found you through the second helper",
    )
    .await;
}

/// `backchannel mesh --netns`: every node runs in its own home behind a NAT
/// and knows only the helper the lab starts; the rooms form through the DHT
/// and relay, every post and DM arrives, and no namespace is left after.
#[test]
fn mesh_netns_runs_every_node_behind_its_own_nat() {
    let child = std::process::Command::new(BIN)
        .args([
            "mesh",
            "--netns",
            "--nodes",
            "4",
            "--rate",
            "4",
            "--duration",
            "4",
            "--dm-pairs",
            "1",
            "--json",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run mesh");
    let prefix = format!("bcl{}-", child.id());
    let out = child.wait_with_output().expect("mesh ends");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "mesh --netns failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_str(stdout.lines().last().expect("a report")).expect("json");
    assert_eq!(report["nodes"], 4);
    assert!(report["expected"].as_u64().unwrap() > 0, "{report}");
    assert_eq!(report["delivered"], report["expected"], "{report}");
    assert_eq!(report["dm"]["delivered"], report["dm"]["sent"], "{report}");
    assert!(report["dm"]["delivered"].as_u64().unwrap() > 0, "{report}");
    let left: Vec<String> = namespaces().into_iter().filter(|n| n.starts_with(&prefix)).collect();
    assert!(left.is_empty(), "the lab's namespaces are gone: {left:?}");
}
