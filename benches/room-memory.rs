//! room-memory: what a node's memory holds per post, and whether a room's
//! bound (`Config::room_bound`) bounds it. `cargo bench --bench room-memory`
//!
//! One node in a room; a raw peer publishes valid posts into it under 1,000
//! keys at 200 a second for 4 minutes (48,000 posts), and the process's
//! resident memory is sampled every 10 s (one process per run, so RSS is
//! this run's own). No rate limit or share applies (`Limits::unlimited`):
//! this measures what admitted posts cost, not admission. Runs: the room's
//! bound at 1,000 and at the default 10,000, so both pass their bound.
//! What gossipsub keeps per message is bounded by time, not count (its
//! duplicate cache for 60 s, peer scoring's delivery records for 120 s, the
//! message cache for 5 s), so a steady rate for longer than those windows
//! is what shows whether memory is bounded: the bench prints the growth
//! per post over the last two minutes, once those windows are full, and
//! the node's data directory's size at the end.
//!
//! A third run, "flood-process", measures a flood with the node in a
//! process of its own (`backchannel run`, default limits), so that its
//! memory is told apart from the attacker's: one raw connection publishes
//! valid posts under 1,000 fresh keys as fast as it can for 30 s (20,000 a
//! second asked), and the node process's RSS is read every 10 s. With the
//! flood ceiling (`Limits::gossip_flood_per_peer`) the flooder is
//! graylisted and gossipsub stops keeping what it sends. Run it alone with
//! `BACKCHANNEL_BENCH_IMPL=flood-process BIN --bench`.

#![allow(missing_docs)]

#[path = "support/baseline.rs"]
mod baseline;
#[path = "support/common.rs"]
mod common;
#[path = "../tests/it/support/raw.rs"]
#[allow(dead_code)]
mod raw;
#[path = "../tests/it/support/wire.rs"]
#[allow(dead_code)]
mod wire;

use std::time::{Duration, Instant};

use backchannel::lab::metrics::rss;
use backchannel::lab::{Lab, LabConfig};
use backchannel::{Event, Room};
use serde_json::{Value, json};

/// The raw peer's wait limit.
pub const T: Duration = Duration::from_secs(20);

const RATE: usize = 200;
const SECS: usize = 240;
const POSTS: usize = RATE * SECS;
const KEYS: usize = 1_000;
/// The last this many seconds give the growth per post.
const TAIL_SECS: usize = 120;

fn mb(bytes: u64) -> f64 {
    (bytes as f64 / 1048576.0 * 10.0).round() / 10.0
}

/// [`KEYS`] fresh ed25519 keys: the authors of the posts fed in.
fn fresh_keys() -> Vec<ed25519_dalek::SigningKey> {
    (0..KEYS)
        .map(|_| {
            let mut secret = [0u8; 32];
            getrandom::fill(&mut secret).expect("random");
            ed25519_dalek::SigningKey::from_bytes(&secret)
        })
        .collect()
}

