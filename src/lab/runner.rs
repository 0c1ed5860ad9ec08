//! Runs a [`Scenario`] on in-process nodes and measures what happened.
//!
//! Every post's text starts with `#<index> `, so a delivery is matched to its
//! post by its text, whatever order ids and events arrive in. Whether a node
//! is *expected* to receive a post is decided when it is published: the
//! receivers are the running members of the room reachable from the author
//! over links where one node has seen the other join the room (and that no
//! fault has cut). Posts published while a node is down or cut off are not
//! expected there (history sync for late joiners is a later feature).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::io::AsyncBufReadExt;
use tokio::sync::mpsc;

use super::metrics::{self, Latency, round2};
use super::netns::{Nat, NatLab, NetnsError};
use super::process::{Launch, ProcNode, ProcReport};
use super::scenario::{Fault, Scenario};
use super::{Lab, LabConfig, LabError, LabNode, Rng};
use crate::{Event, JsonLine, MessageId, PeerId, RejectReason, Room};

/// The outcome of a run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The scenario's name.
    pub scenario: String,
    /// Always `backchannel` (benchmarks print `libp2p` for their baseline).
    #[serde(rename = "impl")]
    pub implementation: String,
    /// Nodes.
    pub nodes: usize,
    /// Rooms.
    pub rooms: usize,
    /// Topology within each room.
    pub topology: String,
    /// Seed.
    pub seed: u64,
    /// In-process or real processes.
    pub processes: bool,
    /// Time to connect and form every room's mesh.
    pub formation_ms: f64,
    /// Seconds of traffic.
    pub duration_s: f64,
    /// Posts published.
    pub posts_sent: u64,
    /// Posts whose publishing failed.
    pub post_errors: u64,
    /// (node, post) deliveries expected.
    pub expected: u64,
    /// Expected deliveries that happened (verified and shown once).
    pub delivered: u64,
    /// Deliveries that were not expected (e.g. across a partition edge in flight).
    pub unexpected: u64,
    /// Posts shown twice to the application (must be 0).
    pub duplicates: u64,
    /// Posts shown again by a node after it was killed: it showed them in
    /// the last moments before the kill, lost them with the unflushed end of
    /// its log, and history sync brought them back.
    pub reshown_after_crash: u64,
    /// delivered / expected.
    pub delivery_ratio: f64,
    /// Publish call to display on each receiver.
    pub latency: Latency,
    /// Deliveries per second over the traffic phase.
    pub msgs_per_s: f64,
    /// Direct messages.
    pub dm: DmReport,
    /// Expected and delivered per node.
    pub per_node: Vec<NodeReport>,
    /// CPU seconds of the process(es) over the traffic phase.
    pub cpu_s: f64,
    /// CPU per delivered message, in microseconds.
    pub cpu_us_per_delivery: f64,
    /// Peak resident memory of the nodes (above the lab's own), MB.
    pub rss_peak_mb: f64,
    /// That peak divided by the number of nodes, MB.
    pub rss_per_node_mb: f64,
    /// Resident memory per node once the mesh formed, before traffic, MB.
    pub rss_idle_per_node_mb: f64,
    /// Mean number of peers each in-process node was connected to at the
    /// end of the traffic (0 for process runs): what gossipsub publishes and
    /// gossips to grows with it.
    pub peers_per_node: f64,
    /// Mean number of connections each in-process node established from its
    /// start to the end of the traffic (0 for process runs).
    pub connections_per_node: f64,
    /// Inputs rejected by the nodes, by reason.
    pub rejected: BTreeMap<RejectReason, u64>,
    /// What faults happened, and when.
    pub faults: Vec<String>,
    /// Joins of a join storm whose dial or join failed.
    pub join_errors: u64,
    /// Reconciliations the running nodes started, summed (`Stats::syncs_started`).
    pub syncs_started: u64,
    /// Presence announcements the running nodes published, summed.
    pub presence_sent: u64,
    /// Presence announcements the running nodes verified and admitted, summed.
    pub presence_received: u64,
    /// Of `presence_sent`: the first in the room since joining, summed.
    pub presence_sent_first: u64,
    /// Of `presence_sent`: answers to arrivals, summed.
    pub presence_sent_answers: u64,
    /// Announcements held back by a room's budget, summed.
    pub presence_held_back: u64,
    /// Announcements of new participants skipped over a room's budget, summed.
    pub presence_over_budget: u64,
    /// Every latency sample in ms (for plots; not in JSON).
    #[serde(skip)]
    pub latencies_ms: Vec<f64>,
    /// Every expected delivery, with when its post was published (not in
    /// JSON): for latencies within a phase of the run or at some nodes.
    #[serde(skip)]
    pub deliveries: Vec<Delivery>,
    /// When a node learnt that a participant appeared or left (an
    /// `Event::Presence`), in seconds from the start of the traffic
    /// (negative: while the mesh formed); not in JSON.
    #[serde(skip)]
    pub presence_events_at_s: Vec<f64>,
    /// When history sync brought a node messages (an `Event::Synced`), in
    /// seconds from the start of the traffic; not in JSON.
    #[serde(skip)]
    pub synced_events_at_s: Vec<f64>,
}

/// One expected delivery of a post.
#[derive(Debug, Clone, Copy)]
pub struct Delivery {
    /// The post's index in the run.
    pub post: usize,
    /// When it was published, in seconds from the start of the traffic.
    pub published_s: f64,
    /// The node that showed it.
    pub node: usize,
    /// Publish call to display, in ms.
    pub ms: f64,
}

/// Direct-message results.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DmReport {
    /// DMs sent.
    pub sent: u64,
    /// DMs acknowledged by a valid receipt.
    pub delivered: u64,
    /// DMs that failed.
    pub failed: u64,
    /// Send call to receipt.
    pub rtt: Latency,
    /// Receipts per second over the traffic phase.
    pub per_s: f64,
}

/// One node's share.
#[derive(Debug, Clone, Serialize)]
pub struct NodeReport {
    /// Index.
    pub node: usize,
    /// Deliveries expected there.
    pub expected: u64,
    /// Deliveries seen there.
    pub delivered: u64,
}

