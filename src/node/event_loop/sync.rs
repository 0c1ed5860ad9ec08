//! The event loop's side of history sync (`/backchannel/sync/1.0.0`): when
//! to reconcile a room with a peer, moving the negentropy messages, fetching
//! what this node lacks in pages, pushing what the peer lacks, and answering
//! peers. The reconciliation itself and every bound are in `crate::sync`.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use libp2p::PeerId;
use libp2p::request_response::{self, OutboundRequestId, ResponseChannel};
use prost::Message as _;

use super::EventLoop;
use crate::message::{MessageId, RejectReason, Room, Signed, check_time};
use crate::node::Event;
use crate::store::now_ms;
use crate::sync::{MAX_FETCH_IDS, MAX_PAGE_BYTES, Reconciler, pages, respond};
use crate::wire::pb;

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

/// Peers whose request rates are tracked at most.
const MAX_TRACKED_PEERS: usize = 4096;

/// Why a sync starts: it decides which limits apply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Why {
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
    last: HashMap<(PeerId, Room), Instant>,
    next_periodic: Option<Instant>,
    /// When each room last spread a repair.
    spread_at: HashMap<Room, Instant>,
}

enum Asked {
    Reconcile,
    Fetch,
    Push(usize),
}

struct Session {
    started: Instant,
    reconciler: Reconciler,
    need: VecDeque<MessageId>,
    in_flight: usize,
    received: usize,
    sent: usize,
}

