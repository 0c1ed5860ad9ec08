//! The event loop's side of history sync (`/backchannel/sync/1.0.0`): when
//! to reconcile a room with a peer, moving the negentropy messages, fetching
//! what this node lacks in pages, pushing what the peer lacks, and answering
//! peers. The reconciliation itself and every bound are in `crate::sync`.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::FuturesOrdered;
use libp2p::PeerId;
use libp2p::request_response::{self, OutboundRequestId, ResponseChannel};

use super::EventLoop;
use crate::envelope::Signed;
use crate::id::{MessageId, RejectReason, Room};
use crate::node::Event;
use crate::node::recover::Pending;
use crate::node::rooms::Origin;
use crate::protocol::{MAX_FETCH_IDS, MAX_PAGE_BYTES};
use crate::store::now_ms;
use crate::sync::{Reconciler, SyncQuery, SyncRefusal, SyncRequest, SyncResponse, pages, respond};

/// A node syncs a room with the same peer at most this often on its own
/// (joins, reconnections); `Handle::sync` is not limited.
const PEER_COOLDOWN: Duration = Duration::from_secs(3);

/// Reconciliations running at once per room, and in all.
const MAX_SESSIONS_PER_ROOM: usize = 2;
const MAX_SESSIONS: usize = 16;

/// A session that has not finished by then is dropped (its requests time
/// out on their own; this frees the slot).
const SESSION_TIMEOUT: Duration = Duration::from_secs(60);

/// A room spreads a repair to its other peers at most this often.
const SPREAD_COOLDOWN: Duration = Duration::from_secs(10);

/// Fetch or push requests in flight per session.
const MAX_IN_FLIGHT: usize = 4;

/// Fetched pages being verified per session. With [`MAX_IN_FLIGHT`] this
/// bounds what one session holds: at most eight pages of
/// [`MAX_PAGE_BYTES`], four on the wire and four being verified.
const MAX_VERIFYING: usize = 4;

/// Peers whose request rates are tracked at most.
const MAX_TRACKED_PEERS: usize = 4096;

/// Why a sync starts: it decides which limits apply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum SyncTrigger {
    /// The application asked (`Handle::sync`): only the global limit.
    Asked,
    /// The peer (re)appeared in the room: not limited by the cooldown, and
    /// started by one side only.
    Appeared,
    /// This node just learned messages from another peer: spreading the
    /// repair is not limited by the cooldown either.
    Spread,
    /// Periodic: every limit.
    Routine,
}

/// History sync state of the event loop.
#[derive(Default)]
pub(super) struct Syncs {
    sessions: HashMap<(PeerId, Room), Session>,
    requests: HashMap<OutboundRequestId, (PeerId, Room, Asked)>,
    /// When each pair last started a sync, in ms.
    last: HashMap<(PeerId, Room), u64>,
    /// When the next periodic sync is due, in ms.
    next_periodic: Option<u64>,
    /// When each room last spread a repair.
    spread_at: HashMap<Room, u64>,
    /// Fetched pages being verified on blocking threads, in the order their
    /// responses arrived: they are admitted in that order, whichever
    /// finishes first.
    verifying: FuturesOrdered<BoxFuture<'static, VerifiedPage>>,
}

/// A fetched page, verified off the event loop and waiting to be admitted.
pub(super) struct VerifiedPage {
    peer: PeerId,
    room: Room,
    /// `History` for a session's page, `Recovered` for a recovery's.
    origin: Origin,
    /// For a recovery, what was asked: what did not come is asked again.
    asked: Vec<Pending>,
    opened: Vec<Result<Signed, RejectReason>>,
}

/// `Duration` in ms, for comparisons with the ms clock.
const fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

