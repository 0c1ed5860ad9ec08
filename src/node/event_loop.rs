//! The one task that owns the swarm, the log and all network state. Every
//! `select!` arm hands off to a `handle_*` method.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use libp2p::core::transport::TransportError;
use libp2p::gossipsub::{self, MessageAcceptance, PublishError};
use libp2p::multiaddr::Protocol;
use libp2p::request_response::{self, OutboundRequestId, ResponseChannel};
use libp2p::swarm::SwarmEvent;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::{Multiaddr, PeerId, Swarm, identify, kad, mdns};
use tokio::sync::{mpsc, oneshot};

mod groups;
mod net;
mod rooms;
mod sync;

pub(super) use rooms::view_from_log;

use super::behaviour::{Behaviour, BehaviourEvent, build_swarm};
use super::codec::{ReplyVerdict, judge_reply};
use super::commit::{GroupCommit, LazyFlush};
use super::dm::{DmAdmission, DmContext, admit_dm};
use super::error::{InvalidText, LogFailure};
use super::handle::{Call, ToLoop};
use super::outbox::{AfterFailure, Key, Outbox, OutboxEntry};
use super::reach::Reach;
use super::rooms::{JoinedRoom, Origin, Rooms, Unsent};
use super::{
    Config, DialFailure, DmError, DmFailure, Event, GroupError, HistoryQuery, JoinError, NodeError, PeerInfo,
    PostError, RoomFootprint, RoomInfo, RoomOpError, StartError, Stats,
};
use crate::envelope::Signed;
use crate::group::{GroupId, Groups};
use crate::id::{MessageId, RejectReason, Room};
use crate::identity::Identity;
use crate::message::{Body, DirectMessage, DmReply, Receipt, Refusal};
use crate::protocol::MAX_TEXT_BYTES;
use crate::store::{Delivery, Direction, Inserted, OutboxItem, Store, StoreError, now_ms};

/// DMs waiting for receipts at most. A person never gets near it; a script
/// sending to an unreachable peer is told (`DmError::OutboxFull`).
pub(super) const MAX_OUTBOX: usize = 10_000;

/// The store setting that remembers `/requests on|off`.
const REQUESTS_SETTING: &str = "requests";
/// The setting that lists the rooms this node is in, one per line
/// (`Config::remember_rooms`).
const ROOMS_SETTING: &str = "rooms";

/// How often unsent posts are retried and lost peers checked for redial.
const TICK: Duration = Duration::from_secs(1);

/// Received DMs (and group messages) logged but neither acknowledged nor
/// shown because the flush failed, remembered at most. The sender retries
/// each; a retry finds it in the log as a duplicate and is shown then, once.
/// Beyond the bound a retried message is acknowledged but only in history.
const MAX_UNACKNOWLEDGED: usize = 1024;

/// Events waiting in one room's stream ([`crate::RoomHandle::subscribe`]).
/// A room's share of the node stream's 8192: a busy room at 50 posts a
/// second fills it only if its reader stalls for over a minute, and a full
/// stream loses events (counted), never blocks the loop.
const ROOM_EVENT_CAPACITY: usize = 4096;

/// What to do once the log is on disk.
enum AfterFlush {
    /// Report a post, room operation, DM or group message done: it is on
    /// disk (and already on the wire).
    Sent { id: MessageId, reply: SentReply },
    /// Answer a DM with its receipt, and show it if it is new.
    Receipt {
        id: MessageId,
        channel: ResponseChannel<Vec<u8>>,
        reply: Vec<u8>,
        show: Option<Box<Event>>,
    },
    /// Nothing to do: the flush itself was the point.
    Durable,
    /// Report a group created, once its first op is on disk.
    Created {
        group: GroupId,
        reply: oneshot::Sender<Result<GroupId, GroupError>>,
    },
    /// Report a group change done, once its op is on disk.
    Done {
        reply: oneshot::Sender<Result<(), GroupError>>,
    },
}

/// Who waits for an own message to be on disk: the caller of the operation
/// that sent it, answered in that operation's own error.
pub(super) enum SentReply {
    Post(oneshot::Sender<Result<MessageId, PostError>>),
    RoomOp(oneshot::Sender<Result<MessageId, RoomOpError>>),
    Dm(oneshot::Sender<Result<MessageId, DmError>>),
    Group(oneshot::Sender<Result<MessageId, GroupError>>),
}

impl SentReply {
    /// Answers with the message's id, or with why it is not (known to be)
    /// in the log.
    fn send(self, result: Result<MessageId, LogFailure>) {
        // A caller that stopped waiting is no one to tell: a failed send is ignored.
        match self {
            SentReply::Post(reply) => {
                let _ = reply.send(result.map_err(PostError::from));
            }
            SentReply::RoomOp(reply) => {
                let _ = reply.send(result.map_err(RoomOpError::from));
            }
            SentReply::Dm(reply) => {
                let _ = reply.send(result.map_err(DmError::from));
            }
            SentReply::Group(reply) => {
                let _ = reply.send(result.map_err(GroupError::from));
            }
        }
    }
}

pub(super) struct PendingDm {
    id: MessageId,
    to: PeerId,
}

pub(crate) struct EventLoop {
    /// Group memberships, rebuilt from the log's group ops at start.
    pub(super) groups: Groups,
    /// Group messages this node sent, while their receipts come in.
    pub(super) group_sends: HashMap<MessageId, groups::GroupSend>,
    swarm: Swarm<Behaviour>,
    identity: Identity,
    local: PeerId,
    nick: Option<String>,
    store: Store,
    commit: GroupCommit<AfterFlush>,
    commands: mpsc::Receiver<ToLoop>,
    events: mpsc::Sender<Event>,
    rooms: Rooms,
    pending_dms: HashMap<OutboundRequestId, PendingDm>,
    /// DMs waiting for receipts (mirrored in the log's outbox index).
    outbox: Outbox,
    /// Peers from the configuration, redialled when lost, with the last attempt.
    bootstrap: Vec<(PeerId, Multiaddr, Option<Instant>)>,
    redial_interval: Duration,
    listen_addrs: Vec<Multiaddr>,
    stats: Stats,
    /// Received posts or delivery states were logged (and wait for no
    /// flush) while handling the current input; `run` then tells
    /// `lazy_flush`.
    unflushed: bool,
    /// When those writes are due for a flush (`POST_FLUSH_DELAY`).
    lazy_flush: LazyFlush,
    /// Received messages whose receipt flush failed: not yet shown
    /// (bounded by [`MAX_UNACKNOWLEDGED`]).
    unacknowledged: HashSet<MessageId>,
    /// How far authors' clocks may be from ours, in ms (`Config::clock_window`).
    clock_window_ms: u64,
    /// Peers whose messages are dropped and whose connections are refused.
    blocked: HashSet<PeerId>,
    /// Contacts and their petnames; DMs from anyone else are requests.
    contacts: HashMap<PeerId, String>,
    /// Whether DMs from non-contacts are accepted (as requests) or refused.
    accept_requests: bool,
    /// Whether presence is tracked (`Config::presence`).
    presence_on: bool,
    /// Whether joins and leaves are kept in the log (`Config::remember_rooms`).
    remember_rooms: bool,
    /// Own posts waiting for their pace per room, as last reported.
    waiting: HashMap<Room, usize>,
    /// History sync sessions and their limits.
    syncs: sync::Syncs,
    /// This node's stamps for its rooms, while they are minted.
    minting: super::stamps::Minting,
    history_window_ms: u64,
    history_max: usize,
    /// Posts and operations kept per room (`Config::room_bound`).
    room_bound: usize,
    sync_interval: Duration,
    /// Rate limits and the penalties of peers that broke them.
    limiters: super::limits::Limiters,
    /// DM and sync streams the codec cut for exceeding their limit.
    oversize_streams: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// Addresses, relays, DHT schedule and connection paths (`node::reach`).
    reach: Reach,
    /// Running as a helper (`Config::helper`).
    helper: bool,
    /// Reachable at its listen addresses (`Config::public`).
    public: bool,
    /// Relays, serves the DHT and answers reachability tests for others
    /// while it is public (`Config::help_others`).
    help_others: bool,
    /// Whether kad runs in server mode now.
    dht_serving: bool,
    /// The bootstrap helpers' addresses (configured or remembered).
    helpers: Vec<Multiaddr>,
    /// DHT queries this node started, and what for.
    queries: HashMap<kad::QueryId, net::Query>,
    /// DMs whose dial failed, waiting for a lookup of their recipient.
    waiting_route: HashMap<PeerId, Vec<PendingDm>>,
}

