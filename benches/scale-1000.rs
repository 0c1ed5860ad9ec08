//! scale-1000: 1,000 nodes in one process in one room, 1 post/s for 30 s
//! (issue 14): does the mesh form, is every post delivered, and the p99 and
//! CPU per delivery against plain gossipsub at the same size. A side that
//! cannot hold the size prints where it broke (formation timed out, or the
//! delivered fraction) instead of failing the bench.
//! `cargo bench --bench scale-1000`; `SCALE_NODES=500` runs another size.

#![allow(missing_docs)]

#[path = "support/baseline.rs"]
mod baseline;
#[path = "support/common.rs"]
mod common;

use serde_json::{Value, json};

const NODES: usize = 1000;
const RATE: f64 = 1.0;
const SECS: f64 = 30.0;

/// The size to run: `SCALE_NODES`, or 1,000.
fn nodes() -> usize {
    std::env::var("SCALE_NODES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(NODES)
}

fn run(which: &str) -> Value {
    let n = nodes();
    common::raise_fd_limit();
    let started = std::time::Instant::now();
    let peaks = common::Peaks::start();
    let mut line = common::runtime().block_on(async {
        if which == "backchannel" {
            let s = common::hallway_scenario("scale-1000", n, RATE, SECS);
            match backchannel::lab::runner::run(&s, |_| {}).await {
                Ok(r) => {
                    let mut line = common::backchannel_line("scale-1000", &r);
                    line["rss_per_node_mb"] = json!(r.rss_per_node_mb);
                    line["delivery_ratio"] = json!(r.delivery_ratio);
                    line
                }
                Err(e) => json!({
                    "scenario": "scale-1000", "impl": "backchannel", "nodes": n,
                    "failed": e.to_string(),
                }),
            }
        } else {
            let mut r = common::baseline_hallway(n, RATE, SECS).await;
            let mut line = common::baseline_line("scale-1000", &mut r);
            line["delivery_ratio"] = json!(common::ratio(r.delivered as f64, r.expected as f64));
            line
        }
    });
    line["wall_s"] = json!(common::ratio(started.elapsed().as_secs_f64(), 1.0));
    let (files, threads) = peaks.stop();
    line["open_files_peak"] = json!(files);
    line["threads_peak"] = json!(threads);
    line
}

/// Where a side broke, in words, or None if it held: formed, and every post
/// delivered.
fn broke(line: &Value) -> Option<String> {
    if let Some(why) = line["failed"].as_str() {
        return Some(why.to_string());
    }
    let (delivered, expected) = (line["delivered"].as_u64()?, line["expected"].as_u64()?);
    (delivered < expected).then(|| format!("delivered {delivered} of {expected}"))
}

fn ratios(b: &Value, l: &Value) -> Value {
    let f = |v: &Value, k: &str| v[k].as_f64().unwrap_or(f64::NAN);
    json!({
        "scenario": "scale-1000", "ratio": "backchannel/libp2p", "nodes": nodes(),
        "p99": common::ratio(f(b, "p99_ms"), f(l, "p99_ms")),
        "cpu_per_delivery": common::ratio(f(b, "cpu_us_per_delivery"), f(l, "cpu_us_per_delivery")),
        "formation": common::ratio(f(b, "formation_ms"), f(l, "formation_ms")),
        "rss_per_node": common::ratio(f(b, "rss_per_node_mb"), f(l, "rss_per_node_mb")),
        "backchannel_broke": broke(b),
        "libp2p_broke": broke(l),
        "target": "both form and deliver 100%; p99 and CPU per delivery reported against the baseline",
        "met": broke(b).is_none() && broke(l).is_none(),
    })
}

fn main() {
    common::main(run, ratios);
}
