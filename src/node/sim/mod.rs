//! A seeded simulation of many room cores without sockets (iroh-gossip's
//! `proto/sim.rs` is the model). Each simulated node runs the core a real
//! node runs for a room: signature checks ([`Signed::open`], and
//! [`Signed::open_batch`] for history pages: each envelope verified
//! strictly, each author's key decoded once a page), the one admission
//! rule ([`JoinedRoom::admit`]) and its execution ([`JoinedRoom::commit`],
//! the code `admit_room_message` calls), the room rules, presence, rate
//! limits and history reconciliation ([`Reconciler`] and [`respond`]), over
//! an in-memory log. A simulated network carries the bytes over a random
//! mesh with per-link delays and jitter (so messages reorder), loss and
//! partitions; time is simulated and passed to every call; every random
//! choice comes from one seed.
//!
//! A script ([`script`]) drives a hosted room through posts, moderation,
//! edits, reactions, mode switches, a removal, presence and forgeries; the
//! checks ([`check`]) then say whether every honest node converged. A seed
//! that fails names itself and the command that replays it, and a seed
//! always replays the same run: nothing here iterates a `HashMap` into a
//! result.
//!
//! [`JoinedRoom::admit`]: crate::node::rooms::JoinedRoom::admit
//! [`JoinedRoom::commit`]: crate::node::rooms::JoinedRoom::commit

mod check;
mod node;
mod script;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::rc::Rc;

use libp2p::PeerId;

use crate::envelope::Signed;
use crate::id::{RejectReason, Room};
use crate::protocol::MAX_FETCH_IDS;
use crate::rng::Rng;
use crate::sync::{Reconciler, pages, respond};

pub(crate) use check::Outcome;
use node::{Counts, SimNode, Verdict, gossip_id};
use script::Act;

/// The simulation's clock starts here (ms since the Unix epoch, late 2027),
/// so that the clock-window checks see realistic times.
const EPOCH_MS: u64 = 1_800_000_000_000;

/// One simulated run: how large, how hostile, how lossy.
#[derive(Clone, Debug)]
pub(crate) struct SimConfig {
    /// Everything random comes from this.
    pub(crate) seed: u64,
    /// Nodes in the room (at least 8).
    pub(crate) nodes: usize,
    /// Mesh degree (gossipsub's D is 6).
    pub(crate) degree: usize,
    /// Honest posts per phase.
    pub(crate) posts: usize,
    /// Nodes that forge (beside the host, the moderator and the rogue).
    pub(crate) forgers: usize,
    /// Nodes that announce their presence per phase (a large room answers a
    /// newcomer with ~20 announcements, not one per member).
    pub(crate) announcers: usize,
    /// Gossip messages lost, per thousand sent.
    pub(crate) loss_per_mille: u64,
    /// Link delays are drawn from this range once per link (ms)...
    pub(crate) delay_ms: (u64, u64),
    /// ...and each message adds up to this much jitter (ms), so messages on
    /// a link overtake each other.
    pub(crate) jitter_ms: u64,
    /// Partitions per phase: a random part of the nodes is cut off for a few
    /// seconds.
    pub(crate) partitions: usize,
    /// Each node reconciles with a random mesh peer this often (ms).
    pub(crate) sync_every_ms: u64,
    /// Nodes share signature checks: an envelope is verified once, and
    /// every node that receives the same bytes gets that result (it is a
    /// function of the bytes). Only CPU time changes; each node still opens
    /// what it receives and decides on it alone. For the largest runs.
    pub(crate) shared_checks: bool,
    /// Posts and operations anyone may make that each node keeps
    /// (`Config::room_bound`); below the script's count, the nodes evict.
    pub(crate) bound: usize,
}

impl SimConfig {
    /// The configuration the tests use, for `nodes` nodes.
    pub(crate) fn new(seed: u64, nodes: usize) -> Self {
        Self {
            seed,
            nodes,
            degree: 6,
            posts: 40,
            forgers: (nodes / 50).clamp(2, 10),
            announcers: nodes.min(20),
            loss_per_mille: 30,
            delay_ms: (5, 120),
            jitter_ms: 80,
            partitions: 2,
            sync_every_ms: 8_000,
            shared_checks: false,
            bound: crate::room::DEFAULT_ROOM_BOUND,
        }
    }