/// A progress snapshot, a few times a second.
#[derive(Debug, Clone)]
pub struct Progress {
    /// Seconds since the traffic started.
    pub elapsed_s: f64,
    /// Seconds of traffic planned.
    pub total_s: f64,
    /// Posts published.
    pub sent: u64,
    /// Deliveries expected so far.
    pub expected: u64,
    /// Deliveries seen so far.
    pub delivered: u64,
    /// DMs delivered so far.
    pub dm_delivered: u64,
}

/// What the runner learns, from node collectors and from spawned sends.
enum Obs {
    Event(usize, Instant, Box<Event>),
    Posted(Result<MessageId, String>),
    DmSent(usize, Instant, Result<MessageId, String>),
    Stats(BTreeMap<RejectReason, u64>),
    JoinFailed,
    /// A node of a join storm is in its room: it may post from now on.
    Joined(usize),
}

/// A timed action of the run.
#[derive(Debug, Clone)]
enum Action {
    Stop(usize, bool),
    Start(usize),
    Cut(Vec<usize>),
    Heal(Vec<usize>),
    /// A node of a join storm dials its neighbours in the room and joins.
    Join(usize),
}

struct PostRec {
    t0: Instant,
    expected: HashSet<usize>,
}

/// Links, posts and DMs as the runner sees them.
struct Tracker {
    index_of: HashMap<PeerId, usize>,
    room_of: Vec<usize>,
    group_of: Vec<usize>,
    up: Vec<bool>,
    sees: HashSet<(usize, usize)>,
    posts: Vec<PostRec>,
    seen: HashSet<(usize, usize)>,
    /// When each node was last killed.
    killed_at: Vec<Option<Instant>>,
    /// When each (node, post) was first shown.
    seen_at: HashMap<(usize, usize), Instant>,
    reshown_after_crash: u64,
    latencies: Vec<f64>,
    /// (post, node, when shown) of each expected delivery.
    deliveries: Vec<(usize, usize, Instant)>,
    presence_at: Vec<Instant>,
    synced_at: Vec<Instant>,
    join_errors: u64,
    /// Nodes of a join storm whose join was started and has not completed:
    /// running and counted as receivers, but not yet able to post.
    joining: HashSet<usize>,
    delivered: u64,
    unexpected: u64,
    duplicates: u64,
    expected_total: u64,
    per_node_expected: Vec<u64>,
    per_node_delivered: Vec<u64>,
    dm_pending: HashMap<MessageId, (usize, Instant)>,
    /// Verdicts that arrived before the send's own reply: delivered at, or
    /// `None` for failed.
    dm_early: HashMap<MessageId, Option<Instant>>,
    dm_rtts: Vec<f64>,
    dm_in_flight: Vec<usize>,
    dm: DmReport,
    post_errors: u64,
    /// When the last expected delivery or receipt was seen.
    last_at: Option<Instant>,
    rejected: BTreeMap<RejectReason, u64>,
    stats_seen: usize,
}

impl Tracker {
    fn observe(&mut self, obs: Obs) {
        match obs {
            Obs::Event(node, at, event) => self.event(node, at, *event),
            Obs::Posted(Ok(_)) => {}
            Obs::Posted(Err(_)) => self.post_errors += 1,
            Obs::JoinFailed => self.join_errors += 1,
            Obs::Joined(node) => {
                self.joining.remove(&node);
            }
            Obs::DmSent(pair, t0, Ok(id)) => match self.dm_early.remove(&id) {
                Some(verdict) => self.dm_done(pair, t0, verdict),
                None => {
                    self.dm_pending.insert(id, (pair, t0));
                }
            },
            Obs::Stats(rejected) => {
                self.stats_seen += 1;
                for (k, v) in rejected {
                    *self.rejected.entry(k).or_insert(0) += v;
                }
            }
            Obs::DmSent(pair, _, Err(_)) => {
                self.dm.failed += 1;
                self.dm_in_flight[pair] -= 1;
            }
        }
    }

    fn dm_done(&mut self, pair: usize, t0: Instant, delivered_at: Option<Instant>) {
        self.dm_in_flight[pair] = self.dm_in_flight[pair].saturating_sub(1);
        match delivered_at {
            Some(at) => {
                self.last_at = Some(self.last_at.map_or(at, |l| l.max(at)));
                self.dm.delivered += 1;
                self.dm_rtts.push(at.duration_since(t0).as_secs_f64() * 1e3);
            }
            None => self.dm.failed += 1,
        }
    }

    fn event(&mut self, node: usize, at: Instant, event: Event) {
        match event {
            Event::RoomPeerJoined { peer, .. } => {
                if let Some(&other) = self.index_of.get(&peer)
                    && self.group_of[node] == self.group_of[other]
                    && self.up[node]
                {
                    self.sees.insert((node, other));
                }
            }
            Event::RoomPeerLeft { peer, .. } | Event::PeerDisconnected { peer } => {
                if let Some(&other) = self.index_of.get(&peer) {
                    self.sees.remove(&(node, other));
                }
            }
            Event::Hallway { post, .. } => {
                let Some(index) = post_index(&post.text) else { return };
                let Some(rec) = self.posts.get(index) else { return };
                if !self.seen.insert((node, index)) {
                    let first = self.seen_at.get(&(node, index));
                    match (first, self.killed_at[node]) {
                        (Some(first), Some(killed)) if killed > *first => self.reshown_after_crash += 1,
                        _ => self.duplicates += 1,
                    }
                } else if rec.expected.contains(&node) {
                    self.last_at = Some(self.last_at.map_or(at, |l| l.max(at)));
                    self.delivered += 1;
                    self.seen_at.insert((node, index), at);
                    self.per_node_delivered[node] += 1;
                    self.latencies.push(at.duration_since(rec.t0).as_secs_f64() * 1e3);
                    self.deliveries.push((index, node, at));
                } else {
                    self.unexpected += 1;
                }
            }
            Event::Presence { .. } => self.presence_at.push(at),
            Event::Synced { .. } => self.synced_at.push(at),
            Event::Delivered { id, .. } => match self.dm_pending.remove(&id) {
                Some((pair, t0)) => self.dm_done(pair, t0, Some(at)),
                None => {
                    self.dm_early.insert(id, Some(at));
                }
            },
            Event::DmFailed { id, .. } => match self.dm_pending.remove(&id) {
                Some((pair, t0)) => self.dm_done(pair, t0, None),
                None => {
                    self.dm_early.insert(id, None);
                }
            },
            _ => {}
        }
    }

