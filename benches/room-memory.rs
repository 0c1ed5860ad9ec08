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

fn run(which: &str) -> Value {
    let bound: usize = which
        .strip_prefix("bound-")
        .and_then(|b| b.parse().ok())
        .expect("a bound");
    common::runtime().block_on(async move {
        let keys: Vec<ed25519_dalek::SigningKey> = (0..KEYS)
            .map(|_| {
                let mut secret = [0u8; 32];
                getrandom::fill(&mut secret).expect("random");
                ed25519_dalek::SigningKey::from_bytes(&secret)
            })
            .collect();
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
    common::main_with(&["bound-1000", "bound-10000"], run, |lines| {
        json!({
            "bench": "room-memory",
            "target": "once past the bound and gossipsub's time windows, memory per further post ~0 (issue 16: bounded under any flood)",
            "bytes_per_post_last_2_min": lines.iter().map(|l| l["bytes_per_post_last_2_min"].clone()).collect::<Vec<_>>(),
        })
    });
}
