//! What the mesh benchmarks share: each implementation runs in a child
//! process of its own (so CPU and memory figures do not mix), prints one JSON
//! line, and the parent prints both lines and the ratio line.
//!
//! Include with `#[path = "support/common.rs"] mod common;`.

#![allow(dead_code)]

use std::process::Command;
use std::time::Duration;

use backchannel::lab::runner::{self, Report};
use backchannel::lab::scenario::Scenario;
use serde_json::{Value, json};

/// The environment variable that tells a child which implementation to run.
const IMPL: &str = "BACKCHANNEL_BENCH_IMPL";

/// Runs `run_impl("backchannel")` and `run_impl("libp2p")` each in a child
/// process, prints their JSON lines, then `ratios(backchannel, libp2p)`.
pub fn main(run_impl: fn(&str) -> Value, ratios: fn(&Value, &Value) -> Value) {
    main_with(&["backchannel", "libp2p"], run_impl, |lines| {
        ratios(&lines[0], &lines[1])
    });
}

/// [`main`] with any list of implementations; `ratios` sees their lines in order.
pub fn main_with(impls: &[&str], run_impl: fn(&str) -> Value, ratios: impl Fn(&[Value]) -> Value) {
    if let Ok(which) = std::env::var(IMPL) {
        println!("{}", run_impl(&which));
        return;
    }
    let exe = std::env::current_exe().expect("own path");
    let mut lines = Vec::new();
    for &which in impls {
        let out = Command::new(&exe).env(IMPL, which).output().expect("child runs");
        eprint!("{}", String::from_utf8_lossy(&out.stderr));
        let stdout = String::from_utf8_lossy(&out.stdout);
        let line = stdout.lines().last().unwrap_or("{}").to_string();
        println!("{line}");
        lines.push(serde_json::from_str::<Value>(&line).unwrap_or(Value::Null));
        assert!(out.status.success(), "{which} run failed");
    }
    println!("{}", ratios(&lines));
}