    /// The running room members reachable from `author` now.
    fn reachable(&self, author: usize) -> HashSet<usize> {
        let mut out = HashSet::new();
        let mut queue = VecDeque::from([author]);
        let mut visited = HashSet::from([author]);
        while let Some(a) = queue.pop_front() {
            for &(x, b) in &self.sees {
                if x == a && self.up[b] && self.room_of[b] == self.room_of[author] && visited.insert(b) {
                    out.insert(b);
                    queue.push_back(b);
                }
            }
        }
        out
    }

    fn record_post(&mut self, author: usize, t0: Instant) -> usize {
        let expected = self.reachable(author);
        self.expected_total += expected.len() as u64;
        for n in &expected {
            self.per_node_expected[*n] += 1;
        }
        self.posts.push(PostRec { t0, expected });
        self.posts.len() - 1
    }

    fn forget_links_of(&mut self, node: usize) {
        self.sees.retain(|(a, b)| *a != node && *b != node);
    }
}

fn post_index(text: &str) -> Option<usize> {
    text.strip_prefix('#')?.split(' ').next()?.parse().ok()
}

fn filler(prefix: String, size: usize) -> String {
    let mut text = prefix;
    text.push(' ');
    while text.len() < size {
        text.push('x');
    }
    text
}

/// A node of the run: in this process, or a child process.
enum Member {
    Local(Box<LabNode>),
    Proc(Box<ProcNode>),
}

impl Member {
    fn peer_id(&self) -> PeerId {
        match self {
            Member::Local(n) => n.peer_id(),
            Member::Proc(p) => p.peer_id,
        }
    }

    fn addr(&self) -> crate::Multiaddr {
        match self {
            Member::Local(n) => n.addr.clone(),
            Member::Proc(p) => p.addr.clone(),
        }
    }

    async fn dial(&mut self, addr: crate::Multiaddr) -> Result<(), LabError> {
        match self {
            Member::Local(n) => Ok(n.handle.dial(addr).await?),
            Member::Proc(p) => p.say(&format!("/dial {addr}")).await,
        }
    }

    async fn post(&mut self, room: &Room, text: String, tx: &mpsc::UnboundedSender<Obs>) -> Result<(), LabError> {
        match self {
            Member::Local(n) => {
                let (handle, room, tx) = (n.handle.clone(), room.clone(), tx.clone());
                tokio::spawn(async move {
                    let r = handle.post(&room, &text).await.map_err(|e| e.to_string());
                    let _ = tx.send(Obs::Posted(r));
                });
                Ok(())
            }
            Member::Proc(p) => p.say(&text).await,
        }
    }

    async fn send_dm(
        &mut self,
        pair: usize,
        to: PeerId,
        text: String,
        tx: &mpsc::UnboundedSender<Obs>,
    ) -> Result<(), LabError> {
        let t0 = Instant::now();
        match self {
            Member::Local(n) => {
                let (handle, tx) = (n.handle.clone(), tx.clone());
                tokio::spawn(async move {
                    let r = handle.send_dm(to, &text).await.map_err(|e| e.to_string());
                    let _ = tx.send(Obs::DmSent(pair, t0, r));
                });
                Ok(())
            }
            Member::Proc(p) => {
                p.dm_sends.lock().expect("dm sends").push_back((pair, t0));
                p.say(&format!("/dm {to} {text}")).await
            }
        }
    }

    async fn block(&mut self, peer: PeerId, block: bool) -> Result<(), LabError> {
        match self {
            Member::Local(n) if block => Ok(n.handle.block_peer(peer).await?),
            Member::Local(n) => Ok(n.handle.unblock_peer(peer).await?),
            Member::Proc(p) => {
                p.say(&format!("/{} {peer}", if block { "block" } else { "unblock" }))
                    .await
            }
        }
    }

    async fn stop(&mut self, kill: bool) {
        match self {
            Member::Local(n) => n.stop().await,
            Member::Proc(p) if kill => p.kill().await,
            Member::Proc(p) => p.stop().await,
        }
    }

    async fn start(&mut self, peers: Vec<crate::Multiaddr>, channels: &Channels) -> Result<(), LabError> {
        match self {
            Member::Local(n) => {
                n.config.peers = peers;
                n.restart().await?;
                collect(n, &channels.obs);
                Ok(())
            }
            Member::Proc(p) => p.spawn(&peers, &channels.proc).await,
        }
    }
}

/// Where observations flow: from in-process collectors and spawned sends
/// (`obs`), and from child processes (`proc`, converted to `obs`).
struct Channels {
    obs: mpsc::UnboundedSender<Obs>,
    proc: mpsc::UnboundedSender<ProcReport>,
}

/// The host name of node `i`'s home in the NAT lab.
fn home_name(i: usize) -> String {
    format!("n{i}")
}

fn nat_error(e: NetnsError) -> LabError {
    LabError::Scenario(format!("the NAT lab (netns): {e}"))
}

/// What every in-process node of a run has, whatever the scenario: quick
/// redials, and no DHT. A lab node is public by default, so it would serve
/// the DHT, and the DHT queries at join connect every member of a room to
/// most others (a 50-node room ended fully connected, docs/PERFORMANCE.md):
/// the run would measure a full mesh whatever topology the scenario names,
/// and the baseline runs on the scenario's edges. Private, with no helper,
/// a node reaches exactly the peers of its edges (reach has its own tests,
/// tests/it/reach.rs and tests/it/netns.rs).
fn run_node(c: &mut crate::node::Config) {
    c.redial_interval = Duration::from_millis(500);
    c.public = false;
}

