//! hallway-capacity-30: 30 nodes, one room; the post rate doubles until
//! delivery drops below 100% or p99 passes 100 ms. Reports the highest rate
//! that held, for Backchannel and for plain gossipsub with Strict signing.
//! `cargo bench --bench hallway-capacity-30`

#![allow(missing_docs)]

#[path = "support/baseline.rs"]
mod baseline;
#[path = "support/common.rs"]
mod common;

use serde_json::{Value, json};

const NODES: usize = 30;
const SECS: f64 = 3.0;
const P99_LIMIT_MS: f64 = 100.0;
const RATES: [f64; 9] = [25.0, 50.0, 100.0, 200.0, 300.0, 400.0, 600.0, 800.0, 1200.0];

fn run(which: &str) -> Value {
    common::runtime().block_on(async {
        let mut held = 0.0;
        let mut steps = Vec::new();
        for rate in RATES {
            let line = if which == "backchannel" {
                // A capacity measurement posts faster than a person: no rate limits.
                let mut s = common::hallway_scenario("hallway-capacity-30", NODES, rate, SECS);
                s.rate_limits = false;
                let r = common::backchannel(&s).await;
                common::backchannel_line("hallway-capacity-30", &r)
            } else {
                let mut r = common::baseline_hallway(NODES, rate, SECS).await;
                common::baseline_line("hallway-capacity-30", &mut r)
            };
            let ok = line["delivered"] == line["expected"] && line["p99_ms"].as_f64().unwrap_or(f64::MAX) <= P99_LIMIT_MS;
            eprintln!("{which} at {rate} posts/s: {line}");
            steps.push(json!({"rate": rate, "held": ok, "p99_ms": line["p99_ms"], "delivered": line["delivered"], "expected": line["expected"]}));
            if !ok {
                break;
            }
            held = rate;
        }
        let last_held = steps.iter().rev().find(|s| s["held"] == true).cloned().unwrap_or(Value::Null);
        json!({
            "scenario": "hallway-capacity-30", "impl": which, "nodes": NODES,
            "expected": last_held["expected"], "delivered": last_held["delivered"],
            "p99_ms": last_held["p99_ms"], "msgs_per_s": held,
            "max_rate_held": held, "steps": steps,
        })
    })
}

fn ratios(b: &Value, l: &Value) -> Value {
    let f = |v: &Value, k: &str| v[k].as_f64().unwrap_or(f64::NAN);
    let r = common::ratio(f(b, "max_rate_held"), f(l, "max_rate_held"));
    json!({
        "scenario": "hallway-capacity-30", "ratio": "backchannel/libp2p", "max_rate_held": r,
        "target": "backchannel sustains >= 2x the baseline's rate", "met": r >= 2.0,
    })
}

fn main() {
    common::main(run, ratios);
}
