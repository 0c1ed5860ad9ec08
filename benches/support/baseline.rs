//! A plain rust-libp2p baseline (no application layer) that the benchmarks run
//! next to Backchannel in the same process, to compare against.
//!
//! * [`hallway`]: gossipsub with libp2p's own signing (`Signed` + `Strict`),
//!   one topic, `nodes` swarms on loopback wired in a [`Topology`].
//! * [`dm_pair`]: two swarms exchanging raw request-response messages.
//!
//! Include it from a bench file with
//! `#[path = "support/baseline.rs"] mod baseline;`.

#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use backchannel::lab::Topology;
use backchannel::lab::metrics::{cpu_time, rss};
use futures::prelude::*;
use libp2p::gossipsub::{self, IdentTopic, MessageAuthenticity, ValidationMode};
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId, StreamProtocol, Swarm, SwarmBuilder, noise, tcp, yamux};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// The one gossipsub topic of the hallway baseline.
const TOPIC: &str = "baseline";
/// Loopback only, any free port.
const LISTEN: &str = "/ip4/127.0.0.1/tcp/0";
/// Idle connection timeout of every swarm.
const IDLE: Duration = Duration::from_secs(60);
/// How long mesh formation (or the DM connection) may take.
const FORMATION_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a hallway's mesh formation may take: as long as the lab runner
/// gives Backchannel's (60 s), so that a large mesh is judged alike.
const HALLWAY_FORMATION_TIMEOUT: Duration = Duration::from_secs(60);
/// How long after the last publish deliveries are still counted.
const DELIVERY_GRACE: Duration = Duration::from_secs(10);
/// How often VmRSS is sampled.
const RSS_EVERY: Duration = Duration::from_millis(20);
/// Request and response size limit of the DM codec.
const DM_LIMIT: usize = 8192;
/// Size of the DM responder's answer.
const DM_RESPONSE_BYTES: usize = 100;
/// The DM protocol.
const DM_PROTOCOL: &str = "/baseline/dm/1.0.0";

/// Parameters of one hallway baseline run.
#[derive(Debug, Clone)]
pub struct HallwayParams {
    /// Number of swarms.
    pub nodes: usize,
    /// Wiring: `topology.edges(nodes, seed)`, node `b` dials node `a`.
    pub topology: Topology,
    /// Seed for the topology.
    pub seed: u64,
    /// Posts per second in total, round-robin over all nodes as publishers.
    pub rate: f64,
    /// Payload bytes per post (>= 16).
    pub size: usize,
    /// Total posts to publish.
    pub posts: usize,
    /// Nodes that join during the traffic instead of before it.
    pub storm: Option<Storm>,
}

/// A join storm: nodes `first..nodes` run from the start, subscribed but
/// unconnected, and each dials its neighbours of lower index (already in the
/// mesh) at a time spread evenly over `window_s` from `at_s` seconds into the
/// traffic, in index order, as the lab runner's `join_storm` fault does.
#[derive(Debug, Clone)]
pub struct Storm {
    /// The first node that joins late; the nodes before it form the room
    /// and publish.
    pub first: usize,
    /// When the first joins, in seconds from the first publish.
    pub at_s: f64,
    /// Over how long the joins are spread.
    pub window_s: f64,
}

/// Outcome of one hallway baseline run.
#[derive(Debug, Clone)]
pub struct HallwayResult {
    /// Number of swarms.
    pub nodes: usize,
    /// `posts * (nodes - 1)`.
    pub expected: usize,
    /// Distinct (node, post) deliveries within the deadline.
    pub delivered: usize,
    /// A node receiving the same post twice at the application.
    pub duplicates: usize,
    /// Publish call -> receive, one per delivery, in milliseconds.
    pub latencies_ms: Vec<f64>,
    /// First publish -> last delivery (or deadline).
    pub elapsed: Duration,
    /// First dial -> every node has seen `Subscribed` from each neighbour.
    pub formation_ms: f64,
    /// Process CPU time over the traffic phase.
    pub cpu: Duration,
    /// Max VmRSS sampled during the run minus VmRSS before the swarms started.
    pub rss_delta_bytes: u64,
    /// Why the run stopped before its traffic (the mesh did not form), if it did.
    pub failed: Option<String>,
    /// Each counted delivery: (post, node, publish time in seconds from the
    /// first publish, latency in ms).
    pub deliveries: Vec<(usize, usize, f64, f64)>,
    /// Deliveries at the nodes of a join storm after they joined (not in
    /// `expected` or `delivered`: when each could first receive a post is
    /// not known).
    pub newcomer_deliveries: usize,
}