/// The "flood-process" run.
async fn flood_process() -> Value {
    use tokio::io::{AsyncBufReadExt, BufReader};
    const FLOOD_SECS: u64 = 30;
    let dir = tempfile::tempdir().expect("dir");
    let identity = backchannel::Identity::from_secret([7; 32]);
    identity.save(dir.path()).expect("identity");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let addr: backchannel::Multiaddr = format!("/ip4/127.0.0.1/tcp/{port}").parse().expect("addr");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_backchannel"))
        .arg("--data-dir")
        .arg(dir.path())
        .args([
            "run",
            "--json",
            "--no-mdns",
            "--listen",
            &addr.to_string(),
            "--room",
            "lobby",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the binary starts");
    let pid = child.id().expect("pid");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let (shown_tx, shown) = tokio::sync::watch::channel(0usize);
    tokio::spawn(async move {
        let mut n = 0;
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains("\"type\":\"hallway\"") {
                n += 1;
                let _ = shown_tx.send(n);
            }
        }
    });
    // Until it listens.
    let deadline = Instant::now() + T;
    while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        assert!(Instant::now() < deadline, "the node listens within {T:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let keys = fresh_keys();
    let mut raw = raw::RawPeer::start(64 * 1024).await;
    raw.connect(&addr, identity.peer_id()).await;
    raw.join("lobby", identity.peer_id()).await;
    let (base, _) = rss(Some(pid));
    let mut samples = vec![json!([0, 0, mb(base)])];
    let started = Instant::now();
    let (mut sent, mut failed) = (0usize, 0usize);
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    let mut next_sample = 10;
    while started.elapsed() < Duration::from_secs(FLOOD_SECS) {
        tick.tick().await;
        for _ in 0..200 {
            let key = &keys[sent % KEYS];
            let post = wire::envelope(
                key,
                key.verifying_key().to_bytes(),
                wire::payload_post(&wire::post("lobby", &format!("flood {sent}"))),
            );
            sent += 1;
            if raw.try_publish("lobby", post).await.is_err() {
                failed += 1;
            }
        }
        if started.elapsed().as_secs() >= next_sample {
            samples.push(json!([next_sample, sent - failed, mb(rss(Some(pid)).0)]));
            next_sample += 10;
        }
    }
    let (end, peak) = rss(Some(pid));
    let shown = *shown.borrow();
    drop(raw);
    let _ = child.kill().await;
    json!({
        "bench": "room-memory", "run": "flood-process",
        "flood_secs": FLOOD_SECS, "published": sent - failed, "not_published": failed,
        "shown": shown,
        "node_rss_mb_every_10s": samples,
        "node_rss_end_mb": mb(end), "node_rss_peak_mb": mb(peak),
    })
}

fn run(which: &str) -> Value {
    if which == "flood-process" {
        return common::runtime().block_on(flood_process());
    }
    let bound: usize = which
        .strip_prefix("bound-")
        .and_then(|b| b.parse().ok())
        .expect("a bound");
    common::runtime().block_on(async move {
        let keys = fresh_keys();
        let lobby = Room::new("lobby").expect("room");
        // Function pointers: one per bound.
        let tweak: fn(&mut backchannel::Config) = match bound {
            1_000 => |c| c.room_bound = 1_000,
            _ => |c| c.room_bound = 10_000,
        };
        let config = LabConfig {
            tweak,
            limits: Some(backchannel::Limits::unlimited()),
            ..LabConfig::default()
        };
        let mut lab = Lab::start(1, config).await.expect("lab");
        lab.nodes[0].handle.join(&lobby).await.expect("join");
        let node = &mut lab.nodes[0];
        let mut events = node.take_events();
        let (shown_tx, mut shown) = tokio::sync::watch::channel(0usize);
        tokio::spawn(async move {
            let mut n = 0;
            while let Some(e) = events.recv().await {
                if matches!(e, Event::Hallway { .. }) {
                    n += 1;
                    let _ = shown_tx.send(n);
                }
            }
        });
        let mut raw = raw::RawPeer::start(64 * 1024).await;
        raw.connect(&node.addr, node.peer_id()).await;
        raw.join("lobby", node.peer_id()).await;

        let (base, _) = rss(None);
        // (seconds, posts shown, RSS) every 10 s.
        let mut samples: Vec<(usize, usize, u64)> = vec![(0, 0, base)];
        let started = Instant::now();
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        let per_tick = RATE / 20;
        for i in 0..POSTS {
            if i % per_tick == 0 {
                tick.tick().await;
            }
            let key = &keys[i % KEYS];
            let post = wire::envelope(
                key,
                key.verifying_key().to_bytes(),
                wire::payload_post(&wire::post("lobby", &format!("a line of chat, number {i}"))),
            );
            raw.try_publish("lobby", post).await.expect("published");
            if (i + 1) % (RATE * 10) == 0 {
                samples.push(((i + 1) / RATE, *shown.borrow(), rss(None).0));
            }
        }
        tokio::time::timeout(Duration::from_secs(60), shown.wait_for(|n| *n >= POSTS))
            .await
            .expect("the node shows every post within a minute")
            .expect("events");
        let secs = started.elapsed().as_secs_f64();
        let (end, peak) = rss(None);
        let stats = lab.nodes[0].handle.stats().await.expect("stats");
        let held = lab.nodes[0]
            .handle
            .room_footprint(&lobby)
            .await
            .expect("footprint")
            .posts;
        let disk = common::dir_bytes(&lab.nodes[0].config.data_dir);
        // Growth per post over the last TAIL_SECS.
        let last = samples[samples.len() - 1];
        let first = samples
            .iter()
            .rev()
            .find(|(t, ..)| *t + TAIL_SECS <= last.0)
            .copied()
            .unwrap_or(samples[0]);
        let per_post = (last.2 as f64 - first.2 as f64) / (last.1 - first.1).max(1) as f64;
        lab.shutdown().await;
        json!({
            "bench": "room-memory", "run": which, "room_bound": bound, "posts": POSTS,
            "shown": stats.hallway_received, "evicted": stats.room_evicted, "held": held,
            "secs": (secs * 10.0).round() / 10.0,
            "rss_mb_every_10s": samples.iter().map(|(t, n, r)| json!([t, n, mb(*r)])).collect::<Vec<_>>(),
            "bytes_per_post_last_2_min": per_post.round(),
            "rss_end_mb": mb(end), "rss_peak_mb": mb(peak),
            "disk_mb": mb(disk),
        })
    })
}

fn main() {
    common::main_with(&["bound-1000", "bound-10000", "flood-process"], run, |lines| {
        json!({
            "bench": "room-memory",
            "target": "once past the bound and gossipsub's time windows, memory per further post ~0 (issue 16: bounded under any flood)",
            "bytes_per_post_last_2_min": lines.iter().map(|l| l["bytes_per_post_last_2_min"].clone()).collect::<Vec<_>>(),
        })
    });
}