impl Syncs {
    /// Whether a sync of `room` with `peer` may start at `now_ms`, for `why`
    /// (`local` is this node). Limits: one session per pair, at most
    /// [`MAX_SESSIONS`] in all; and by why, the per-room limit, the
    /// per-pair cooldown, and which side starts when both see each other.
    pub(super) fn may_start(&self, local: PeerId, peer: PeerId, room: &Room, why: SyncTrigger, now_ms: u64) -> bool {
        let key = (peer, room.clone());
        let per_room = self.sessions.keys().filter(|(_, r)| r == room).count();
        let recent = self
            .last
            .get(&key)
            .is_some_and(|t| now_ms.saturating_sub(*t) < ms(PEER_COOLDOWN));
        let limited = match why {
            // Both sides see each other appear; one reconciliation serves
            // both (the initiator fetches and pushes), so only the side with
            // the smaller peer id starts it.
            SyncTrigger::Appeared if local > peer => true,
            SyncTrigger::Asked => false,
            SyncTrigger::Appeared | SyncTrigger::Spread => per_room >= MAX_SESSIONS_PER_ROOM,
            SyncTrigger::Routine => recent || per_room >= MAX_SESSIONS_PER_ROOM,
        };
        !limited && !self.sessions.contains_key(&key) && self.sessions.len() < MAX_SESSIONS
    }

    /// Records a session started at `now_ms`.
    fn begin(&mut self, peer: PeerId, room: &Room, reconciler: Reconciler, now_ms: u64) {
        let key = (peer, room.clone());
        if self.last.len() >= MAX_TRACKED_PEERS {
            self.last.retain(|_, t| now_ms.saturating_sub(*t) < ms(PEER_COOLDOWN));
        }
        self.last.insert(key.clone(), now_ms);
        self.sessions.insert(
            key,
            Session {
                started: now_ms,
                reconciler,
                need: VecDeque::new(),
                in_flight: 0,
                verifying: 0,
                received: 0,
                sent: 0,
            },
        );
    }

    /// Verifies a fetched page on a blocking thread (each envelope strictly,
    /// as [`Signed::open_batch`] does); [`Self::next_verified`] hands it
    /// back. Several pages verify at once, on as many cores as there are,
    /// while the event loop goes on serving and admitting.
    fn verify(&mut self, peer: PeerId, room: &Room, origin: Origin, asked: Vec<Pending>, envelopes: Vec<Vec<u8>>) {
        let room = room.clone();
        let task = tokio::task::spawn_blocking(move || Signed::open_batch(&envelopes));
        self.verifying.push_back(Box::pin(async move {
            let opened = task.await.unwrap_or_else(|e| {
                // Verification does not panic on any input; if it ever did,
                // the page is lost, not the node.
                tracing::error!(%peer, %room, "verifying a history page failed: {e}");
                Vec::new()
            });
            VerifiedPage {
                peer,
                room,
                origin,
                asked,
                opened,
            }
        }));
    }

    /// The next verified page, in the order the pages arrived. Pending
    /// while none is being verified. Cancel safe.
    pub(super) async fn next_verified(&mut self) -> VerifiedPage {
        match self.verifying.next().await {
            Some(page) => page,
            None => std::future::pending().await,
        }
    }

    /// Drops sessions that ran past [`SESSION_TIMEOUT`], and says whether
    /// the periodic sync is due at `now_ms` (scheduling the next one). The
    /// first comes one `interval` after the first call: joining already
    /// reconciled with the peers present.
    pub(super) fn periodic_due(&mut self, now_ms: u64, interval: Duration) -> bool {
        self.sessions
            .retain(|_, s| now_ms.saturating_sub(s.started) < ms(SESSION_TIMEOUT));
        let next = *self.next_periodic.get_or_insert(now_ms + ms(interval));
        if now_ms < next {
            return false;
        }
        self.next_periodic = Some(now_ms + ms(interval));
        true
    }

    /// Whether `room` may spread a repair at `now_ms` (at most once per
    /// [`SPREAD_COOLDOWN`]); if so, the spread is recorded.
    fn may_spread(&mut self, room: &Room, now_ms: u64) -> bool {
        if self
            .spread_at
            .get(room)
            .is_some_and(|t| now_ms.saturating_sub(*t) < ms(SPREAD_COOLDOWN))
        {
            return false;
        }
        self.spread_at.insert(room.clone(), now_ms);
        true
    }

    /// Forgets everything about a room this node leaves: its sessions, its
    /// requests in flight (their answers are then dropped unread), the
    /// cooldowns and the last spread.
    pub(super) fn leave(&mut self, room: &Room) {
        self.sessions.retain(|(_, r), _| r != room);
        self.requests.retain(|_, (_, r, _)| r != room);
        self.last.retain(|(_, r), _| r != room);
        self.spread_at.remove(room);
    }