    /// The command that replays this run.
    pub(crate) fn replay_command(&self) -> String {
        let bound = if self.bound == crate::room::DEFAULT_ROOM_BOUND {
            String::new()
        } else {
            format!("BACKCHANNEL_SIM_BOUND={} ", self.bound)
        };
        format!(
            "BACKCHANNEL_SIM_SEED={} BACKCHANNEL_SIM_NODES={} {bound}cargo nextest run --lib -E 'test(sim::tests::replay)'",
            self.seed, self.nodes
        )
    }
}

/// What happens at a moment of simulated time.
enum What {
    /// Gossip bytes arrive from a mesh peer.
    Gossip { from: usize, packet: Rc<Packet> },
    /// A page of history arrives (a fetch answered or a push).
    Page { from: usize, envelopes: Vec<Vec<u8>> },
    /// The node's periodic reconciliation with a random mesh peer.
    Sync,
    /// A scripted action.
    Act(Act),
    /// A partition ends.
    Heal(u64),
}

/// Bytes on the wire with their gossip id (computed once by the sender:
/// it is a function of the bytes).
struct Packet {
    bytes: Vec<u8>,
    gossip_id: [u8; 32],
}

struct Pending {
    at: u64,
    seq: u64,
    node: usize,
    what: What,
}

impl PartialEq for Pending {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Pending {}
impl PartialOrd for Pending {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Pending {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// The simulation: nodes, links, the queue of what happens next.
pub(crate) struct Sim {
    config: SimConfig,
    room: Room,
    rng: Rng,
    nodes: Vec<SimNode>,
    /// Mesh peers of each node, with the link's delay (ms), in index order.
    links: Vec<Vec<(usize, u64)>>,
    /// Active partitions: an id and which side each node is on.
    cuts: Vec<(u64, Vec<bool>)>,
    next_cut: u64,
    queue: BinaryHeap<Reverse<Pending>>,
    seq: u64,
    now: u64,
    /// No loss while the network is calm (after the heal, before checking).
    calm: bool,
    counts: Counts,
    /// Gossip messages sent and lost.
    sent: u64,
    lost: u64,
    script: script::Script,
    /// What went wrong while playing (a quiescence that never came).
    problems: Vec<String>,
    /// Shared signature checks by gossip id (`SimConfig::shared_checks`);
    /// only looked up, never iterated.
    checked: HashMap<[u8; 32], Result<Signed, RejectReason>>,
}

impl Sim {
    /// Builds the nodes and the mesh for a configuration.
    pub(crate) fn new(config: SimConfig) -> Self {
        assert!(config.nodes >= 8, "the script needs at least 8 nodes");
        let mut rng = Rng::new(config.seed);
        let identities: Vec<crate::identity::Identity> = (0..config.nodes)
            .map(|i| crate::identity::Identity::from_secret(crate::rng::secret(config.seed, i)))
            .collect();
        let room = Room::hosted("stage", &identities[0].peer_id()).expect("a valid room name");
        let nodes = identities
            .into_iter()
            .enumerate()
            .map(|(i, identity)| {
                let skew = rng.below(401) as i64 - 200;
                SimNode::new(identity, script::kind_of(&config, i), &room, skew, config.bound)
            })
            .collect();
        let links = mesh(&mut rng, config.nodes, config.degree, config.delay_ms);
        Self {
            script: script::Script::default(),
            config,
            room,
            rng,
            nodes,
            links,
            cuts: Vec::new(),
            next_cut: 0,
            queue: BinaryHeap::new(),
            seq: 0,
            now: EPOCH_MS,
            calm: false,
            counts: Counts::default(),
            sent: 0,
            lost: 0,
            problems: Vec::new(),
            checked: HashMap::new(),
        }
    }