impl EventLoop {
    /// Starts reconciling `room` with `peer`, unless one runs already or
    /// too many run, or (depending on why) the pair synced recently.
    pub(super) fn start_sync(&mut self, peer: PeerId, room: &Room, why: Why) -> bool {
        let key = (peer, room.clone());
        let syncs = &self.syncs;
        let per_room = syncs.sessions.keys().filter(|(_, r)| r == room).count();
        let recent = syncs.last.get(&key).is_some_and(|t| t.elapsed() < PEER_COOLDOWN);
        let limited = match why {
            // Both sides see each other appear; one reconciliation serves
            // both (the initiator fetches and pushes), so only the side with
            // the smaller peer id starts it.
            Why::Appeared if self.local > peer => true,
            Why::Asked => false,
            Why::Appeared | Why::Spread => per_room >= MAX_SESSIONS_PER_ROOM,
            Why::Routine => recent || per_room >= MAX_SESSIONS_PER_ROOM,
        };
        if syncs.sessions.contains_key(&key)
            || syncs.sessions.len() >= MAX_SESSIONS
            || limited
            || self.rooms.get(room).is_none()
        {
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
        if self.syncs.last.len() >= MAX_TRACKED_PEERS {
            self.syncs.last.retain(|_, t| t.elapsed() < PEER_COOLDOWN);
        }
        self.syncs.last.insert(key.clone(), Instant::now());
        self.syncs.sessions.insert(
            key,
            Session {
                started: Instant::now(),
                reconciler,
                need: VecDeque::new(),
                in_flight: 0,
                received: 0,
                sent: 0,
            },
        );
        self.stats.syncs_started += 1;
        self.send_sync(peer, room, pb::sync_request::Kind::Reconcile(first), Asked::Reconcile);
        true
    }

    /// The room's history set: (clock, id) within the window and depth.
    fn history_keys(&self, room: &Room) -> Result<Vec<(u64, MessageId)>, crate::store::StoreError> {
        let min_clock = now_ms().saturating_sub(self.history_window_ms);
        self.store.room_keys(room, min_clock, self.history_max)
    }

    fn send_sync(&mut self, peer: PeerId, room: &Room, kind: pb::sync_request::Kind, asked: Asked) {
        let request = pb::SyncRequest {
            room: room.as_str().to_owned(),
            kind: Some(kind),
        }
        .encode_to_vec();
        self.stats.sync_bytes_out += request.len() as u64;
        let id = self.swarm.behaviour_mut().sync.send_request(&peer, request);
        self.syncs.requests.insert(id, (peer, room.clone(), asked));
    }

    /// Syncs each joined room with a random peer of it, every `sync_interval`.
    pub(super) fn periodic_sync(&mut self) {
        let now = Instant::now();
        self.syncs
            .sessions
            .retain(|_, s| now.duration_since(s.started) < SESSION_TIMEOUT);
        // The first periodic sync comes one interval after start: joining
        // already reconciled with the peers present.
        let next = *self.syncs.next_periodic.get_or_insert(now + self.sync_interval);
        if now < next {
            return;
        }
        self.syncs.next_periodic = Some(now + self.sync_interval);
        let rooms: Vec<(Room, libp2p::gossipsub::TopicHash)> = self
            .rooms
            .iter()
            .map(|(room, state)| (room.clone(), state.topic.hash()))
            .collect();
        for (room, _) in rooms {
            let peers = self.room_peers_of(&room);
            if peers.is_empty() {
                continue;
            }
            let mut pick = [0u8; 8];
            let _ = getrandom::fill(&mut pick);
            let peer = peers[(u64::from_le_bytes(pick) % peers.len() as u64) as usize];
            self.start_sync(peer, &room, Why::Routine);
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
            E::OutboundFailure { request_id, error, .. } => {
                if let Some((peer, room, _)) = self.syncs.requests.remove(&request_id) {
                    tracing::debug!(%peer, %room, "sync request failed: {error}");
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
        use pb::sync_response::Kind as R;
        self.stats.sync_bytes_in += request.len() as u64;
        let answer = self.answer_sync(peer, &request);
        let response = pb::SyncResponse {
            kind: Some(answer.unwrap_or_else(|refusal| R::Refused(refusal as i32))),
        }
        .encode_to_vec();
        self.stats.sync_bytes_out += response.len() as u64;
        let _ = self.swarm.behaviour_mut().sync.send_response(channel, response);
    }

    fn answer_sync(&mut self, peer: PeerId, request: &[u8]) -> Result<pb::sync_response::Kind, pb::SyncRefusal> {
        use pb::sync_request::Kind as Q;
        use pb::sync_response::Kind as R;
        if !self.limiters.sync.allow(&peer, now_ms()) {
            self.violation(peer, true);
            return Err(pb::SyncRefusal::Busy);
        }
        let Ok(request) = pb::SyncRequest::decode(request) else {
            self.reject(peer, RejectReason::Malformed);
            return Err(pb::SyncRefusal::Invalid);
        };
        let room = match Room::new(request.room) {
            Ok(room) if self.rooms.get(&room).is_some() => room,
            Ok(_) => return Err(pb::SyncRefusal::NotInRoom),
            Err(_) => {
                self.reject(peer, RejectReason::InvalidField);
                return Err(pb::SyncRefusal::Invalid);
            }
        };
        match request.kind {
            Some(Q::Reconcile(query)) => {
                let keys = self.history_keys(&room).map_err(|_| pb::SyncRefusal::Unspecified)?;
                match respond(&keys, &query) {
                    Ok(answer) => Ok(R::Reconcile(answer)),
                    Err(e) => {
                        tracing::debug!(%peer, "invalid reconciliation: {e}");
                        self.reject(peer, RejectReason::Malformed);
                        Err(pb::SyncRefusal::Invalid)
                    }
                }
            }
            Some(Q::Fetch(list)) => {
                if list.ids.len() > MAX_FETCH_IDS {
                    self.reject(peer, RejectReason::Oversize);
                    return Err(pb::SyncRefusal::Invalid);
                }
                let min_clock = now_ms().saturating_sub(self.history_window_ms);
                let mut envelopes = Vec::new();
                let mut bytes = 0;
                for id in &list.ids {
                    let Ok(id) = <[u8; 32]>::try_from(id.as_slice()) else {
                        self.reject(peer, RejectReason::InvalidField);
                        return Err(pb::SyncRefusal::Invalid);
                    };
                    // Only this room's posts and operations within the
                    // window: never a DM or another room's message.
                    let Ok(Some(m)) = self.store.get(&MessageId::from_bytes(id)) else {
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
                Ok(R::Page(pb::EnvelopeList { envelopes }))
            }
            Some(Q::Push(list)) => {
                let received = self.apply_history(peer, &room, list.envelopes);
                if received > 0 {
                    self.emit(Event::Synced {
                        room: room.clone(),
                        peer,
                        received,
                        sent: 0,
                    });
                    self.spread(peer, &room);
                }
                Ok(R::Pushed(received as u32))
            }
            None => {
                self.reject(peer, RejectReason::UnknownKind);
                Err(pb::SyncRefusal::Invalid)
            }
        }
    }

    fn handle_sync_response(&mut self, peer: PeerId, request_id: OutboundRequestId, response: Vec<u8>) {
        use pb::sync_response::Kind as R;
        self.stats.sync_bytes_in += response.len() as u64;
        let Some((_, room, asked)) = self.syncs.requests.remove(&request_id) else {
            return;
        };
        let key = (peer, room.clone());
        let kind = match pb::SyncResponse::decode(response.as_slice()) {
            Ok(pb::SyncResponse { kind: Some(kind) }) => kind,
            _ => {
                self.reject(peer, RejectReason::Malformed);
                return self.end_sync(peer, &room, false);
            }
        };
        match (asked, kind) {
            (Asked::Reconcile, R::Reconcile(answer)) => {
                let Some(session) = self.syncs.sessions.get_mut(&key) else {
                    return;
                };
                match session.reconciler.step(&answer) {
                    Ok(Some(next)) => {
                        self.send_sync(peer, &room, pb::sync_request::Kind::Reconcile(next), Asked::Reconcile)
                    }
                    Ok(None) => {
                        session.need = std::mem::take(&mut session.reconciler.need).into();
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
            (Asked::Fetch, R::Page(page)) => {
                let received = self.apply_history(peer, &room, page.envelopes);
                if let Some(session) = self.syncs.sessions.get_mut(&key) {
                    session.in_flight = session.in_flight.saturating_sub(1);
                    session.received += received;
                }
                self.pump(peer, &room);
            }
            (Asked::Push(n), R::Pushed(_)) => {
                if let Some(session) = self.syncs.sessions.get_mut(&key) {
                    session.in_flight = session.in_flight.saturating_sub(1);
                    session.sent += n;
                }
                self.pump(peer, &room);
            }
            (_, R::Refused(code)) => {
                tracing::debug!(%peer, %room, code, "sync refused");
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
            self.send_sync(
                peer,
                room,
                pb::sync_request::Kind::Push(pb::EnvelopeList { envelopes: page }),
                Asked::Push(n),
            );
        }
    }

    /// Keeps up to [`MAX_IN_FLIGHT`] fetches going; ends the session when
    /// nothing is left.
    fn pump(&mut self, peer: PeerId, room: &Room) {
        let key = (peer, room.clone());
        loop {
            let Some(session) = self.syncs.sessions.get_mut(&key) else {
                return;
            };
            if session.need.is_empty() {
                if session.in_flight == 0 {
                    self.end_sync(peer, room, true);
                }
                return;
            }
            if session.in_flight >= MAX_IN_FLIGHT {
                return;
            }
            let n = session.need.len().min(MAX_FETCH_IDS);
            let ids: Vec<Vec<u8>> = session.need.drain(..n).map(|id| id.as_bytes().to_vec()).collect();
            session.in_flight += 1;
            self.send_sync(
                peer,
                room,
                pb::sync_request::Kind::Fetch(pb::IdList { ids }),
                Asked::Fetch,
            );
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
        let now = Instant::now();
        if self
            .syncs
            .spread_at
            .get(room)
            .is_some_and(|t| now.duration_since(*t) < SPREAD_COOLDOWN)
        {
            return;
        }
        self.syncs.spread_at.insert(room.clone(), now);
        for other in self.room_peers_of(room) {
            if other != source {
                self.start_sync(other, room, Why::Spread);
            }
        }
    }

    /// Verifies a page of history (each envelope strictly) and stores
    /// what the room's rules accept, in the room's order. Returns how many
    /// messages were new.
    pub(super) fn apply_history(&mut self, peer: PeerId, room: &Room, envelopes: Vec<Vec<u8>>) -> usize {
        let now = now_ms();
        let window = self.clock_window_ms;
        let mut accepted: Vec<(u64, Signed)> = Vec::with_capacity(envelopes.len());
        for opened in Signed::open_batch(&envelopes) {
            let signed = match opened {
                Ok(signed) => signed,
                Err(reason) => {
                    self.reject(peer, reason);
                    continue;
                }
            };
            let (msg_room, clock, time_ms) = match signed.body() {
                crate::message::Body::Hallway(p) => (&p.room, p.clock, p.time_ms),
                crate::message::Body::RoomOp(op) => (&op.room, op.clock, op.time_ms),
                _ => {
                    self.reject(peer, RejectReason::WrongKind);
                    continue;
                }
            };
            if msg_room != room {
                self.reject(peer, RejectReason::WrongRoom);
                continue;
            }
            // History is old by nature; only the future is refused.
            if let Err(reason) =
                check_time(time_ms, now, window, false).and_then(|()| check_time(clock, now, window, false))
            {
                self.reject(peer, reason);
                continue;
            }
            if self.blocked.contains(&signed.author()) {
                self.drop_blocked(signed.author());
                continue;
            }
            accepted.push((clock, signed));
        }
        accepted.sort_by_key(|(clock, s)| (*clock, s.id()));
        let mut new = 0;
        let live_since = now.saturating_sub(window);
        for (clock, signed) in accepted {
            // A recent message is one gossip lost or has not delivered yet:
            // shown like a live one. Older history is reported in bulk
            // (`Event::Synced`) and read with `Handle::room_view`.
            let show = (clock >= live_since).then(|| signed.clone());
            if self.accept_history(room, signed) {
                new += 1;
                if let Some(signed) = show {
                    self.show_room_message(room, &signed);
                }
            }
        }
        self.retry_parked(room);
        self.stats.synced_received += new as u64;
        new
    }
}
