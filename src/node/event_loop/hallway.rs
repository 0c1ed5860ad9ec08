//! The event loop's side of rooms: posting with extras, room operations,
//! checking what arrives on a room's topic, presence, and reading a room
//! back. The rules are in `crate::room` (and presence in `node::presence`);
//! this is the IO around them.

use libp2p::PeerId;
use libp2p::gossipsub::MessageAcceptance;
use tokio::sync::oneshot;

use super::{AfterFlush, EventLoop, check_text};
use crate::envelope::{Signed, check_time};
use crate::id::{MessageId, RejectReason, Room};
use crate::message::{Body, HallwayPost};
use crate::node::presence::{self, Change};
use crate::node::{Event, NodeError, Participant, PostOptions, RoomPost, RoomRules};
use crate::protocol::MAX_MENTIONS;
use crate::room::{Presence, RoomAction, RoomOp, RoomState};
use crate::store::{Direction, Inserted, now_ms};

/// Operations kept per room while they wait for an earlier operation that
/// gives their author the right (gossip may deliver a moderator's delete
/// before the host's grant). Beyond this, the oldest is dropped; history
/// sync brings it back later if it is valid.
const MAX_PARKED: usize = 256;

impl EventLoop {
    /// The rules of a room, loaded from the log the first time.
    pub(super) fn room_state(&mut self, room: &Room) -> &mut RoomState {
        if !self.room_states.contains_key(room) {
            let state = self.load_room(room);
            self.room_states.insert(room.clone(), state);
        }
        self.room_states.get_mut(room).expect("just inserted")
    }

    /// Rebuilds a room's rules from its messages in the log.
    pub(super) fn load_room(&self, room: &Room) -> RoomState {
        match self.store.room(room, usize::MAX) {
            Ok(messages) => state_of(room, &messages),
            Err(e) => {
                tracing::error!(%room, "cannot read the room's log: {e}");
                RoomState::new(room.clone())
            }
        }
    }

    /// Joins a hosted room of this node's.
    pub(super) fn host(&mut self, name: &str) -> Result<Room, NodeError> {
        let room = Room::hosted(name, &self.local)?;
        self.join(&room)?;
        Ok(room)
    }

    /// Posts to a room, with a reply, mentions or a question mark.
    pub(super) fn post(
        &mut self,
        room: Room,
        text: String,
        options: PostOptions,
        reply: oneshot::Sender<Result<MessageId, NodeError>>,
    ) {
        if let Err(e) = check_text(&text) {
            let _ = reply.send(Err(e));
            return;
        }
        if self.rooms.get(&room).is_none() {
            let _ = reply.send(Err(NodeError::NotJoined(room)));
            return;
        }
        if !self.rooms.has_room_for_unsent(&room) {
            let n = self.rooms.unsent_len(&room);
            let _ = reply.send(Err(NodeError::Backlog(n, room)));
            return;
        }
        let mentions = self.mentions(&room, &text, &options.mentions);
        let local = self.local;
        let state = self.room_state(&room);
        let now = now_ms();
        let clock = state.next_clock(now);
        if let Err(reason) = state.check_live_post(&local, clock, options.question) {
            let _ = reply.send(Err(NodeError::NotAllowed { room, reason }));
            return;
        }
        if let Some(target) = options.reply_to
            && !state.knows_post(&target)
        {
            let _ = reply.send(Err(NodeError::UnknownMessage(target)));
            return;
        }
        let body = Body::Hallway(HallwayPost {
            room: room.clone(),
            text,
            time_ms: now,
            nick: self.nick.clone(),
            clock,
            reply_to: options.reply_to,
            mentions,
            question: options.question,
        });
        self.publish_own(room, body, reply);
        self.stats.posts_sent += 1;
    }