impl EventLoop {
    pub(crate) fn new(
        config: Config,
        identity: Identity,
        store: Store,
        commands: mpsc::Receiver<ToLoop>,
        events: mpsc::Sender<Event>,
    ) -> Result<Self, StartError> {
        let oversize_streams = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let mut swarm = build_swarm(&config, &identity, oversize_streams.clone())?;
        for addr in &config.listen {
            swarm
                .listen_on(addr.clone())
                .map_err(|e| listen_failure(addr.clone(), e))?;
        }
        let mut bootstrap = Vec::new();
        for addr in &config.peers {
            let Some(Protocol::P2p(peer)) = addr.iter().last() else {
                return Err(StartError::PeerWithoutId(addr.clone()));
            };
            swarm.add_peer_address(peer, addr.clone());
            bootstrap.push((peer, addr.clone(), None));
        }
        // DMs still waiting from an earlier run are retried.
        let mut outbox = Outbox::new(config.retry);
        for item in store.outbox()? {
            outbox.restore(OutboxEntry {
                id: item.id,
                to: item.to,
                attempts: item.attempts,
                next_ms: item.next_ms,
                expires_ms: item.expires_ms,
                in_flight: false,
            });
        }
        let blocked: HashSet<PeerId> = store.blocked()?.into_iter().collect();
        let mut groups = Groups::new(config.max_group_members);
        for op in store.group_ops()? {
            if let Body::GroupOp(g) = op.body() {
                let _ = groups.apply(op.author(), g);
            }
        }
        // Lamport clocks continue from the newest message of each group.
        let ids: Vec<GroupId> = groups.all().iter().map(|g| g.id).collect();
        for id in ids {
            if let Some(lamport) = store.group_lamport(&id)? {
                groups.observe(&id, lamport);
            }
        }
        let contacts: HashMap<PeerId, String> = store.contacts()?.into_iter().collect();
        let accept_requests = match store.setting(REQUESTS_SETTING)? {
            Some(v) => v.first() == Some(&1),
            None => config.accept_requests,
        };
        for peer in &blocked {
            swarm.behaviour_mut().blocked.block_peer(*peer);
        }
        let mut rooms = Rooms::new();
        let mut reach = Reach::default();
        let mut start_rooms = config.rooms.clone();
        if config.remember_rooms {
            for room in remembered_rooms(&store)? {
                if !start_rooms.contains(&room) {
                    start_rooms.push(room);
                }
            }
        }
        if config.remember_rooms {
            store.set_setting(
                ROOMS_SETTING,
                start_rooms
                    .iter()
                    .map(Room::as_str)
                    .collect::<Vec<_>>()
                    .join("\n")
                    .as_bytes(),
            )?;
        }
        for room in &start_rooms {
            if let Some(topic) = rooms.join(room, rooms::load_rules(&store, room, config.room_bound)) {
                let gossip = &mut swarm.behaviour_mut().gossipsub;
                let _ = gossip.subscribe(&topic);
                let _ = gossip.set_topic_params(topic, crate::protocol::chat_topic_params());
                reach.room_joined(room.clone());
            }
        }
        let bootstrap_addrs = config.bootstrap.clone();
        let mut this = Self {
            local: identity.peer_id(),
            identity,
            nick: config.nick,
            commit: GroupCommit::new(store.clone(), config.group_commit),
            store,
            swarm,
            commands,
            events,
            rooms,
            pending_dms: HashMap::new(),
            outbox,
            bootstrap,
            redial_interval: config.redial_interval,
            listen_addrs: Vec::new(),
            stats: Stats::default(),
            unflushed: false,
            lazy_flush: LazyFlush::default(),
            unacknowledged: HashSet::new(),
            clock_window_ms: config.clock_window.as_millis() as u64,
            groups,
            group_sends: HashMap::new(),
            blocked,
            contacts,
            accept_requests,
            presence_on: config.presence,
            remember_rooms: config.remember_rooms,
            waiting: HashMap::new(),
            syncs: sync::Syncs::default(),
            minting: super::stamps::Minting::default(),
            history_window_ms: config.history_window.as_millis() as u64,
            history_max: config.history_max,
            room_bound: config.room_bound,
            sync_interval: config.sync_interval,
            limiters: super::limits::Limiters::new(&config.limits),
            oversize_streams,
            reach,
            helper: config.helper,
            public: config.public,
            help_others: config.help_others,
            dht_serving: config.helper,
            helpers: Vec::new(),
            queries: HashMap::new(),
            waiting_route: HashMap::new(),
        };
        this.restore_reach(&bootstrap_addrs)?;
        for addr in &config.external {
            this.declare_external(addr.clone());
        }
        Ok(this)
    }

    pub(crate) async fn run(mut self) {
        // The rooms joined at start (`Config::rooms`, remembered rooms) get
        // their stamps here, where blocking tasks can be spawned.
        for room in self.rooms.ids() {
            self.stamp_room(&room);
        }
        self.redial();
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Armed at `LazyFlush::deadline` whenever something waits for it.
        let flush_timer = tokio::time::sleep_until(tokio::time::Instant::now());
        tokio::pin!(flush_timer);
        let shutdown = loop {
            let accepting = !self.commit.is_full();
            let flush_at = self.lazy_flush.deadline().map(tokio::time::Instant::from_std);
            if let Some(at) = flush_at
                && flush_timer.deadline() != at
            {
                flush_timer.as_mut().reset(at);
            }
            tokio::select! {
                biased;
                command = self.commands.recv(), if accepting => match command {
                    Some(ToLoop::Shutdown(reply)) => break Some(reply),
                    Some(ToLoop::Call(call)) => self.handle_call(call),
                    None => break None,
                },
                (outcome, actions) = self.commit.next() => self.handle_flushed(outcome, actions),
                page = self.syncs.next_verified() => self.handle_verified(page),
                Some(minted) = self.minting.next(), if self.minting.busy() => self.handle_minted(minted),
                event = self.swarm.select_next_some(), if accepting => self.handle_swarm_event(event),
                _ = tick.tick() => self.handle_tick(),
                () = &mut flush_timer, if flush_at.is_some() => self.flush_posts(),
            }
            // What that input logged without waiting for the disk is due for
            // a flush from now.
            if std::mem::take(&mut self.unflushed) {
                self.lazy_flush.logged(tokio::time::Instant::now().into_std());
            }
        };
        self.finish().await;
        if let Some(reply) = shutdown {
            let _ = reply.send(());
        }
    }

    /// Completes every pending flush, then flushes and closes the log.
    async fn finish(mut self) {
        while !self.commit.is_idle() {
            let (outcome, actions) = self.commit.next().await;
            self.handle_flushed(outcome, actions);
        }
        let store = self.store.clone();
        drop(self);
        let _ = tokio::task::spawn_blocking(move || store.flush()).await;
    }

