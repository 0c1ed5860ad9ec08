//! Hallway latency over a loopback mesh of in-process nodes, with and without
//! gossipsub's own message signing. Prints one JSON line per run.
//!
//! `cargo bench --bench hallway` (env: NODES=10 POSTS=300 RATE=100)

#![allow(missing_docs)]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use backchannel::lab::{Lab, LabConfig};
use backchannel::{Event, GossipAuth, MessageId, Room};
use tokio::sync::mpsc;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// CPU time (user + system) of this process so far.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    let ticks: u64 = fields.get(11).and_then(|u| u.parse().ok()).unwrap_or(0)
        + fields.get(12).and_then(|s| s.parse().ok()).unwrap_or(0);
    Duration::from_millis(ticks * 10) // USER_HZ is 100 on Linux
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

async fn run(auth: GossipAuth, nodes: usize, posts: usize, rate: usize, burst: bool) -> serde_json::Value {
    let lab_config = LabConfig {
        seed: 7,
        tweak: match auth {
            GossipAuth::Anonymous => |_| {},
            GossipAuth::Signed => |c| c.gossip_auth = GossipAuth::Signed,
        },
        // Bursts from one author measure CPU per delivery, not the limits.
        limits: Some(backchannel::Limits::unlimited()),
    };
    let room = Room::new("bench").expect("room");
    let mut lab = Lab::start(nodes, lab_config).await.expect("lab");
    // Each node dials up to 3 earlier nodes: a connected, sparse graph.
    let edges: Vec<(usize, usize)> = (1..nodes)
        .flat_map(|b| (b.saturating_sub(3)..b).map(move |a| (b, a)))
        .collect();
    let formed = Instant::now();
    lab.connect_edges(&edges, Duration::from_secs(30))
        .await
        .expect("connect");
    lab.join_all(&room, &edges, Duration::from_secs(30))
        .await
        .expect("mesh");
    let formation_ms = formed.elapsed().as_secs_f64() * 1000.0;

    // One collector per node records when each post is shown there.
    let (seen_tx, mut seen_rx) = mpsc::unbounded_channel::<(usize, MessageId, Instant)>();
    for node in &mut lab.nodes {
        let mut events = node.take_events();
        let tx = seen_tx.clone();
        let index = node.index;
        tokio::spawn(async move {
            while let Some(e) = events.recv().await {
                if let Event::Hallway { id, .. } = e {
                    let _ = tx.send((index, id, Instant::now()));
                }
            }
        });
    }
    drop(seen_tx);

    let handles: Vec<_> = lab.nodes.iter().map(|n| n.handle.clone()).collect();
    let text = "x".repeat(200);
    let cpu0 = cpu_time();
    let start = Instant::now();
    let mut sent: HashMap<MessageId, Instant> = HashMap::new();
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    for i in 0..posts {
        if !burst {
            let due = start + interval * i as u32;
            tokio::time::sleep_until(due.into()).await;
        }
        let at = Instant::now();
        let id = handles[i % nodes].post(&room, &text).await.expect("post");
        sent.insert(id, at);
    }
    let expected = posts * (nodes - 1);
    let mut latencies = Vec::with_capacity(expected);
    let mut seen = std::collections::HashSet::new();
    let mut duplicates = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while latencies.len() < expected {
        match tokio::time::timeout_at(deadline, seen_rx.recv()).await {
            Ok(Some((node, id, at))) => {
                if !seen.insert((node, id)) {
                    duplicates += 1;
                    continue;
                }
                if let Some(t0) = sent.get(&id) {
                    latencies.push(at.duration_since(*t0).as_secs_f64() * 1000.0);
                }
            }
            _ => break,
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let cpu = cpu_time() - cpu0;
    latencies.sort_by(f64::total_cmp);
    let delivered = latencies.len();
    lab.shutdown().await;
    serde_json::json!({
        "bench": if burst { "hallway-burst" } else { "hallway-paced" },
        "gossip_auth": format!("{auth:?}").to_lowercase(),
        "nodes": nodes,
        "posts": posts,
        "rate": if burst { serde_json::Value::Null } else { rate.into() },
        "expected": expected,
        "delivered": delivered,
        "duplicates": duplicates,
        "formation_ms": (formation_ms * 10.0).round() / 10.0,
        "p50_ms": (percentile(&latencies, 0.50) * 100.0).round() / 100.0,
        "p99_ms": (percentile(&latencies, 0.99) * 100.0).round() / 100.0,
        "max_ms": (latencies.last().copied().unwrap_or(f64::NAN) * 100.0).round() / 100.0,
        "deliveries_per_s": (delivered as f64 / elapsed).round(),
        "cpu_us_per_delivery": (cpu.as_secs_f64() * 1e6 / delivered.max(1) as f64).round(),
    })
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing: run small then.
    let quick = !std::env::args().any(|a| a == "--bench");
    let nodes = env("NODES", 10);
    let posts = env("POSTS", if quick { 20 } else { 300 });
    let rate = env("RATE", 100);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        for burst in [false, true] {
            for auth in [GossipAuth::Anonymous, GossipAuth::Signed] {
                println!("{}", run(auth, nodes, posts, rate, burst).await);
            }
        }
    });
}