/// Builds the NAT lab for `netns` scenarios: one helper on the public
/// segment running `backchannel serve`, and a home behind its own
/// (endpoint-independent) NAT for each of `n` nodes. Returns the lab, the
/// helper's process and its address.
async fn start_nat_lab(
    bin: &std::path::Path,
    n: usize,
    root: &std::path::Path,
) -> Result<(NatLab, tokio::process::Child, crate::Multiaddr), LabError> {
    let mut net = NatLab::new().and_then(|l| l.helper("h1")).map_err(nat_error)?;
    for i in 0..n {
        net = net.home(&home_name(i), Nat::Easy).map_err(nat_error)?;
    }
    let listen = format!("/ip4/{}/tcp/4001", net.host("h1").map_err(nat_error)?.addr());
    let mut helper = net
        .command("h1", bin)
        .map_err(nat_error)?
        .arg("--data-dir")
        .arg(root.join("helper"))
        .args(["serve", "--json", "--listen", &listen])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let stdout = helper.stdout.take().ok_or(LabError::Stopped(usize::MAX))?;
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let addr = tokio::time::timeout(Duration::from_secs(20), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Ok(JsonLine::Listening { addr }) = serde_json::from_str(&line) {
                return Some(addr);
            }
        }
        None
    })
    .await
    .ok()
    .flatten()
    .ok_or_else(|| LabError::Timeout("the NAT lab's helper to listen".into()))?;
    // Its output is read to the end, so that it never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok((net, helper, addr))
}

/// Whether, in every room, the members that are up (`up`) form one
/// connected graph of peers that see each other.
fn rooms_connected(sees: &HashSet<(usize, usize)>, room_of: &[usize], up: impl Fn(usize) -> bool) -> bool {
    let rooms = room_of.iter().copied().max().map_or(0, |r| r + 1);
    (0..rooms).all(|room| {
        let members: Vec<usize> = (0..room_of.len()).filter(|&i| room_of[i] == room && up(i)).collect();
        let Some(&first) = members.first() else {
            return true;
        };
        let mut reached = HashSet::from([first]);
        let mut todo = vec![first];
        while let Some(a) = todo.pop() {
            for &b in &members {
                if !reached.contains(&b) && sees.contains(&(a, b)) && sees.contains(&(b, a)) {
                    reached.insert(b);
                    todo.push(b);
                }
            }
        }
        reached.len() == members.len()
    })
}

/// The binary `--processes` runs: `BACKCHANNEL_BIN`, or this executable.
fn backchannel_bin() -> Result<PathBuf, LabError> {
    match std::env::var_os("BACKCHANNEL_BIN") {
        Some(path) => Ok(PathBuf::from(path)),
        None => Ok(std::env::current_exe()?),
    }
}

/// Runs `scenario`, calling `progress` a few times a second. Nodes run in
/// this process, or as child processes of the `backchannel` binary (this
/// executable, or the one named by `BACKCHANNEL_BIN`) with `processes`.
pub async fn run(scenario: &Scenario, progress: impl FnMut(&Progress)) -> Result<Report, LabError> {
    run_with(scenario, None, progress).await
}

