//! Process measurements (CPU time, memory) and latency statistics, shared by
//! the mesh lab, the CLI's `mesh` command and the benchmarks.

use std::time::Duration;

/// CPU time (user + system) used by process `pid` (`None`: this process).
/// Linux only (reads /proc); zero elsewhere.
pub fn cpu_time(pid: Option<u32>) -> Duration {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/stat"),
        None => "/proc/self/stat".into(),
    };
    let stat = std::fs::read_to_string(path).unwrap_or_default();
    // Fields after the command name, which may contain spaces, ends with ')'.
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    let field = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // utime and stime are fields 14 and 15 of the line, in clock ticks
    // (USER_HZ, 100 on Linux).
    Duration::from_millis((field(11) + field(12)) * 10)
}

/// Resident memory of process `pid` (`None`: this process), in bytes: now
/// (`VmRSS`) and at its peak (`VmHWM`).
pub fn rss(pid: Option<u32>) -> (u64, u64) {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/status"),
        None => "/proc/self/status".into(),
    };
    let status = std::fs::read_to_string(path).unwrap_or_default();
    let kb = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
            * 1024
    };
    (kb("VmRSS:"), kb("VmHWM:"))
}

/// Summary of a latency sample, in milliseconds.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Latency {
    /// Samples.
    pub count: usize,
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Largest.
    pub max_ms: f64,
}

impl Latency {
    /// Summarises samples (sorted in place).
    pub fn of(samples: &mut [f64]) -> Latency {
        samples.sort_by(f64::total_cmp);
        let at = |p: f64| {
            if samples.is_empty() {
                0.0
            } else {
                round2(samples[((samples.len() - 1) as f64 * p).round() as usize])
            }
        };
        Latency {
            count: samples.len(),
            p50_ms: at(0.5),
            p90_ms: at(0.9),
            p99_ms: at(0.99),
            max_ms: at(1.0),
        }
    }
}

/// Rounds to two decimals (for readable JSON).
pub fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles() {
        let mut v: Vec<f64> = (1..=100).map(f64::from).collect();
        v.reverse();
        let l = Latency::of(&mut v);
        assert_eq!((l.count, l.p50_ms, l.p99_ms, l.max_ms), (100, 51.0, 99.0, 100.0));
        assert_eq!(Latency::of(&mut []).count, 0);
    }

    #[test]
    fn reads_this_process() {
        if cfg!(target_os = "linux") {
            assert!(rss(None).0 > 0);
        }
    }
}
