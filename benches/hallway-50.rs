//! hallway-50: 50 nodes in one process, one room, 20 posts/s of 200-byte text
//! for 10 s; Backchannel against plain gossipsub with Strict signing, and
//! Backchannel on encrypted data directories (the cost of sealing).
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

/// `NODES`, `RATE` and `SECS` from the environment override the defaults,
/// for a reduced run on a busy machine.
fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn run(which: &str) -> Value {
    common::runtime().block_on(async {
        if which.starts_with("backchannel") {
            let (nodes, rate, secs) = (env_or("NODES", NODES), env_or("RATE", RATE), env_or("SECS", SECS));
            let mut s = common::hallway_scenario("hallway-50", nodes, rate, secs);
            s.encrypt = which == "backchannel-encrypted";
            let r = common::backchannel(&s).await;
            let mut line = common::backchannel_line("hallway-50", &r);
            line["impl"] = which.into();
            line
        } else {
            let (nodes, rate, secs) = (env_or("NODES", NODES), env_or("RATE", RATE), env_or("SECS", SECS));
            let mut r = common::baseline_hallway(nodes, rate, secs).await;
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
    common::main_with(&["backchannel", "libp2p", "backchannel-encrypted"], run, |lines| {
        let f = |v: &Value, k: &str| v[k].as_f64().unwrap_or(f64::NAN);
        let mut out = ratios(&lines[0], &lines[1]);
        let (plain, sealed) = (&lines[0], &lines[2]);
        out["encrypted_over_plain"] = json!({
            "p50": common::ratio(f(sealed, "p50_ms"), f(plain, "p50_ms")),
            "p99": common::ratio(f(sealed, "p99_ms"), f(plain, "p99_ms")),
            "cpu_per_delivery": common::ratio(f(sealed, "cpu_us_per_delivery"), f(plain, "cpu_us_per_delivery")),
            "encrypted_delivered_all": sealed["delivered"] == sealed["expected"],
        });
        out
    });
}