/// [`run`] with the `backchannel` binary for `processes` given explicitly.
pub async fn run_with(
    scenario: &Scenario,
    bin: Option<PathBuf>,
    mut progress: impl FnMut(&Progress),
) -> Result<Report, LabError> {
    scenario.validate().map_err(|e| LabError::Scenario(e.to_string()))?;
    let n = scenario.nodes;
    let rooms = scenario.hallway.rooms;
    let topology = scenario.topology().map_err(|e| LabError::Scenario(e.to_string()))?;
    let room_names: Vec<Room> = (0..rooms)
        .map(|r| Room::new(format!("room-{r}")).expect("valid room name"))
        .collect();
    let room_of: Vec<usize> = (0..n).map(|i| i % rooms).collect();
    // Edges within each room, in global indices; (a, b): b dials a.
    let mut edges = Vec::new();
    for r in 0..rooms {
        let members: Vec<usize> = (0..n).filter(|i| room_of[*i] == r).collect();
        for (a, b) in topology.edges(members.len(), scenario.seed.wrapping_add(r as u64)) {
            edges.push((members[a], members[b]));
        }
    }
    let late: HashSet<usize> = scenario
        .faults
        .iter()
        .filter_map(|f| match f {
            Fault::LateJoin { node, .. } => Some(*node),
            _ => None,
        })
        .collect();
    // The nodes of join storms: running from the start, apart until they join.
    let storm: HashSet<usize> = scenario
        .faults
        .iter()
        .flat_map(|f| match f {
            Fault::JoinStorm { first, count, .. } => *first..first + count,
            _ => 0..0,
        })
        .collect();

    let rss_before = metrics::rss(None).0;
    let (obs_tx, mut obs_rx) = mpsc::unbounded_channel::<Obs>();
    let (proc_tx, mut proc_rx) = mpsc::unbounded_channel::<ProcReport>();
    let channels = Channels {
        obs: obs_tx.clone(),
        proc: proc_tx,
    };
    let root = tempfile::Builder::new().prefix("backchannel-mesh-").tempdir()?;
    // The NAT lab and its helper are declared before the members, so that
    // the nodes' processes end before the namespaces go.
    let mut _nat_lab: Option<(NatLab, tokio::process::Child)> = None;
    let mut members: Vec<Member> = Vec::with_capacity(n);
    let mut lab = None;
    if scenario.processes {
        let bin = match bin {
            Some(bin) => bin,
            None => backchannel_bin()?,
        };
        let mut launch: Vec<Launch> = (0..n)
            .map(|i| Launch {
                room: room_names[room_of[i]].clone(),
                netns: None,
                bootstrap: Vec::new(),
            })
            .collect();
        if scenario.netns {
            let (net, helper, bootstrap) = start_nat_lab(&bin, n, root.path()).await?;
            for (i, l) in launch.iter_mut().enumerate() {
                l.netns = Some(net.host(&home_name(i)).map_err(nat_error)?.netns().to_owned());
                l.bootstrap = vec![bootstrap.clone()];
            }
            _nat_lab = Some((net, helper));
        }
        for (i, launch) in launch.into_iter().enumerate() {
            // Behind NATs nobody knows another's address: they meet
            // through the helper's DHT.
            let peers: Vec<_> = edges
                .iter()
                .filter(|&&(a, b)| b == i && !late.contains(&a) && !scenario.netns)
                .map(|&(a, _)| members[a].addr())
                .collect();
            let dir = root.path().join(format!("node-{i}"));
            if scenario.encrypt {
                super::process::encrypt_dir(&dir, super::secret(scenario.seed, i))?;
            }
            let node = ProcNode::start(
                &bin,
                dir,
                i,
                super::secret(scenario.seed, i),
                launch,
                &peers,
                &channels.proc,
            )
            .await?;
            members.push(Member::Proc(Box::new(node)));
        }
    } else {
        let mut l = Lab::start(
            n,
            LabConfig {
                seed: scenario.seed,
                // Plain function pointers, one per combination: a tweak
                // captures nothing.
                tweak: match (scenario.group_commit, scenario.encrypt) {
                    (true, false) => run_node,
                    (false, false) => |c| {
                        run_node(c);
                        c.group_commit = false;
                    },
                    (true, true) => |c| {
                        run_node(c);
                        c.data_key = Some(crate::seal::DataKey::generate());
                    },
                    (false, true) => |c| {
                        run_node(c);
                        c.group_commit = false;
                        c.data_key = Some(crate::seal::DataKey::generate());
                    },
                },
                limits: (!scenario.rate_limits).then(crate::node::limits::Limits::unlimited),
            },
        )
        .await?;
        for mut node in std::mem::take(&mut l.nodes) {
            node.config.rooms = vec![room_names[room_of[node.index]].clone()];
            collect(&mut node, &obs_tx);
            members.push(Member::Local(Box::new(node)));
        }
        lab = Some(l);
    }
    // Child-process reports become observations.
    let dm_sends: Vec<_> = members
        .iter()
        .map(|m| match m {
            Member::Proc(p) => Some(p.dm_sends.clone()),
            Member::Local(_) => None,
        })
        .collect();
    let forward = obs_tx.clone();
    tokio::spawn(async move {
        while let Some(report) = proc_rx.recv().await {
            let obs = match report {
                ProcReport::Event(i, at, e) => Obs::Event(i, at, e),
                ProcReport::DmSent(i, id) => {
                    let Some((pair, t0)) = dm_sends[i]
                        .as_ref()
                        .and_then(|q| q.lock().expect("dm sends").pop_front())
                    else {
                        continue;
                    };
                    Obs::DmSent(pair, t0, Ok(id))
                }
                ProcReport::Stats(rejected) => Obs::Stats(rejected),
            };
            if forward.send(obs).is_err() {
                break;
            }
        }
    });
    let mut tracker = Tracker {
        index_of: members.iter().enumerate().map(|(i, m)| (m.peer_id(), i)).collect(),
        room_of: room_of.clone(),
        group_of: vec![0; n],
        up: vec![true; n],
        sees: HashSet::new(),
        posts: Vec::new(),
        seen: HashSet::new(),
        killed_at: vec![None; n],
        seen_at: HashMap::new(),
        reshown_after_crash: 0,
        latencies: Vec::new(),
        deliveries: Vec::new(),
        presence_at: Vec::new(),
        synced_at: Vec::new(),
        join_errors: 0,
        joining: HashSet::new(),
        delivered: 0,
        unexpected: 0,
        duplicates: 0,
        expected_total: 0,
        per_node_expected: vec![0; n],
        per_node_delivered: vec![0; n],
        dm_pending: HashMap::new(),
        dm_early: HashMap::new(),
        dm_rtts: Vec::new(),
        dm_in_flight: Vec::new(),
        dm: DmReport::default(),
        post_errors: 0,
        last_at: None,
        rejected: BTreeMap::new(),
        stats_seen: 0,
    };
    let addrs: Vec<_> = members.iter().map(Member::addr).collect();
    let neighbours = |i: usize| -> Vec<crate::Multiaddr> {
        edges
            .iter()
            .filter_map(|&(a, b)| (a == i).then_some(b).or((b == i).then_some(a)))
            .map(|j| addrs[j].clone())
            .collect()
    };
    for &i in &late {
        members[i].stop(false).await;
        tracker.up[i] = false;
    }
    // Not stopped: apart, and out of every count until they join.
    for &i in &storm {
        tracker.up[i] = false;
    }

    // Connect and form every room's mesh, waiting on events.
    let formed_at = Instant::now();
    let live_edges: Vec<(usize, usize)> = edges
        .iter()
        .copied()
        .filter(|(a, b)| !late.contains(a) && !late.contains(b) && !storm.contains(a) && !storm.contains(b))
        .collect();
    for (i, member) in members.iter_mut().enumerate() {
        if let Member::Local(node) = member
            && !late.contains(&i)
            && !storm.contains(&i)
        {
            node.handle
                .join(&room_names[room_of[i]])
                .await
                .map_err(crate::NodeError::from)?;
        }
    }
    if !scenario.processes {
        for &(a, b) in &live_edges {
            members[b].dial(addrs[a].clone()).await?;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let formed = |tracker: &Tracker| {
        if scenario.netns {
            // Who meets whom is up to the DHT: every room's members must
            // form one connected mesh.
            rooms_connected(&tracker.sees, &room_of, |i| !late.contains(&i))
        } else {
            live_edges
                .iter()
                .all(|&(a, b)| tracker.sees.contains(&(a, b)) && tracker.sees.contains(&(b, a)))
        }
    };
    while !formed(&tracker) {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, obs_rx.recv()).await {
            Ok(Some(obs)) => tracker.observe(obs),
            _ => {
                // How far it got tells where a large mesh breaks.
                let both =
                    |&&(a, b): &&(usize, usize)| tracker.sees.contains(&(a, b)) && tracker.sees.contains(&(b, a));
                let done = live_edges.iter().filter(both).count();
                return Err(LabError::Timeout(format!(
                    "mesh formation ({done} of {} links seen both ways)",
                    live_edges.len()
                )));
            }
        }
    }
    let formation_ms = formed_at.elapsed().as_secs_f64() * 1e3;
    // A join storm's nodes have their room stamps ready before the traffic,
    // as an application that showed the room before its user joined has
    // (`Handle::prepare_room`): each real joiner mints on its own device,
    // which one process running every node cannot give it.
    let prepares = storm.iter().filter_map(|&i| match &members[i] {
        Member::Local(node) => Some((node.handle.clone(), room_names[room_of[i]].clone())),
        Member::Proc(_) => None,
    });
    for result in
        futures::future::join_all(prepares.map(|(handle, room)| async move { handle.prepare_room(&room).await })).await
    {
        if result.is_err() {
            tracker.join_errors += 1;
        }
    }
    let rss_idle = usage(&members, lab.is_some(), rss_before).rss_now;

    // The timeline of faults.
    let mut timeline: Vec<(f64, Action)> = Vec::new();
    let mut fault_log = Vec::new();
    for f in &scenario.faults {
        match f {
            Fault::Restart { at_s, node, down_s } => {
                timeline.push((*at_s, Action::Stop(*node, false)));
                timeline.push((at_s + down_s, Action::Start(*node)));
            }
            Fault::Kill { at_s, node, down_s } => {
                timeline.push((*at_s, Action::Stop(*node, true)));
                timeline.push((at_s + down_s, Action::Start(*node)));
            }
            Fault::Partition {
                at_s,
                groups,
                heal_after_s,
            } => {
                let mut group_of = vec![groups.len(); n];
                for (g, members) in groups.iter().enumerate() {
                    for m in members {
                        group_of[*m] = g;
                    }
                }
                timeline.push((*at_s, Action::Cut(group_of.clone())));
                timeline.push((at_s + heal_after_s, Action::Heal(group_of)));
            }
            Fault::LateJoin { at_s, node } => timeline.push((*at_s, Action::Start(*node))),
            Fault::JoinStorm {
                at_s,
                window_s,
                first,
                count,
            } => {
                // Evenly spaced: the first at `at_s`, the last at the end of the window.
                let gap = if *count > 1 { window_s / (count - 1) as f64 } else { 0.0 };
                for k in 0..*count {
                    timeline.push((at_s + gap * k as f64, Action::Join(first + k)));
                }
            }
        }
    }
    // Stable: joins at the same instant keep their index order.
    timeline.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut timeline: VecDeque<_> = timeline.into();

    // Publishers and DM pairs (between neighbours, whose addresses they
    // know: a run has no DHT, see `run_node`; in the NAT lab, any two
    // nodes, which meet through the helper).
    let h = &scenario.hallway;
    let publishers: Vec<usize> = (0..n)
        .filter(|i| h.publishers == 0 || i / rooms < h.publishers)
        .collect();
    let mut rng = Rng::new(scenario.seed ^ 0xd1);
    let pairs: Vec<(usize, usize)> = (0..scenario.dm.pairs)
        .map(|_| {
            if !scenario.netns && !edges.is_empty() {
                let (a, b) = edges[rng.below(edges.len())];
                if rng.below(2) == 0 { (a, b) } else { (b, a) }
            } else {
                let a = rng.below(n);
                (a, (a + 1 + rng.below(n - 1)) % n)
            }
        })
        .collect();
    tracker.dm_in_flight = vec![0; pairs.len()];
    let mut dm_sent_per_pair = vec![0u64; pairs.len()];

    let total = Duration::from_secs_f64(h.duration_s);
    let in_process = lab.is_some();
    let cpu0 = usage(&members, in_process, rss_before).cpu;
    let start = Instant::now();
    let mut rss_peak = usage(&members, in_process, rss_before).rss_peak;
    let mut ticker = tokio::time::interval(Duration::from_millis(2));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut last_progress = Instant::now();
    let mut posts_sent = 0u64;
    let mut posts_due = 0u64;
    let ctx = Ctx {
        edges: &edges,
        addrs: &addrs,
        channels: &channels,
        neighbours: &neighbours,
        room_of: &room_of,
        room_names: &room_names,
    };
    loop {
        let elapsed = start.elapsed();
        if elapsed >= total {
            break;
        }
        while timeline.front().is_some_and(|(at, _)| *at <= elapsed.as_secs_f64()) {
            let (at, action) = timeline.pop_front().expect("front exists");
            // A storm's hundreds of joins would drown the other faults.
            if !matches!(action, Action::Join(_)) {
                fault_log.push(format!("{at:.1}s {action:?}"));
            }
            apply(&mut members, &mut tracker, &ctx, action).await?;
        }
        // Posts due by now.
        let due = (h.rate * elapsed.as_secs_f64()) as u64;
        while posts_due < due && !publishers.is_empty() {
            let author = publishers[posts_due as usize % publishers.len()];
            posts_due += 1;
            if !tracker.up[author] || tracker.joining.contains(&author) {
                continue; // a stopped node posts nothing, nor one still joining
            }
            posts_sent += 1;
            let index = tracker.record_post(author, Instant::now());
            let text = filler(format!("#{index}"), h.size);
            members[author]
                .post(&room_names[room_of[author]], text, &obs_tx)
                .await?;
        }
        // DMs within each pair's window.
        for (p, &(a, b)) in pairs.iter().enumerate() {
            let due = if scenario.dm.rate > 0.0 {
                (scenario.dm.rate * elapsed.as_secs_f64()) as u64
            } else {
                u64::MAX
            };
            while dm_sent_per_pair[p] < due && tracker.dm_in_flight[p] < scenario.dm.window && tracker.up[a] {
                dm_sent_per_pair[p] += 1;
                tracker.dm_in_flight[p] += 1;
                tracker.dm.sent += 1;
                let text = filler(format!("dm{}", dm_sent_per_pair[p]), scenario.dm.size);
                let to = members[b].peer_id();
                members[a].send_dm(p, to, text, &obs_tx).await?;
            }
        }
        tokio::select! {
            obs = obs_rx.recv() => if let Some(obs) = obs { tracker.observe(obs) },
            _ = ticker.tick() => {}
        }
        while let Ok(obs) = obs_rx.try_recv() {
            tracker.observe(obs);
        }
        if last_progress.elapsed() >= Duration::from_millis(500) {
            last_progress = Instant::now();
            rss_peak = rss_peak.max(usage(&members, in_process, rss_before).rss_peak);
            progress(&snapshot(&tracker, start, total, posts_sent));
        }
    }
    // Faults scheduled past the traffic still happen (a partition heals).
    while let Some((at, action)) = timeline.pop_front() {
        if !matches!(action, Action::Join(_)) {
            fault_log.push(format!("{at:.1}s {action:?}"));
        }
        apply(&mut members, &mut tracker, &ctx, action).await?;
    }
    let traffic = start.elapsed();
    // Rates divide by the time until the last delivery, which includes any
    // backlog drained after the traffic stopped.
    // Settle: wait for what is still in flight.
    let settle_until = Instant::now() + Duration::from_secs_f64(scenario.settle_s);
    while (tracker.delivered < tracker.expected_total || tracker.dm.delivered + tracker.dm.failed < tracker.dm.sent)
        && Instant::now() < settle_until
    {
        let left = settle_until.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, obs_rx.recv()).await {
            Ok(Some(obs)) => tracker.observe(obs),
            _ => break,
        }
    }
    let end = usage(&members, in_process, rss_before);
    let cpu_used = end.cpu.saturating_sub(cpu0);
    rss_peak = rss_peak.max(end.rss_peak);
    progress(&snapshot(&tracker, start, total, posts_sent));

    // Rejections counted by the nodes that are running.
    let mut asked = 0;
    let (mut peer_sum, mut peer_nodes, mut conn_sum) = (0usize, 0usize, 0u64);
    let (mut syncs_started, mut presence_sent, mut presence_received) = (0u64, 0u64, 0u64);
    let (mut presence_sent_first, mut presence_sent_answers) = (0u64, 0u64);
    let (mut presence_held_back, mut presence_over_budget) = (0u64, 0u64);
    for (i, member) in members.iter_mut().enumerate() {
        if !tracker.up[i] {
            continue;
        }
        match member {
            Member::Local(node) => {
                if let Ok(peers) = node.handle.peers().await {
                    peer_sum += peers.len();
                    peer_nodes += 1;
                }
                if let Ok(stats) = node.handle.stats().await {
                    conn_sum += stats.connections_established;
                    syncs_started += stats.syncs_started;
                    presence_sent += stats.presence_sent;
                    presence_received += stats.presence_received;
                    presence_sent_first += stats.presence_sent_first;
                    presence_sent_answers += stats.presence_sent_answers;
                    presence_held_back += stats.presence_held_back;
                    presence_over_budget += stats.presence_over_budget;
                    for (k, v) in stats.rejected {
                        *tracker.rejected.entry(k).or_insert(0) += v;
                    }
                }
            }
            Member::Proc(p) => {
                asked += 1;
                let _ = p.say("/stats").await;
            }
        }
    }
    let stats_until = Instant::now() + Duration::from_secs(5);
    while tracker.stats_seen < asked {
        match tokio::time::timeout(stats_until.saturating_duration_since(Instant::now()), obs_rx.recv()).await {
            Ok(Some(obs)) => tracker.observe(obs),
            _ => break,
        }
    }
    for member in &mut members {
        member.stop(false).await;
    }
    drop(lab);

    let mut latencies = tracker.latencies.clone();
    let latency = Latency::of(&mut latencies);
    let mut rtts = tracker.dm_rtts.clone();
    tracker.dm.rtt = Latency::of(&mut rtts);
    let busy = tracker
        .last_at
        .map_or(traffic, |l| l.duration_since(start).max(traffic));
    tracker.dm.per_s = round2(tracker.dm.delivered as f64 / busy.as_secs_f64().max(1e-9));
    let rss_mb = rss_peak as f64 / 1e6;
    let since_start = |at: &Instant| {
        if *at >= start {
            at.duration_since(start).as_secs_f64()
        } else {
            -start.duration_since(*at).as_secs_f64()
        }
    };
    let deliveries = tracker
        .deliveries
        .iter()
        .map(|&(post, node, at)| {
            let t0 = tracker.posts[post].t0;
            Delivery {
                post,
                published_s: since_start(&t0),
                node,
                ms: at.duration_since(t0).as_secs_f64() * 1e3,
            }
        })
        .collect();
    Ok(Report {
        scenario: scenario.name.clone(),
        implementation: "backchannel".into(),
        nodes: n,
        rooms,
        topology: topology.to_string(),
        seed: scenario.seed,
        processes: scenario.processes,
        formation_ms: round2(formation_ms),
        duration_s: round2(traffic.as_secs_f64()),
        posts_sent,
        post_errors: tracker.post_errors,
        expected: tracker.expected_total,
        delivered: tracker.delivered,
        unexpected: tracker.unexpected,
        duplicates: tracker.duplicates,
        reshown_after_crash: tracker.reshown_after_crash,
        delivery_ratio: if tracker.expected_total == 0 {
            1.0
        } else {
            (tracker.delivered as f64 / tracker.expected_total as f64 * 1e4).round() / 1e4
        },
        latency,
        msgs_per_s: round2(tracker.delivered as f64 / busy.as_secs_f64().max(1e-9)),
        dm: tracker.dm.clone(),
        per_node: (0..n)
            .map(|i| NodeReport {
                node: i,
                expected: tracker.per_node_expected[i],
                delivered: tracker.per_node_delivered[i],
            })
            .collect(),
        cpu_s: round2(cpu_used.as_secs_f64()),
        cpu_us_per_delivery: round2(
            cpu_used.as_secs_f64() * 1e6 / (tracker.delivered + tracker.dm.delivered).max(1) as f64,
        ),
        rss_peak_mb: round2(rss_mb),
        rss_per_node_mb: round2(rss_mb / n as f64),
        rss_idle_per_node_mb: round2(rss_idle as f64 / 1e6 / n as f64),
        peers_per_node: round2(peer_sum as f64 / peer_nodes.max(1) as f64),
        connections_per_node: round2(conn_sum as f64 / peer_nodes.max(1) as f64),
        rejected: tracker.rejected.clone(),
        faults: fault_log,
        join_errors: tracker.join_errors,
        syncs_started,
        presence_sent,
        presence_received,
        presence_sent_first,
        presence_sent_answers,
        presence_held_back,
        presence_over_budget,
        latencies_ms: latencies,
        deliveries,
        presence_events_at_s: tracker.presence_at.iter().map(since_start).collect(),
        synced_events_at_s: tracker.synced_at.iter().map(since_start).collect(),
    })
}