    /// Hands an event to the application: to the streams of its room when
    /// the room has any open ([`crate::RoomHandle::subscribe`]), otherwise
    /// to the node's stream. Never waits: a full stream loses the event,
    /// counted in [`Stats::events_dropped`] (the message is in the log).
    fn emit(&mut self, event: Event) {
        let listeners = event
            .room()
            .and_then(|room| self.rooms.get_mut(room))
            .map(|joined| &mut joined.listeners)
            .filter(|listeners| !listeners.is_empty());
        if let Some(listeners) = listeners {
            listeners.retain(|l| !l.is_closed());
            if !listeners.is_empty() {
                for listener in listeners.iter() {
                    if listener.try_send(event.clone()).is_err() {
                        self.stats.events_dropped += 1;
                    }
                }
                return;
            }
        }
        if self.events.try_send(event).is_err() && !self.events.is_closed() {
            self.stats.events_dropped += 1;
            tracing::warn!("event queue full: an event was dropped (the message is in the log)");
        }
    }

    fn reject(&mut self, from: PeerId, reason: RejectReason) {
        tracing::debug!(%from, %reason, "rejected input");
        self.reject_n(from, reason, 1);
    }

    /// Counts `n` inputs from `from` rejected for `reason`, with one
    /// (rate-limited) event.
    fn reject_n(&mut self, from: PeerId, reason: RejectReason, n: u64) {
        self.stats.count_rejected(&from, reason, n);
        if self.limiters.reject_events.allow(&(), now_ms()) {
            self.emit(Event::Rejected { from, reason });
        } else {
            self.stats.rejected_events_suppressed += 1;
        }
    }

    /// Moves what was dropped below the event loop into the rejection
    /// counters: the codec's oversize DM and sync requests (by reason only:
    /// request_response reports no event for them, see `codec::BytesCodec`;
    /// oversize responses are counted against their peer where the request
    /// fails), and what gossipsub dropped unseen (`node::gossip`).
    fn collect_drops(&mut self) {
        let n = self.oversize_streams.swap(0, std::sync::atomic::Ordering::Relaxed);
        if n > 0 {
            *self.stats.rejected.entry(RejectReason::Oversize).or_default() += n;
        }
        let dropped = self.swarm.behaviour_mut().gossipsub.take_dropped();
        for (peer, reason, n) in dropped.by_peer {
            tracing::debug!(%peer, %reason, n, "gossipsub dropped input");
            self.reject_n(peer, reason, n);
            // A flooder that goes on flooding while graylisted stays there.
            if reason == RejectReason::Graylisted
                && let Some(penalty) = self.limiters.penalties.add_if_penalised(peer, n, now_ms())
            {
                self.report_penalty(peer, penalty);
            }
        }
        for (reason, n) in dropped.unattributed {
            *self.stats.rejected.entry(reason).or_default() += n;
        }
    }

    /// A rate limit was exceeded by what `peer` sent: counted, and when
    /// `at_fault` (the peer itself floods, rather than forwarding someone
    /// else's flood) its gossipsub application score goes down.
    fn violation(&mut self, peer: PeerId, at_fault: bool) {
        self.reject(peer, RejectReason::RateLimited);
        if at_fault {
            let penalty = self.limiters.penalties.add(peer, now_ms());
            self.report_penalty(peer, penalty);
        }
    }

    /// Tells gossipsub a peer's rate-limit penalty: its application score.
    fn report_penalty(&mut self, peer: PeerId, penalty: f64) {
        self.swarm
            .behaviour_mut()
            .gossipsub
            .set_application_score(&peer, -penalty);
    }

    // ---- commands ------------------------------------------------------------

    fn handle_call(&mut self, call: Call) {
        // A post or operation in a room whose stamp is being minted waits
        // for it (a moment after join: `stamps`), so that it carries it.
        let Some(call) = self.minting.hold(call) else {
            return;
        };
        match call {
            Call::Join { room, reply } => match self.join(&room) {
                // Answered when the room's stamp is minted (`handle_minted`).
                Ok(()) if self.minting.is_minting(&room) => {
                    if let Some(Call::Join { reply, .. }) = self.minting.hold(Call::Join { room, reply }) {
                        let _ = reply.send(Ok(()));
                    }
                }
                result => {
                    let _ = reply.send(result);
                }
            },
            Call::Prepare { room, reply } => {
                // Joined with its stamp: nothing to do. Otherwise the kept
                // stamp is found or minting starts (`stamp_room`); answered
                // now, or in `handle_minted` if minting.
                if self.rooms.get(&room).is_none_or(|j| j.stamp.is_none()) {
                    self.stamp_room(&room);
                }
                if let Some(Call::Prepare { reply, .. }) = self.minting.hold(Call::Prepare { room, reply }) {
                    let _ = reply.send(());
                }
            }
            Call::Leave { room, reply } => {
                let _ = reply.send(Ok(self.leave(&room)));
            }
            Call::Post {
                room,
                text,
                options,
                reply,
            } => self.post(room, text, options, reply),
            Call::Host { name, reply } => {
                let _ = reply.send(self.host(&name));
            }
            Call::RoomOp { room, action, reply } => self.room_op(room, action, reply),
            Call::ReactDm {
                target,
                emoji,
                retract,
                reply,
            } => self.react_dm(target, emoji, retract, reply),
            Call::RoomView { room, limit, reply } => {
                let _ = reply.send(self.room_view(&room, limit));
            }
            Call::RoomPage {
                room,
                before,
                limit,
                reply,
            } => {
                let _ = reply.send(self.room_page(&room, before, limit));
            }
            Call::LogView { rooms, limit, reply } => {
                let _ = reply.send(self.log_view(&rooms, limit));
            }
            Call::Rules { room, reply } => {
                let _ = reply.send(Ok(self.room_rules(&room)));
            }
            Call::Who { room, reply } => {
                let _ = reply.send(self.who(&room));
            }
            Call::Sync { room, reply } => {
                let result = if self.rooms.get(&room).is_none() {
                    Err(NodeError::NotJoined(room))
                } else {
                    let peers = self.room_peers_of(&room);
                    Ok(peers
                        .into_iter()
                        .filter(|p| self.start_sync(*p, &room, sync::SyncTrigger::Asked))
                        .count())
                };
                let _ = reply.send(result);
            }
            Call::SendDm { to, text, reply } => self.send_dm(to, text, reply),
            Call::History { query, limit, reply } => {
                let result = match &query {
                    HistoryQuery::Room(room) => self.store.room(room, limit),
                    HistoryQuery::Peer(peer) => self.store.conversation(peer, limit),
                    HistoryQuery::Group(group) => self.store.group(group, limit),
                };
                let _ = reply.send(result.map_err(NodeError::from));
            }
            Call::Peers { reply } => {
                let _ = reply.send(self.peers());
            }
            Call::Net { reply } => {
                let _ = reply.send(self.net_info());
            }
            Call::Rooms { reply } => {
                let _ = reply.send(self.room_infos());
            }
            Call::Contacts { reply } => {
                let mut list: Vec<(PeerId, String)> = self.contacts.iter().map(|(p, n)| (*p, n.clone())).collect();
                list.sort();
                let _ = reply.send(list);
            }
            Call::SetContact {
                peer,
                petname: nick,
                reply,
            } => {
                let result = self.store.set_contact(&peer, &nick).map_err(NodeError::from);
                if result.is_ok() {
                    self.contacts.insert(peer, nick.clone());
                    self.unflushed = true;
                    self.emit(Event::ContactChanged { peer, petname: nick });
                }
                let _ = reply.send(result);
            }
            Call::Decline { peer, reply } => {
                let result = self.decline(peer);
                if let Ok(deleted) = result {
                    self.emit(Event::RequestDeclined { peer, deleted });
                }
                let _ = reply.send(result);
            }
            Call::Requests { reply } => {
                let _ = reply.send(self.requests());
            }
            Call::AcceptRequests { accept: on, reply } => {
                let result = self
                    .store
                    .set_setting(REQUESTS_SETTING, &[u8::from(on)])
                    .map_err(NodeError::from);
                if result.is_ok() {
                    self.accept_requests = on;
                    self.unflushed = true;
                    self.emit(Event::RequestsSetting { accept: on });
                }
                let _ = reply.send(result);
            }
            Call::GroupCreate { name, members, reply } => self.group_create(name, members, reply),
            Call::GroupEdit { group, edit, reply } => self.group_edit(group, edit, reply),
            Call::GroupSend { group, text, reply } => self.group_send(group, text, reply),
            Call::Groups { reply } => {
                let _ = reply.send(self.group_infos());
            }
            Call::Outbox { reply } => {
                let _ = reply.send(self.outbox.entries());
            }
            Call::Stats { reply } => {
                self.collect_drops();
                self.stats.awaiting_flush = self.lazy_flush.pending();
                let _ = reply.send(self.stats.clone());
            }
            Call::Subscribe { room, reply } => {
                let result = match self.rooms.get_mut(&room) {
                    Some(joined) => {
                        let (tx, rx) = mpsc::channel(ROOM_EVENT_CAPACITY);
                        joined.listeners.push(tx);
                        Ok(rx)
                    }
                    None => Err(NodeError::NotJoined(room)),
                };
                let _ = reply.send(result);
            }
            Call::Footprint { room, reply } => {
                let _ = reply.send(self.footprint(&room));
            }
            Call::ListenAddrs { reply } => {
                let _ = reply.send(self.listen_addrs.clone());
            }
            Call::Dial { addr, reply } => {
                // A dial given up on purpose (`DialFailure::of` is `None`)
                // has nothing left to do, so it is not an error.
                let result = match self.swarm.dial(addr.clone()) {
                    Err(e) => match DialFailure::of(&e) {
                        Some((_, reason)) => Err(NodeError::Dial { addr, reason }),
                        None => Ok(()),
                    },
                    Ok(()) => Ok(()),
                };
                let _ = reply.send(result);
            }
            Call::SetBlocked {
                peer,
                blocked: block,
                reply,
            } => {
                let _ = reply.send(self.set_blocked(peer, block));
            }
            Call::AddAddress { peer, addr, reply } => {
                self.swarm.add_peer_address(peer, addr);
                let _ = reply.send(());
            }
        }
    }

