//! hostile: the adversarial room, measured. 20 honest nodes (random graph of
//! degree 4, in process) post 20 posts/s for 10 s; in the "attacked" run,
//! hostile peers attached to honest nodes at the same time send invalid
//! messages, flood ~1,000 valid posts/s under one key, and ask for history
//! without end. Each run is a child process of its own, so peak RSS is its
//! own. Prints a JSON line per run and a ratio line.
//! `cargo bench --bench hostile`
//!
//! Target (issue 6): honest delivery 100% and honest p99 within 2x of the
//! run without attackers; memory bounded (peak RSS reported both ways).
//!
//! The sybil runs (issue 16) flood valid posts, each signed by its author:
//! "sybil-1k" 5,000 posts under 1,000 keys from one connection at node 0
//! (500/s), "sybil-10k" 10,000 posts under 10,000 keys (1,000/s), "sybil-two"
//! two connections (nodes 0 and 5) at 300/s each under 1,000 keys each,
//! "sybil-paid" 5,000 posts under 200 keys that each carry a stamp of the
//! nodes' default strength (minted before the run: ~0.1 s of a core per
//! key here), from one connection at node 0 (500/s). They
//! print spam shown per node (mean and worst), and how many honest nodes end
//! with a negative score at an honest neighbour. Target: spam shown per node
//! ≤ 1% of what was sent, no honest node penalised. The rest of issue 16's
//! table: "sybil-10keys" (250 posts under 10 keys), "sybil-100keys" (2,500
//! under 100), "sybil-490" and "sybil-800" (10,000 under 1,000 keys at 490/s
//! and 800/s), "sybil-long" (two connections at 300/s each under 1,000 keys
//! each while the room posts for 150 s), and "sybil-paid-long" (paid keys at
//! 500/s for 150 s, with the rooms' bound at 1,000: memory under a flood
//! that gets in). Every run reports the process's RSS every 10 s, the posts
//! the rooms evicted, and the nodes' data directories' size at the end.
//! One run alone: `BACKCHANNEL_BENCH_IMPL=sybil-long BIN --bench`.

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

use std::collections::HashMap;
use std::time::{Duration, Instant};

use backchannel::lab::metrics::rss;
use backchannel::lab::{Lab, LabConfig, Topology};
use backchannel::{Event, MessageId, Room};
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// The raw peer's wait limit.
pub const T: Duration = Duration::from_secs(20);

const HONEST: usize = 20;
const RATE: f64 = 20.0;
const SECS: f64 = 10.0;
const FLOOD_PER_S: f64 = 1000.0;
/// How long the "-long" runs post and flood.
const LONG_SECS: f64 = 150.0;
/// The rooms' bound in "sybil-paid-long".
const LONG_BOUND: usize = 1_000;