    /// Runs the script and the checks.
    pub(crate) fn run(config: SimConfig) -> Outcome {
        let mut sim = Self::new(config);
        sim.play();
        sim.check()
    }

    fn schedule(&mut self, at: u64, node: usize, what: What) {
        self.seq += 1;
        self.queue.push(Reverse(Pending {
            at,
            seq: self.seq,
            node,
            what,
        }));
    }

    /// Processes everything due until `until` (simulated ms).
    fn run_until(&mut self, until: u64) {
        while let Some(Reverse(next)) = self.queue.peek() {
            if next.at > until {
                break;
            }
            let Some(Reverse(next)) = self.queue.pop() else {
                break;
            };
            self.now = next.at;
            self.handle(next.node, next.what);
        }
        self.now = until;
    }

    fn handle(&mut self, node: usize, what: What) {
        match what {
            What::Gossip { from, packet } => self.deliver(node, from, &packet),
            What::Page { from, envelopes } => {
                self.page_arrives(from, node, &envelopes);
            }
            What::Sync => {
                let every = self.config.sync_every_ms;
                self.schedule(self.now + every, node, What::Sync);
                let up: Vec<usize> = self.links[node]
                    .iter()
                    .map(|(peer, _)| *peer)
                    .filter(|peer| !self.is_cut(node, *peer))
                    .collect();
                if !up.is_empty() {
                    let peer = up[self.rng.below(up.len())];
                    self.sync(node, peer, false);
                }
            }
            What::Act(act) => self.act(node, act),
            What::Heal(id) => self.cuts.retain(|(c, _)| *c != id),
        }
    }

    /// A gossip message reaches `node` from `from`: validate, and forward
    /// what it accepts to its other mesh peers.
    fn deliver(&mut self, node: usize, from: usize, packet: &Rc<Packet>) {
        if self.is_cut(node, from) {
            return;
        }
        if !self.nodes[node].see(packet.gossip_id) {
            return;
        }
        let source = self.nodes[from].peer;
        let (now, room) = (self.now, self.room.clone());
        let verdict = match self.open(&packet.bytes, packet.gossip_id) {
            Ok(signed) => self.nodes[node].on_gossip(&room, now, source, signed, &mut self.counts),
            Err(_) => {
                self.counts.invalid += 1;
                Verdict::Drop
            }
        };
        if verdict == Verdict::Forward {
            self.send(node, Some(from), packet);
        }
    }

    /// Sends gossip from `node` to its mesh peers (but `except`).
    fn send(&mut self, node: usize, except: Option<usize>, packet: &Rc<Packet>) {
        let links = std::mem::take(&mut self.links[node]);
        for &(peer, delay) in &links {
            if Some(peer) == except || self.is_cut(node, peer) {
                continue;
            }
            self.sent += 1;
            if !self.calm && self.rng.below(1000) < self.config.loss_per_mille as usize {
                self.lost += 1;
                continue;
            }
            let jitter = self.rng.below(self.config.jitter_ms as usize + 1) as u64;
            self.schedule(
                self.now + delay + jitter,
                peer,
                What::Gossip {
                    from: node,
                    packet: Rc::clone(packet),
                },
            );
        }
        self.links[node] = links;
    }

    /// Publishes bytes from `node` (its own message, or a forgery).
    fn publish(&mut self, node: usize, bytes: Vec<u8>) {
        let packet = Rc::new(Packet {
            gossip_id: gossip_id(&bytes),
            bytes,
        });
        self.nodes[node].see(packet.gossip_id);
        self.send(node, None, &packet);
    }

    /// Signs, logs, applies and publishes a message of an honest node's.
    fn publish_own(&mut self, node: usize, body: crate::message::Body) -> Signed {
        let nonce = self.nonce();
        let signed = self.nodes[node].sign(body, nonce);
        self.script.genuine(&signed);
        let room = self.room.clone();
        self.nodes[node].publish_own(&room, &signed);
        self.publish(node, signed.envelope().to_vec());
        signed
    }