/// Parameters of one DM baseline run.
#[derive(Debug, Clone)]
pub struct DmParams {
    /// Requests kept in flight.
    pub window: usize,
    /// Request bytes.
    pub size: usize,
    /// How long to send requests.
    pub duration: Duration,
}

/// Outcome of one DM baseline run.
#[derive(Debug, Clone)]
pub struct DmResult {
    /// Responses received within the duration.
    pub completed: usize,
    /// Length of the traffic phase.
    pub elapsed: Duration,
    /// send_request -> response, one per completed request, in milliseconds.
    pub rtts_ms: Vec<f64>,
    /// Process CPU time over the traffic phase.
    pub cpu: Duration,
}

// ---------------------------------------------------------------------------
// Hallway
// ---------------------------------------------------------------------------

/// Commands to a hallway swarm task.
enum Command {
    Publish(Vec<u8>),
    Dial(Multiaddr),
    Shutdown,
}

/// A running hallway swarm task.
struct HallwayNode {
    peer: PeerId,
    addr: Multiaddr,
    commands: mpsc::UnboundedSender<Command>,
    task: JoinHandle<()>,
}

/// Counters the swarm tasks share, reported on stderr when non-zero.
#[derive(Default)]
struct Trouble {
    publish_errors: AtomicUsize,
    slow_peer: AtomicUsize,
    dial_errors: AtomicUsize,
    inbound_failures: AtomicUsize,
    outbound_failures: AtomicUsize,
}