/// Bytes in the files under `dir`.
pub fn dir_bytes(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// A multi-thread runtime like the node's (2 workers on this machine).
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// A hallway scenario in the shape of the benchmarks.
pub fn hallway_scenario(name: &str, nodes: usize, rate: f64, secs: f64) -> Scenario {
    let mut s = Scenario {
        name: name.into(),
        nodes,
        seed: 1,
        topology: "random:4".into(),
        settle_s: 10.0,
        ..Scenario::default()
    };
    s.hallway.rate = rate;
    s.hallway.size = 200;
    s.hallway.duration_s = secs;
    s
}

/// Runs a scenario on Backchannel nodes.
pub async fn backchannel(s: &Scenario) -> Report {
    runner::run(s, |_| {}).await.expect("backchannel run")
}

/// The common JSON line of a Backchannel run.
pub fn backchannel_line(scenario: &str, r: &Report) -> Value {
    json!({
        "scenario": scenario,
        "impl": "backchannel",
        "nodes": r.nodes,
        "expected": r.expected,
        "delivered": r.delivered,
        "duplicates": r.duplicates,
        "p50_ms": r.latency.p50_ms,
        "p90_ms": r.latency.p90_ms,
        "p99_ms": r.latency.p99_ms,
        "max_ms": r.latency.max_ms,
        "msgs_per_s": r.msgs_per_s,
        "rss_mb": r.rss_peak_mb,
        "rss_idle_per_node_mb": r.rss_idle_per_node_mb,
        "formation_ms": r.formation_ms,
        "cpu_s": r.cpu_s,
        "cpu_us_per_delivery": r.cpu_us_per_delivery,
        "peers_per_node": r.peers_per_node,
        "connections_per_node": r.connections_per_node,
    })
}

/// Latency percentiles of raw samples (ms), rounded.
pub fn percentiles(samples: &mut [f64]) -> backchannel::lab::metrics::Latency {
    backchannel::lab::metrics::Latency::of(samples)
}

/// A ratio rounded to 3 decimals.
pub fn ratio(a: f64, b: f64) -> f64 {
    if b == 0.0 {
        f64::NAN
    } else {
        (a / b * 1000.0).round() / 1000.0
    }
}

/// Seconds as a Duration.
pub fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

/// The common JSON line of a baseline hallway run.
pub fn baseline_line(scenario: &str, r: &mut super::baseline::HallwayResult) -> Value {
    let l = percentiles(&mut r.latencies_ms);
    json!({
        "scenario": scenario,
        "impl": "libp2p",
        "nodes": r.nodes,
        "expected": r.expected,
        "delivered": r.delivered,
        "duplicates": r.duplicates,
        "p50_ms": l.p50_ms,
        "p90_ms": l.p90_ms,
        "p99_ms": l.p99_ms,
        "max_ms": l.max_ms,
        "msgs_per_s": (r.delivered as f64 / r.elapsed.as_secs_f64().max(1e-9) * 100.0).round() / 100.0,
        "rss_mb": (r.rss_delta_bytes as f64 / 1e4).round() / 100.0,
        "rss_per_node_mb": (r.rss_delta_bytes as f64 / 1e4 / r.nodes as f64).round() / 100.0,
        "formation_ms": (r.formation_ms * 100.0).round() / 100.0,
        "cpu_s": (r.cpu.as_secs_f64() * 100.0).round() / 100.0,
        "cpu_us_per_delivery": (r.cpu.as_secs_f64() * 1e6 / r.delivered.max(1) as f64).round(),
        "failed": r.failed,
    })
}

/// Raises this process's open-file limit (soft, and hard where allowed) to
/// at least 65,536: a lab node holds a listener, a socket per connection
/// end and its log's files, so a thousand nodes in one process need more
/// than a default limit of 1,024 (or 20,000).
pub fn raise_fd_limit() {
    #[cfg(target_os = "linux")]
    {
        use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
        const WANT: u64 = 65_536;
        let now = getrlimit(Resource::Nofile);
        let hard = now.maximum.map_or(WANT, |h| h.max(WANT));
        let raised = Rlimit {
            current: Some(WANT.max(now.current.unwrap_or(0))),
            maximum: Some(hard),
        };
        // Without the privilege to raise the hard limit, the soft one goes
        // as far as the hard one allows.
        if setrlimit(Resource::Nofile, raised).is_err() {
            let _ = setrlimit(
                Resource::Nofile,
                Rlimit {
                    current: now.maximum,
                    maximum: now.maximum,
                },
            );
        }
    }
}

/// The largest number of open files and of threads this process had while
/// a [`Peaks`] sampler ran.
pub struct Peaks {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<(usize, usize)>,
}

impl Peaks {
    /// Samples /proc/self every 200 ms on a thread of its own.
    pub fn start() -> Peaks {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let thread = std::thread::spawn({
            let stop = stop.clone();
            move || {
                let (mut files, mut threads) = (0, 0);
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    files = files.max(std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count()));
                    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
                    let count = status
                        .lines()
                        .find_map(|l| l.strip_prefix("Threads:"))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    threads = threads.max(count);
                    std::thread::sleep(Duration::from_millis(200));
                }
                (files, threads)
            }
        });
        Peaks { stop, thread }
    }

    /// Stops sampling: (open files, threads) at their peaks.
    pub fn stop(self) -> (usize, usize) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.join().unwrap_or((0, 0))
    }
}

/// The baseline hallway with the same wiring as [`hallway_scenario`].
pub async fn baseline_hallway(nodes: usize, rate: f64, secs: f64) -> super::baseline::HallwayResult {
    super::baseline::hallway(&super::baseline::HallwayParams {
        nodes,
        topology: backchannel::lab::Topology::Random { degree: 4 },
        seed: 1,
        rate,
        size: 200,
        posts: (rate * secs) as usize,
        storm: None,
    })
    .await
}
