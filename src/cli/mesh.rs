//! `backchannel mesh`: run a scenario on a local mesh and print what happened.

use std::io::Write;

use std::process::ExitCode;

use anyhow::Context;
use backchannel::lab::plot::cdf_svg;
use backchannel::lab::runner::{self, Progress, Report};

use super::args::MeshArgs;

/// `backchannel mesh`
pub async fn run(args: &MeshArgs) -> anyhow::Result<ExitCode> {
    let scenario = args.scenario()?;
    let report = runner::run(&scenario, progress_line)
        .await
        .context("running the mesh")?;
    eprintln!();
    if args.json {
        outln!("{}", serde_json::to_string(&report)?);
    } else {
        print_table(&report);
    }
    if let Some(path) = &args.plot {
        let label = format!(
            "{} ({} nodes, p99 {} ms)",
            report.scenario, report.nodes, report.latency.p99_ms
        );
        let svg = cdf_svg("Hallway latency (CDF)", &[(label, report.latencies_ms.clone())]);
        std::fs::write(path, svg).with_context(|| format!("writing {}", path.display()))?;
        if !args.json {
            outln!("latency CDF written to {}", path.display());
        }
    }
    // A run that lost or duplicated messages is a failure for scripts.
    Ok(if failures(&report).is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    })
}

/// What went wrong in a run, in words; empty if nothing did.
fn failures(r: &Report) -> Vec<String> {
    let mut why = Vec::new();
    if r.delivered < r.expected {
        why.push(format!(
            "{} of {} expected deliveries missing",
            r.expected - r.delivered,
            r.expected
        ));
    }
    if r.duplicates > 0 {
        why.push(format!("{} duplicates", r.duplicates));
    }
    if r.dm.failed > 0 {
        why.push(format!("{} DMs failed", r.dm.failed));
    }
    let open = r.dm.sent.saturating_sub(r.dm.delivered + r.dm.failed);
    if open > 0 {
        why.push(format!("{open} DMs without a receipt at the end"));
    }
    why
}

fn progress_line(p: &Progress) {
    let mut err = std::io::stderr().lock();
    let _ = write!(
        err,
        "\r[{:5.1}s/{:.0}s] posts {}  delivered {}/{}  dms delivered {}   ",
        p.elapsed_s, p.total_s, p.sent, p.delivered, p.expected, p.dm_delivered
    );
    let _ = err.flush();
}

fn print_table(r: &Report) {
    let row = |k: &str, v: String| outln!("  {k:<28} {v}");
    outln!(
        "mesh '{}': {} nodes, {} room(s), topology {}, seed {}",
        r.scenario,
        r.nodes,
        r.rooms,
        r.topology,
        r.seed
    );
    row("mesh formation", format!("{} ms", r.formation_ms));
    row("traffic", format!("{} s", r.duration_s));
    row("posts sent", format!("{} ({} errors)", r.posts_sent, r.post_errors));
    row(
        "deliveries",
        format!(
            "{}/{} expected ({:.2}%)",
            r.delivered,
            r.expected,
            r.delivery_ratio * 100.0
        ),
    );
    row(
        "unexpected / duplicates",
        format!("{} / {}", r.unexpected, r.duplicates),
    );
    row(
        "latency p50/p90/p99/max",
        format!(
            "{} / {} / {} / {} ms",
            r.latency.p50_ms, r.latency.p90_ms, r.latency.p99_ms, r.latency.max_ms
        ),
    );
    row("deliveries per second", format!("{}", r.msgs_per_s));
    if r.dm.sent > 0 {
        row(
            "DMs sent/delivered/failed",
            format!("{} / {} / {}", r.dm.sent, r.dm.delivered, r.dm.failed),
        );
        row(
            "DM receipt RTT p50/p99",
            format!("{} / {} ms ({} per s)", r.dm.rtt.p50_ms, r.dm.rtt.p99_ms, r.dm.per_s),
        );
    }
    row(
        "CPU",
        format!("{} s ({} µs per delivery)", r.cpu_s, r.cpu_us_per_delivery),
    );
    row(
        "peak RSS",
        format!("{} MB ({} MB per node)", r.rss_peak_mb, r.rss_per_node_mb),
    );
    let rejected: Vec<String> = r.rejected.iter().map(|(k, v)| format!("{k}={v}")).collect();
    row(
        "rejected",
        if rejected.is_empty() {
            "none".into()
        } else {
            rejected.join(" ")
        },
    );
    for f in &r.faults {
        row("fault", f.clone());
    }
    let short: Vec<String> = r
        .per_node
        .iter()
        .filter(|n| n.delivered < n.expected)
        .map(|n| format!("node {}: {}/{}", n.node, n.delivered, n.expected))
        .collect();
    if !short.is_empty() {
        row("nodes missing posts", short.join(", "));
    }
    let why = failures(r);
    if why.is_empty() {
        row(
            "verdict",
            "ok: every expected delivery, no duplicates, every DM delivered".into(),
        );
    } else {
        row("verdict", format!("FAILED (exit code 3): {}", why.join(", ")));
    }
}
