//! hallway-50: 50 nodes in one process, one room, 20 posts/s of 200-byte text
//! for 10 s; Backchannel against plain gossipsub with Strict signing.
//! `cargo bench --bench hallway-50`

#![allow(missing_docs)]

#[path = "support/baseline.rs"]
mod baseline;
#[path = "support/common.rs"]
mod common;

use serde_json::{Value, json};

const NODES: usize = 50;
const RATE: f64 = 20.0;
const SECS: f64 = 10.0;

fn run(which: &str) -> Value {
    common::runtime().block_on(async {
        if which == "backchannel" {
            let r = common::backchannel(&common::hallway_scenario("hallway-50", NODES, RATE, SECS)).await;
            common::backchannel_line("hallway-50", &r)
        } else {
            let mut r = common::baseline_hallway(NODES, RATE, SECS).await;
            common::baseline_line("hallway-50", &mut r)
        }
    })
}

fn ratios(b: &Value, l: &Value) -> Value {
    let f = |v: &Value, k: &str| v[k].as_f64().unwrap_or(f64::NAN);
    let p99 = common::ratio(f(b, "p99_ms"), f(l, "p99_ms"));
    let full = b["delivered"] == b["expected"] && b["duplicates"] == 0;
    json!({
        "scenario": "hallway-50", "ratio": "backchannel/libp2p",
        "p50": common::ratio(f(b, "p50_ms"), f(l, "p50_ms")), "p99": p99,
        "cpu_per_delivery": common::ratio(f(b, "cpu_us_per_delivery"), f(l, "cpu_us_per_delivery")),
        "target": "100% delivery, 0 duplicates, p99 ratio <= 1",
        "met": full && p99 <= 1.0,
    })
}

fn main() {
    common::main(run, ratios);
}
