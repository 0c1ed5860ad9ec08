//! The event loop's side of rooms: posting with extras, room operations,
//! checking what arrives on a room's topic, presence, and reading a room
//! back. The rules are in `crate::room` (and presence in `node::presence`);
//! this is the IO around them.

use libp2p::PeerId;
use libp2p::gossipsub::MessageAcceptance;
use tokio::sync::oneshot;

use super::{AfterFlush, EventLoop, SentReply, check_text};
use crate::envelope::Signed;
use crate::id::{MessageId, Room};
use crate::message::{Body, HallwayPost};
use crate::node::error::{LogFailure, NotJoined};
use crate::node::log_view::{LogRooms, LogView};
use crate::node::presence::{Cause, Change};
use crate::node::rooms::{Admission, Context, JoinedRoom, Origin, RoomLog, add_to_rules};
use crate::node::{Event, JoinError, NodeError, Participant, PostError, PostOptions, RoomOpError, RoomPost, RoomRules};
use crate::protocol::MAX_MENTIONS;
use crate::room::{Presence, RoomAction, RoomOp, RoomState};
use crate::store::{Direction, Inserted, Store, StoreError, now_ms};

/// The node's log as a [`RoomLog`]: what [`JoinedRoom::commit`] logs and
/// forgets goes to the sled store, and marks it for the next flush.
struct StoreLog<'a> {
    store: &'a Store,
    local: PeerId,
    unflushed: &'a mut bool,
}

impl RoomLog for StoreLog<'_> {
    fn insert(&mut self, signed: &Signed) -> Result<bool, StoreError> {
        match self.store.insert(signed, Direction::Received, &self.local)? {
            Inserted::New(_) => {
                *self.unflushed = true;
                Ok(true)
            }
            Inserted::Duplicate => Ok(false),
        }
    }

    fn forget(&mut self, room: &Room, clock: u64, id: &MessageId) -> Result<(), StoreError> {
        *self.unflushed = true;
        self.store.forget(room, clock, id)
    }
}

impl EventLoop {
    /// A joined room, or [`NotJoined`] (each caller's `NotJoined`).
    fn joined(&mut self, room: &Room) -> Result<&mut JoinedRoom, NotJoined> {
        self.rooms.get_mut(room).ok_or_else(|| NotJoined(room.clone()))
    }

    /// Joins a hosted room of this node's.
    pub(super) fn host(&mut self, name: &str) -> Result<Room, JoinError> {
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
        reply: oneshot::Sender<Result<MessageId, PostError>>,
    ) {
        match self.new_post(&room, text, options) {
            Ok(body) => {
                self.publish_own(room, body, SentReply::Post(reply));
                self.stats.posts_sent += 1;
            }
            Err(e) => {
                let _ = reply.send(Err(e));
            }
        }
    }

    /// The body of a post of this node's, if the room's rules allow it now.
    fn new_post(&mut self, room: &Room, text: String, options: PostOptions) -> Result<Body, PostError> {
        check_text(&text)?;
        if options.mentions.len() > MAX_MENTIONS {
            return Err(PostError::TooManyMentions);
        }
        let joined = self.joined(room)?;
        if !joined.has_room_for_unsent() {
            return Err(PostError::Backlog(joined.unsent_len(), room.clone()));
        }
        let mentions = self.mentions(room, &text, &options.mentions);
        let (local, nick) = (self.local, self.nick.clone());
        let state = &self.joined(room)?.rules;
        let now = now_ms();
        let clock = state.next_clock(now);
        state
            .check_live_post(&local, clock, options.question)
            .map_err(|reason| PostError::NotAllowed {
                room: room.clone(),
                reason,
            })?;
        if let Some(target) = options.reply_to
            && !state.knows_post(&target)
        {
            return Err(PostError::UnknownMessage(target));
        }
        Ok(Body::Hallway(HallwayPost {
            room: room.clone(),
            text,
            time_ms: now,
            nick,
            clock,
            reply_to: options.reply_to,
            mentions,
            question: options.question,
            stamp: self.joined(room)?.stamp,
        }))
    }