    /// Signs, checks, logs and publishes a room operation of this node's.
    pub(super) fn room_op(
        &mut self,
        room: Room,
        action: RoomAction,
        reply: oneshot::Sender<Result<MessageId, NodeError>>,
    ) {
        if self.rooms.get(&room).is_none() {
            let _ = reply.send(Err(NodeError::NotJoined(room)));
            return;
        }
        if let RoomAction::Edit { text, .. } = &action
            && let Err(e) = check_text(text)
        {
            let _ = reply.send(Err(e));
            return;
        }
        let local = self.local;
        let state = self.room_state(&room);
        let target = match &action {
            RoomAction::Delete(t) | RoomAction::Edit { target: t, .. } | RoomAction::Question { target: t, .. } => {
                Some(*t)
            }
            RoomAction::React(r) => Some(r.target),
            _ => None,
        };
        if let Some(t) = target
            && !state.knows_post(&t)
        {
            let _ = reply.send(Err(NodeError::UnknownMessage(t)));
            return;
        }
        let now = now_ms();
        let clock = state.next_clock(now);
        if let Err(reason) = state.check_op(&local, clock, &action) {
            let _ = reply.send(Err(NodeError::NotAllowed { room, reason }));
            return;
        }
        let body = Body::RoomOp(RoomOp {
            room: room.clone(),
            clock,
            time_ms: now,
            action,
        });
        self.publish_own(room, body, reply);
    }

    /// Logs a post or operation of this node's, applies it, and publishes
    /// it (or queues it until the room has peers); replies once it is on disk.
    fn publish_own(&mut self, room: Room, body: Body, reply: oneshot::Sender<Result<MessageId, NodeError>>) {
        let signed = Signed::sign(&self.identity, body);
        if let Err(e) = self.store.insert(&signed, Direction::Sent, &self.local) {
            let _ = reply.send(Err(e.into()));
            return;
        }
        self.apply_room_message(&room, &signed);
        let unsent = super::Unsent {
            id: signed.id(),
            envelope: signed.envelope().to_vec(),
        };
        let id = unsent.id;
        if self.rooms.unsent_len(&room) > 0 {
            // Keep posting order behind posts already waiting.
            self.rooms.push_unsent(&room, unsent);
            self.send_unsent(&room);
        } else if let Err(unsent) = self.publish(&room, unsent) {
            self.rooms.push_unsent(&room, unsent);
        }
        self.commit.push(AfterFlush::Sent { id, reply });
    }

    /// Feeds a logged room message to the room's rules, and drops the text
    /// of posts that are deleted now.
    fn apply_room_message(&mut self, room: &Room, signed: &Signed) {
        let state = self.room_state(room);
        add_to_rules(state, signed);
        let forget: Vec<(u64, MessageId)> = match signed.body() {
            Body::RoomOp(op) => {
                match &op.action {
                    RoomAction::Delete(target) if state.is_deleted(target) => {
                        vec![(state.post_clock(target).unwrap_or_default(), *target)]
                    }
                    // A change of rights can decide older deletes.
                    RoomAction::SetRole { .. } | RoomAction::Remove { .. } => state
                        .deleted_posts()
                        .into_iter()
                        .map(|t| (state.post_clock(&t).unwrap_or_default(), t))
                        .collect(),
                    _ => Vec::new(),
                }
            }
            _ => Vec::new(),
        };
        for (clock, target) in forget {
            if let Err(e) = self.store.forget(room, clock, &target) {
                tracing::error!(%room, "cannot drop a deleted post: {e}");
            }
            self.unflushed = true;
        }
    }

