//! The mesh lab: many Backchannel nodes on loopback in one process, wired in
//! a chosen topology, with helpers that wait for events (never for time).
//! The integration tests and the benchmarks drive their meshes with it.

pub mod metrics;
#[cfg(target_os = "linux")]
pub mod netns;
pub mod plot;
mod process;
pub mod runner;
pub mod scenario;

use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::{Instant, timeout_at};

use crate::{Config, Event, Handle, Identity, Multiaddr, Node, NodeError, PeerId, Room, StartError};

/// Unmatched events kept per node for later waits; a test that ignores more
/// than this many events loses the oldest.
const BACKLOG: usize = 100_000;

/// Why a lab operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LabError {
    /// A wait ran out of time.
    #[error("timed out waiting for {0}")]
    Timeout(String),
    /// A node failed.
    #[error(transparent)]
    Node(#[from] NodeError),
    /// A node did not start.
    #[error(transparent)]
    Start(#[from] StartError),
    /// The node's event stream ended.
    #[error("node {0} stopped")]
    Stopped(usize),
    /// The scenario cannot run.
    #[error("{0}")]
    Scenario(String),
    /// Setting up directories failed.
    #[error("lab setup: {0}")]
    Io(#[from] std::io::Error),
}

/// How nodes are wired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topology {
    /// Every node dials every other.
    Full,
    /// Node i dials node i+1 (a line: the longest paths).
    Line,
    /// A ring: a line whose ends are joined.
    Ring,
    /// A connected random graph: a random spanning tree plus random edges
    /// until the average degree reaches `degree` (seeded, reproducible).
    Random {
        /// The target average degree.
        degree: usize,
    },
}

impl Topology {
    /// The edges (a, b) with a < b, for `n` nodes; `seed` drives `Random`.
    pub fn edges(self, n: usize, seed: u64) -> Vec<(usize, usize)> {
        match self {
            Topology::Full => (0..n).flat_map(|a| (a + 1..n).map(move |b| (a, b))).collect(),
            Topology::Line => (1..n).map(|b| (b - 1, b)).collect(),
            Topology::Ring if n > 2 => {
                let mut e = Topology::Line.edges(n, seed);
                e.push((0, n - 1));
                e
            }
            Topology::Ring => Topology::Line.edges(n, seed),
            Topology::Random { degree } => random_graph(n, degree, seed),
        }
    }
}

impl std::str::FromStr for Topology {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "full" => Ok(Topology::Full),
            "line" => Ok(Topology::Line),
            "ring" => Ok(Topology::Ring),
            _ => match s.strip_prefix("random:").map(str::parse) {
                Some(Ok(degree)) if degree >= 1 => Ok(Topology::Random { degree }),
                _ => Err(format!("unknown topology {s:?}: use full, line, ring or random:K")),
            },
        }
    }
}

impl std::fmt::Display for Topology {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Topology::Full => f.write_str("full"),
            Topology::Line => f.write_str("line"),
            Topology::Ring => f.write_str("ring"),
            Topology::Random { degree } => write!(f, "random:{degree}"),
        }
    }
}

pub use crate::rng::{Rng, secret};

fn random_graph(n: usize, degree: usize, seed: u64) -> Vec<(usize, usize)> {
    let mut rng = Rng::new(seed);
    let mut edges = std::collections::BTreeSet::new();
    // A random spanning tree keeps the graph connected.
    for b in 1..n {
        let a = rng.below(b);
        edges.insert((a, b));
    }
    let target = (n * degree / 2).min(n * n.saturating_sub(1) / 2);
    let mut attempts = 0;
    while edges.len() < target && attempts < target * 20 {
        attempts += 1;
        let (a, b) = (rng.below(n), rng.below(n));
        if a != b {
            edges.insert((a.min(b), a.max(b)));
        }
    }
    edges.into_iter().collect()
}