    fn nonce(&mut self) -> [u8; 16] {
        let mut nonce = [0u8; 16];
        nonce[..8].copy_from_slice(&self.rng.next_u64().to_le_bytes());
        nonce[8..].copy_from_slice(&self.rng.next_u64().to_le_bytes());
        nonce
    }

    /// A page of history reaches `to` from `from`; returns how many of its
    /// messages were new to the log.
    fn page_arrives(&mut self, from: usize, to: usize, envelopes: &[Vec<u8>]) -> usize {
        let opened = self.open_page(envelopes);
        let source = self.nodes[from].peer;
        let (now, room) = (self.now, self.room.clone());
        self.nodes[to].on_page(&room, now, source, opened, &mut self.counts)
    }

    /// Opens gossip bytes: verifies the signature and decodes.
    fn open(&mut self, bytes: &[u8], gossip_id: [u8; 32]) -> Result<Signed, RejectReason> {
        self.counts.opened += 1;
        if self.config.shared_checks
            && let Some(known) = self.checked.get(&gossip_id)
        {
            return known.clone();
        }
        self.counts.verifications += 1;
        let result = Signed::open(bytes);
        if self.config.shared_checks {
            self.checked.insert(gossip_id, result.clone());
        }
        result
    }

    /// Opens a page of history (`Signed::open_batch`: each envelope
    /// verified strictly), of what has not been checked yet when checks are
    /// shared.
    fn open_page(&mut self, envelopes: &[Vec<u8>]) -> Vec<Result<Signed, RejectReason>> {
        self.counts.opened += envelopes.len() as u64;
        if !self.config.shared_checks {
            self.counts.verifications += envelopes.len() as u64;
            return Signed::open_batch(envelopes);
        }
        let ids: Vec<[u8; 32]> = envelopes.iter().map(|e| gossip_id(e)).collect();
        let unchecked: Vec<Vec<u8>> = envelopes
            .iter()
            .zip(&ids)
            .filter(|(_, id)| !self.checked.contains_key(*id))
            .map(|(e, _)| e.clone())
            .collect();
        self.counts.verifications += unchecked.len() as u64;
        for (envelope, result) in unchecked.iter().zip(Signed::open_batch(&unchecked)) {
            self.checked.insert(gossip_id(envelope), result);
        }
        ids.iter()
            .map(|id| self.checked.get(id).cloned().unwrap_or(Err(RejectReason::Malformed)))
            .collect()
    }

    fn is_cut(&self, a: usize, b: usize) -> bool {
        self.cuts.iter().any(|(_, side)| side[a] != side[b])
    }

    /// Cuts a random part of the nodes (a sixth to a half) off the rest
    /// for `for_ms`.
    fn partition(&mut self, for_ms: u64) {
        let n = self.config.nodes;
        let size = n / 6 + self.rng.below(n / 3 + 1);
        let mut side = vec![false; n];
        let mut start = self.rng.below(n);
        for _ in 0..size {
            side[start] = true;
            start = (start + 1 + self.rng.below(3)) % n;
        }
        self.next_cut += 1;
        let id = self.next_cut;
        self.cuts.push((id, side));
        self.schedule(self.now + for_ms, 0, What::Heal(id));
    }