    /// Blocks a peer: its connections are closed and refused, its posts and
    /// DMs dropped before they are stored or shown; kept across restarts.
    fn set_blocked(&mut self, peer: PeerId, block: bool) -> Result<(), NodeError> {
        self.store.set_blocked(&peer, block)?;
        self.unflushed = true;
        let list = &mut self.swarm.behaviour_mut().blocked;
        if block {
            list.block_peer(peer);
            self.blocked.insert(peer);
        } else {
            list.unblock_peer(peer);
            self.blocked.remove(&peer);
        }
        self.emit(Event::BlockChanged { peer, blocked: block });
        Ok(())
    }

    /// Declines a request: deletes the peer's messages and keeps it out of
    /// the contacts (a later DM from it is a new request).
    fn decline(&mut self, peer: PeerId) -> Result<usize, NodeError> {
        if self.contacts.contains_key(&peer) {
            return Err(NodeError::NotARequest(peer));
        }
        let n = self.store.delete_conversation(&peer)?;
        self.unflushed = true;
        Ok(n)
    }

    /// Peers with DMs in the log who are not contacts: the requests inbox.
    fn requests(&self) -> Result<Vec<super::Request>, NodeError> {
        let mut out = Vec::new();
        for peer in self.store.conversations()? {
            if self.contacts.contains_key(&peer) || self.blocked.contains(&peer) {
                continue;
            }
            let messages = self.store.conversation(&peer, usize::MAX)?;
            if messages.is_empty() {
                continue;
            }
            let last = messages.last().and_then(|m| match m.message.body() {
                Body::Direct(dm) => Some(dm.text.clone()),
                _ => None,
            });
            out.push(super::Request {
                peer,
                messages: messages.len(),
                last: last.unwrap_or_default(),
            });
        }
        Ok(out)
    }

    fn drop_blocked(&mut self, author: PeerId) {
        tracing::debug!(%author, "dropped a message from a blocked peer");
        self.stats.dropped_blocked += 1;
    }

    fn join(&mut self, room: &Room) -> Result<(), JoinError> {
        if self.rooms.get(room).is_some() {
            return Ok(());
        }
        let rules = rooms::load_rules(&self.store, room, self.room_bound);
        self.stats.room_evicted += rules.evicted();
        let Some(topic) = self.rooms.join(room, rules) else {
            return Ok(());
        };
        let gossip = &mut self.swarm.behaviour_mut().gossipsub;
        gossip.subscribe(&topic).map_err(|source| JoinError::Subscribe {
            room: room.clone(),
            source,
        })?;
        let _ = gossip.set_topic_params(topic.clone(), crate::protocol::chat_topic_params());
        self.remember_room(room, true);
        // Peers already in the room subscribed before we listened for it.
        let present = self.room_peers_of(room);
        for peer in present {
            self.start_sync(peer, room, sync::SyncTrigger::Appeared);
            self.emit(Event::RoomPeerJoined {
                room: room.clone(),
                peer,
            });
        }
        self.reach.room_joined(room.clone());
        self.reach_tick();
        self.stamp_room(room);
        Ok(())
    }

    /// Gives a room just joined this node's stamp: the one kept in the log,
    /// or one minted on a blocking thread ([`Self::handle_minted`]).
    fn stamp_room(&mut self, room: &Room) {
        let Some(key) = crate::id::key_of(&self.local) else {
            return;
        };
        let bits = self.limiters.stamp_bits;
        match super::stamps::kept(&self.store, room, &key, bits) {
            Some(stamp) => {
                if let Some(joined) = self.rooms.get_mut(room) {
                    joined.stamp = Some(stamp);
                }
            }
            None => self.minting.start(room, key, bits),
        }
    }

    /// A stamp minted: the room's posts carry it from now on, the log keeps
    /// it for the next join, and the joins that waited for it return.
    fn handle_minted(&mut self, minted: super::stamps::Minted) {
        let room = &minted.room;
        if let Some(stamp) = minted.stamp {
            self.stats.stamps_minted += 1;
            if let Err(e) = super::stamps::keep(&self.store, room, stamp) {
                tracing::warn!(%room, "cannot keep the room's stamp: {e}");
            }
            if let Some(joined) = self.rooms.get_mut(room) {
                joined.stamp = Some(stamp);
            }
        } else {
            tracing::error!(%room, "minting the room's stamp failed; its posts go unstamped");
        }
        for call in minted.held {
            match call {
                // Done, whether or not minting succeeded (a join mints
                // again): handling it again could mint in a loop.
                Call::Prepare { reply, .. } => {
                    let _ = reply.send(());
                }
                call => self.handle_call(call),
            }
        }
    }

    fn leave(&mut self, room: &Room) -> usize {
        if self.presence_on && self.rooms.get(room).is_some() {
            self.announce(room, true);
        }
        self.remember_room(room, false);
        // Everything about the room is in its `JoinedRoom`, but for the
        // history sync sessions with its peers, the last report of its
        // waiting posts and its DHT search (`footprint` counts them all).
        self.syncs.leave(room);
        self.waiting.remove(room);
        self.room_left_dht(room);
        match self.rooms.leave(room) {
            Some((topic, unsent)) => {
                self.swarm.behaviour_mut().gossipsub.unsubscribe(&topic);
                unsent
            }
            None => 0,
        }
    }