fn snapshot(t: &Tracker, start: Instant, total: Duration, sent: u64) -> Progress {
    Progress {
        elapsed_s: start.elapsed().as_secs_f64().min(total.as_secs_f64()),
        total_s: total.as_secs_f64(),
        sent,
        expected: t.expected_total,
        delivered: t.delivered,
        dm_delivered: t.dm.delivered,
    }
}

/// What the nodes use: CPU so far, resident memory now and at its peak
/// (above `rss_before` for in-process nodes; summed over child processes).
struct Usage {
    cpu: Duration,
    rss_now: u64,
    rss_peak: u64,
}

fn usage(members: &[Member], in_process: bool, rss_before: u64) -> Usage {
    if in_process {
        let rss = metrics::rss(None).0.saturating_sub(rss_before);
        return Usage {
            cpu: metrics::cpu_time(None),
            rss_now: rss,
            rss_peak: rss,
        };
    }
    let procs = members.iter().filter_map(|m| match m {
        Member::Proc(p) => Some(p),
        Member::Local(_) => None,
    });
    procs.fold(
        Usage {
            cpu: Duration::ZERO,
            rss_now: 0,
            rss_peak: 0,
        },
        |u, p| Usage {
            cpu: u.cpu + p.cpu(),
            rss_now: u.rss_now + p.rss_now(),
            rss_peak: u.rss_peak + p.rss_peak(),
        },
    )
}