    /// What is kept about `room`: sessions, requests in flight, per-peer
    /// cooldowns, and whether its last spread is remembered.
    pub(super) fn footprint(&self, room: &Room) -> (usize, usize, usize, bool) {
        (
            self.sessions.keys().filter(|(_, r)| r == room).count(),
            self.requests.values().filter(|(_, r, _)| r == room).count(),
            self.last.keys().filter(|(_, r)| r == room).count(),
            self.spread_at.contains_key(room),
        )
    }

    /// Sessions running for a room.
    #[cfg(test)]
    fn sessions_of(&self, room: &Room) -> usize {
        self.sessions.keys().filter(|(_, r)| r == room).count()
    }
}

enum Asked {
    Reconcile,
    Fetch,
    Push(usize),
    /// A fetch of what the room refused over forwarders' newcomer shares
    /// (`node::recover`), outside any session.
    Recover(Vec<Pending>),
}

struct Session {
    /// When it started, in ms.
    started: u64,
    reconciler: Reconciler,
    need: VecDeque<MessageId>,
    /// Fetch and push requests waiting for their answer.
    in_flight: usize,
    /// Fetched pages being verified.
    verifying: usize,
    received: usize,
    sent: usize,
}

impl EventLoop {
    /// Starts reconciling `room` with `peer`, unless one runs already or
    /// too many run, or (depending on why) the pair synced recently.
    pub(super) fn start_sync(&mut self, peer: PeerId, room: &Room, why: SyncTrigger) -> bool {
        let now = now_ms();
        if self.rooms.get(room).is_none() || !self.syncs.may_start(self.local, peer, room, why, now) {
            return false;
        }
        let keys = match self.history_keys(room) {
            Ok(keys) => keys,
            Err(e) => {
                tracing::error!(%room, "cannot read the room's history: {e}");
                return false;
            }
        };
        let (reconciler, first) = match Reconciler::start(&keys) {
            Ok(started) => started,
            Err(e) => {
                tracing::error!(%room, "cannot start a reconciliation: {e}");
                return false;
            }
        };
        self.syncs.begin(peer, room, reconciler, now);
        self.stats.syncs_started += 1;
        self.send_sync(peer, room, SyncQuery::Reconcile(first), Asked::Reconcile);
        true
    }

    /// The room's history set: (clock, id) within the window and depth.
    fn history_keys(&self, room: &Room) -> Result<Vec<(u64, MessageId)>, crate::store::StoreError> {
        let min_clock = now_ms().saturating_sub(self.history_window_ms);
        self.store.room_keys(room, min_clock, self.history_max)
    }

    fn send_sync(&mut self, peer: PeerId, room: &Room, query: SyncQuery, asked: Asked) {
        let request = SyncRequest {
            room: room.clone(),
            query,
        }
        .encode();
        self.stats.sync_bytes_out += request.len() as u64;
        let id = self.swarm.behaviour_mut().sync.send_request(&peer, request);
        self.syncs.requests.insert(id, (peer, room.clone(), asked));
    }

    /// Syncs each joined room with a random peer of it, every `sync_interval`.
    pub(super) fn periodic_sync(&mut self) {
        if !self.syncs.periodic_due(now_ms(), self.sync_interval) {
            return;
        }
        for room in self.rooms.ids() {
            let peers = self.room_peers_of(&room);
            if peers.is_empty() {
                continue;
            }
            let peer = peers[(super::random_u64() % peers.len() as u64) as usize];
            self.start_sync(peer, &room, SyncTrigger::Routine);
        }
    }

    /// Asks other peers of each room for what it refused over forwarders'
    /// newcomer shares a second ago or more (`node::recover`): gossipsub
    /// drops the copies they send, so a fetch by id is the way back.
    pub(super) fn recover_refused(&mut self) {
        let now = now_ms();
        for room in self.rooms.ids() {
            if self.rooms.get(&room).is_none_or(|j| j.refused.len() == 0) {
                continue;
            }
            let peers = self.room_peers_of(&room);
            let Some(joined) = self.rooms.get_mut(&room) else {
                continue;
            };
            let asks = joined.refused.take_due(now, &peers, super::random_u64);
            for (peer, ids) in asks {
                // Sync may have brought some meanwhile.
                let ids: Vec<Pending> = ids
                    .into_iter()
                    .filter(|p| matches!(self.store.contains(&p.id), Ok(false)))
                    .collect();
                for chunk in ids.chunks(MAX_FETCH_IDS) {
                    self.stats.recovery_asked += chunk.len() as u64;
                    let ids = chunk.iter().map(|p| p.id).collect();
                    self.send_sync(peer, &room, SyncQuery::Fetch(ids), Asked::Recover(chunk.to_vec()));
                }
            }
        }
    }