    /// What the node keeps about `room`, wherever it is kept.
    fn footprint(&self, room: &Room) -> RoomFootprint {
        let (sync_sessions, sync_requests, sync_cooldowns, sync_spread) = self.syncs.footprint(room);
        let topic = crate::protocol::topic(room.as_str()).hash();
        let joined = self.rooms.get(room);
        RoomFootprint {
            joined: joined.is_some(),
            posts: joined.map_or(0, |j| j.rules.post_count()),
            present: joined.map_or(0, |j| j.presence.len()),
            unsent: joined.map_or(0, JoinedRoom::unsent_len),
            sync_sessions,
            sync_requests,
            sync_cooldowns,
            sync_spread,
            waiting_reported: self.waiting.contains_key(room),
            subscribed: self.swarm.behaviour().gossipsub.topics().any(|t| *t == topic),
            dht_search: self.reach.has_room(room),
        }
    }

    fn send_dm(&mut self, to: PeerId, text: String, reply: oneshot::Sender<Result<MessageId, DmError>>) {
        if let Err(e) = check_text(&text) {
            let _ = reply.send(Err(e.into()));
            return;
        }
        if to == self.local || crate::id::key_of(&to).is_none() {
            let _ = reply.send(Err(DmError::InvalidPeer(to)));
            return;
        }
        self.send_direct(to, text, None, reply);
    }

    /// Reacts to a DM of a conversation: a DM carrying the reaction.
    fn react_dm(
        &mut self,
        target: MessageId,
        emoji: String,
        retract: bool,
        reply: oneshot::Sender<Result<MessageId, DmError>>,
    ) {
        let to = match self.store.get(&target) {
            Ok(Some(m)) => match m.message.body() {
                Body::Direct(dm) if dm.recipient == self.local => m.message.author(),
                Body::Direct(dm) => dm.recipient,
                _ => {
                    let _ = reply.send(Err(DmError::UnknownMessage(target)));
                    return;
                }
            },
            Ok(None) => {
                let _ = reply.send(Err(DmError::UnknownMessage(target)));
                return;
            }
            Err(e) => {
                let _ = reply.send(Err(e.into()));
                return;
            }
        };
        let reaction = crate::room::Reaction { target, emoji, retract };
        self.send_direct(to, String::new(), Some(reaction), reply);
    }

    /// Signs, logs and sends a DM (text, or a reaction with no text) through
    /// the outbox, unless the outbox is full.
    fn send_direct(
        &mut self,
        to: PeerId,
        text: String,
        reaction: Option<crate::room::Reaction>,
        reply: oneshot::Sender<Result<MessageId, DmError>>,
    ) {
        if self.outbox.len() >= MAX_OUTBOX {
            let _ = reply.send(Err(DmError::OutboxFull(self.outbox.len())));
            return;
        }
        let body = Body::Direct(DirectMessage {
            recipient: to,
            text,
            time_ms: now_ms(),
            nick: self.nick.clone(),
            reaction,
        });
        if !self.contacts.contains_key(&to) {
            // Writing to someone makes them a contact: their answers are
            // conversation, not requests.
            if let Err(e) = self.store.set_contact(&to, "") {
                tracing::warn!("cannot add contact: {e}");
            }
            self.contacts.insert(to, String::new());
        }
        // The outbox entry is written before the message: a crash between the
        // two leaves an entry without a message, which the outbox drops, never
        // a queued message that nothing would retry.
        let signed = Signed::sign(&self.identity, body);
        let entry = self.outbox.add(signed.id(), to, now_ms());
        let logged = self
            .store
            .outbox_put(&item_of(&entry))
            .and_then(|()| self.store.insert(&signed, Direction::Sent, &self.local));
        if let Err(e) = logged {
            self.outbox.remove(&(signed.id(), to));
            let _ = reply.send(Err(e.into()));
            return;
        }
        self.stats.dms_sent += 1;
        self.try_send((signed.id(), to));
        self.commit.push(AfterFlush::Sent {
            id: signed.id(),
            reply: SentReply::Dm(reply),
        });
    }

    fn peers(&self) -> Vec<PeerInfo> {
        let gossip = &self.swarm.behaviour().gossipsub;
        let mut out: Vec<PeerInfo> = self
            .swarm
            .connected_peers()
            .map(|peer| PeerInfo {
                peer: *peer,
                rooms: Vec::new(),
                score: gossip.peer_score(peer),
                connections: self.connections_of(peer),
            })
            .collect();
        for (peer, topics) in gossip.all_peers() {
            if let Some(info) = out.iter_mut().find(|i| i.peer == *peer) {
                info.rooms = topics
                    .iter()
                    .filter_map(|t| self.rooms.room_of(t))
                    .map(|r| r.to_string())
                    .collect();
            }
        }
        out
    }

    fn room_infos(&self) -> Vec<RoomInfo> {
        self.rooms
            .iter()
            .map(|(room, joined)| RoomInfo {
                room: room.to_string(),
                peers: self.room_peers_of(room).len(),
                unsent: joined.unsent_len(),
            })
            .collect()
    }

    // ---- durable actions -----------------------------------------------------

    fn handle_flushed(&mut self, outcome: Result<(), Arc<StoreError>>, actions: Vec<AfterFlush>) {
        if let Err(e) = &outcome {
            tracing::error!("log flush failed: {e}");
        }
        for action in actions {
            match (action, &outcome) {
                (AfterFlush::Sent { reply, .. }, Err(e)) => reply.send(Err(LogFailure::Flush(e.clone()))),
                (AfterFlush::Sent { id, reply }, Ok(())) => reply.send(Ok(id)),
                (
                    AfterFlush::Receipt {
                        channel, reply, show, ..
                    },
                    Ok(()),
                ) => {
                    let _ = self.swarm.behaviour_mut().dm.send_response(channel, reply);
                    if let Some(event) = show {
                        self.stats.dms_received += 1;
                        self.emit(*event);
                    }
                }
                (AfterFlush::Receipt { id, channel, show, .. }, Err(_)) => {
                    // Not durable, so not acknowledged: the sender retries.
                    // The message is in the log (in memory) now, so the retry
                    // is a duplicate; remembering it here shows it then.
                    if show.is_some() && self.unacknowledged.len() < MAX_UNACKNOWLEDGED {
                        self.unacknowledged.insert(id);
                    }
                    self.refuse(channel, Refusal::Storage);
                }
                (AfterFlush::Durable, outcome) => {
                    self.lazy_flush
                        .flushed(outcome.is_ok(), tokio::time::Instant::now().into_std());
                }
                (AfterFlush::Created { group, reply }, outcome) => {
                    let _ = reply.send(outcome.clone().map(|()| group).map_err(GroupError::Flush));
                }
                (AfterFlush::Done { reply }, outcome) => {
                    let _ = reply.send(outcome.clone().map_err(GroupError::Flush));
                }
            }
        }
    }

    /// Publishes a post; gives it back if gossipsub cannot take it yet.
    fn publish(&mut self, room: &Room, unsent: Unsent) -> Result<(), Unsent> {
        let Some(joined) = self.rooms.get(room) else {
            return Ok(());
        };
        let topic = joined.topic.clone();
        match self
            .swarm
            .behaviour_mut()
            .gossipsub
            .publish(topic, unsent.envelope.clone())
        {
            Ok(_) | Err(PublishError::Duplicate) => Ok(()),
            Err(PublishError::NoPeersSubscribedToTopic | PublishError::AllQueuesFull(_)) => Err(unsent),
            Err(e) => {
                tracing::error!(%room, "cannot publish post {}: {e}", unsent.id);
                Ok(())
            }
        }
    }

    /// Publishes the posts waiting in a room, in order, until one fails or
    /// this node's pace (`Limiters::own_posts`) says to wait for the next tick.
    fn send_unsent(&mut self, room: &Room) {
        loop {
            let waiting = self.rooms.get(room).map_or(0, JoinedRoom::unsent_len);
            if waiting == 0 || self.room_peers_of(room).is_empty() || !self.limiters.own_posts.allow(&(), now_ms()) {
                break;
            }
            let Some(unsent) = self.rooms.get_mut(room).and_then(JoinedRoom::pop_unsent) else {
                break;
            };
            let id = unsent.id;
            match self.publish(room, unsent) {
                Ok(()) => self.emit(Event::PostSent { room: room.clone(), id }),
                Err(unsent) => {
                    if let Some(joined) = self.rooms.get_mut(room) {
                        joined.requeue_front(unsent);
                    }
                    break;
                }
            }
        }
    }

