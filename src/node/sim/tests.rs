//! The simulation in the test run: a fixed set of seeds, one run of 1,000
//! nodes, determinism, and more seeds on demand:
//!
//! - `BACKCHANNEL_SIM_SEEDS=N` runs N more seeds (of 50 nodes) in
//!   `more_seeds_on_demand`;
//! - `BACKCHANNEL_SIM_SEED=S` (with `BACKCHANNEL_SIM_NODES=N`, default 50,
//!   and `BACKCHANNEL_SIM_BOUND=B`, the room's bound) replays one seed in
//!   `replay`, as a failing seed's message says.

use std::time::Instant;

use super::{Sim, SimConfig};

fn env(name: &str) -> Option<u64> {
    std::env::var(name).ok()?.parse().ok()
}

/// Runs a seed, checks it, and prints what it did.
fn run(config: SimConfig) -> super::Outcome {
    let started = Instant::now();
    let outcome = Sim::run(config);
    println!(
        "seed {} nodes {}: {:.2} s, {} signed messages, {} forgeries, {} gossip messages sent ({} lost), \
         {} envelopes opened ({} failed) with {} signature checks, {} messages logged; log {} long; \
         backdated posts of the removed rogue logged: {} of {}; messages in logs that do not count: {}; evicted: {}",
        outcome.config.seed,
        outcome.config.nodes,
        started.elapsed().as_secs_f64(),
        outcome.genuine,
        outcome.forgeries,
        outcome.sent,
        outcome.lost,
        outcome.counts.opened,
        outcome.counts.invalid,
        outcome.counts.verifications,
        outcome.counts.logged,
        outcome.log_len,
        outcome.backdated_logged,
        outcome.backdated_sent,
        outcome.stale,
        outcome.evicted,
    );
    outcome.assert_ok();
    outcome
}

#[test]
fn a_fixed_set_of_seeds_converges() {
    for seed in 1..=6 {
        run(SimConfig::new(seed, 20 + 5 * seed as usize));
    }
}

/// A room bound below what the script posts (about 80 posts and as many
/// operations): every node evicts, by the same rule, and the nodes still
/// converge to the same log and the same view, with the rules intact.
#[test]
fn a_bounded_room_converges() {
    for seed in [11, 12] {
        let mut config = SimConfig::new(seed, 20);
        config.bound = 40;
        let outcome = run(config);
        assert!(outcome.evicted > 0, "seed {seed}: the bound was never reached");
        // The bound of posts and of operations that count, and the rules.
        assert!(outcome.log_len <= 2 * 40 + 20, "seed {seed}: {} kept", outcome.log_len);
    }
}

#[test]
fn a_thousand_nodes_converge() {
    let mut config = SimConfig::new(1000, 1000);
    config.posts = 30;
    config.shared_checks = true;
    run(config);
}

#[test]
fn a_seed_replays_exactly() {
    let a = run(SimConfig::new(77, 30));
    let b = run(SimConfig::new(77, 30));
    assert_eq!(a.digest, b.digest, "the same seed gave two runs");
    let c = run(SimConfig::new(78, 30));
    assert_ne!(a.digest, c.digest, "two seeds gave the same run");
}

#[test]
fn replay() {
    let seed = env("BACKCHANNEL_SIM_SEED").unwrap_or(4242);
    let nodes = env("BACKCHANNEL_SIM_NODES").unwrap_or(50) as usize;
    let mut config = SimConfig::new(seed, nodes);
    if let Some(bound) = env("BACKCHANNEL_SIM_BOUND") {
        config.bound = bound as usize;
    }
    run(config);
}

#[test]
fn more_seeds_on_demand() {
    let more = env("BACKCHANNEL_SIM_SEEDS").unwrap_or(0);
    for seed in 0..more {
        run(SimConfig::new(1_000_000 + seed, 50));
    }
}