/// One node of the lab.
pub struct LabNode {
    /// Index in the lab.
    pub index: usize,
    /// The node's handle.
    pub handle: Handle,
    /// The node's identity (kept to restart it as the same participant).
    pub identity: Identity,
    /// The node's configuration (its data directory is inside the lab's).
    pub config: Config,
    /// The first address it listens on, ending in `/p2p/<id>`.
    pub addr: Multiaddr,
    events: mpsc::Receiver<Event>,
    backlog: VecDeque<Event>,
    running: bool,
}

impl LabNode {
    /// The node's peer id.
    pub fn peer_id(&self) -> PeerId {
        self.identity.peer_id()
    }

    /// Waits until `pick` returns `Some` for an event (buffered events
    /// first), keeping every other event for later waits.
    pub async fn wait_for<T>(
        &mut self,
        what: &str,
        limit: Duration,
        mut pick: impl FnMut(&Event) -> Option<T>,
    ) -> Result<T, LabError> {
        if let Some(pos) = self.backlog.iter().position(|e| pick(e).is_some()) {
            let event = self.backlog.remove(pos).expect("position is valid");
            return Ok(pick(&event).expect("picked before"));
        }
        let deadline = Instant::now() + limit;
        loop {
            match timeout_at(deadline, self.events.recv()).await {
                Err(_) => return Err(LabError::Timeout(format!("{what} on node {}", self.index))),
                Ok(None) => return Err(LabError::Stopped(self.index)),
                Ok(Some(event)) => {
                    if let Some(found) = pick(&event) {
                        return Ok(found);
                    }
                    if self.backlog.len() == BACKLOG {
                        self.backlog.pop_front();
                    }
                    self.backlog.push_back(event);
                }
            }
        }
    }

    /// Takes the node's event stream (for a consumer task of its own, as the
    /// benchmarks do); waits on this node find no events afterwards.
    pub fn take_events(&mut self) -> mpsc::Receiver<Event> {
        let (_, closed) = mpsc::channel(1);
        std::mem::replace(&mut self.events, closed)
    }

    /// Takes every event received so far without waiting.
    pub fn drain(&mut self) -> Vec<Event> {
        let mut out: Vec<Event> = self.backlog.drain(..).collect();
        while let Ok(event) = self.events.try_recv() {
            out.push(event);
        }
        out
    }

    /// Stops the node (flushing and closing its log).
    pub async fn stop(&mut self) {
        if self.running {
            self.handle.shutdown().await;
            self.running = false;
        }
    }

    /// Starts the node again with the same identity, data directory and
    /// address (listeners use SO_REUSEADDR, so the port is free at once).
    pub async fn restart(&mut self) -> Result<(), LabError> {
        self.restart_with(|_| {}).await
    }

    /// [`LabNode::restart`] with a changed configuration (kept for later
    /// restarts); `change` may set `listen` to move the node to new addresses.
    pub async fn restart_with(&mut self, change: impl FnOnce(&mut Config)) -> Result<(), LabError> {
        self.stop().await;
        let mut config = self.config.clone();
        config.listen = vec![strip_p2p(&self.addr)];
        change(&mut config);
        self.config = config.clone();
        let Node { handle, events } = Node::start(config, self.identity.clone()).await?;
        self.handle = handle;
        self.events = events;
        self.backlog.clear();
        self.running = true;
        self.addr = first_listen_addr(self).await?;
        Ok(())
    }
}

/// A set of nodes on loopback, each with its own identity and log in a
/// temporary directory that is removed when the lab is dropped.
pub struct Lab {
    /// The nodes.
    pub nodes: Vec<LabNode>,
    root: tempfile::TempDir,
}

/// Settings of a lab.
#[derive(Debug, Clone)]
pub struct LabConfig {
    /// Identities are derived from this seed, so runs are reproducible.
    pub seed: u64,
    /// Applied to each node's default configuration.
    pub tweak: fn(&mut Config),
    /// Rate limits for every node (None: the defaults).
    pub limits: Option<crate::node::limits::Limits>,
}

impl Default for LabConfig {
    fn default() -> Self {
        Self {
            seed: 1,
            tweak: |_| {},
            limits: None,
        }
    }
}