    // ---- network -------------------------------------------------------------

    fn handle_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(event)) => self.handle_gossip(event),
            SwarmEvent::Behaviour(BehaviourEvent::Dm(event)) => self.handle_dm(event),
            SwarmEvent::Behaviour(BehaviourEvent::Sync(event)) => self.handle_sync(event),
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. })) => {
                self.handle_identify(peer_id, info);
            }
            SwarmEvent::Behaviour(BehaviourEvent::Kad(event)) => self.handle_kad(event),
            SwarmEvent::Behaviour(BehaviourEvent::RelayClient(event)) => self.handle_relay_client(event),
            SwarmEvent::Behaviour(BehaviourEvent::Dcutr(event)) => self.handle_dcutr(event),
            SwarmEvent::Behaviour(BehaviourEvent::Relay(event)) => self.handle_relay_server(event),
            SwarmEvent::Behaviour(BehaviourEvent::Autonat(event)) => self.handle_autonat(event),
            SwarmEvent::ExternalAddrConfirmed { address } => self.external_changed(address, true),
            SwarmEvent::ExternalAddrExpired { address } => self.external_changed(address, false),
            SwarmEvent::ListenerClosed { addresses, .. } => self.listener_closed(&addresses),
            SwarmEvent::Behaviour(BehaviourEvent::Mdns(mdns::Event::Discovered(found))) => {
                for (peer, addr) in found {
                    self.swarm.add_peer_address(peer, addr.clone());
                    self.send_queued_for(&peer);
                    if !self.swarm.is_connected(&peer) {
                        let opts = DialOpts::peer_id(peer)
                            .addresses(vec![addr])
                            .condition(PeerCondition::DisconnectedAndNotDialing)
                            .build();
                        let _ = self.swarm.dial(opts);
                    }
                }
            }
            SwarmEvent::Behaviour(_) => {}
            SwarmEvent::NewListenAddr { address, .. } => {
                // A helper is public by definition: what it listens on (but
                // loopback) is where others reach it, and relays must tell
                // their clients an address of theirs.
                let loopback = address
                    .iter()
                    .any(|p| matches!(p, Protocol::Ip4(ip) if ip.is_loopback()));
                if (self.helper && !loopback) || self.public {
                    self.declare_external(address.clone());
                }
                let addr = address.with_p2p(self.local).unwrap_or_else(|a| a);
                self.listen_addrs.push(addr.clone());
                self.reach.addresses_changed();
                self.emit(Event::Listening { addr });
            }
            SwarmEvent::ExpiredListenAddr { address, .. } => {
                self.listen_addrs
                    .retain(|a| !a.iter().zip(address.iter()).all(|(x, y)| x == y));
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                num_established,
                ..
            } => {
                self.handle_connected(peer_id, connection_id, &endpoint);
                if num_established.get() == 1 {
                    self.emit(Event::PeerConnected { peer: peer_id });
                    self.send_queued_for(&peer_id);
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                connection_id,
                num_established,
                ..
            } => {
                self.handle_disconnected(&peer_id, connection_id);
                if num_established == 0 {
                    self.emit(Event::PeerDisconnected { peer: peer_id });
                }
            }
            SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
                tracing::debug!(?peer_id, "dial failed: {error}");
                if let Some((addr, reason)) = DialFailure::of(&error) {
                    self.emit(Event::DialFailed {
                        peer: peer_id,
                        addr,
                        reason,
                    });
                }
            }
            _ => {}
        }
    }

    fn handle_gossip(&mut self, event: gossipsub::Event) {
        match event {
            gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            } => {
                let verdict = self.validate_gossip(propagation_source, &message);
                let gossip = &mut self.swarm.behaviour_mut().gossipsub;
                gossip.report_message_validation_result(&message_id, &propagation_source, verdict);
            }
            gossipsub::Event::Subscribed { peer_id, topic } => {
                if let Some(room) = self.rooms.room_of(&topic).cloned() {
                    self.send_unsent(&room);
                    // A peer (re)appears in the room: whatever either side
                    // missed meanwhile is reconciled at once.
                    self.start_sync(peer_id, &room, sync::SyncTrigger::Appeared);
                    if let Some(joined) = self.rooms.get_mut(&room) {
                        joined.presence.peer_appeared(now_ms(), random_u64());
                    }
                    self.emit(Event::RoomPeerJoined { room, peer: peer_id });
                }
            }
            gossipsub::Event::Unsubscribed { peer_id, topic } => {
                if let Some(room) = self.rooms.room_of(&topic).cloned() {
                    self.emit(Event::RoomPeerLeft { room, peer: peer_id });
                }
            }
            _ => {}
        }
    }

    /// Decides the fate of a gossiped message: only a verified post for the
    /// topic's room that is new to this node is accepted (and so forwarded).
    fn validate_gossip(&mut self, source: PeerId, message: &gossipsub::Message) -> MessageAcceptance {
        let Some(room) = self.rooms.room_of(&message.topic).cloned() else {
            // Gossipsub drops these itself (`node::gossip` counts them);
            // one can still slip through between a leave and gossipsub's
            // unsubscription.
            self.reject(source, RejectReason::NotJoined);
            return MessageAcceptance::Ignore;
        };
        // Before any signature check: a flood costs a map lookup each. Not
        // penalised: a forwarder relays the sum of its neighbours' traffic,
        // so being over this proves nothing against it (docs/SECURITY.md,
        // "Rate limits"); far over it, it does: no honest forwarder carries
        // that much, and graylisting the peer is what stops gossipsub from
        // keeping what it sends (`Limits::gossip_flood_per_peer`).
        let now = now_ms();
        let under_flood = self.limiters.gossip_flood.allow(&source, now);
        if !self.limiters.gossip.allow(&source, now) || !under_flood {
            self.violation(source, !under_flood);
            return MessageAcceptance::Ignore;
        }
        // A room over its announcement budget takes no new participant's
        // announcement: skipped before its signature is checked, so a join
        // storm (or a flood of announcements under fresh keys) costs each
        // node two verifications a second (`node::presence`). Not
        // forwarded, not penalised: its sender may be an honest joiner.
        if self.presence_on
            && let Some(joined) = self.rooms.get(&room)
            && !joined.presence.takes_newcomers(now)
            && let Some((author, false)) = crate::envelope::peek_presence(&message.data)
            && !joined.presence.lists(&author)
        {
            self.stats.presence_over_budget += 1;
            return MessageAcceptance::Ignore;
        }
        let signed = match Signed::open(&message.data) {
            Ok(signed) => signed,
            Err(reason) => {
                self.reject(source, reason);
                return MessageAcceptance::Reject;
            }
        };
        self.admit_room_message(Origin::Live, source, &room, signed).0
    }

    fn handle_dm(&mut self, event: request_response::Event<Vec<u8>, Vec<u8>>) {
        use request_response::{Event as E, Message as M};
        match event {
            E::Message {
                peer,
                message: M::Request { request, channel, .. },
                ..
            } => self.handle_dm_request(peer, request, channel),
            E::Message {
                peer,
                message: M::Response { request_id, response },
                ..
            } => self.handle_dm_reply(peer, request_id, response),
            E::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                if super::codec::oversize_response(&error) {
                    self.reject(peer, RejectReason::Oversize);
                }
                if let Some(pending) = self.pending_dms.remove(&request_id) {
                    // No connection could be made: find where the peer is
                    // now before telling anyone the DM is queued.
                    let pending = if matches!(error, request_response::OutboundFailure::DialFailure) {
                        match self.route_dm(pending) {
                            Ok(()) => return,
                            Err(pending) => pending,
                        }
                    } else {
                        pending
                    };
                    tracing::debug!(id = %pending.id, to = %pending.to, "DM attempt failed: {error}");
                    let failure = match error {
                        request_response::OutboundFailure::DialFailure
                        | request_response::OutboundFailure::ConnectionClosed => DmFailure::Unreachable,
                        request_response::OutboundFailure::Timeout => DmFailure::Timeout,
                        request_response::OutboundFailure::UnsupportedProtocols => DmFailure::UnsupportedProtocol,
                        _ => DmFailure::Stream,
                    };
                    self.attempt_failed(pending, failure);
                }
            }
            E::InboundFailure { peer, error, .. } => {
                tracing::debug!(%peer, "inbound DM stream failed: {error}");
            }
            E::ResponseSent { .. } => {}
        }
    }

    /// Carries out what [`admit_dm`] decided about a DM-protocol request.
    fn handle_dm_request(&mut self, peer: PeerId, request: Vec<u8>, channel: ResponseChannel<Vec<u8>>) {
        let mut cx = DmContext {
            now_ms: now_ms(),
            window_ms: self.clock_window_ms,
            local: self.local,
            blocked: &self.blocked,
            contacts: &self.contacts,
            accept_requests: self.accept_requests,
            limiters: &mut self.limiters,
        };
        let store = &self.store;
        let admission = admit_dm(peer, &request, &mut cx, |id| store.contains(id).unwrap_or(false));
        match admission {
            DmAdmission::Busy => {
                self.violation(peer, true);
                self.refuse(channel, Refusal::Busy);
            }
            DmAdmission::Invalid(reason) => {
                self.reject(peer, reason);
                self.refuse(channel, Refusal::Invalid);
            }
            DmAdmission::Blocked(author) => {
                self.drop_blocked(author);
                self.refuse(channel, Refusal::NotAccepted);
            }
            DmAdmission::Group(signed) => self.handle_group_request(peer, signed, channel),
            DmAdmission::WrongRecipient => {
                self.reject(peer, RejectReason::WrongRecipient);
                self.refuse(channel, Refusal::WrongRecipient);
            }
            DmAdmission::WrongKind => {
                self.reject(peer, RejectReason::WrongKind);
                self.refuse(channel, Refusal::WrongKind);
            }
            DmAdmission::RequestsOff(signed) => {
                // Say so in a signed receipt, store nothing.
                self.stats.requests_refused += 1;
                let reply = DmReply::Receipt(self.sign_receipt(&signed, false)).encode();
                let _ = self.swarm.behaviour_mut().dm.send_response(channel, reply);
            }
            DmAdmission::Accept { signed, request } => {
                let Body::Direct(dm) = signed.body() else {
                    return;
                };
                let show = Event::Dm {
                    id: signed.id(),
                    from: signed.author(),
                    dm: dm.clone(),
                    request,
                };
                self.store_and_acknowledge(&signed, channel, show);
            }
        }
    }

    /// Logs a received DM, group op or group message (once per id), then,
    /// after the flush, answers with the receipt (the same one for a
    /// duplicate) and shows `show` if it is new.
    pub(super) fn store_and_acknowledge(&mut self, signed: &Signed, channel: ResponseChannel<Vec<u8>>, show: Event) {
        let (receipt, show) = match self.store.insert(signed, Direction::Received, &self.local) {
            Ok(Inserted::New(_)) => {
                let receipt = self.sign_receipt(signed, true);
                if let Err(e) = self.store.set_receipt(&signed.id(), &receipt) {
                    tracing::warn!("cannot keep receipt: {e}");
                }
                (receipt, Some(Box::new(show)))
            }
            Ok(Inserted::Duplicate) => {
                // A retry of a message whose first receipt flush failed is
                // shown now, once; any other duplicate was shown before.
                let show = self.unacknowledged.remove(&signed.id()).then(|| Box::new(show));
                if show.is_none() {
                    self.stats.duplicates += 1;
                }
                let kept = self.store.receipt(&signed.id()).ok().flatten();
                (kept.unwrap_or_else(|| self.sign_receipt(signed, true)), show)
            }
            Err(e) => {
                tracing::error!("cannot log message: {e}");
                self.refuse(channel, Refusal::Storage);
                return;
            }
        };
        let reply = DmReply::Receipt(receipt).encode();
        self.commit.push(AfterFlush::Receipt {
            id: signed.id(),
            channel,
            reply,
            show,
        });
    }

    /// Answers a DM-protocol request with a refusal.
    fn refuse(&mut self, channel: ResponseChannel<Vec<u8>>, refusal: Refusal) {
        let reply = DmReply::Refused(refusal).encode();
        let _ = self.swarm.behaviour_mut().dm.send_response(channel, reply);
    }

    fn sign_receipt(&self, dm: &Signed, accepted: bool) -> Vec<u8> {
        let body = Body::Receipt(Receipt {
            message_id: dm.id(),
            author: dm.author(),
            time_ms: now_ms(),
            accepted,
        });
        Signed::sign(&self.identity, body).envelope().to_vec()
    }

    fn handle_dm_reply(&mut self, peer: PeerId, request_id: OutboundRequestId, reply: Vec<u8>) {
        let Some(pending) = self.pending_dms.remove(&request_id) else {
            return;
        };
        let receipt = match judge_reply(&reply, pending.id, pending.to, self.local) {
            ReplyVerdict::Delivered(receipt) => receipt,
            ReplyVerdict::Retry(why) => return self.attempt_failed(pending, why),
            ReplyVerdict::Refused(why) => {
                return self.dm_failed(pending, DmFailure::Refused { refusal: why.into() });
            }
            ReplyVerdict::NotAccepted => {
                return self.dm_failed(pending, DmFailure::NotAccepted);
            }
            ReplyVerdict::Malformed => {
                self.reject(peer, RejectReason::Malformed);
                return self.dm_failed(pending, DmFailure::MalformedReply);
            }
            ReplyVerdict::BadReceipt => {
                self.reject(peer, RejectReason::BadReceipt);
                return self.dm_failed(pending, DmFailure::InvalidReceipt);
            }
        };
        match self
            .store
            .set_delivery(&pending.id, &Delivery::Delivered, Some(&receipt))
        {
            Ok(_) => {
                self.outbox.remove(&(pending.id, pending.to));
                self.send_queued_for(&pending.to);
                if let Err(e) = self.store.outbox_remove(&pending.id, &pending.to) {
                    tracing::warn!("cannot clear outbox entry: {e}");
                }
                // The receipt is the proof; the mark reaches disk with the next
                // lazy flush (a crash before it leaves the DM "sending", and a
                // resend gets the same receipt back).
                self.stats.dms_delivered += 1;
                self.unflushed = true;
                self.emit(Event::Delivered {
                    id: pending.id,
                    to: pending.to,
                });
                self.group_progress(&pending, true);
            }
            Err(e) => tracing::error!("cannot record delivery: {e}"),
        }
    }

    /// A DM failed for good (refused, invalid receipt, expired).
    fn dm_failed(&mut self, pending: PendingDm, reason: DmFailure) {
        self.outbox.remove(&(pending.id, pending.to));
        self.send_queued_for(&pending.to);
        if let Err(e) = self.store.outbox_remove(&pending.id, &pending.to) {
            tracing::warn!("cannot clear outbox entry: {e}");
        }
        self.stats.dms_failed += 1;
        // A group message has one state per member (its outbox entries and
        // GroupDelivered events), not one for the whole message.
        if !self.group_sends.contains_key(&pending.id)
            && let Err(e) = self
                .store
                .set_delivery(&pending.id, &Delivery::Failed(reason.to_string()), None)
        {
            tracing::error!("cannot record failed delivery: {e}");
        }
        self.unflushed = true;
        self.emit(Event::DmFailed {
            id: pending.id,
            to: pending.to,
            reason,
        });
        self.group_progress(&pending, false);
    }

    /// Starts an attempt to deliver an outbox DM, unless one is on the wire.
    fn try_send(&mut self, key: Key) {
        let (id, to) = key;
        if !self.outbox.start_attempt(&key) {
            return; // gone, on the wire already, or the peer's window is full
        }
        let envelope = match self.store.get(&id) {
            Ok(Some(logged)) => logged.message.envelope().to_vec(),
            _ => {
                tracing::error!("outbox message {id} is not in the log; dropping it");
                self.outbox.remove(&key);
                let _ = self.store.outbox_remove(&id, &to);
                return;
            }
        };
        let attempt = self.outbox.get(&key).map_or(1, |e| e.attempts);
        let request = self.swarm.behaviour_mut().dm.send_request(&to, envelope);
        self.pending_dms.insert(request, PendingDm { id, to });
        if !self.group_sends.contains_key(&id)
            && let Err(e) = self.store.set_delivery(&id, &Delivery::Sent, None)
        {
            tracing::warn!("cannot record DM state: {e}");
        }
        self.unflushed = true;
        self.emit(Event::DmSent { id, to, attempt });
    }

    /// An attempt failed in transit: back off and retry, or expire.
    fn attempt_failed(&mut self, pending: PendingDm, reason: DmFailure) {
        match self.outbox.failed(&(pending.id, pending.to), now_ms()) {
            Some(AfterFailure::RetryAt(at)) => {
                if let Some(entry) = self.outbox.get(&(pending.id, pending.to))
                    && let Err(e) = self.store.outbox_put(&item_of(entry))
                {
                    tracing::warn!("cannot record outbox entry: {e}");
                }
                if !self.group_sends.contains_key(&pending.id)
                    && let Err(e) = self.store.set_delivery(&pending.id, &Delivery::Queued, None)
                {
                    tracing::warn!("cannot record DM state: {e}");
                }
                self.unflushed = true;
                self.emit(Event::DmQueued {
                    id: pending.id,
                    to: pending.to,
                    retry_at_ms: at,
                    reason,
                });
            }
            Some(AfterFailure::Expired) => self.dm_failed(
                pending,
                DmFailure::Expired {
                    last: Some(Box::new(reason)),
                },
            ),
            None => {}
        }
    }

    /// The peer was seen: send everything waiting for it now.
    fn send_queued_for(&mut self, peer: &PeerId) {
        for key in self.outbox.for_peer(peer) {
            self.try_send(key);
        }
    }

    // ---- timers --------------------------------------------------------------

    /// Makes received posts durable: queues the flush [`LazyFlush`] says
    /// is due (`POST_FLUSH_DELAY` after the first of them).
    fn flush_posts(&mut self) {
        if self.lazy_flush.take_due(tokio::time::Instant::now().into_std()) {
            self.commit.push(AfterFlush::Durable);
        }
    }

    fn handle_tick(&mut self) {
        let (due, expired) = self.outbox.due(now_ms());
        for key in due {
            self.try_send(key);
        }
        for entry in expired {
            let pending = PendingDm {
                id: entry.id,
                to: entry.to,
            };
            self.dm_failed(pending, DmFailure::Expired { last: None });
        }
        for room in self.rooms.with_unsent() {
            self.send_unsent(&room);
        }
        self.report_waiting();
        self.presence_tick();
        self.periodic_sync();
        self.recover_refused();
        self.collect_drops();
        for (peer, penalty) in self.limiters.penalties.decay_all(now_ms()) {
            self.report_penalty(peer, penalty);
        }
        self.redial();
        self.reach_tick();
    }

    /// Says how many of this node's posts wait for their pace in each room
    /// that has peers (a room without peers waits for them instead), when
    /// the number changed since the last tick: "sending 30 more".
    fn report_waiting(&mut self) {
        let mut now: HashMap<Room, usize> = HashMap::new();
        for (room, joined) in self.rooms.iter() {
            if joined.unsent_len() > 0 && !self.room_peers_of(room).is_empty() {
                now.insert(room.clone(), joined.unsent_len());
            }
        }
        let mut changes: Vec<(Room, usize)> = now
            .iter()
            .filter(|(room, n)| self.waiting.get(*room) != Some(*n))
            .map(|(room, n)| (room.clone(), *n))
            .collect();
        changes.extend(
            self.waiting
                .keys()
                .filter(|room| !now.contains_key(*room) && self.rooms.get(room).is_some())
                .map(|room| (room.clone(), 0)),
        );
        self.waiting = now;
        for (room, waiting) in changes {
            self.emit(Event::PostsWaiting { room, waiting });
        }
    }

    /// Dials configured peers that are not connected, at most once per
    /// redial interval each.
    fn redial(&mut self) {
        let now = Instant::now();
        for i in 0..self.bootstrap.len() {
            let (peer, addr, last) = self.bootstrap[i].clone();
            let due = last.is_none_or(|t| now.duration_since(t) >= self.redial_interval);
            let blocked = self.swarm.behaviour().blocked.blocked_peers().contains(&peer);
            if self.swarm.is_connected(&peer) || !due || blocked {
                continue;
            }
            self.bootstrap[i].2 = Some(now);
            let opts = DialOpts::peer_id(peer)
                .addresses(vec![addr])
                .condition(PeerCondition::DisconnectedAndNotDialing)
                .build();
            if let Err(e) = self.swarm.dial(opts) {
                tracing::debug!(%peer, "redial: {e}");
            }
        }
    }
}