/// Keeps the largest VmRSS seen while it runs.
struct RssSampler {
    max: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl RssSampler {
    fn start() -> RssSampler {
        let max = Arc::new(AtomicU64::new(rss(None).0));
        let task = tokio::spawn({
            let max = max.clone();
            async move {
                let mut tick = tokio::time::interval(RSS_EVERY);
                loop {
                    tick.tick().await;
                    max.fetch_max(rss(None).0, Ordering::Relaxed);
                }
            }
        });
        RssSampler { max, task }
    }

    fn stop(self) -> u64 {
        self.task.abort();
        self.max.fetch_max(rss(None).0, Ordering::Relaxed);
        self.max.load(Ordering::Relaxed)
    }
}

fn hallway_swarm() -> Swarm<gossipsub::Behaviour> {
    SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(tcp::Config::default(), noise::Config::new, yamux::Config::default)
        .expect("tcp transport")
        .with_behaviour(|key| {
            let config = gossipsub::ConfigBuilder::default()
                .validation_mode(ValidationMode::Strict)
                .max_transmit_size(8192)
                .heartbeat_initial_delay(Duration::from_secs(1))
                .build()
                .expect("gossipsub config");
            gossipsub::Behaviour::new(MessageAuthenticity::Signed(key.clone()), config).expect("gossipsub behaviour")
        })
        .expect("behaviour")
        .with_swarm_config(|c| c.with_idle_connection_timeout(IDLE))
        .build()
}

/// Waits for the swarm's first listen address.
async fn listen<B: libp2p::swarm::NetworkBehaviour>(swarm: &mut Swarm<B>) -> Multiaddr {
    swarm
        .listen_on(LISTEN.parse().expect("listen address"))
        .expect("listen on loopback");
    loop {
        if let SwarmEvent::NewListenAddr { address, .. } = swarm.select_next_some().await {
            return address;
        }
    }
}

/// Builds a hallway swarm, subscribes it, and spawns its task.
async fn spawn_hallway_node(
    index: usize,
    received: mpsc::UnboundedSender<(usize, u64, Instant)>,
    subscribed: mpsc::UnboundedSender<(usize, PeerId)>,
    trouble: Arc<Trouble>,
) -> HallwayNode {
    let mut swarm = hallway_swarm();
    let topic = IdentTopic::new(TOPIC);
    swarm.behaviour_mut().subscribe(&topic).expect("subscribe");
    let addr = listen(&mut swarm).await;
    let peer = *swarm.local_peer_id();
    let (commands, mut rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        loop {
            tokio::select! {
                command = rx.recv() => match command {
                    Some(Command::Publish(data)) => match swarm.behaviour_mut().publish(topic.clone(), data) {
                        Ok(_) => {}
                        // E.g. `NoPeersSubscribedToTopic`: counted as sent
                        // anyway; it will show up as undelivered.
                        Err(_) => {
                            trouble.publish_errors.fetch_add(1, Ordering::Relaxed);
                        }
                    },
                    Some(Command::Dial(addr)) => {
                        if swarm.dial(addr).is_err() {
                            trouble.dial_errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Some(Command::Shutdown) | None => break,
                },
                event = swarm.select_next_some() => match event {
                    SwarmEvent::Behaviour(gossipsub::Event::Message { message, .. }) => {
                        let at = Instant::now();
                        if let Some(head) = message.data.first_chunk::<8>() {
                            // The receiver may be gone once the run is over.
                            let _ = received.send((index, u64::from_be_bytes(*head), at));
                        }
                    }
                    SwarmEvent::Behaviour(gossipsub::Event::Subscribed { peer_id, .. }) => {
                        let _ = subscribed.send((index, peer_id));
                    }
                    SwarmEvent::Behaviour(gossipsub::Event::SlowPeer { .. }) => {
                        trouble.slow_peer.fetch_add(1, Ordering::Relaxed);
                    }
                    SwarmEvent::OutgoingConnectionError { .. } => {
                        trouble.dial_errors.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {}
                },
            }
        }
    });
    HallwayNode {
        peer,
        addr,
        commands,
        task,
    }
}

/// Stops the swarm tasks and waits until their swarms are dropped.
async fn shut_down(tasks: Vec<(mpsc::UnboundedSender<Command>, JoinHandle<()>)>) {
    for (commands, _) in &tasks {
        let _ = commands.send(Command::Shutdown);
    }
    for (_, mut task) in tasks {
        if tokio::time::timeout(Duration::from_secs(5), &mut task).await.is_err() {
            task.abort();
            let _ = task.await;
        }
    }
}

/// The post payload: the post index (u64 BE), then filler.
fn payload(post: usize, size: usize) -> Vec<u8> {
    let mut data = vec![b'.'; size.max(8)];
    data[..8].copy_from_slice(&(post as u64).to_be_bytes());
    data
}

/// Publishes `p.posts` posts over a plain gossipsub mesh and measures their
/// delivery.
pub async fn hallway(p: &HallwayParams) -> HallwayResult {
    assert!(p.nodes >= 2, "a hallway needs at least two nodes");
    assert!(p.rate > 0.0, "rate must be positive");
    let rss_before = rss(None).0;
    let sampler = RssSampler::start();
    let trouble = Arc::new(Trouble::default());

    let (received_tx, mut received_rx) = mpsc::unbounded_channel();
    let (subscribed_tx, mut subscribed_rx) = mpsc::unbounded_channel();
    let mut nodes = Vec::with_capacity(p.nodes);
    for index in 0..p.nodes {
        nodes.push(spawn_hallway_node(index, received_tx.clone(), subscribed_tx.clone(), trouble.clone()).await);
    }
    drop((received_tx, subscribed_tx));

    // Mesh formation: dial every edge, then wait until every node has seen
    // a `Subscribed` event from each of its neighbours.
    // A join storm's nodes stay apart until their time.
    let base = p.storm.as_ref().map_or(p.nodes, |s| s.first);
    assert!(
        base >= 2 && base <= p.nodes,
        "a storm needs two nodes in the room first"
    );
    let edges = p.topology.edges(p.nodes, p.seed);
    let (live, late): (Vec<_>, Vec<_>) = edges.iter().partition(|&&(a, b)| a < base && b < base);
    let mut missing: Vec<HashSet<PeerId>> = vec![HashSet::new(); p.nodes];
    for &&(a, b) in &live {
        missing[a].insert(nodes[b].peer);
        missing[b].insert(nodes[a].peer);
    }
    let mut incomplete = missing.iter().filter(|m| !m.is_empty()).count();
    let dialled = Instant::now();
    for &&(a, b) in &live {
        nodes[b]
            .commands
            .send(Command::Dial(nodes[a].addr.clone()))
            .expect("swarm task alive");
    }
    let formation_deadline = tokio::time::Instant::from_std(dialled + HALLWAY_FORMATION_TIMEOUT);
    let mut failed = None;
    while incomplete > 0 {
        match tokio::time::timeout_at(formation_deadline, subscribed_rx.recv()).await {
            Ok(Some((node, peer))) => {
                if missing[node].remove(&peer) && missing[node].is_empty() {
                    incomplete -= 1;
                }
            }
            Ok(None) => {
                failed = Some("the swarm tasks stopped during mesh formation".to_string());
                break;
            }
            Err(_) => {
                failed = Some(format!(
                    "the mesh did not form within {HALLWAY_FORMATION_TIMEOUT:?}: {incomplete} of {base} nodes lack a neighbour's subscription"
                ));
                break;
            }
        }
    }
    let formation_ms = dialled.elapsed().as_secs_f64() * 1000.0;
    if failed.is_some() {
        // Where it broke is the result: no traffic.
        let rss_max = sampler.stop();
        shut_down(nodes.into_iter().map(|n| (n.commands, n.task)).collect()).await;
        report_trouble("hallway", &trouble);
        return HallwayResult {
            nodes: p.nodes,
            expected: p.posts * (base - 1),
            delivered: 0,
            duplicates: 0,
            latencies_ms: Vec::new(),
            elapsed: Duration::ZERO,
            formation_ms,
            cpu: Duration::ZERO,
            rss_delta_bytes: rss_max.saturating_sub(rss_before),
            failed,
            deliveries: Vec::new(),
            newcomer_deliveries: 0,
        };
    }
    // The storm's joins: (when, joiner) in index order, each dialling its
    // neighbours of lower index.
    let mut joins: std::collections::VecDeque<(f64, usize)> = match &p.storm {
        Some(s) => {
            let count = p.nodes - base;
            let gap = if count > 1 {
                s.window_s / (count - 1) as f64
            } else {
                0.0
            };
            (0..count).map(|k| (s.at_s + gap * k as f64, base + k)).collect()
        }
        None => Default::default(),
    };

    // Traffic: paced publishes, round-robin over the nodes in the room from
    // the start; the storm's joins between them.
    let cpu_before = cpu_time(None);
    let mut published: Vec<Instant> = Vec::with_capacity(p.posts);
    let start = tokio::time::Instant::now();
    let join = |joiner: usize| {
        for &&(a, b) in &late {
            if b == joiner {
                nodes[b]
                    .commands
                    .send(Command::Dial(nodes[a].addr.clone()))
                    .expect("swarm task alive");
            }
        }
    };
    for post in 0..p.posts {
        let due = start + Duration::from_secs_f64(post as f64 / p.rate);
        while let Some(&(at, joiner)) = joins.front()
            && start + Duration::from_secs_f64(at) <= due
        {
            tokio::time::sleep_until(start + Duration::from_secs_f64(at)).await;
            join(joiner);
            joins.pop_front();
        }
        tokio::time::sleep_until(due).await;
        let data = payload(post, p.size);
        published.push(Instant::now());
        nodes[post % base]
            .commands
            .send(Command::Publish(data))
            .expect("swarm task alive");
    }
    // Joins due after the last post still happen.
    for (at, joiner) in joins.drain(..) {
        tokio::time::sleep_until(start + Duration::from_secs_f64(at)).await;
        join(joiner);
    }
    let first_publish = published.first().copied().unwrap_or_else(Instant::now);
    let deadline = published.last().copied().unwrap_or_else(Instant::now) + DELIVERY_GRACE;

    // Deliveries: (node, post) pairs, excluding the publisher itself.
    let expected = p.posts * (base - 1);
    let mut seen: HashSet<(usize, u64)> = HashSet::with_capacity(expected);
    let mut newcomers_seen: HashSet<(usize, u64)> = HashSet::new();
    let mut latencies_ms = Vec::with_capacity(expected);
    let mut deliveries = Vec::with_capacity(expected);
    let mut duplicates = 0;
    let mut last_delivery = first_publish;
    while seen.len() < expected {
        let Ok(Some((node, post, at))) =
            tokio::time::timeout_at(tokio::time::Instant::from_std(deadline), received_rx.recv()).await
        else {
            break;
        };
        let Some(&sent) = usize::try_from(post).ok().and_then(|i| published.get(i)) else {
            continue;
        };
        if at > deadline || node == post as usize % base {
            continue;
        }
        if node >= base {
            if !newcomers_seen.insert((node, post)) {
                duplicates += 1;
            }
            continue;
        }
        if !seen.insert((node, post)) {
            duplicates += 1;
            continue;
        }
        let ms = at.saturating_duration_since(sent).as_secs_f64() * 1000.0;
        latencies_ms.push(ms);
        let published_s = sent.saturating_duration_since(first_publish).as_secs_f64();
        deliveries.push((post as usize, node, published_s, ms));
        last_delivery = last_delivery.max(at);
    }
    let delivered = seen.len();
    let end = if delivered == expected { last_delivery } else { deadline };
    let cpu = cpu_time(None).saturating_sub(cpu_before);

    let rss_max = sampler.stop();
    shut_down(nodes.into_iter().map(|n| (n.commands, n.task)).collect()).await;
    report_trouble("hallway", &trouble);

    HallwayResult {
        nodes: p.nodes,
        expected,
        delivered,
        duplicates,
        latencies_ms,
        elapsed: end.saturating_duration_since(first_publish),
        formation_ms,
        cpu,
        rss_delta_bytes: rss_max.saturating_sub(rss_before),
        failed: None,
        deliveries,
        newcomer_deliveries: newcomers_seen.len(),
    }
}

fn report_trouble(what: &str, trouble: &Trouble) {
    let publish = trouble.publish_errors.load(Ordering::Relaxed);
    let slow = trouble.slow_peer.load(Ordering::Relaxed);
    let dial = trouble.dial_errors.load(Ordering::Relaxed);
    if publish + slow + dial > 0 {
        eprintln!("baseline {what}: {publish} publish errors, {slow} slow-peer events, {dial} dial errors");
    }
}

// ---------------------------------------------------------------------------
// DMs
// ---------------------------------------------------------------------------

/// Raw bytes both ways, read to the end of the stream, at most [`DM_LIMIT`].
#[derive(Debug, Clone, Default)]
struct RawCodec;

impl request_response::Codec for RawCodec {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = Vec<u8>;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_limited(io).await
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_limited(io).await
    }

    async fn write_request<T>(&mut self, _: &StreamProtocol, io: &mut T, req: Vec<u8>) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_all_close(io, &req).await
    }

    async fn write_response<T>(&mut self, _: &StreamProtocol, io: &mut T, res: Vec<u8>) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_all_close(io, &res).await
    }
}

