//! A scenario: what the mesh lab runs, as plain data. It reads from a TOML or
//! JSON file or is built from `backchannel mesh` flags; with the same seed it
//! replays the same topology, traffic and faults.

use serde::{Deserialize, Serialize};

use super::Topology;

/// A whole run: nodes, wiring, traffic and faults.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Scenario {
    /// A name for reports.
    pub name: String,
    /// Number of nodes.
    pub nodes: usize,
    /// Seeds the topology, the DM pairs and the identities.
    pub seed: u64,
    /// `full`, `line`, `ring` or `random:K` (within each room).
    pub topology: String,
    /// Run each node as a real `backchannel run` process instead of in this one.
    pub processes: bool,
    /// Run each node's process in its own home behind a NAT, in a small
    /// internet of Linux network namespaces with one helper (`backchannel
    /// serve`) that the nodes bootstrap from; they find each other through
    /// its DHT and connect through its relay, then hole-punch. Needs root,
    /// `ip` and `iptables`, and `processes`.
    pub netns: bool,
    /// Hallway traffic.
    pub hallway: HallwayTraffic,
    /// Direct-message traffic.
    pub dm: DmTraffic,
    /// Faults injected during the traffic.
    pub faults: Vec<Fault>,
    /// How long to wait after the traffic for deliveries still in flight.
    pub settle_s: f64,
    /// Group commit of log flushes (off: one flush per message, to measure).
    pub group_commit: bool,
    /// Rate limits as in production (off: limits far above any benchmark's
    /// rates, for capacity measurements that send faster than a person).
    pub rate_limits: bool,
    /// Encrypted data directories (docs/SECURITY.md, "Data at rest"): every
    /// log value sealed. In-process nodes get a random data key; processes
    /// an encrypted directory unlocked with a passphrase in the environment
    /// (with cheap argon2 parameters: the lab's passphrase is no secret).
    /// Off by default; the benchmarks measure its cost.
    pub encrypt: bool,
}

/// Posts to the rooms' hallways.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HallwayTraffic {
    /// Rooms; node i is in room `i % rooms`.
    pub rooms: usize,
    /// Publishers per room (0: every member).
    pub publishers: usize,
    /// Posts per second, in total over all publishers.
    pub rate: f64,
    /// Bytes of text per post (at least 16).
    pub size: usize,
    /// Seconds of traffic.
    pub duration_s: f64,
}

/// Direct messages between pairs of nodes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DmTraffic {
    /// Sender/recipient pairs (seeded); 0 disables DM traffic.
    pub pairs: usize,
    /// DMs per second per pair (0: as fast as the window allows) [default: 50].
    pub rate: f64,
    /// DMs in flight per pair (sent, no receipt yet).
    pub window: usize,
    /// Bytes of text per DM (at least 16).
    pub size: usize,
}

/// Something that goes wrong during the run, at `at_s` seconds into the traffic.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Fault {
    /// Stop a node cleanly and start it again, same identity and log.
    Restart {
        /// When.
        at_s: f64,
        /// Which node.
        node: usize,
        /// How long it stays down.
        down_s: f64,
    },
    /// SIGKILL a node's process and start it again (`processes` only).
    Kill {
        /// When.
        at_s: f64,
        /// Which node.
        node: usize,
        /// How long it stays down.
        down_s: f64,
    },
    /// Cut every link between groups of nodes, and heal after `heal_after_s`.
    Partition {
        /// When.
        at_s: f64,
        /// The groups; nodes in no group form one more group.
        groups: Vec<Vec<usize>>,
        /// How long the partition lasts.
        heal_after_s: f64,
    },
    /// The node is not started with the others but at `at_s`.
    LateJoin {
        /// When.
        at_s: f64,
        /// Which node.
        node: usize,
    },
    /// Nodes `first..first + count` run from the start but stay apart (no
    /// connection, not in their room) until each joins: it dials its
    /// neighbours that are in the room already and joins its room, at times
    /// spread evenly over `window_s` from `at_s`, in index order (so a
    /// joiner's neighbours of lower index are in the room before it). A join
    /// storm: many people opening one room at once, whose nodes are already
    /// running and have their room stamps ready (minted before the traffic,
    /// `Handle::prepare_room`: a real joiner mints on its own device). In-process
    /// nodes only.
    JoinStorm {
        /// When the first node joins.
        at_s: f64,
        /// Over how long the joins are spread (0: all at `at_s`).
        window_s: f64,
        /// The first node that joins late.
        first: usize,
        /// How many nodes join late.
        count: usize,
    },
}