    /// What a recovery asked for and the log still lacks (the peer did not
    /// send it, the answer failed, or it was refused again) is asked of
    /// another peer later ([`Refusals::retry`]).
    ///
    /// [`Refusals::retry`]: crate::node::recover::Refusals::retry
    fn retry_recovery(&mut self, room: &Room, asked: Vec<Pending>) {
        let now = now_ms();
        let missing: Vec<Pending> = asked
            .into_iter()
            .filter(|p| matches!(self.store.contains(&p.id), Ok(false)))
            .collect();
        if let Some(joined) = self.rooms.get_mut(room) {
            for pending in missing {
                joined.refused.retry(pending, now);
            }
        }
    }

    /// The peers known to be in a joined room.
    pub(super) fn room_peers_of(&self, room: &Room) -> Vec<PeerId> {
        let Some(state) = self.rooms.get(room) else {
            return Vec::new();
        };
        let topic = state.topic.hash();
        self.swarm
            .behaviour()
            .gossipsub
            .all_peers()
            .filter(|(_, topics)| topics.contains(&&topic))
            .map(|(p, _)| *p)
            .collect()
    }

    pub(super) fn handle_sync(&mut self, event: request_response::Event<Vec<u8>, Vec<u8>>) {
        use request_response::{Event as E, Message as M};
        match event {
            E::Message {
                peer,
                message: M::Request { request, channel, .. },
                ..
            } => self.serve_sync(peer, request, channel),
            E::Message {
                peer,
                message: M::Response { request_id, response },
                ..
            } => self.handle_sync_response(peer, request_id, response),
            E::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                if crate::node::codec::oversize_response(&error) {
                    self.reject(peer, RejectReason::Oversize);
                }
                if let Some((peer, room, asked)) = self.syncs.requests.remove(&request_id) {
                    tracing::debug!(%peer, %room, "sync request failed: {error}");
                    if let Asked::Recover(asked) = asked {
                        self.retry_recovery(&room, asked);
                    }
                    self.end_sync(peer, &room, false);
                }
            }
            E::InboundFailure { peer, error, .. } => {
                tracing::debug!(%peer, "sync request from peer failed: {error}");
            }
            E::ResponseSent { .. } => {}
        }
    }

    /// Answers a peer's sync request.
    fn serve_sync(&mut self, peer: PeerId, request: Vec<u8>, channel: ResponseChannel<Vec<u8>>) {
        self.stats.sync_bytes_in += request.len() as u64;
        let answer = self.answer_sync(peer, &request);
        let response = answer.unwrap_or_else(SyncResponse::Refused).encode();
        self.stats.sync_bytes_out += response.len() as u64;
        let _ = self.swarm.behaviour_mut().sync.send_response(channel, response);
    }

    fn answer_sync(&mut self, peer: PeerId, request: &[u8]) -> Result<SyncResponse, SyncRefusal> {
        if !self.limiters.sync.allow(&peer, now_ms()) {
            self.violation(peer, true);
            return Err(SyncRefusal::Busy);
        }
        let SyncRequest { room, query } = match SyncRequest::decode(request) {
            Ok(request) if self.rooms.get(&request.room).is_some() => request,
            Ok(_) => return Err(SyncRefusal::NotInRoom),
            // A room this node is not in is refused as such, whatever else
            // is wrong with the request.
            Err(bad) if bad.room.as_ref().is_some_and(|room| self.rooms.get(room).is_none()) => {
                return Err(SyncRefusal::NotInRoom);
            }
            Err(bad) => {
                self.reject(peer, bad.reason);
                return Err(SyncRefusal::Invalid);
            }
        };
        match query {
            SyncQuery::Reconcile(query) => {
                let keys = self.history_keys(&room).map_err(|_| SyncRefusal::Unspecified)?;
                match respond(&keys, &query) {
                    Ok(message) => {
                        let present = self.rooms.get(&room).map_or(0, |j| j.presence.counted());
                        Ok(SyncResponse::Reconcile {
                            message,
                            present: u32::try_from(present).unwrap_or(u32::MAX),
                        })
                    }
                    Err(e) => {
                        tracing::debug!(%peer, "invalid reconciliation: {e}");
                        self.reject(peer, RejectReason::Malformed);
                        Err(SyncRefusal::Invalid)
                    }
                }
            }
            SyncQuery::Fetch(ids) => {
                let min_clock = now_ms().saturating_sub(self.history_window_ms);
                let mut envelopes = Vec::new();
                let mut bytes = 0;
                for id in &ids {
                    // Only this room's posts and operations within the
                    // window: never a DM or another room's message.
                    let Ok(Some(m)) = self.store.get(id) else {
                        continue;
                    };
                    let in_room = m
                        .message
                        .body()
                        .room_clock()
                        .is_some_and(|(r, clock)| *r == room && clock >= min_clock);
                    let envelope = m.message.envelope();
                    if !in_room || bytes + envelope.len() > MAX_PAGE_BYTES {
                        continue;
                    }
                    bytes += envelope.len();
                    envelopes.push(envelope.to_vec());
                }
                self.stats.synced_sent += envelopes.len() as u64;
                Ok(SyncResponse::Page(envelopes))
            }
            SyncQuery::Push(envelopes) => {
                let received = self.apply_history(peer, &room, envelopes);
                if received > 0 {
                    self.emit(Event::Synced {
                        room: room.clone(),
                        peer,
                        received,
                        sent: 0,
                    });
                    self.spread(peer, &room);
                }
                Ok(SyncResponse::Pushed(received as u32))
            }
        }
    }

    fn handle_sync_response(&mut self, peer: PeerId, request_id: OutboundRequestId, response: Vec<u8>) {
        self.stats.sync_bytes_in += response.len() as u64;
        let Some((_, room, asked)) = self.syncs.requests.remove(&request_id) else {
            return;
        };
        let key = (peer, room.clone());
        let Some(response) = SyncResponse::decode(&response) else {
            self.reject(peer, RejectReason::Malformed);
            return self.end_sync(peer, &room, false);
        };
        match (asked, response) {
            (
                Asked::Reconcile,
                SyncResponse::Reconcile {
                    message: answer,
                    present,
                },
            ) => {
                if let Some(joined) = self.rooms.get_mut(&room) {
                    joined.presence.room_size_hint(present as usize, super::random_u64());
                }
                let Some(session) = self.syncs.sessions.get_mut(&key) else {
                    return;
                };
                match session.reconciler.step(&answer) {
                    Ok(Some(next)) => self.send_sync(peer, &room, SyncQuery::Reconcile(next), Asked::Reconcile),
                    Ok(None) => {
                        // What this room refused as below its horizon would
                        // be refused again: not fetched (the peer keeps it
                        // until it has the newer messages this node pushes).
                        let joined = self.rooms.get(&room);
                        session.need = std::mem::take(&mut session.reconciler.need)
                            .into_iter()
                            .filter(|id| !joined.is_some_and(|j| j.is_below_horizon(id)))
                            .collect();
                        let have = std::mem::take(&mut session.reconciler.have);
                        self.push(peer, &room, have);
                        self.pump(peer, &room);
                    }
                    Err(e) => {
                        tracing::debug!(%peer, %room, "reconciliation failed: {e}");
                        self.reject(peer, RejectReason::Malformed);
                        self.end_sync(peer, &room, false);
                    }
                }
            }
            (Asked::Fetch, SyncResponse::Page(page)) => {
                if let Some(session) = self.syncs.sessions.get_mut(&key) {
                    session.in_flight = session.in_flight.saturating_sub(1);
                    session.verifying += 1;
                }
                self.syncs.verify(peer, &room, Origin::History, Vec::new(), page);
                self.pump(peer, &room);
            }
            (Asked::Recover(asked), SyncResponse::Page(page)) => {
                self.syncs.verify(peer, &room, Origin::Recovered, asked, page)
            }
            (Asked::Recover(asked), SyncResponse::Refused(refusal)) => {
                tracing::debug!(%peer, %room, code = refusal.code(), "recovery refused");
                self.retry_recovery(&room, asked);
            }
            (Asked::Push(n), SyncResponse::Pushed(_)) => {
                if let Some(session) = self.syncs.sessions.get_mut(&key) {
                    session.in_flight = session.in_flight.saturating_sub(1);
                    session.sent += n;
                }
                self.pump(peer, &room);
            }
            (_, SyncResponse::Refused(refusal)) => {
                tracing::debug!(%peer, %room, code = refusal.code(), "sync refused");
                self.end_sync(peer, &room, false);
            }
            _ => {
                self.reject(peer, RejectReason::WrongKind);
                self.end_sync(peer, &room, false);
            }
        }
    }

    /// Sends the peer what it lacks, in pages.
    fn push(&mut self, peer: PeerId, room: &Room, have: Vec<MessageId>) {
        let envelopes: Vec<Vec<u8>> = have
            .iter()
            .filter_map(|id| self.store.envelope(id).ok().flatten())
            .collect();
        for page in pages(envelopes) {
            let n = page.len();
            self.stats.synced_sent += n as u64;
            if let Some(session) = self.syncs.sessions.get_mut(&(peer, room.clone())) {
                session.in_flight += 1;
            }
            self.send_sync(peer, room, SyncQuery::Push(page), Asked::Push(n));
        }
    }

    /// Pushes what this node fetched back after a share refused it to the
    /// room's other peers (all but `source`, which served it): it did not
    /// forward it when it refused it, so a peer that hears the room only
    /// through this node lacks it as well. They admit it as history
    /// (charged to this node's share for an author they do not know).
    fn pass_on(&mut self, source: PeerId, room: &Room, envelopes: Vec<Vec<u8>>) {
        for other in self.room_peers_of(room) {
            if other == source {
                continue;
            }
            for page in pages(envelopes.clone()) {
                let n = page.len();
                self.stats.synced_sent += n as u64;
                self.send_sync(other, room, SyncQuery::Push(page), Asked::Push(n));
            }
        }
    }

    /// Admits a fetched page once verified, and keeps the session going.
    pub(super) fn handle_verified(&mut self, page: VerifiedPage) {
        let VerifiedPage {
            peer,
            room,
            origin,
            asked,
            opened,
        } = page;
        let (received, recovered) = self.admit_history(peer, &room, origin, opened);
        self.retry_recovery(&room, asked);
        // What this node refused it did not forward, so peers that hear the
        // room only through it lack it too: what comes back is passed on.
        if !recovered.is_empty() {
            self.pass_on(peer, &room, recovered);
        }
        if let Some(session) = self.syncs.sessions.get_mut(&(peer, room.clone())) {
            session.verifying = session.verifying.saturating_sub(1);
            session.received += received;
        }
        self.pump(peer, &room);
    }

    /// Keeps up to [`MAX_IN_FLIGHT`] fetches going while fewer than
    /// [`MAX_VERIFYING`] pages are being verified; ends the session when
    /// nothing is left.
    fn pump(&mut self, peer: PeerId, room: &Room) {
        let key = (peer, room.clone());
        loop {
            let Some(session) = self.syncs.sessions.get_mut(&key) else {
                return;
            };
            if session.need.is_empty() {
                if session.in_flight == 0 && session.verifying == 0 {
                    self.end_sync(peer, room, true);
                }
                return;
            }
            if session.in_flight >= MAX_IN_FLIGHT || session.verifying >= MAX_VERIFYING {
                return;
            }
            let n = session.need.len().min(MAX_FETCH_IDS);
            let ids: Vec<MessageId> = session.need.drain(..n).collect();
            session.in_flight += 1;
            self.send_sync(peer, room, SyncQuery::Fetch(ids), Asked::Fetch);
        }
    }

    fn end_sync(&mut self, peer: PeerId, room: &Room, completed: bool) {
        let Some(session) = self.syncs.sessions.remove(&(peer, room.clone())) else {
            return;
        };
        if completed {
            self.stats.syncs_completed += 1;
            self.emit(Event::Synced {
                room: room.clone(),
                peer,
                received: session.received,
                sent: session.sent,
            });
            if session.received > 0 {
                self.spread(peer, room);
            }
        }
    }

    /// What this node just learned from `source`, its other room peers may
    /// lack too: reconcile with them, so a repair spreads hop by hop. At most
    /// once per [`SPREAD_COOLDOWN`] per room: during live traffic a sync also
    /// picks up posts gossip is still delivering, and spreading each of those
    /// would set off syncs across the whole mesh.
    fn spread(&mut self, source: PeerId, room: &Room) {
        if !self.syncs.may_spread(room, now_ms()) {
            return;
        }
        for other in self.room_peers_of(room) {
            if other != source {
                self.start_sync(other, room, SyncTrigger::Spread);
            }
        }
    }

    /// Verifies a page of history (each envelope strictly, as live
    /// traffic) on the event loop and admits it ([`Self::admit_history`]).
    /// Returns how many messages were new. Pushed pages take this way: the
    /// answer to a push says how many were new.
    pub(super) fn apply_history(&mut self, peer: PeerId, room: &Room, envelopes: Vec<Vec<u8>>) -> usize {
        self.admit_history(peer, room, Origin::History, Signed::open_batch(&envelopes))
            .0
    }

    /// Admits a verified page of history (or, `origin` `Recovered`, of
    /// messages fetched back after a refusal): counts what failed
    /// verification against `peer`, and admits each message by the room's
    /// one rule ([`JoinedRoom::admit`]), in the room's order. Returns how
    /// many messages were new and, for a recovery, their envelopes (to pass
    /// on). A room left meanwhile admits nothing.
    ///
    /// [`JoinedRoom::admit`]: crate::node::rooms::JoinedRoom::admit
    fn admit_history(
        &mut self,
        peer: PeerId,
        room: &Room,
        origin: Origin,
        results: Vec<Result<Signed, RejectReason>>,
    ) -> (usize, Vec<Vec<u8>>) {
        let mut opened: Vec<Signed> = Vec::with_capacity(results.len());
        for result in results {
            match result {
                Ok(signed) => opened.push(signed),
                Err(reason) => self.reject(peer, reason),
            }
        }
        // In the room's order, so that grants come before what they allow.
        opened.sort_by_key(|s| (s.body().room_clock().map_or(0, |(_, clock)| clock), s.id()));
        let mut new = 0;
        let mut recovered = Vec::new();
        for signed in opened {
            let envelope = (origin == Origin::Recovered).then(|| signed.envelope().to_vec());
            if self.admit_room_message(origin, peer, room, signed).1 {
                new += 1;
                recovered.extend(envelope);
            }
        }
        if origin == Origin::Recovered {
            self.stats.recovered += new as u64;
        } else {
            self.stats.synced_received += new as u64;
        }
        (new, recovered)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session() -> Session {
        let (reconciler, _) = Reconciler::start(&[]).expect("an empty set reconciles");
        Session {
            started: 0,
            reconciler,
            need: VecDeque::new(),
            in_flight: 0,
            verifying: 0,
            received: 0,
            sent: 0,
        }
    }

    #[test]
    fn leaving_a_room_forgets_its_sync_sessions_and_nothing_else() {
        let (lobby, stage) = (Room::new("lobby").unwrap(), Room::new("stage").unwrap());
        let (a, b) = (PeerId::random(), PeerId::random());
        let mut syncs = Syncs::default();
        for (peer, room) in [(a, &lobby), (b, &lobby), (a, &stage)] {
            syncs.sessions.insert((peer, room.clone()), session());
            syncs.last.insert((peer, room.clone()), 1);
            syncs.spread_at.insert(room.clone(), 1);
        }
        syncs.leave(&lobby);
        assert_eq!(syncs.sessions_of(&lobby), 0);
        assert_eq!(syncs.sessions_of(&stage), 1);
        assert!(syncs.last.keys().all(|(_, r)| *r == stage));
        assert!(!syncs.spread_at.contains_key(&lobby));
        assert!(syncs.spread_at.contains_key(&stage));
    }

    fn reconciler() -> Reconciler {
        Reconciler::start(&[]).expect("an empty set reconciles").0
    }

    /// Two peer ids, the smaller first.
    fn ordered_pair() -> (PeerId, PeerId) {
        let (a, b) = (PeerId::random(), PeerId::random());
        if a < b { (a, b) } else { (b, a) }
    }

    #[test]
    fn when_both_sides_see_each_other_only_the_smaller_id_starts() {
        let (small, large) = ordered_pair();
        let room = Room::new("lobby").unwrap();
        let syncs = Syncs::default();
        assert!(syncs.may_start(small, large, &room, SyncTrigger::Appeared, 0));
        assert!(!syncs.may_start(large, small, &room, SyncTrigger::Appeared, 0));
        // Asked for, or spreading, either side starts.
        assert!(syncs.may_start(large, small, &room, SyncTrigger::Asked, 0));
        assert!(syncs.may_start(large, small, &room, SyncTrigger::Spread, 0));
    }

    #[test]
    fn routine_syncs_keep_the_cooldown_and_the_per_room_limit() {
        let (local, peer) = ordered_pair();
        let room = Room::new("lobby").unwrap();
        let mut syncs = Syncs::default();
        syncs.begin(peer, &room, reconciler(), 1_000);
        assert!(
            !syncs.may_start(local, peer, &room, SyncTrigger::Asked, 1_000),
            "one session per pair"
        );
        syncs.sessions.clear();
        let cooldown = ms(PEER_COOLDOWN);
        assert!(!syncs.may_start(local, peer, &room, SyncTrigger::Routine, 1_000 + cooldown - 1));
        assert!(syncs.may_start(local, peer, &room, SyncTrigger::Routine, 1_000 + cooldown));
        assert!(
            syncs.may_start(local, peer, &room, SyncTrigger::Appeared, 1_001),
            "an arrival ignores the cooldown"
        );
        for _ in 0..MAX_SESSIONS_PER_ROOM {
            syncs.begin(PeerId::random(), &room, reconciler(), 1_000);
        }
        let other = PeerId::random();
        assert!(!syncs.may_start(local, other, &room, SyncTrigger::Routine, 1_000_000));
        assert!(!syncs.may_start(local, other, &room, SyncTrigger::Spread, 1_000_000));
        assert!(syncs.may_start(local, other, &room, SyncTrigger::Asked, 1_000_000));
        // The global limit holds even for what the application asks.
        for i in 0..MAX_SESSIONS {
            syncs.begin(
                PeerId::random(),
                &Room::new(format!("r{i}")).unwrap(),
                reconciler(),
                1_000,
            );
        }
        assert!(!syncs.may_start(local, other, &room, SyncTrigger::Asked, 1_000_000));
    }

    #[test]
    fn the_periodic_sync_comes_an_interval_after_start_and_old_sessions_expire() {
        let mut syncs = Syncs::default();
        let interval = Duration::from_secs(60);
        assert!(!syncs.periodic_due(5_000, interval), "joining reconciled already");
        assert!(!syncs.periodic_due(64_999, interval));
        assert!(syncs.periodic_due(65_000, interval));
        assert!(!syncs.periodic_due(65_001, interval));
        assert!(syncs.periodic_due(125_000, interval));
        let room = Room::new("lobby").unwrap();
        syncs.begin(PeerId::random(), &room, reconciler(), 200_000);
        syncs.periodic_due(200_000 + ms(SESSION_TIMEOUT) - 1, interval);
        assert_eq!(syncs.sessions_of(&room), 1);
        syncs.periodic_due(200_000 + ms(SESSION_TIMEOUT), interval);
        assert_eq!(syncs.sessions_of(&room), 0, "a stuck session frees its slot");
    }

    #[test]
    fn a_room_spreads_a_repair_at_most_once_per_cooldown() {
        let mut syncs = Syncs::default();
        let (lobby, stage) = (Room::new("lobby").unwrap(), Room::new("stage").unwrap());
        assert!(syncs.may_spread(&lobby, 10_000));
        assert!(!syncs.may_spread(&lobby, 10_000 + ms(SPREAD_COOLDOWN) - 1));
        assert!(syncs.may_spread(&stage, 10_001), "per room");
        assert!(syncs.may_spread(&lobby, 10_000 + ms(SPREAD_COOLDOWN)));
    }
}
