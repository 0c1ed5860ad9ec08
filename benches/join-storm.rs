//! join-storm: a room of 100 members carrying 5 posts/s, into which 500
//! more nodes join within 2 s (issue 14). The honest posts' p99 during the
//! storm against the same room when quiet (target: at most 2x), and the
//! presence announcements and history syncs the storm brings, per second
//! (target: they do not bunch). The same storm on plain gossipsub nodes for
//! comparison. Four child processes: each implementation quiet, then with
//! the storm. `cargo bench --bench join-storm`

#![allow(missing_docs)]

#[path = "support/baseline.rs"]
mod baseline;
#[path = "support/common.rs"]
mod common;

use backchannel::lab::scenario::Fault;
use serde_json::{Value, json};

/// Members of the room from the start; they post.
const BASE: usize = 100;
/// Nodes that join during the traffic.
const JOINERS: usize = 500;
/// Posts per second in the room.
const RATE: f64 = 5.0;
/// Seconds of traffic.
const SECS: f64 = 20.0;
/// When the first joiner joins, in seconds of traffic.
const STORM_AT: f64 = 5.0;
/// Over how long the joins are spread.
const STORM_WINDOW: f64 = 2.0;
/// Posts published from the first join until this long after the last are
/// "during the storm" (what the joins set off, presence and sync, follows
/// them by a few seconds).
const STORM_TAIL: f64 = 5.0;

const IMPLS: [&str; 4] = ["backchannel-quiet", "backchannel-storm", "libp2p-quiet", "libp2p-storm"];

/// The phase a post published at `s` seconds belongs to.
fn phase(s: f64) -> &'static str {
    if s < STORM_AT {
        "before"
    } else if s < STORM_AT + STORM_WINDOW + STORM_TAIL {
        "storm"
    } else {
        "after"
    }
}

/// p99 (and p50, count) of the latencies of posts published in each phase.
fn by_phase(samples: impl Iterator<Item = (f64, f64)>) -> Value {
    let mut phases: std::collections::BTreeMap<&str, Vec<f64>> = Default::default();
    for (published_s, ms) in samples {
        phases.entry(phase(published_s)).or_default().push(ms);
    }
    let mut out = serde_json::Map::new();
    for (name, mut v) in phases {
        let l = common::percentiles(&mut v);
        out.insert(
            name.into(),
            json!({"count": l.count, "p50_ms": l.p50_ms, "p99_ms": l.p99_ms, "max_ms": l.max_ms}),
        );
    }
    Value::Object(out)
}

/// Counts per whole second of traffic (events before the traffic, while the
/// room formed, are left out), up to the end of the traffic and its settling.
fn per_second(times: &[f64]) -> Vec<u64> {
    let mut buckets = vec![0u64; (SECS + 10.0) as usize];
    for &t in times {
        if t >= 0.0
            && let Some(b) = buckets.get_mut(t as usize)
        {
            *b += 1;
        }
    }
    buckets
}

fn run(which: &str) -> Value {
    common::raise_fd_limit();
    common::runtime().block_on(async {
        let storm = which.ends_with("storm");
        let nodes = if storm { BASE + JOINERS } else { BASE };
        if which.starts_with("backchannel") {
            let mut s = common::hallway_scenario(which, nodes, RATE, SECS);
            s.hallway.publishers = BASE;
            if storm {
                s.faults.push(Fault::JoinStorm {
                    at_s: STORM_AT,
                    window_s: STORM_WINDOW,
                    first: BASE,
                    count: JOINERS,
                });
            }
            let r = match backchannel::lab::runner::run(&s, |_| {}).await {
                Ok(r) => r,
                Err(e) => return json!({"scenario": "join-storm", "impl": which, "failed": e.to_string()}),
            };
            let mut line = common::backchannel_line("join-storm", &r);
            line["impl"] = json!(which);
            let at_base = r.deliveries.iter().filter(|d| d.node < BASE);
            line["at_members_by_phase"] = by_phase(at_base.map(|d| (d.published_s, d.ms)));
            let at_joiners = r.deliveries.iter().filter(|d| d.node >= BASE);
            line["at_joiners_by_phase"] = by_phase(at_joiners.map(|d| (d.published_s, d.ms)));
            line["join_errors"] = json!(r.join_errors);
            line["presence_sent"] = json!(r.presence_sent);
            line["presence_received"] = json!(r.presence_received);
            line["presence_sent_first"] = json!(r.presence_sent_first);
            line["presence_sent_answers"] = json!(r.presence_sent_answers);
            line["presence_held_back"] = json!(r.presence_held_back);
            line["presence_over_budget"] = json!(r.presence_over_budget);
            line["syncs_started"] = json!(r.syncs_started);
            line["presence_events_per_s"] = json!(per_second(&r.presence_events_at_s));
            line["synced_events_per_s"] = json!(per_second(&r.synced_events_at_s));
            line
        } else {
            let mut r = baseline::hallway(&baseline::HallwayParams {
                nodes,
                topology: backchannel::lab::Topology::Random { degree: 4 },
                seed: 1,
                rate: RATE,
                size: 200,
                posts: (RATE * SECS) as usize,
                storm: storm.then_some(baseline::Storm {
                    first: BASE,
                    at_s: STORM_AT,
                    window_s: STORM_WINDOW,
                }),
            })
            .await;
            let mut line = common::baseline_line("join-storm", &mut r);
            line["impl"] = json!(which);
            line["at_members_by_phase"] = by_phase(r.deliveries.iter().map(|d| (d.2, d.3)));
            line["newcomer_deliveries"] = json!(r.newcomer_deliveries);
            line
        }
    })
}

fn ratios(lines: &[Value]) -> Value {
    let p99 = |v: &Value, phase: &str| v["at_members_by_phase"][phase]["p99_ms"].as_f64().unwrap_or(f64::NAN);
    let storm_vs_quiet = |quiet: &Value, storm: &Value| {
        json!({
            "before": common::ratio(p99(storm, "before"), p99(quiet, "before")),
            "storm": common::ratio(p99(storm, "storm"), p99(quiet, "storm")),
            "after": common::ratio(p99(storm, "after"), p99(quiet, "after")),
        })
    };
    let storm_p99 = common::ratio(p99(&lines[1], "storm"), p99(&lines[0], "storm"));
    let complete = |v: &Value| v["failed"].is_null() && v["delivered"] == v["expected"];
    json!({
        "scenario": "join-storm", "ratio": "members' p99 with the storm / quiet, by phase of publishing",
        "backchannel": storm_vs_quiet(&lines[0], &lines[1]),
        "libp2p": storm_vs_quiet(&lines[2], &lines[3]),
        "target": "backchannel's p99 during the storm <= 2x the quiet room's, every post delivered",
        "met": storm_p99 <= 2.0 && complete(&lines[0]) && complete(&lines[1]),
    })
}

fn main() {
    common::main_with(&IMPLS, run, ratios);
}