impl Default for Scenario {
    fn default() -> Self {
        Self {
            name: "mesh".into(),
            nodes: 10,
            seed: 1,
            topology: "random:4".into(),
            processes: false,
            netns: false,
            hallway: HallwayTraffic::default(),
            dm: DmTraffic::default(),
            faults: Vec::new(),
            settle_s: 5.0,
            group_commit: true,
            rate_limits: true,
            encrypt: false,
        }
    }
}

impl Default for HallwayTraffic {
    fn default() -> Self {
        Self {
            rooms: 1,
            publishers: 0,
            rate: 20.0,
            size: 200,
            duration_s: 10.0,
        }
    }
}

impl Default for DmTraffic {
    fn default() -> Self {
        Self {
            pairs: 0,
            // 50 DMs a second per pair: a busy chat, and well under the
            // 200 a second a node accepts from one peer (Limits), so a run
            // with default settings measures delivery, not refusals.
            // Throughput runs set 0 (as fast as the window allows) and turn
            // the limits off.
            rate: 50.0,
            window: 64,
            size: 200,
        }
    }
}

/// Why a scenario cannot run.
#[derive(Debug, thiserror::Error)]
#[error("invalid scenario: {0}")]
pub struct InvalidScenario(pub String);

impl Scenario {
    /// Reads a scenario from TOML or JSON text (JSON if it starts with `{`).
    pub fn parse(text: &str) -> Result<Scenario, InvalidScenario> {
        let scenario: Scenario = if text.trim_start().starts_with('{') {
            serde_json::from_str(text).map_err(|e| InvalidScenario(e.to_string()))?
        } else {
            toml::from_str(text).map_err(|e| InvalidScenario(e.to_string()))?
        };
        scenario.validate()?;
        Ok(scenario)
    }

    /// The topology, parsed.
    pub fn topology(&self) -> Result<Topology, InvalidScenario> {
        self.topology.parse().map_err(InvalidScenario)
    }

    /// Checks the numbers make sense together.
    pub fn validate(&self) -> Result<(), InvalidScenario> {
        let bad = |m: String| Err(InvalidScenario(m));
        self.topology()?;
        if self.nodes < 2 || self.nodes > 1000 {
            return bad(format!("nodes must be 2..=1000, not {}", self.nodes));
        }
        let h = &self.hallway;
        if h.rooms == 0 || h.rooms > self.nodes / 2 {
            return bad(format!(
                "rooms must be 1..={} (two nodes per room at least)",
                self.nodes / 2
            ));
        }
        if !in_range(h.rate, 0.0, 100_000.0) || !in_range(h.duration_s, 0.0, 3600.0) {
            return bad("hallway rate must be 0..=100000/s and duration 0..=3600 s".into());
        }
        if h.size < 16 || h.size > crate::protocol::MAX_TEXT_BYTES || self.dm.size < 16 || self.dm.size > 4096 {
            return bad("message size must be 16..=4096 bytes".into());
        }
        if self.dm.pairs > self.nodes * (self.nodes - 1)
            || self.dm.window == 0
            || !in_range(self.dm.rate, 0.0, 100_000.0)
        {
            return bad("dm pairs must be at most n(n-1), window at least 1, rate at least 0".into());
        }
        if !in_range(self.settle_s, 0.0, 600.0) {
            return bad("settle_s must be 0..=600".into());
        }
        if self.netns && !self.processes {
            return bad("netns needs processes = true".into());
        }
        if self.netns && self.nodes > 200 {
            return bad("netns runs at most 200 nodes (one home each)".into());
        }
        for f in &self.faults {
            let (at, nodes): (f64, Vec<usize>) = match f {
                Fault::Restart { at_s, node, down_s } | Fault::Kill { at_s, node, down_s } => {
                    if !in_range(*down_s, 0.0, 3600.0) {
                        return bad("down_s must be at least 0".into());
                    }
                    (*at_s, vec![*node])
                }
                Fault::Partition { at_s, groups, .. } => (*at_s, groups.iter().flatten().copied().collect()),
                Fault::LateJoin { at_s, node } => (*at_s, vec![*node]),
                Fault::JoinStorm {
                    at_s,
                    window_s,
                    first,
                    count,
                } => {
                    if self.processes {
                        return bad("join_storm runs in-process nodes only".into());
                    }
                    if *count == 0 || !in_range(*window_s, 0.0, 3600.0) {
                        return bad("join_storm needs count at least 1 and window_s 0..=3600".into());
                    }
                    // A storm from node 0 would leave no room to join: the
                    // first member is there from the start.
                    if *first == 0 {
                        return bad("join_storm cannot start at node 0 (the room needs a first member)".into());
                    }
                    (*at_s, vec![*first, first.saturating_add(*count) - 1])
                }
            };
            if !in_range(at, 0.0, 3600.0) || nodes.iter().any(|n| *n >= self.nodes) {
                return bad(format!("fault {f:?} names a node out of range or a negative time"));
            }
            if matches!(f, Fault::Kill { .. }) && !self.processes {
                return bad("kill needs processes = true (use restart in-process)".into());
            }
        }
        Ok(())
    }
}

