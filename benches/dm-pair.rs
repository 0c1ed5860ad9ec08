//! dm-pair: two nodes, durable signed DMs with receipts, window 64, 200-byte
//! text: Backchannel with group commit, Backchannel with one flush per
//! message, plain libp2p request-response with the same payload, and
//! Backchannel with group commit on encrypted data directories.
//! `cargo bench --bench dm-pair`

#![allow(missing_docs)]

#[path = "support/baseline.rs"]
mod baseline;
#[path = "support/common.rs"]
mod common;

use backchannel::lab::scenario::Scenario;
use serde_json::{Value, json};

const SECS: f64 = 5.0;
const WINDOW: usize = 64;

fn run(which: &str) -> Value {
    common::runtime().block_on(async {
        if which.starts_with("backchannel") {
            let mut s = Scenario {
                name: "dm-pair".into(),
                nodes: 2,
                topology: "full".into(),
                ..Scenario::default()
            };
            s.hallway.rate = 0.0;
            s.hallway.duration_s = SECS;
            s.dm.pairs = 1;
            s.dm.window = WINDOW;
            // As fast as the window allows.
            s.dm.rate = 0.0;
            s.dm.size = 200;
            s.group_commit = which != "backchannel-flush-each";
            s.encrypt = which == "backchannel-encrypted";
            // A throughput measurement: no rate limits.
            s.rate_limits = false;
            let r = common::backchannel(&s).await;
            json!({
                "scenario": "dm-pair", "impl": which, "nodes": 2, "expected": r.dm.sent,
                "delivered": r.dm.delivered, "failed": r.dm.failed, "p50_ms": r.dm.rtt.p50_ms,
                "p99_ms": r.dm.rtt.p99_ms, "msgs_per_s": r.dm.per_s, "rss_mb": r.rss_peak_mb, "cpu_s": r.cpu_s,
            })
        } else {
            let mut r = baseline::dm_pair(&baseline::DmParams {
                window: WINDOW,
                size: 200,
                duration: common::secs(SECS),
            })
            .await;
            let l = common::percentiles(&mut r.rtts_ms);
            json!({
                "scenario": "dm-pair", "impl": "libp2p", "nodes": 2, "expected": r.completed,
                "delivered": r.completed, "p50_ms": l.p50_ms, "p99_ms": l.p99_ms,
                "msgs_per_s": (r.completed as f64 / r.elapsed.as_secs_f64() * 100.0).round() / 100.0,
                "cpu_s": (r.cpu.as_secs_f64() * 100.0).round() / 100.0,
            })
        }
    })
}

fn ratios(lines: &[Value]) -> Value {
    let f = |v: &Value, k: &str| v[k].as_f64().unwrap_or(f64::NAN);
    let (b, each, l) = (&lines[0], &lines[1], &lines[2]);
    let r = common::ratio(f(b, "msgs_per_s"), f(l, "msgs_per_s"));
    json!({
        "scenario": "dm-pair", "ratio": "backchannel/libp2p", "msgs_per_s": r,
        "group_commit_over_flush_each": common::ratio(f(b, "msgs_per_s"), f(each, "msgs_per_s")),
        "encrypted_over_plain": common::ratio(f(&lines[3], "msgs_per_s"), f(b, "msgs_per_s")),
        "target": ">= 0.5x the baseline's request-response rate", "met": r >= 0.5,
    })
}

fn main() {
    common::main_with(
        &[
            "backchannel",
            "backchannel-flush-each",
            "libp2p",
            "backchannel-encrypted",
        ],
        run,
        ratios,
    );
}