    /// Checks a verified message that arrived on `room`'s topic.
    pub(super) fn check_room_message(&mut self, source: PeerId, room: Room, signed: Signed) -> MessageAcceptance {
        let now = now_ms();
        let window = self.clock_window_ms;
        let author = signed.author();
        let (msg_room, time_ms) = match signed.body() {
            Body::Hallway(p) => (&p.room, p.time_ms),
            Body::RoomOp(op) => (&op.room, op.time_ms),
            Body::Presence(p) => (&p.room, p.time_ms),
            _ => {
                self.reject(source, RejectReason::WrongKind);
                return MessageAcceptance::Reject;
            }
        };
        if *msg_room != room {
            self.reject(source, RejectReason::WrongRoom);
            return MessageAcceptance::Reject;
        }
        if let Err(reason) = check_time(time_ms, now, window, true) {
            // Not penalised: an honest forwarder's clock may differ from ours.
            self.reject(source, reason);
            return MessageAcceptance::Ignore;
        }
        if let Body::Presence(p) = signed.body() {
            return self.observe_presence(source, author, p.clone());
        }
        let within = match signed.body() {
            Body::Hallway(_) => self.limiters.posts.allow(&author, now),
            _ => self.limiters.ops.allow(&author, now),
        };
        if !within {
            // The author floods; the forwarder is at fault only if it is the author.
            self.violation(source, source == author);
            return MessageAcceptance::Ignore;
        }
        if signed
            .body()
            .room_clock()
            .is_some_and(|(_, c)| c > now.saturating_add(window))
        {
            self.reject(source, RejectReason::FutureTime);
            return MessageAcceptance::Ignore;
        }
        let state = self.room_state(&room);
        let verdict = match signed.body() {
            Body::Hallway(p) if state.is_deleted(&signed.id()) => Err(None),
            Body::Hallway(p) => state.check_live_post(&author, p.clock, p.question).map_err(Some),
            Body::RoomOp(op) => state.check_op(&author, op.clock, &op.action).map_err(Some),
            _ => Ok(()),
        };
        match verdict {
            Ok(()) => {}
            Err(None) => {
                self.stats.duplicates += 1;
                return MessageAcceptance::Ignore;
            }
            Err(Some(reason)) => {
                // Decided by what this node knows of the room: another node
                // may know more, so the forwarder is not penalised.
                if matches!(reason, RejectReason::NotAllowed | RejectReason::NotModerator)
                    && matches!(signed.body(), Body::RoomOp(_))
                {
                    self.park(&room, signed);
                }
                self.reject(source, reason);
                return MessageAcceptance::Ignore;
            }
        }
        match self.log_room_message(&room, &signed) {
            Ok(true) => {
                self.show_room_message(&room, &signed);
                self.retry_parked(&room);
                MessageAcceptance::Accept
            }
            Ok(false) => {
                // Valid, and new to gossip here (gossipsub drops what it has
                // seen): this node has it from history sync. Forward it, so
                // that peers that depend on this node for it get it.
                self.stats.duplicates += 1;
                MessageAcceptance::Accept
            }
            Err(e) => {
                tracing::error!("cannot log post: {e}");
                MessageAcceptance::Ignore
            }
        }
    }

    /// Logs a room message this node accepted and applies it to the room's
    /// rules; `Ok(true)` if it was new.
    fn log_room_message(&mut self, room: &Room, signed: &Signed) -> Result<bool, crate::store::StoreError> {
        match self.store.insert(signed, Direction::Received, &self.local)? {
            Inserted::New(_) => {
                self.unflushed = true;
                self.apply_room_message(room, signed);
                Ok(true)
            }
            Inserted::Duplicate => Ok(false),
        }
    }

    pub(super) fn show_room_message(&mut self, room: &Room, signed: &Signed) {
        match signed.body() {
            Body::Hallway(post) => {
                self.stats.hallway_received += 1;
                self.emit(Event::Hallway {
                    id: signed.id(),
                    from: signed.author(),
                    post: post.clone(),
                });
            }
            Body::RoomOp(op) => {
                self.stats.room_ops_received += 1;
                self.emit(Event::RoomOp {
                    room: room.clone(),
                    id: signed.id(),
                    from: signed.author(),
                    action: op.action.clone(),
                });
            }
            _ => {}
        }
    }

    fn park(&mut self, room: &Room, signed: Signed) {
        let parked = self.parked.entry(room.clone()).or_default();
        if parked.iter().any(|s| s.id() == signed.id()) {
            return;
        }
        if parked.len() >= MAX_PARKED {
            parked.pop_front();
        }
        parked.push_back(signed);
    }

    /// Applies parked operations that the rules accept now.
    pub(super) fn retry_parked(&mut self, room: &Room) {
        loop {
            let Some(parked) = self.parked.get(room) else {
                return;
            };
            let state = self.room_states.get(room);
            let ready = parked.iter().position(|s| match (s.body(), state) {
                (Body::RoomOp(op), Some(state)) => state.check_op(&s.author(), op.clock, &op.action).is_ok(),
                _ => false,
            });
            let Some(i) = ready else {
                return;
            };
            let Some(signed) = self.parked.get_mut(room).and_then(|p| p.remove(i)) else {
                return;
            };
            if let Ok(true) = self.log_room_message(room, &signed) {
                self.show_room_message(room, &signed);
            }
        }
    }