/// Forwards a node's events to the runner, stamped on arrival.
fn collect(node: &mut LabNode, tx: &mpsc::UnboundedSender<Obs>) {
    let mut events = node.take_events();
    let tx = tx.clone();
    let index = node.index;
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            if tx.send(Obs::Event(index, Instant::now(), Box::new(event))).is_err() {
                break;
            }
        }
    });
}

/// What fault actions need besides the members and the tracker.
struct Ctx<'a> {
    edges: &'a [(usize, usize)],
    addrs: &'a [crate::Multiaddr],
    channels: &'a Channels,
    neighbours: &'a dyn Fn(usize) -> Vec<crate::Multiaddr>,
    room_of: &'a [usize],
    room_names: &'a [Room],
}

async fn apply(members: &mut [Member], tracker: &mut Tracker, ctx: &Ctx<'_>, action: Action) -> Result<(), LabError> {
    let n = members.len();
    match action {
        Action::Stop(i, kill) => {
            tracker.up[i] = false;
            if kill {
                tracker.killed_at[i] = Some(Instant::now());
            }
            tracker.forget_links_of(i);
            members[i].stop(kill).await;
        }
        Action::Start(i) => {
            // It dials its neighbours itself (their addresses are its --peer list).
            let peers: Vec<_> = (ctx.neighbours)(i)
                .into_iter()
                .filter(|a| ctx.addrs.iter().position(|x| x == a).is_some_and(|j| tracker.up[j]))
                .collect();
            members[i].start(peers, ctx.channels).await?;
            tracker.up[i] = true;
        }
        Action::Join(i) => {
            let peers: Vec<_> = (ctx.neighbours)(i)
                .into_iter()
                .filter(|a| ctx.addrs.iter().position(|x| x == a).is_some_and(|j| tracker.up[j]))
                .collect();
            // Spawned, so that a storm's joins keep their times while the
            // nodes are busy; a failure is counted.
            if let Member::Local(node) = &members[i] {
                let (handle, room, tx) = (
                    node.handle.clone(),
                    ctx.room_names[ctx.room_of[i]].clone(),
                    ctx.channels.obs.clone(),
                );
                tokio::spawn(async move {
                    for addr in peers {
                        if handle.dial(addr).await.is_err() {
                            let _ = tx.send(Obs::JoinFailed);
                        }
                    }
                    let joined = match handle.join(&room).await {
                        Ok(_) => Obs::Joined(i),
                        Err(_) => Obs::JoinFailed,
                    };
                    let _ = tx.send(joined);
                });
            }
            tracker.up[i] = true;
            tracker.joining.insert(i);
        }
        Action::Cut(group_of) => {
            tracker.group_of = group_of.clone();
            tracker.sees.retain(|(a, b)| group_of[*a] == group_of[*b]);
            for a in 0..n {
                for b in 0..n {
                    if group_of[a] != group_of[b] && tracker.up[a] {
                        let peer = members[b].peer_id();
                        members[a].block(peer, true).await?;
                    }
                }
            }
        }
        Action::Heal(group_of) => {
            tracker.group_of = vec![0; n];
            for a in 0..n {
                for b in 0..n {
                    if group_of[a] != group_of[b] && tracker.up[a] {
                        let peer = members[b].peer_id();
                        members[a].block(peer, false).await?;
                    }
                }
            }
            for &(a, b) in ctx.edges {
                if group_of[a] != group_of[b] && tracker.up[a] && tracker.up[b] {
                    let _ = members[b].dial(ctx.addrs[a].clone()).await;
                }
            }
        }
    }
    Ok(())
}