impl Lab {
    /// Starts `n` nodes listening on 127.0.0.1 (not yet connected).
    pub async fn start(n: usize, lab: LabConfig) -> Result<Lab, LabError> {
        let root = tempfile::Builder::new().prefix("backchannel-lab-").tempdir()?;
        let mut nodes = Vec::with_capacity(n);
        for index in 0..n {
            nodes.push(Self::start_node(root.path().join(format!("node-{index}")), index, &lab).await?);
        }
        Ok(Lab { nodes, root })
    }

    /// Adds one more node (e.g. a late joiner).
    pub async fn add_node(&mut self, lab: &LabConfig) -> Result<usize, LabError> {
        let index = self.nodes.len();
        let node = Self::start_node(self.root.path().join(format!("node-{index}")), index, lab).await?;
        self.nodes.push(node);
        Ok(index)
    }

    async fn start_node(dir: PathBuf, index: usize, lab: &LabConfig) -> Result<LabNode, LabError> {
        let identity = Identity::from_secret(secret(lab.seed, index));
        let mut config = Config::new(dir);
        config.listen = vec!["/ip4/127.0.0.1/tcp/0".parse().expect("valid")];
        config.mdns = false;
        // Every node of the lab is reachable on loopback: it serves the DHT
        // from the start, as a node with a public address would.
        config.public = true;
        config.nick = Some(format!("node{index}"));
        (lab.tweak)(&mut config);
        if let Some(limits) = &lab.limits {
            config.limits = limits.clone();
        }
        let Node { handle, events } = Node::start(config.clone(), identity.clone()).await?;
        let mut node = LabNode {
            index,
            handle,
            identity,
            config,
            addr: Multiaddr::empty(),
            events,
            backlog: VecDeque::new(),
            running: true,
        };
        node.addr = first_listen_addr(&mut node).await?;
        Ok(node)
    }

    /// Dials the edges of `topology` (seed 0) and waits until every edge is connected.
    pub async fn connect(&mut self, topology: Topology, limit: Duration) -> Result<(), LabError> {
        let edges = topology.edges(self.nodes.len(), 0);
        self.connect_edges(&edges, limit).await
    }

    /// Dials the given edges (a dials b) and waits until each is connected.
    pub async fn connect_edges(&mut self, edges: &[(usize, usize)], limit: Duration) -> Result<(), LabError> {
        for &(a, b) in edges {
            let addr = self.nodes[b].addr.clone();
            self.nodes[a].handle.dial(addr).await?;
        }
        for &(a, b) in edges {
            let pb = self.nodes[b].peer_id();
            self.nodes[a]
                .wait_for("a connection", limit, |e| match e {
                    Event::PeerConnected { peer } if *peer == pb => Some(()),
                    _ => None,
                })
                .await?;
        }
        Ok(())
    }

    /// Makes every node join `room` and waits until each node has seen each
    /// of its `neighbours` (by edge list) join the room: the mesh has formed.
    pub async fn join_all(&mut self, room: &Room, edges: &[(usize, usize)], limit: Duration) -> Result<(), LabError> {
        for node in &self.nodes {
            node.handle.join(room).await.map_err(NodeError::from)?;
        }
        for &(a, b) in edges {
            for (me, other) in [(a, b), (b, a)] {
                let peer = self.nodes[other].peer_id();
                let room = room.clone();
                self.nodes[me]
                    .wait_for("a room peer", limit, |e| match e {
                        Event::RoomPeerJoined { room: r, peer: p } if *r == room && *p == peer => Some(()),
                        _ => None,
                    })
                    .await?;
            }
        }
        Ok(())
    }

    /// Stops every node.
    pub async fn shutdown(&mut self) {
        for node in &mut self.nodes {
            node.stop().await;
        }
    }
}

async fn first_listen_addr(node: &mut LabNode) -> Result<Multiaddr, LabError> {
    node.wait_for("a listen address", Duration::from_secs(10), |e| match e {
        Event::Listening { addr } => Some(addr.clone()),
        _ => None,
    })
    .await
}

fn strip_p2p(addr: &Multiaddr) -> Multiaddr {
    addr.iter()
        .filter(|p| !matches!(p, libp2p::multiaddr::Protocol::P2p(_)))
        .collect()
}