    /// Stores a message from history sync if the room's rules accept it.
    /// Returns whether it was new. Operations the rules refuse for now are
    /// parked (a later page may hold the grant they depend on).
    pub(super) fn accept_history(&mut self, room: &Room, signed: Signed) -> bool {
        let author = signed.author();
        let state = self.room_state(room);
        let verdict = match signed.body() {
            Body::Hallway(p) => {
                // Known first, so that a delete by its author counts.
                state.add_post(signed.id(), author, p.clock, p.question);
                if state.is_deleted(&signed.id()) {
                    return false;
                }
                state.check_post(&author, p.clock, p.question)
            }
            Body::RoomOp(op) => state.check_op(&author, op.clock, &op.action),
            _ => Err(RejectReason::WrongKind),
        };
        if let Err(reason) = verdict {
            if matches!(signed.body(), Body::RoomOp(_)) {
                self.park(room, signed);
            } else {
                tracing::debug!(%room, %reason, "history post refused by the room's rules");
            }
            return false;
        }
        self.log_room_message(room, &signed).unwrap_or_else(|e| {
            tracing::error!("cannot log a synced message: {e}");
            false
        })
    }

    /// The mentions of a post: those given, plus `@peer-id` and `@nickname`
    /// words (a nickname only if exactly one participant present has it).
    fn mentions(&self, room: &Room, text: &str, given: &[PeerId]) -> Vec<PeerId> {
        let mut out: Vec<PeerId> = Vec::new();
        let words = text
            .split_whitespace()
            .filter_map(|w| w.strip_prefix('@'))
            .map(|w| w.trim_end_matches(|c: char| c.is_ascii_punctuation()));
        let book = self.presence.get(room);
        for word in words {
            let found = match word.parse::<PeerId>() {
                Ok(peer) => Some(peer),
                Err(_) => book.and_then(|b| match b.by_nick(word).as_slice() {
                    [one] => Some(*one),
                    _ => None,
                }),
            };
            if let Some(peer) = found {
                out.push(peer);
            }
        }
        out.extend_from_slice(given);
        out.retain(|p| crate::id::key_of(p).is_some());
        let mut seen = std::collections::HashSet::new();
        out.retain(|p| seen.insert(*p));
        out.truncate(MAX_MENTIONS);
        out
    }

    // ---- presence ------------------------------------------------------------

    fn observe_presence(&mut self, source: PeerId, author: PeerId, p: Presence) -> MessageAcceptance {
        if !self.presence_on || author == self.local {
            return MessageAcceptance::Ignore;
        }
        let book = self.presence.entry(p.room.clone()).or_default();
        match book.observe(author, p.nick.clone(), p.ttl_s, p.leaving, now_ms()) {
            Ok(Change::Same) => MessageAcceptance::Accept,
            Ok(change) => {
                self.emit(Event::Presence {
                    room: p.room,
                    peer: author,
                    nick: p.nick,
                    present: change == Change::Here,
                });
                MessageAcceptance::Accept
            }
            Err(reason) => {
                self.reject(source, reason);
                MessageAcceptance::Ignore
            }
        }
    }

    /// Announces this node in a room (or its leaving). Returns false if the
    /// room has no peers yet.
    pub(super) fn announce(&mut self, room: &Room, leaving: bool) -> bool {
        let present = self.presence.get(room).map_or(0, presence::Book::len) + 1;
        let interval = presence::interval_s(present);
        let body = Body::Presence(Presence {
            room: room.clone(),
            time_ms: now_ms(),
            nick: self.nick.clone(),
            ttl_s: 3 * interval,
            leaving,
        });
        let signed = Signed::sign(&self.identity, body);
        let unsent = super::Unsent {
            id: signed.id(),
            envelope: signed.envelope().to_vec(),
        };
        if self.publish(room, unsent).is_err() {
            return false;
        }
        if let Some(book) = self.presence.get_mut(room) {
            book.last_sent_ms = now_ms();
            book.next_due_ms = book.last_sent_ms + u64::from(interval) * 1000;
        }
        true
    }

    /// Announces where due and forgets participants whose presence expired.
    pub(super) fn presence_tick(&mut self) {
        if !self.presence_on {
            return;
        }
        let now = now_ms();
        let joined: Vec<Room> = self.rooms.iter().map(|(room, _)| room.clone()).collect();
        for room in joined {
            if self.presence.get(&room).is_none_or(|b| b.next_due_ms == 0) {
                // Joined: the first announcement after a random delay.
                let peers = self.room_peers_of(&room).len();
                let book = self.presence.entry(room.clone()).or_default();
                let window = crate::node::presence::jitter_window_ms(peers.max(book.len()) + 1);
                book.next_due_ms = now + super::random_u64() % window;
            }
            let book = self.presence.entry(room.clone()).or_default();
            if book.next_due_ms <= now {
                self.announce(&room, false);
            }
            let gone = self.presence.get_mut(&room).map(|b| b.expire(now)).unwrap_or_default();
            for peer in gone {
                self.emit(Event::Presence {
                    room: room.clone(),
                    peer,
                    nick: None,
                    present: false,
                });
            }
        }
    }