    /// Signs, checks, logs and publishes a room operation of this node's.
    pub(super) fn room_op(
        &mut self,
        room: Room,
        action: RoomAction,
        reply: oneshot::Sender<Result<MessageId, RoomOpError>>,
    ) {
        match self.new_op(&room, action) {
            Ok(body) => self.publish_own(room, body, SentReply::RoomOp(reply)),
            Err(e) => {
                let _ = reply.send(Err(e));
            }
        }
    }

    /// The body of an operation of this node's, if the rules allow it now.
    fn new_op(&mut self, room: &Room, action: RoomAction) -> Result<Body, RoomOpError> {
        let local = self.local;
        let state = &self.joined(room)?.rules;
        if let RoomAction::Edit { text, .. } = &action {
            check_text(text)?;
        }
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
            return Err(RoomOpError::UnknownMessage(t));
        }
        // Taking back a reaction this node never made would tell every
        // peer something untrue ("took back 🎉") and change nothing.
        if let RoomAction::React(r) = &action
            && r.retract
            && !state
                .reactions(&r.target)
                .iter()
                .any(|(emoji, who)| *emoji == r.emoji && who.contains(&local))
        {
            return Err(RoomOpError::NoSuchReaction(r.target));
        }
        let now = now_ms();
        let clock = state.next_clock(now);
        state
            .check_op(&local, clock, &action)
            .map_err(|reason| RoomOpError::NotAllowed {
                room: room.clone(),
                reason,
            })?;
        let stamp = self.joined(room)?.stamp;
        Ok(Body::RoomOp(RoomOp {
            room: room.clone(),
            clock,
            time_ms: now,
            action,
            stamp,
        }))
    }

    /// Logs a post or operation of this node's, applies it, and publishes
    /// it (or queues it until the room has peers); replies once it is on disk.
    fn publish_own(&mut self, room: Room, body: Body, reply: SentReply) {
        let signed = Signed::sign(&self.identity, body);
        if let Err(e) = self.store.insert(&signed, Direction::Sent, &self.local) {
            reply.send(Err(LogFailure::Store(e)));
            return;
        }
        self.apply_logged(&room, &signed);
        let unsent = super::Unsent {
            id: signed.id(),
            envelope: signed.envelope().to_vec(),
        };
        let id = unsent.id;
        let waiting = self.rooms.get(&room).map_or(0, JoinedRoom::unsent_len);
        // A post beyond this node's pace waits too; the tick sends it.
        let paced = matches!(signed.body(), Body::Hallway(_)) && !self.limiters.own_posts.allow(&(), now_ms());
        if waiting > 0 || paced {
            // Keep posting order behind posts already waiting.
            if let Some(joined) = self.rooms.get_mut(&room) {
                joined.push_unsent(unsent);
            }
            self.send_unsent(&room);
        } else if let Err(unsent) = self.publish(&room, unsent)
            && let Some(joined) = self.rooms.get_mut(&room)
        {
            joined.push_unsent(unsent);
        }
        self.commit.push(AfterFlush::Sent { id, reply });
    }

    /// Feeds a logged room message to the room's rules, and drops the text
    /// of posts that are deleted now.
    fn apply_logged(&mut self, room: &Room, signed: &Signed) {
        let Some(joined) = self.rooms.get_mut(room) else {
            return;
        };
        let mut log = StoreLog {
            store: &self.store,
            local: self.local,
            unflushed: &mut self.unflushed,
        };
        self.stats.room_evicted += joined.apply_logged(room, signed, &mut log) as u64;
    }

    /// Admits a verified message for a joined room, from gossip or history,
    /// by the one rule of [`JoinedRoom::admit`], and carries out the
    /// decision: counts and penalties, or logging, applying and showing it
    /// and the parked operations it makes valid ([`JoinedRoom::commit`], the
    /// code the simulation runs too). Returns the verdict for gossipsub and
    /// whether the message was new to the log.
    pub(super) fn admit_room_message(
        &mut self,
        origin: Origin,
        source: PeerId,
        room: &Room,
        signed: Signed,
    ) -> (MessageAcceptance, bool) {
        let Some(joined) = self.rooms.get_mut(room) else {
            return (MessageAcceptance::Ignore, false);
        };
        let mut cx = Context {
            now_ms: now_ms(),
            window_ms: self.clock_window_ms,
            local: self.local,
            presence_on: self.presence_on,
            blocked: &self.blocked,
            limiters: &mut self.limiters,
        };
        let live = origin == Origin::Live;
        match joined.admit(room, origin, source, &signed, &mut cx) {
            Admission::Accept { show } => {
                let mut log = StoreLog {
                    store: &self.store,
                    local: self.local,
                    unflushed: &mut self.unflushed,
                };
                match joined.commit(room, origin, &signed, show, &mut cx, &mut log) {
                    Ok(done) if done.new => {
                        self.stats.room_evicted += done.evicted as u64;
                        for shown in &done.show {
                            self.show_room_message(room, shown);
                        }
                        (MessageAcceptance::Accept, true)
                    }
                    Ok(_) => {
                        // Valid, and new to gossip here (gossipsub drops what
                        // it has seen): this node has it from history sync.
                        // Forward it, so that peers that depend on this node
                        // for it get it.
                        if live {
                            self.stats.duplicates += 1;
                        }
                        (MessageAcceptance::Accept, false)
                    }
                    Err(e) => {
                        tracing::error!(%room, "cannot log a room message: {e}");
                        (MessageAcceptance::Ignore, false)
                    }
                }
            }
            Admission::Deleted => {
                if live {
                    self.stats.duplicates += 1;
                }
                (MessageAcceptance::Ignore, false)
            }
            Admission::Blocked => {
                self.drop_blocked(signed.author());
                (MessageAcceptance::Ignore, false)
            }
            Admission::Refused { reason, invalid } => {
                self.reject(source, reason);
                let verdict = if invalid {
                    MessageAcceptance::Reject
                } else {
                    MessageAcceptance::Ignore
                };
                (verdict, false)
            }
            Admission::Parked { reason } => {
                // Decided by what this node knows of the room: another node
                // may know more, so the forwarder is not penalised.
                self.reject(source, reason);
                (MessageAcceptance::Ignore, false)
            }
            Admission::RateLimited { at_fault } => {
                self.violation(source, at_fault);
                (MessageAcceptance::Ignore, false)
            }
            Admission::Newcomer => {
                // Not forwarded, not shown, not penalised: the forwarder may
                // be an honest node relaying honest newcomers. Gossipsub
                // drops the other neighbours' copies now, so a live refusal
                // is asked of another peer in a second (`node::recover`).
                if live {
                    joined.refused.note(signed.id(), source, cx.now_ms);
                }
                self.reject(source, crate::id::RejectReason::NewcomerLimit);
                (MessageAcceptance::Ignore, false)
            }
            Admission::Presence(change) => {
                self.stats.presence_received += 1;
                if change == Change::Here {
                    // What this node hears is a hint of the room's size too:
                    // until its own first announcement, a room growing under
                    // it (many joining together) spreads that announcement
                    // further (`Book::room_size_hint`).
                    let counted = joined.presence.counted();
                    joined.presence.size_hint_from_count(counted, super::random_u64());
                }
                if let (Body::Presence(p), Change::Here | Change::Left) = (signed.body(), &change) {
                    self.emit(Event::Presence {
                        room: room.clone(),
                        peer: signed.author(),
                        nick: p.nick.clone(),
                        present: change == Change::Here,
                    });
                }
                (MessageAcceptance::Accept, false)
            }
            Admission::NotTracked => (MessageAcceptance::Ignore, false),
        }
    }

    fn show_room_message(&mut self, room: &Room, signed: &Signed) {
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

    /// The mentions of a post: those given, plus `@peer-id` and `@nickname`
    /// words (a nickname only if exactly one participant present has it).
    fn mentions(&self, room: &Room, text: &str, given: &[PeerId]) -> Vec<PeerId> {
        let mut out: Vec<PeerId> = Vec::new();
        let words = text
            .split_whitespace()
            .filter_map(|w| w.strip_prefix('@'))
            .map(|w| w.trim_end_matches(|c: char| c.is_ascii_punctuation()));
        let book = self.rooms.get(room).map(|joined| &joined.presence);
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

    /// Announces this node in a room (or its leaving). Returns false if the
    /// room has no peers yet.
    pub(super) fn announce(&mut self, room: &Room, leaving: bool) -> bool {
        let Some(joined) = self.rooms.get(room) else {
            return false;
        };
        let now = now_ms();
        let body = Body::Presence(Presence {
            room: room.clone(),
            time_ms: now,
            nick: self.nick.clone(),
            ttl_s: joined.presence.ttl_s(),
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
        self.stats.presence_sent += 1;
        if let Some(joined) = self.rooms.get_mut(room) {
            match joined.presence.next_cause() {
                _ if leaving => {}
                Cause::First => self.stats.presence_sent_first += 1,
                Cause::Answer => self.stats.presence_sent_answers += 1,
                Cause::Periodic => {}
            }
            joined.presence.announced(now);
        }
        true
    }

    /// Announces where due and forgets participants whose presence expired.
    pub(super) fn presence_tick(&mut self) {
        if !self.presence_on {
            return;
        }
        let now = now_ms();
        for room in self.rooms.ids() {
            // Only a room that has not announced yet needs its peer count;
            // the others pay nothing for it each tick. The random delay is
            // drawn when an announcement is first scheduled or held back by
            // the room's budget (`Book::due`).
            let scheduled = self.rooms.get(&room).is_some_and(|j| j.presence.is_scheduled());
            let peers = if scheduled { 0 } else { self.room_peers_of(&room).len() };
            let random = super::random_u64();
            let Some(joined) = self.rooms.get_mut(&room) else {
                continue;
            };
            let held_back = joined.presence.held_back();
            if joined.presence.due(now, peers, random) {
                self.announce(&room, false);
            } else if joined.presence.held_back() > held_back {
                self.stats.presence_held_back += 1;
            }
            let gone = self
                .rooms
                .get_mut(&room)
                .map(|j| j.presence.expire(now))
                .unwrap_or_default();
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
        let me = Some(self.local);
        let Some(joined) = self.rooms.get(room) else {
            // A room left (or ended): its rules from its messages in the log.
            return Ok(view_from_log(&self.store, room, me, limit)?);
        };
        let messages = self.store.room(room, usize::MAX)?;
        Ok(latest(
            messages.iter().filter_map(|m| shown(&joined.rules, me, m)).collect(),
            limit,
        ))
    }

    /// The log as `backchannel history` shows it, for the local API: joined
    /// rooms as they show now (a page of each, read backwards as far as it
    /// needs), the rest as [`LogView::read`] shows them.
    pub(super) fn log_view(&mut self, rooms: &LogRooms, limit: usize) -> Result<LogView, NodeError> {
        let store = self.store.clone();
        LogView::read_with(&store, Some(self.local), rooms, limit, |room, limit| {
            Ok(self.room_page(room, None, limit)?.0)
        })
    }

    /// A page of the posts a room shows: the `limit` just before the post
    /// `before` (default: the latest), in the room's order, and whether
    /// older ones exist. A joined room's rules are in memory, so this reads
    /// the log backwards only as far as the page needs: opening a room of
    /// 10,000 posts reads a page, not the room. A room left or ended is
    /// read whole, as [`Self::room_view`] does.
    pub(super) fn room_page(
        &mut self,
        room: &Room,
        before: Option<MessageId>,
        limit: usize,
    ) -> Result<(Vec<RoomPost>, bool), NodeError> {
        let bound = match before {
            None => None,
            Some(id) => match self.store.get(&id)?.map(|m| m.message.body().clone()) {
                Some(Body::Hallway(p)) if p.room == *room => Some((p.clock, id)),
                _ => return Err(NodeError::UnknownMessage(id)),
            },
        };
        let Some(joined) = self.rooms.get(room) else {
            let mut all = self.room_view(room, usize::MAX)?;
            let end = match bound {
                Some(bound) => all.iter().position(|p| (p.clock, p.id) >= bound).unwrap_or(all.len()),
                None => all.len(),
            };
            all.truncate(end);
            let start = end.saturating_sub(limit);
            return Ok((all.split_off(start), start > 0));
        };
        let (state, me, store) = (&joined.rules, Some(self.local), &self.store);
        let mut page = Vec::new();
        let mut more = false;
        store.room_keys_back(room, bound, |_, id| {
            if !state.is_visible(&id) {
                return Ok(true);
            }
            let Some(post) = store.get(&id)?.and_then(|m| shown(state, me, &m)) else {
                return Ok(true);
            };
            if page.len() == limit {
                more = true;
                return Ok(false);
            }
            page.push(post);
            Ok(true)
        })?;
        page.reverse();
        Ok((page, more))
    }

    pub(super) fn room_rules(&mut self, room: &Room) -> RoomRules {
        let temporary;
        let state = match self.rooms.get(room) {
            Some(joined) => &joined.rules,
            None => {
                // A room not joined is read, not cut to the bound.
                temporary = load_rules(&self.store, room, usize::MAX);
                &temporary
            }
        };
        RoomRules {
            host: state.host(),
            mode: state.mode(),
            roles: state.roles().into_iter().map(|(p, r)| (p.to_string(), r)).collect(),
            removed: state.removed(),
        }
    }

    pub(super) fn who(&mut self, room: &Room) -> Result<Vec<Participant>, NodeError> {
        let (local, nick) = (self.local, self.nick.clone());
        let joined = self.joined(room)?;
        let list = joined.presence.list();
        let state = &joined.rules;
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

/// Rebuilds a room's rules from its messages in the log, with the room's
/// bound: a log that holds more (written with a larger bound, or before
/// there was one) is cut to it, and the log forgets what was evicted
/// (`RoomState::evicted` says how many).
pub(super) fn load_rules(store: &crate::store::Store, room: &Room, bound: usize) -> RoomState {
    let messages = match store.room(room, usize::MAX) {
        Ok(messages) => messages,
        Err(e) => {
            tracing::error!(%room, "cannot read the room's log: {e}");
            return RoomState::new(room.clone()).with_bound(bound);
        }
    };
    let mut state = RoomState::new(room.clone()).with_bound(bound);
    for m in &messages {
        add_to_rules(&mut state, &m.message);
    }
    for (clock, id) in state.enforce_bound() {
        if let Err(e) = store.forget(room, clock, &id) {
            tracing::error!(%room, "cannot drop an evicted message: {e}");
        }
    }
    state
}

/// A room's rules rebuilt from its logged messages.
fn state_of(room: &Room, messages: &[crate::store::LoggedMessage]) -> RoomState {
    let mut state = RoomState::new(room.clone());
    for m in messages {
        add_to_rules(&mut state, &m.message);
    }
    state
}

/// The posts a room shows, rebuilt from the log alone: what a node shows of
/// a room it is not in, and what `backchannel history` shows of the log of
/// a node that is not running. `me` (when known) tells this node's posts.
pub(crate) fn view_from_log(
    store: &Store,
    room: &Room,
    me: Option<PeerId>,
    limit: usize,
) -> Result<Vec<RoomPost>, StoreError> {
    let messages = store.room(room, usize::MAX)?;
    let state = state_of(room, &messages);
    Ok(latest(
        messages.iter().filter_map(|m| shown(&state, me, m)).collect(),
        limit,
    ))
}

/// The last `limit` of `posts`.
fn latest(mut posts: Vec<RoomPost>, limit: usize) -> Vec<RoomPost> {
    let skip = posts.len().saturating_sub(limit);
    posts.drain(..skip);
    posts
}

/// A logged message as its room shows it under `state`: None for what is
/// not a post, or a post the room does not show (deleted, refused).
fn shown(state: &RoomState, me: Option<PeerId>, m: &crate::store::LoggedMessage) -> Option<RoomPost> {
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
        mine: me == Some(author),
    })
}