    /// `a` reconciles the room with `b` with the real negentropy exchange,
    /// then fetches what it lacks and pushes what `b` lacks, in pages
    /// (`sync::pages`), each verified and admitted as history. `at_once`
    /// delivers the pages now (the checks' quiescence rounds); otherwise
    /// they arrive after the link's delay. Returns the messages new to
    /// either log (at once only).
    fn sync(&mut self, a: usize, b: usize, at_once: bool) -> usize {
        let mine = self.nodes[a].log.keys(self.nodes[a].now(self.now));
        let theirs = self.nodes[b].log.keys(self.nodes[b].now(self.now));
        if mine == theirs {
            // Reconciling equal sets finds no difference (and costs the
            // fingerprints of both): most syncs of a quiet room.
            return 0;
        }
        let Ok((mut reconciler, mut message)) = Reconciler::start(&mine) else {
            return 0;
        };
        loop {
            let Ok(answer) = respond(&theirs, &message) else {
                return 0;
            };
            match reconciler.step(&answer) {
                Ok(Some(next)) => message = next,
                Ok(None) => break,
                Err(_) => return 0,
            }
        }
        let delay = self.links[a].iter().find(|(p, _)| *p == b).map_or(50, |(_, d)| *d);
        let mut new = 0;
        // As the event loop does: what `a` refused as below its horizon is
        // not fetched again.
        let need: Vec<_> = std::mem::take(&mut reconciler.need)
            .into_iter()
            .filter(|id| !self.nodes[a].joined.is_below_horizon(id))
            .collect();
        for ids in need.chunks(MAX_FETCH_IDS) {
            let envelopes: Vec<Vec<u8>> = ids
                .iter()
                .filter_map(|id| self.nodes[b].log.envelopes.get(id).cloned())
                .collect();
            for page in pages(envelopes) {
                new += self.page(b, a, page, 2 * delay, at_once);
            }
        }
        let have = std::mem::take(&mut reconciler.have);
        let envelopes: Vec<Vec<u8>> = have
            .iter()
            .filter_map(|id| self.nodes[a].log.envelopes.get(id).cloned())
            .collect();
        for page in pages(envelopes) {
            new += self.page(a, b, page, delay, at_once);
        }
        new
    }

    fn page(&mut self, from: usize, to: usize, envelopes: Vec<Vec<u8>>, delay: u64, at_once: bool) -> usize {
        if at_once {
            return self.page_arrives(from, to, &envelopes);
        }
        self.schedule(self.now + delay, to, What::Page { from, envelopes });
        0
    }

    /// Heals every partition, drains the gossip in flight, then reconciles
    /// over every mesh link in turn until a whole round brings nothing new:
    /// every pair of mesh peers then holds the same history, and the mesh is
    /// connected. Returns false if that takes more than `MAX_ROUNDS`.
    fn quiesce(&mut self) -> bool {
        const MAX_ROUNDS: usize = 20;
        self.cuts.clear();
        self.calm = true;
        self.queue.retain(|Reverse(p)| !matches!(p.what, What::Heal(_)));
        // Gossip and pages in flight land within seconds.
        self.run_until(self.now + 10_000);
        let edges: Vec<(usize, usize)> = (0..self.nodes.len())
            .flat_map(|a| self.links[a].iter().map(move |(b, _)| (a, *b)))
            .filter(|(a, b)| a < b)
            .collect();
        let mut quiet = false;
        for _ in 0..MAX_ROUNDS {
            let mut new = 0;
            for &(a, b) in &edges {
                new += self.sync(a, b, true);
            }
            if new == 0 {
                quiet = true;
                break;
            }
        }
        self.calm = false;
        quiet
    }

    /// The peer id of a node.
    fn peer(&self, node: usize) -> PeerId {
        self.nodes[node].peer
    }
}

/// A connected random mesh of about `degree` links per node (a random
/// spanning tree, then random links), each with a delay.
fn mesh(rng: &mut Rng, n: usize, degree: usize, (min, max): (u64, u64)) -> Vec<Vec<(usize, u64)>> {
    let mut edges = std::collections::BTreeSet::new();
    for b in 1..n {
        let a = rng.below(b);
        edges.insert((a, b));
    }
    let target = n * degree / 2;
    let mut attempts = 0;
    while edges.len() < target && attempts < target * 20 {
        attempts += 1;
        let (a, b) = (rng.below(n), rng.below(n));
        if a != b {
            edges.insert((a.min(b), a.max(b)));
        }
    }
    let mut links = vec![Vec::new(); n];
    for (a, b) in edges {
        let delay = min + rng.below((max - min) as usize + 1) as u64;
        links[a].push((b, delay));
        links[b].push((a, delay));
    }
    links
}

#[cfg(test)]
mod tests;