/// The rooms the log says this node is in (`Config::remember_rooms`), in the
/// order they were joined. A line that is not a room id is skipped.
fn remembered_rooms(store: &Store) -> Result<Vec<Room>, StoreError> {
    let Some(bytes) = store.setting(ROOMS_SETTING)? else {
        return Ok(Vec::new());
    };
    Ok(String::from_utf8_lossy(&bytes)
        .lines()
        .filter_map(|line| Room::new(line).ok())
        .collect())
}

impl EventLoop {
    /// Keeps a join or a leave in the log, if rooms are remembered. A failed
    /// write only costs the room on the next start, so it is logged, not
    /// returned.
    fn remember_room(&mut self, room: &Room, joined: bool) {
        if !self.remember_rooms {
            return;
        }
        let result = remembered_rooms(&self.store).and_then(|mut rooms| {
            rooms.retain(|r| r != room);
            if joined {
                rooms.push(room.clone());
            }
            let list: Vec<&str> = rooms.iter().map(Room::as_str).collect();
            self.store.set_setting(ROOMS_SETTING, list.join("\n").as_bytes())
        });
        if let Err(e) = result {
            tracing::warn!(%room, "cannot remember the room: {e}");
        }
    }
}

/// Why listening on `addr` failed, as the IO error that says so (see
/// [`StartError::Listen`]).
fn listen_failure(addr: Multiaddr, error: TransportError<std::io::Error>) -> StartError {
    let source = match error {
        TransportError::MultiaddrNotSupported(_) => std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "this node cannot listen on that kind of address",
        ),
        TransportError::Other(e) => super::failure::io_cause(&e).unwrap_or(e),
    };
    StartError::Listen { addr, source }
}

/// A uniformly random u64 (presence timing).
pub(super) fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    let _ = getrandom::fill(&mut b);
    u64::from_le_bytes(b)
}

/// Whether `text` can be a post, an edit, a DM or a group message:
/// [`InvalidText`] becomes each one's `InvalidText`.
fn check_text(text: &str) -> Result<(), InvalidText> {
    if text.is_empty() || text.len() > MAX_TEXT_BYTES {
        return Err(InvalidText);
    }
    Ok(())
}

fn item_of(entry: &OutboxEntry) -> OutboxItem {
    OutboxItem {
        id: entry.id,
        to: entry.to,
        attempts: entry.attempts,
        next_ms: entry.next_ms,
        expires_ms: entry.expires_ms,
    }
}