fn run(which: &str) -> Value {
    common::runtime().block_on(async move {
        let attacked = which == "attacked";
        // (node attacked, posts, keys, posts per second, stamped) per sybil
        // attacker.
        let sybils: Vec<(usize, usize, usize, f64, bool)> = match which {
            "sybil-1k" => vec![(0, 5_000, 1_000, 500.0, false)],
            "sybil-10k" => vec![(0, 10_000, 10_000, 1_000.0, false)],
            "sybil-two" => vec![(0, 3_000, 1_000, 300.0, false), (5, 3_000, 1_000, 300.0, false)],
            "sybil-paid" => vec![(0, 5_000, 200, 500.0, true)],
            // The rest of issue 16's table: small floods, one connection at
            // just under and well over the per-peer gossip limit (500/s),
            // and two connections for 150 s.
            "sybil-10keys" => vec![(0, 250, 10, 500.0, false)],
            "sybil-100keys" => vec![(0, 2_500, 100, 500.0, false)],
            "sybil-490" => vec![(0, 10_000, 1_000, 490.0, false)],
            "sybil-800" => vec![(0, 10_000, 1_000, 800.0, false)],
            "sybil-long" => vec![(0, 45_000, 1_000, 300.0, false), (5, 45_000, 1_000, 300.0, false)],
            // Memory under a long flood that gets in: paid keys for 150 s,
            // with the rooms' bound at 1,000 so that it is reached within
            // the run (at 10,000 it takes ~8 minutes at the stamped share).
            "sybil-paid-long" => vec![(0, 75_000, 1_000, 500.0, true)],
            _ => Vec::new(),
        };
        let secs = if which.ends_with("-long") { LONG_SECS } else { SECS };
        // The attackers' keys, and their stamps if they pay (minted before
        // the run, on blocking threads: the attacker's own machine).
        let bits = backchannel::Limits::default().stamp_bits;
        let mut key_sets = Vec::new();
        for &(_, _, keys, _, paid) in &sybils {
            let set = tokio::task::spawn_blocking(move || {
                (0..keys)
                    .map(|_| {
                        let mut secret = [0u8; 32];
                        getrandom::fill(&mut secret).expect("random");
                        let key = ed25519_dalek::SigningKey::from_bytes(&secret);
                        let stamp = if paid {
                            wire::stamp("lobby", &key.verifying_key().to_bytes(), bits)
                        } else {
                            0
                        };
                        (key, stamp)
                    })
                    .collect::<Vec<_>>()
            })
            .await
            .expect("keys");
            key_sets.push(set);
        }
        let lobby = Room::new("lobby").expect("room");
        let topology = Topology::Random { degree: 4 };
        let config = if which == "sybil-paid-long" {
            LabConfig {
                tweak: |c| c.room_bound = LONG_BOUND,
                ..LabConfig::default()
            }
        } else {
            LabConfig::default()
        };
        let mut lab = Lab::start(HONEST, config).await.expect("lab");
        let edges = topology.edges(HONEST, 3);
        lab.connect_edges(&edges, T).await.expect("connect");
        lab.join_all(&lobby, &edges, T).await.expect("mesh");

        // Every node's Hallway events go to one collector with their time.
        let (tx, mut rx) = mpsc::unbounded_channel::<(usize, MessageId, Instant)>();
        for node in lab.nodes.iter_mut() {
            let mut events = node.take_events();
            let (tx, index) = (tx.clone(), node.index);
            tokio::spawn(async move {
                while let Some(e) = events.recv().await {
                    if let Event::Hallway { id, .. } = e {
                        let _ = tx.send((index, id, Instant::now()));
                    }
                }
            });
        }

        let mut attackers = Vec::new();
        if attacked {
            for i in [0usize, 5, 10] {
                let mut raw = raw::RawPeer::start(64 * 1024).await;
                raw.connect(&lab.nodes[i].addr, lab.nodes[i].peer_id()).await;
                raw.join("lobby", lab.nodes[i].peer_id()).await;
                attackers.push((i, raw));
            }
        }
        let mut sybil_peers = Vec::new();
        for &(i, ..) in &sybils {
            let mut raw = raw::RawPeer::start(64 * 1024).await;
            raw.connect(&lab.nodes[i].addr, lab.nodes[i].peer_id()).await;
            raw.join("lobby", lab.nodes[i].peer_id()).await;
            sybil_peers.push(raw);
        }
        let sybil_attack = futures::future::join_all(sybils.iter().zip(&sybil_peers).zip(&key_sets).map(
            |((&(_, posts, _, per_s, _), raw), keys)| async move {
                let mut tick = tokio::time::interval(Duration::from_secs_f64(10.0 / per_s));
                let mut failed = 0usize;
                let mut why = String::new();
                for i in 0..posts {
                    if i % 10 == 0 {
                        tick.tick().await;
                    }
                    let (key, stamp) = &keys[i % keys.len()];
                    let mut body = wire::post("lobby", &format!("sybil {i}"));
                    body.stamp = *stamp;
                    let post = wire::envelope(key, key.verifying_key().to_bytes(), wire::payload_post(&body));
                    if let Err(e) = raw.try_publish("lobby", post).await {
                        failed += 1;
                        why = e;
                    }
                }
                if failed > 0 {
                    eprintln!("{failed} of {posts} flood posts not published (last: {why})");
                }
                posts - failed
            },
        ));
        let attack = async {
            if attackers.is_empty() {
                return sybil_attack.await.into_iter().sum::<usize>();
            }
            let (_, garbage) = &attackers[0];
            let (_, flooder) = &attackers[1];
            let (history_node, historian) = &attackers[2];
            let mut sent = 0;
            for bytes in [vec![0xff, 0xff, 0x01], vec![0x0a, 0x7f], vec![0x12, 0x00, 0x01]] {
                let _ = garbage.try_publish("lobby", bytes).await;
            }
            let start = Instant::now();
            let mut tick = tokio::time::interval(Duration::from_secs_f64(10.0 / FLOOD_PER_S));
            let own = flooder.public_key();
            let history_peer = lab.nodes[*history_node].peer_id();
            while start.elapsed().as_secs_f64() < secs {
                tick.tick().await;
                for _ in 0..10 {
                    let post = wire::envelope(
                        &flooder.key,
                        own,
                        wire::payload_post(&wire::post("lobby", &format!("spam {sent}"))),
                    );
                    let _ = flooder.try_publish("lobby", post).await;
                    sent += 1;
                }
                // History requests without end: 100/s, five times the limit.
                let ask = wire::sync_request("lobby", 3, &wire::list(&[vec![9; 32]]));
                let _ = historian.sync(history_peer, ask).await;
            }
            sent
        };

        // Honest traffic: round-robin authors at RATE posts/s.
        let honest = async {
            let mut posted: HashMap<MessageId, (usize, Instant)> = HashMap::new();
            let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / RATE));
            let total = (RATE * secs) as usize;
            for k in 0..total {
                tick.tick().await;
                let author = k % HONEST;
                let t0 = Instant::now();
                if let Ok(id) = lab.nodes[author].handle.post(&lobby, &format!("honest {k}")).await {
                    posted.insert(id, (author, t0));
                }
            }
            posted
        };
        // The process's resident memory every 10 s while the run goes on.
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let sampler = tokio::spawn(async move {
            let started = Instant::now();
            let mut samples = Vec::new();
            let mut every = tokio::time::interval(Duration::from_secs(10));
            loop {
                tokio::select! {
                    _ = every.tick() => {
                        let (now, _) = rss(None);
                        samples.push(json!([started.elapsed().as_secs(), (now as f64 / 1048576.0).round()]));
                    }
                    _ = &mut stopped => return samples,
                }
            }
        });
        let (flooded, posted) = tokio::join!(attack, honest);
        let _ = stop.send(());
        let rss_samples = sampler.await.unwrap_or_default();
        // Graylisted at the end of the attack?
        let mut graylisted = 0;
        for (i, raw) in &attackers {
            let peers = lab.nodes[*i].handle.peers().await.expect("peers");
            if peers
                .iter()
                .any(|p| p.peer == raw.peer_id && p.score.is_some_and(|s| s < -80.0))
            {
                graylisted += 1;
            }
        }

        // Collect deliveries until every honest post reached every other
        // honest node, or 10 s pass without news.
        let expected = posted.len() * (HONEST - 1);
        let mut latencies = Vec::with_capacity(expected);
        let mut spam = 0usize;
        let mut spam_at = [0usize; HONEST];
        while latencies.len() < expected {
            match tokio::time::timeout(Duration::from_secs(10), rx.recv()).await {
                Ok(Some((node, id, at))) => match posted.get(&id) {
                    Some((author, t0)) if *author != node => {
                        latencies.push(at.duration_since(*t0).as_secs_f64() * 1e3);
                    }
                    Some(_) => {}
                    None => {
                        spam += 1;
                        spam_at[node] += 1;
                    }
                },
                _ => break,
            }
        }
        let mut rejected: HashMap<String, u64> = HashMap::new();
        // Refusals over a share asked of another peer, and fetched back.
        let (mut recovery_asked, mut recovered, mut evicted) = (0, 0, 0);
        let mut posts_held_max = 0;
        for node in &lab.nodes {
            let stats = node.handle.stats().await.expect("stats");
            recovery_asked += stats.recovery_asked;
            recovered += stats.recovered;
            evicted += stats.room_evicted;
            let held = node.handle.room_footprint(&lobby).await.map_or(0, |f| f.posts);
            posts_held_max = posts_held_max.max(held);
            for (k, v) in stats.rejected {
                *rejected.entry(k.to_string()).or_default() += v;
            }
        }
        // Honest nodes with a negative score at an honest neighbour.
        let mut penalised = std::collections::BTreeSet::new();
        for &(a, b) in &edges {
            for (at, who) in [(a, b), (b, a)] {
                let peers = lab.nodes[at].handle.peers().await.expect("peers");
                if peers
                    .iter()
                    .any(|p| p.peer == lab.nodes[who].peer_id() && p.score.is_some_and(|s| s < 0.0))
                {
                    penalised.insert(who);
                }
            }
        }
        let delivered = latencies.len();
        let latency = common::percentiles(&mut latencies);
        let (_, peak_bytes) = rss(None);
        let disk: u64 = lab.nodes.iter().map(|n| common::dir_bytes(&n.config.data_dir)).sum();
        lab.shutdown().await;
        json!({
            "bench": "hostile", "run": which, "honest_nodes": HONEST,
            "honest_posts": posted.len(), "expected": expected, "delivered": delivered,
            "p50_ms": latency.p50_ms, "p99_ms": latency.p99_ms, "max_ms": latency.max_ms,
            "flood_posts_sent": flooded, "spam_shown": spam,
            "spam_shown_per_node_mean": spam as f64 / HONEST as f64,
            "spam_shown_per_node_max": spam_at.iter().max().copied().unwrap_or(0),
            "honest_nodes_penalised": penalised.len(),
            "recovery_asked": recovery_asked, "recovered": recovered,
            "room_evicted": evicted, "posts_held_per_node_max": posts_held_max,
            "rss_every_10s_mb": rss_samples,
            "disk_mb_all_nodes": (disk as f64 / 1048576.0 * 10.0).round() / 10.0,
            "attackers_graylisted": graylisted, "attackers": attackers.len(),
            "rejected": rejected, "rss_peak_mb": (peak_bytes as f64 / 1048576.0 * 10.0).round() / 10.0,
        })
    })
}