/// Whether `v` is a number within `lo..=hi` (NaN is not).
fn in_range(v: f64, lo: f64, hi: f64) -> bool {
    (lo..=hi).contains(&v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_scenarios_parse() {
        for text in [
            include_str!("../../docs/scenarios/restart.toml"),
            include_str!("../../docs/scenarios/partition.toml"),
            include_str!("../../docs/scenarios/sigkill.toml"),
        ] {
            Scenario::parse(text).unwrap();
        }
    }

    #[test]
    fn parses_toml_with_faults_and_rejects_nonsense() {
        let s = Scenario::parse(
            r#"
            name = "restart"
            nodes = 6
            topology = "ring"
            [hallway]
            rate = 10.0
            duration_s = 3.0
            [[faults]]
            kind = "restart"
            at_s = 1.0
            node = 2
            down_s = 0.5
            [[faults]]
            kind = "partition"
            at_s = 1.0
            groups = [[0, 1, 2]]
            heal_after_s = 1.0
            "#,
        )
        .unwrap();
        assert_eq!(s.nodes, 6);
        assert_eq!(s.faults.len(), 2);
        assert_eq!(s.hallway.size, 200, "defaults fill the rest");
        for bad in [
            "nodes = 1",
            "topology = \"star\"",
            "bogus = 1",
            "[hallway]\nsize = 5",
            "[[faults]]\nkind = \"kill\"\nat_s = 1.0\nnode = 0\ndown_s = 1.0",
            "[[faults]]\nkind = \"late_join\"\nat_s = 1.0\nnode = 99",
        ] {
            assert!(Scenario::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_join_storm_parses_and_is_checked() {
        let s = Scenario::parse(
            r#"
            nodes = 600
            [[faults]]
            kind = "join_storm"
            at_s = 5.0
            window_s = 2.0
            first = 100
            count = 500
            "#,
        )
        .unwrap();
        assert_eq!(
            s.faults,
            vec![Fault::JoinStorm {
                at_s: 5.0,
                window_s: 2.0,
                first: 100,
                count: 500
            }]
        );
        let storm = |at: f64, window: f64, first: usize, count: usize| {
            format!(
                "nodes = 600\n[[faults]]\nkind = \"join_storm\"\nat_s = {at:?}\nwindow_s = {window:?}\nfirst = {first}\ncount = {count}"
            )
        };
        for bad in [
            storm(5.0, 2.0, 100, 501),               // past the last node
            storm(5.0, 2.0, 0, 10),                  // nobody in the room before it
            storm(5.0, 2.0, 100, 0),                 // no joiners
            storm(-1.0, 2.0, 100, 10),               // before the traffic
            storm(5.0, -2.0, 100, 10),               // a negative window
            storm(5.0, 2.0, 100, i64::MAX as usize), // overflows
            format!("processes = true\n{}", storm(5.0, 2.0, 100, 10)),
        ] {
            assert!(Scenario::parse(&bad).is_err(), "{bad}");
        }
        assert!(
            Scenario::parse(&storm(0.0, 0.0, 599, 1)).is_ok(),
            "the last node alone, at once"
        );
    }
}
