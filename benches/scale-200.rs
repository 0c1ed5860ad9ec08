//! scale-200: 200 nodes in one process form a mesh in one room and deliver
//! 100 posts; formation time, delivery and memory per node.
//! `cargo bench --bench scale-200`

#![allow(missing_docs)]

#[path = "support/baseline.rs"]
mod baseline;
#[path = "support/common.rs"]
mod common;

use serde_json::{Value, json};

const NODES: usize = 200;
const RATE: f64 = 20.0;
const SECS: f64 = 5.0;

fn run(which: &str) -> Value {
    common::runtime().block_on(async {
        if which == "backchannel" {
            let r = common::backchannel(&common::hallway_scenario("scale-200", NODES, RATE, SECS)).await;
            let mut line = common::backchannel_line("scale-200", &r);
            line["rss_per_node_mb"] = json!(r.rss_per_node_mb);
            line
        } else {
            let mut r = common::baseline_hallway(NODES, RATE, SECS).await;
            common::baseline_line("scale-200", &mut r)
        }
    })
}

fn ratios(b: &Value, l: &Value) -> Value {
    let f = |v: &Value, k: &str| v[k].as_f64().unwrap_or(f64::NAN);
    let idle = f(b, "rss_idle_per_node_mb");
    json!({
        "scenario": "scale-200", "ratio": "backchannel/libp2p",
        "formation": common::ratio(f(b, "formation_ms"), f(l, "formation_ms")),
        "rss_per_node": common::ratio(f(b, "rss_per_node_mb"), f(l, "rss_per_node_mb")),
        "target": "forms, delivers 100%, RSS per idle node <= 3 MB",
        "met": b["delivered"] == b["expected"] && idle <= 3.0,
    })
}

fn main() {
    common::main(run, ratios);
}