fn main() {
    common::main_with(
        &[
            "quiet",
            "attacked",
            "sybil-1k",
            "sybil-10k",
            "sybil-two",
            "sybil-paid",
            "sybil-10keys",
            "sybil-100keys",
            "sybil-490",
            "sybil-800",
            "sybil-long",
            "sybil-paid-long",
        ],
        run,
        |lines| {
            let f = |v: &Value, k: &str| v[k].as_f64().unwrap_or(f64::NAN);
            let (quiet, attacked) = (&lines[0], &lines[1]);
            let p99 = common::ratio(f(attacked, "p99_ms"), f(quiet, "p99_ms"));
            let full = attacked["delivered"] == attacked["expected"] && quiet["delivered"] == quiet["expected"];
            let sybil: Vec<Value> = lines[2..]
                .iter()
                .map(|run| {
                    let sent = f(run, "flood_posts_sent");
                    let worst = f(run, "spam_shown_per_node_max");
                    json!({
                        "run": run["run"], "p99": common::ratio(f(run, "p99_ms"), f(quiet, "p99_ms")),
                        "delivered": format!("{}/{}", run["delivered"], run["expected"]),
                        "spam_shown_per_node_max_pct": (worst / sent * 1000.0).round() / 10.0,
                        "honest_nodes_penalised": run["honest_nodes_penalised"],
                        "rss_peak": common::ratio(f(run, "rss_peak_mb"), f(quiet, "rss_peak_mb")),
                    })
                })
                .collect();
            json!({
                "bench": "hostile", "ratio": "attacked/quiet",
                "p99": p99, "rss_peak": common::ratio(f(attacked, "rss_peak_mb"), f(quiet, "rss_peak_mb")),
                "target": "100% honest delivery, honest p99 within 2x of the quiet run, attackers graylisted",
                "met": full && p99 <= 2.0 && attacked["attackers_graylisted"] == attacked["attackers"],
                "sybil": sybil,
            })
        },
    );
}