    // ---- reading a room ------------------------------------------------------

    /// The posts a room shows, in its order.
    pub(super) fn room_view(&mut self, room: &Room, limit: usize) -> Result<Vec<RoomPost>, NodeError> {
        let messages = self.store.room(room, usize::MAX)?;
        let local = self.local;
        // A room left (or ended): its rules from the messages just read.
        let temporary;
        let state = if self.rooms.get(room).is_some() {
            self.room_state(room)
        } else {
            temporary = state_of(room, &messages);
            &temporary
        };
        let mut out: Vec<RoomPost> = messages
            .into_iter()
            .filter_map(|m| {
                let id = m.message.id();
                let Body::Hallway(p) = m.message.body() else {
                    return None;
                };
                if !state.is_visible(&id) {
                    return None;
                }
                let author = m.message.author();
                let edited = state.edited_text(&id);
                Some(RoomPost {
                    id,
                    author,
                    nick: p.nick.clone(),
                    role: state.role(&author),
                    text: edited.unwrap_or(&p.text).to_owned(),
                    edited: edited.is_some(),
                    clock: p.clock,
                    time_ms: p.time_ms,
                    reply_to: p.reply_to,
                    mentions: p.mentions.clone(),
                    question: state.question_state(&id),
                    reactions: state
                        .reactions(&id)
                        .into_iter()
                        .map(|(emoji, who)| (emoji, who.len()))
                        .collect(),
                    mine: author == local,
                })
            })
            .collect();
        let skip = out.len().saturating_sub(limit);
        out.drain(..skip);
        Ok(out)
    }

    pub(super) fn room_rules(&mut self, room: &Room) -> RoomRules {
        let temporary;
        let state = if self.rooms.get(room).is_some() {
            self.room_state(room)
        } else {
            temporary = self.load_room(room);
            &temporary
        };
        RoomRules {
            host: state.host(),
            mode: state.mode(),
            roles: state.roles().into_iter().map(|(p, r)| (p.to_string(), r)).collect(),
            removed: state.removed(),
        }
    }

    pub(super) fn who(&mut self, room: &Room) -> Result<Vec<Participant>, NodeError> {
        if self.rooms.get(room).is_none() {
            return Err(NodeError::NotJoined(room.clone()));
        }
        let list = self.presence.get(room).map(presence::Book::list).unwrap_or_default();
        let local = self.local;
        let nick = self.nick.clone();
        let state = self.room_state(room);
        let mut out = vec![Participant {
            peer: local,
            nick,
            role: state.role(&local),
            me: true,
        }];
        for (peer, p) in list {
            if state.is_removed(&peer) {
                continue;
            }
            out.push(Participant {
                peer,
                nick: p.nick,
                role: state.role(&peer),
                me: false,
            });
        }
        out.sort_by(|a, b| b.role.cmp(&a.role).then(b.me.cmp(&a.me)).then(a.peer.cmp(&b.peer)));
        Ok(out)
    }
}

/// A room's rules rebuilt from its logged messages.
fn state_of(room: &Room, messages: &[crate::store::LoggedMessage]) -> RoomState {
    let mut state = RoomState::new(room.clone());
    for m in messages {
        add_to_rules(&mut state, &m.message);
    }
    state
}

/// Feeds a logged post or operation of a room to its rules (anything else is
/// ignored): what rebuilding a room from its log and applying a new message
/// both do. The rules take plain values, so `crate::room` knows nothing of
/// envelopes.
fn add_to_rules(state: &mut RoomState, message: &Signed) {
    let (id, author) = (message.id(), message.author());
    match message.body() {
        Body::Hallway(p) => {
            state.add_post(id, author, p.clock, p.question);
        }
        Body::RoomOp(op) => {
            state.add_op(id, author, op.clock, op.action.clone());
        }
        _ => {}
    }
}