async fn read_limited<T: AsyncRead + Unpin + Send>(io: &mut T) -> io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    io.take(DM_LIMIT as u64 + 1).read_to_end(&mut buf).await?;
    if buf.len() > DM_LIMIT {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("message larger than {DM_LIMIT} bytes"),
        ));
    }
    Ok(buf)
}

async fn write_all_close<T: AsyncWrite + Unpin + Send>(io: &mut T, data: &[u8]) -> io::Result<()> {
    if data.len() > DM_LIMIT {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("message larger than {DM_LIMIT} bytes"),
        ));
    }
    io.write_all(data).await?;
    io.close().await
}

fn dm_swarm() -> Swarm<request_response::Behaviour<RawCodec>> {
    SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(tcp::Config::default(), noise::Config::new, yamux::Config::default)
        .expect("tcp transport")
        .with_behaviour(|_| {
            request_response::Behaviour::<RawCodec>::new(
                [(StreamProtocol::new(DM_PROTOCOL), ProtocolSupport::Full)],
                request_response::Config::default().with_max_concurrent_streams(128),
            )
        })
        .expect("behaviour")
        .with_swarm_config(|c| c.with_idle_connection_timeout(IDLE))
        .build()
}

/// Node A sends `p.size`-byte requests to node B, keeping `p.window` in
/// flight, for `p.duration`; B answers each at once with 100 bytes.
pub async fn dm_pair(p: &DmParams) -> DmResult {
    assert!(p.window >= 1, "window must be at least 1");
    let trouble = Arc::new(Trouble::default());

    // B: answers every request immediately.
    let mut b = dm_swarm();
    let b_addr = listen(&mut b).await;
    let b_peer = *b.local_peer_id();
    let (b_commands, mut b_rx) = mpsc::unbounded_channel::<Command>();
    let b_task = tokio::spawn({
        let trouble = trouble.clone();
        async move {
            loop {
                tokio::select! {
                    command = b_rx.recv() => if matches!(command, Some(Command::Shutdown) | None) { break },
                    event = b.select_next_some() => match event {
                        SwarmEvent::Behaviour(request_response::Event::Message {
                            message: request_response::Message::Request { channel, .. },
                            ..
                        }) => {
                            let answer = vec![0u8; DM_RESPONSE_BYTES];
                            if b.behaviour_mut().send_response(channel, answer).is_err() {
                                trouble.inbound_failures.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        SwarmEvent::Behaviour(request_response::Event::InboundFailure { .. }) => {
                            trouble.inbound_failures.fetch_add(1, Ordering::Relaxed);
                        }
                        _ => {}
                    },
                }
            }
        }
    });

    // A: connects, then keeps the window full until the duration is over.
    let mut a = dm_swarm();
    listen(&mut a).await;
    let params = p.clone();
    let a_task = tokio::spawn({
        let trouble = trouble.clone();
        async move {
            a.dial(b_addr).expect("dial B");
            tokio::time::timeout(FORMATION_TIMEOUT, async {
                loop {
                    match a.select_next_some().await {
                        SwarmEvent::ConnectionEstablished { peer_id, .. } if peer_id == b_peer => break,
                        SwarmEvent::OutgoingConnectionError { error, .. } => panic!("baseline DM dial failed: {error}"),
                        _ => {}
                    }
                }
            })
            .await
            .expect("baseline DM connection within timeout");

            let request = vec![b'.'; params.size];
            let mut in_flight = HashMap::with_capacity(params.window);
            let mut rtts_ms = Vec::new();
            let cpu_before = cpu_time(None);
            let start = Instant::now();
            let end = tokio::time::Instant::from_std(start + params.duration);
            for _ in 0..params.window {
                in_flight.insert(a.behaviour_mut().send_request(&b_peer, request.clone()), Instant::now());
            }
            loop {
                tokio::select! {
                    () = tokio::time::sleep_until(end) => break,
                    event = a.select_next_some() => match event {
                        SwarmEvent::Behaviour(request_response::Event::Message {
                            message: request_response::Message::Response { request_id, .. },
                            ..
                        }) => {
                            if let Some(sent) = in_flight.remove(&request_id) {
                                rtts_ms.push(sent.elapsed().as_secs_f64() * 1000.0);
                            }
                            in_flight.insert(a.behaviour_mut().send_request(&b_peer, request.clone()), Instant::now());
                        }
                        SwarmEvent::Behaviour(request_response::Event::OutboundFailure { request_id, .. }) => {
                            trouble.outbound_failures.fetch_add(1, Ordering::Relaxed);
                            in_flight.remove(&request_id);
                            in_flight.insert(a.behaviour_mut().send_request(&b_peer, request.clone()), Instant::now());
                        }
                        _ => {}
                    },
                }
            }
            let elapsed = start.elapsed();
            let cpu = cpu_time(None).saturating_sub(cpu_before);
            DmResult {
                completed: rtts_ms.len(),
                elapsed,
                rtts_ms,
                cpu,
            }
        }
    });

    let result = a_task.await.expect("baseline DM sender task");
    shut_down(vec![(b_commands, b_task)]).await;
    let inbound = trouble.inbound_failures.load(Ordering::Relaxed);
    let outbound = trouble.outbound_failures.load(Ordering::Relaxed);
    if inbound + outbound > 0 {
        eprintln!("baseline dm: {inbound} inbound failures, {outbound} outbound failures");
    }
    result
}
