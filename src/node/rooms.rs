//! The rooms a node has joined, each one a [`JoinedRoom`] that holds
//! everything the node keeps about it, and the one admission rule for what
//! arrives in a room ([`JoinedRoom::admit`]). Plain state with the time
//! passed in and no IO: the event loop carries out the [`Admission`] it
//! returns (counting, penalising, logging, showing, forwarding), so every
//! decision is testable without a network.
//!
//! Leaving a room drops its `JoinedRoom`, and with it the rules, the parked
//! operations, the presence book and the unsent posts: nothing about a room
//! lives outside it except the sync sessions (`event_loop::sync::Syncs`,
//! keyed by peer and room), the last report of its waiting posts and its DHT
//! search, which `leave` clears too (`Handle::room_footprint` counts them
//! all), and the log.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use libp2p::PeerId;
use libp2p::gossipsub::{IdentTopic, TopicHash};

use super::limits::Limiters;
use super::presence::{Book, Change};
use super::recover::Refusals;
use crate::envelope::{Signed, check_time};
use crate::id::{MessageId, RejectReason, Room};
use crate::message::Body;
use crate::protocol;
use crate::room::{Key, RoomAction, RoomState, is_bounded};
use crate::store::StoreError;

/// Posts kept per room while no peer of the room is known. A person typing
/// offline never gets near it; a script that floods an empty room is told.
pub(crate) const MAX_UNSENT_PER_ROOM: usize = 1000;

/// Operations kept per room while they wait for an earlier operation that
/// gives their author the right (gossip may deliver a moderator's delete
/// before the host's grant). Beyond this, the oldest is dropped; history
/// sync brings it back later if it is valid.
pub(crate) const MAX_PARKED: usize = 256;

/// Ids refused as below the room's horizon that a room remembers, so that
/// history sync does not fetch them again from a peer that keeps them (one
/// with a larger `Config::room_bound`, or that has not synced since). The
/// oldest is forgotten first; one forgotten costs a fetch, not a fault.
pub(crate) const MAX_BELOW_HORIZON: usize = 4096;

/// Newcomers tracked per room at most (authors first accepted here within
/// `Limits::newcomer_for`). When it is full of authors still new, a further new
/// author is refused until some are not: the bound holds under any flood,
/// and errs on the side of refusing strangers.
pub(crate) const MAX_NEWCOMERS: usize = 10_000;

/// The joined rooms, by id and by gossipsub topic.
pub(crate) struct Rooms {
    joined: BTreeMap<Room, JoinedRoom>,
    by_topic: HashMap<TopicHash, Room>,
}

/// Everything a node keeps about a room it has joined.
pub(crate) struct JoinedRoom {
    /// The room's gossipsub topic.
    pub(crate) topic: IdentTopic,
    /// The room's rules (`crate::room`), loaded from the log on join.
    pub(crate) rules: RoomState,
    /// Who is here, and when this node announces itself next.
    pub(crate) presence: Book,
    /// Logged posts of this node's that gossipsub has not taken yet.
    unsent: VecDeque<Unsent>,
    /// Operations waiting for the operation that gives their author the right.
    parked: VecDeque<Signed>,
    /// The room's own event streams ([`crate::RoomHandle::subscribe`]): while
    /// one is open, the room's events go to them instead of the node's
    /// stream. Dropped on leave, which ends the streams.
    pub(crate) listeners: Vec<tokio::sync::mpsc::Sender<crate::node::Event>>,
    /// Authors whose first message here this node accepted within
    /// `Limits::newcomer_for`, with when.
    newcomers: HashMap<PeerId, u64>,
    /// This node's stamp for the room (`protocol::mint_stamp`), put on its
    /// posts and operations; None until it is minted, a moment after join.
    pub(crate) stamp: Option<u64>,
    /// Ids refused as below the horizon, oldest first (at most
    /// [`MAX_BELOW_HORIZON`]), and the same as a set.
    below_horizon: VecDeque<MessageId>,
    below_horizon_set: HashSet<MessageId>,
    /// What this room refused live over forwarders' newcomer shares, to be
    /// asked of other peers (`node::recover`).
    pub(crate) refused: Refusals,
}

/// Whether a room message carries a stamp of at least `bits` for its room
/// and author (one hash; checked only for newcomers' messages).
pub(crate) fn is_stamped(room: &Room, signed: &Signed, bits: u32) -> bool {
    let stamp = match signed.body() {
        Body::Hallway(p) => p.stamp,
        Body::RoomOp(op) => op.stamp,
        _ => None,
    };
    stamp.is_some_and(|stamp| {
        crate::id::key_of(&signed.author())
            .is_some_and(|key| protocol::stamp_strength(room.as_str(), &key, stamp) >= bits)
    })
}

/// A logged post that gossipsub has not accepted yet.
pub(crate) struct Unsent {
    pub(crate) id: MessageId,
    pub(crate) envelope: Vec<u8>,
}

/// Where a room message came from. The checks are the same and made in the
/// same order for all three; what differs is stated where it differs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Origin {
    /// Gossip on the room's topic: new by nature, so it must be recent, and
    /// it is subject to the per-author rate limits.
    Live,
    /// A page of history sync: old by nature, so only the future is refused;
    /// posts are checked by the rules at their clock alone (the room's
    /// history is the same whenever it is read).
    History,
    /// An operation parked earlier, checked again by the rules only (it
    /// passed every other check when it arrived).
    Parked,
    /// A message refused live over its forwarder's newcomer share, fetched
    /// from another peer of the room (`node::recover`): checked as history
    /// (it passed the per-author limit live), but a newcomer's is charged to
    /// the share of the peer that served it, as live traffic is.
    Recovered,
}

/// What the node knows besides the room, for [`JoinedRoom::admit`].
pub(crate) struct Context<'a> {
    pub(crate) now_ms: u64,
    /// How far authors' clocks may be from ours (`Config::clock_window`).
    pub(crate) window_ms: u64,
    pub(crate) local: PeerId,
    /// Whether presence is tracked (`Config::presence`).
    pub(crate) presence_on: bool,
    pub(crate) blocked: &'a HashSet<PeerId>,
    pub(crate) limiters: &'a mut Limiters,
}

/// Where a node keeps the room messages it accepted: the sled store in the
/// event loop, a map in the simulation (`node::sim`). Carrying out an
/// [`Admission::Accept`] ([`JoinedRoom::commit`]) is the same code over
/// either, so the simulation runs what a node does.
pub(crate) trait RoomLog {
    /// Logs a room message; true if the log did not have it.
    fn insert(&mut self, signed: &Signed) -> Result<bool, StoreError>;
    /// Drops a deleted post (its text and its place in the room's order);
    /// the delete stays, so the post is refused if it comes again.
    fn forget(&mut self, room: &Room, clock: u64, id: &MessageId) -> Result<(), StoreError>;
}

/// What [`JoinedRoom::commit`] did with an accepted message.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Committed {
    /// The log did not have it: it was logged and applied.
    pub(crate) new: bool,
    /// Messages the room's bound evicted from the rules and the log.
    pub(crate) evicted: usize,
    /// What to show, in order: the message itself (when new and `show`),
    /// then the parked operations it made valid.
    pub(crate) show: Vec<Signed>,
}

/// The decision about one room message.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Admission {
    /// Valid: log it and, if the log did not have it, [`JoinedRoom::apply`]
    /// it and, when `show`, show it. Gossip forwards it.
    Accept {
        /// A message from history is shown like a live one only while it is
        /// within the clock window (gossip lost it or is still delivering
        /// it); older history is reported in bulk.
        show: bool,
    },
    /// A post this node knows is deleted: nothing to do, not forwarded.
    Deleted,
    /// The author is blocked here: dropped unseen.
    Blocked,
    /// Refused. `invalid`: the message can never be valid on this topic (the
    /// sender is at fault); otherwise it is refused by what this node knows
    /// (clocks, rules), which an honest forwarder may see differently.
    Refused { reason: RejectReason, invalid: bool },
    /// An operation the rules refuse for now, kept in case the operation
    /// that gives its author the right arrives later.
    Parked { reason: RejectReason },
    /// The author is over its rate limit. `at_fault`: the peer that sent it
    /// is the author (rather than a forwarder of someone's flood).
    RateLimited { at_fault: bool },
    /// A newcomer's message, over the share of newcomers' messages of the
    /// peer that forwarded it ([`JoinedRoom::newcomer_within`]). Never the
    /// forwarder's fault: an honest one relays honest newcomers too.
    Newcomer,
    /// A presence announcement, taken: `Here` and `Left` are shown.
    Presence(Change),
    /// A presence announcement this node does not track (its own, or
    /// presence is off): not forwarded.
    NotTracked,
}

impl Rooms {
    pub(crate) fn new() -> Self {
        Self {
            joined: BTreeMap::new(),
            by_topic: HashMap::new(),
        }
    }

    /// Adds a room with its rules; returns its topic, or None if already
    /// joined.
    pub(crate) fn join(&mut self, room: &Room, rules: RoomState) -> Option<IdentTopic> {
        if self.joined.contains_key(room) {
            return None;
        }
        let joined = JoinedRoom::new(room, rules);
        let topic = joined.topic.clone();
        self.by_topic.insert(topic.hash(), room.clone());
        self.joined.insert(room.clone(), joined);
        Some(topic)
    }

    /// Removes a room and everything kept about it; returns its topic and
    /// how many posts were unsent.
    pub(crate) fn leave(&mut self, room: &Room) -> Option<(IdentTopic, usize)> {
        let joined = self.joined.remove(room)?;
        self.by_topic.remove(&joined.topic.hash());
        Some((joined.topic, joined.unsent.len()))
    }

    pub(crate) fn get(&self, room: &Room) -> Option<&JoinedRoom> {
        self.joined.get(room)
    }

    pub(crate) fn get_mut(&mut self, room: &Room) -> Option<&mut JoinedRoom> {
        self.joined.get_mut(room)
    }

    pub(crate) fn room_of(&self, topic: &TopicHash) -> Option<&Room> {
        self.by_topic.get(topic)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (&Room, &JoinedRoom)> {
        self.joined.iter()
    }

    pub(crate) fn ids(&self) -> Vec<Room> {
        self.joined.keys().cloned().collect()
    }

    /// Rooms with posts waiting.
    pub(crate) fn with_unsent(&self) -> Vec<Room> {
        self.joined
            .iter()
            .filter(|(_, r)| !r.unsent.is_empty())
            .map(|(id, _)| id.clone())
            .collect()
    }
}

impl JoinedRoom {
    /// A room just joined, with its rules as loaded from the log.
    pub(crate) fn new(room: &Room, rules: RoomState) -> Self {
        Self {
            topic: protocol::topic(room.as_str()),
            rules,
            presence: Book::default(),
            unsent: VecDeque::new(),
            parked: VecDeque::new(),
            listeners: Vec::new(),
            newcomers: HashMap::new(),
            stamp: None,
            below_horizon: VecDeque::new(),
            below_horizon_set: HashSet::new(),
            refused: Refusals::default(),
        }
    }

    /// Whether `id` was refused as below the room's horizon: history sync
    /// does not fetch it again.
    pub(crate) fn is_below_horizon(&self, id: &MessageId) -> bool {
        self.below_horizon_set.contains(id)
    }

    fn remember_below_horizon(&mut self, id: MessageId) {
        if !self.below_horizon_set.insert(id) {
            return;
        }
        self.below_horizon.push_back(id);
        if self.below_horizon.len() > MAX_BELOW_HORIZON
            && let Some(old) = self.below_horizon.pop_front()
        {
            self.below_horizon_set.remove(&old);
        }
    }

    /// Whether another post may be queued.
    pub(crate) fn has_room_for_unsent(&self) -> bool {
        self.unsent.len() < MAX_UNSENT_PER_ROOM
    }

    /// Queues a post at the back (in posting order).
    pub(crate) fn push_unsent(&mut self, post: Unsent) {
        self.unsent.push_back(post);
    }

    /// Puts a post that still could not be sent back at the front.
    pub(crate) fn requeue_front(&mut self, post: Unsent) {
        self.unsent.push_front(post);
    }

    pub(crate) fn pop_unsent(&mut self) -> Option<Unsent> {
        self.unsent.pop_front()
    }

    pub(crate) fn unsent_len(&self) -> usize {
        self.unsent.len()
    }

    #[cfg(test)]
    pub(crate) fn parked_len(&self) -> usize {
        self.parked.len()
    }

    /// Decides what to do with a verified message for `room` (this room's
    /// id) that `source` sent. Checks, in this order for every origin:
    /// 1. the author is not blocked;
    /// 2. it is a post or an operation (or, live only, a presence
    ///    announcement) of this room;
    /// 3. its time is not in the future (and, live only, not older than the
    ///    clock window);
    /// 4. live only: presence is taken here, and the author is within its
    ///    rate limit;
    /// 5. a newcomer's message forwarded by another peer is within that
    ///    peer's share ([`JoinedRoom::newcomer_within`]), and its room clock
    ///    is not in the future;
    /// 6. a post or an operation anyone may make is not below the room's
    ///    horizon (`room::bound`: the room keeps its bound of newer ones);
    /// 7. the room's rules at its clock. Operations they refuse are parked.
    ///
    /// Parked operations skip 1-5. Nothing is logged or shown here.
    pub(crate) fn admit(
        &mut self,
        room: &Room,
        origin: Origin,
        source: PeerId,
        signed: &Signed,
        cx: &mut Context<'_>,
    ) -> Admission {
        let author = signed.author();
        let was_known = self.rules.knows_author(&author);
        if origin != Origin::Parked
            && let Some(refused) = self.check_envelope(room, origin, source, signed, cx)
        {
            return refused;
        }
        let state = &mut self.rules;
        let id = signed.id();
        if let Some(key) = bounded_key(signed)
            && state.below_horizon(key, matches!(signed.body(), Body::Hallway(_)))
        {
            self.remember_below_horizon(id);
            return Admission::Refused {
                reason: RejectReason::BelowHorizon,
                invalid: false,
            };
        }
        let verdict = match (signed.body(), origin) {
            (Body::Hallway(p), Origin::History) => {
                // By its author, so that an earlier delete by its author
                // counts (the post is not known yet). A post is added to the
                // rules only once logged, so that the rules hold what the log
                // holds (the bound counts it).
                if state.is_deleted_as(&id, &author) {
                    return Admission::Deleted;
                }
                state.check_post(&author, p.clock, p.question)
            }
            (Body::Hallway(p), _) => {
                // By its author too: the post is not known yet, and its
                // author's delete may have come first.
                if state.is_deleted_as(&id, &author) {
                    return Admission::Deleted;
                }
                // Live: its author must not be removed now either, so a
                // removed participant cannot slip posts in with an old clock.
                state.check_live_post(&author, p.clock, p.question)
            }
            (Body::RoomOp(op), _) => state.check_op(&author, op.clock, &op.action),
            _ => Err(RejectReason::WrongKind),
        };
        match verdict {
            Ok(()) => {
                if !was_known {
                    self.note_newcomer(author, cx.now_ms, cx.limiters.newcomer_ms);
                }
                Admission::Accept {
                    show: origin != Origin::History || self.is_recent(signed, cx),
                }
            }
            Err(reason) if matches!(signed.body(), Body::RoomOp(_)) => {
                self.park(signed.clone());
                Admission::Parked { reason }
            }
            Err(reason) => Admission::Refused { reason, invalid: false },
        }
    }

    /// Steps 1-5 of [`JoinedRoom::admit`]: None if the message passes them.
    fn check_envelope(
        &mut self,
        room: &Room,
        origin: Origin,
        source: PeerId,
        signed: &Signed,
        cx: &mut Context<'_>,
    ) -> Option<Admission> {
        let author = signed.author();
        if cx.blocked.contains(&author) {
            return Some(Admission::Blocked);
        }
        let (msg_room, time_ms, clock) = match (signed.body(), origin) {
            (Body::Hallway(p), _) => (&p.room, p.time_ms, Some(p.clock)),
            (Body::RoomOp(op), _) => (&op.room, op.time_ms, Some(op.clock)),
            (Body::Presence(p), Origin::Live) => (&p.room, p.time_ms, None),
            _ => {
                return Some(Admission::Refused {
                    reason: RejectReason::WrongKind,
                    invalid: true,
                });
            }
        };
        if msg_room != room {
            return Some(Admission::Refused {
                reason: RejectReason::WrongRoom,
                invalid: true,
            });
        }
        // Not the forwarder's fault: an honest peer's clock may differ from ours.
        let live = origin == Origin::Live;
        if let Err(reason) = check_time(time_ms, cx.now_ms, cx.window_ms, live) {
            return Some(Admission::Refused { reason, invalid: false });
        }
        if let Body::Presence(p) = signed.body() {
            if !cx.presence_on || author == cx.local {
                return Some(Admission::NotTracked);
            }
            return Some(
                match self
                    .presence
                    .observe(author, p.nick.clone(), p.ttl_s, p.leaving, cx.now_ms)
                {
                    Ok(change) => Admission::Presence(change),
                    Err(reason) => Admission::Refused { reason, invalid: false },
                },
            );
        }
        if live {
            let within = match signed.body() {
                Body::Hallway(_) => cx.limiters.posts.allow(&author, cx.now_ms),
                _ => cx.limiters.ops.allow(&author, cx.now_ms),
            };
            if !within {
                return Some(Admission::RateLimited {
                    at_fault: source == author,
                });
            }
        }
        if !self.newcomer_within(room, origin, source, signed, cx) {
            return Some(Admission::Newcomer);
        }
        if let Some(clock) = clock
            && let Err(reason) = check_time(clock, cx.now_ms, cx.window_ms, false)
        {
            return Some(Admission::Refused { reason, invalid: false });
        }
        None
    }

    /// Step 5 of [`JoinedRoom::admit`], the admission of newcomers: keys
    /// cost nothing, so a flood under fresh keys passes every per-author
    /// limit. A message by an author this room has no message of, or whose
    /// first one this node accepted within `Limits::newcomer_for`, takes a token
    /// from the share of the peer that forwarded it
    /// (`Limits::newcomers_per_peer`, per room and peer). Live, every such
    /// message does, and so does one fetched back after such a refusal
    /// (`Origin::Recovered`, charged to the peer that served it); from
    /// history, only an unknown author's (a catch-up brings an author's
    /// posts in bulk, and is not rate limited). The
    /// author's own connection takes none: one connection is one key, which
    /// the per-author limits hold. Every node applies the same rule, so a
    /// flood through one connection shows at most its share on every node:
    /// an honest node forwards only what it admitted, and its neighbours
    /// count what it forwards against its own share.
    ///
    /// There are two shares: one for messages whose stamp shows
    /// `Limits::stamp_bits` of work for this room and author, and a small
    /// one for the rest. A key costs nothing; a stamped key costs its
    /// 2^bits hashes, so a flood under free keys gets only the small share.
    pub(crate) fn newcomer_within(
        &mut self,
        room: &Room,
        origin: Origin,
        source: PeerId,
        signed: &Signed,
        cx: &mut Context<'_>,
    ) -> bool {
        let author = signed.author();
        if source == author || author == cx.local {
            return true;
        }
        let known = self.rules.knows_author(&author);
        let charged = match origin {
            Origin::Live | Origin::Recovered => !known || self.is_newcomer(&author, cx.now_ms, cx.limiters.newcomer_ms),
            Origin::History => !known,
            Origin::Parked => false,
        };
        if !charged {
            return true;
        }
        if !known && !self.has_room_for_newcomer(cx.now_ms, cx.limiters.newcomer_ms) {
            return false;
        }
        let share = if is_stamped(room, signed, cx.limiters.stamp_bits) {
            &mut cx.limiters.newcomers
        } else {
            &mut cx.limiters.unstamped
        };
        share.allow(&(room.clone(), source), cx.now_ms)
    }

    /// Whether `author`'s first message here was accepted within
    /// `period_ms` of `now_ms`.
    fn is_newcomer(&self, author: &PeerId, now_ms: u64, period_ms: u64) -> bool {
        self.newcomers
            .get(author)
            .is_some_and(|at| now_ms.saturating_sub(*at) < period_ms)
    }

    /// Whether another newcomer can be tracked, forgetting those that are
    /// not new any more if need be.
    fn has_room_for_newcomer(&mut self, now_ms: u64, period_ms: u64) -> bool {
        if self.newcomers.len() >= MAX_NEWCOMERS {
            self.newcomers.retain(|_, at| now_ms.saturating_sub(*at) < period_ms);
        }
        self.newcomers.len() < MAX_NEWCOMERS
    }

    /// Notes the author of an accepted message, whom the room did not know:
    /// a newcomer from now.
    fn note_newcomer(&mut self, author: PeerId, now_ms: u64, period_ms: u64) {
        if self.has_room_for_newcomer(now_ms, period_ms) {
            self.newcomers.entry(author).or_insert(now_ms);
        }
    }

    /// Newcomers tracked now.
    #[cfg(test)]
    pub(crate) fn newcomer_count(&self) -> usize {
        self.newcomers.len()
    }

    /// Whether a message's clock is within the clock window of now.
    fn is_recent(&self, signed: &Signed, cx: &Context<'_>) -> bool {
        signed
            .body()
            .room_clock()
            .is_some_and(|(_, clock)| clock >= cx.now_ms.saturating_sub(cx.window_ms))
    }

    fn park(&mut self, signed: Signed) {
        if self.parked.iter().any(|s| s.id() == signed.id()) {
            return;
        }
        if self.parked.len() >= MAX_PARKED {
            self.parked.pop_front();
        }
        self.parked.push_back(signed);
    }

    /// Takes the first parked operation that the rules accept now.
    pub(crate) fn take_ready(&mut self) -> Option<Signed> {
        let rules = &self.rules;
        let i = self.parked.iter().position(|s| match s.body() {
            Body::RoomOp(op) => rules.check_op(&s.author(), op.clock, &op.action).is_ok(),
            _ => false,
        })?;
        self.parked.remove(i)
    }

    /// Carries out an [`Admission::Accept`] of `signed` (from `origin`):
    /// logs it and, if the log did not have it, applies it (the log forgets
    /// the posts deleted now); then, unless it was itself a parked
    /// operation, admits, logs and applies the parked operations it made
    /// valid, in turn. Showing is left to the caller.
    pub(crate) fn commit(
        &mut self,
        room: &Room,
        origin: Origin,
        signed: &Signed,
        show: bool,
        cx: &mut Context<'_>,
        log: &mut impl RoomLog,
    ) -> Result<Committed, StoreError> {
        let mut done = Committed::default();
        if !log.insert(signed)? {
            return Ok(done);
        }
        done.new = true;
        done.evicted += self.apply_logged(room, signed, log);
        if show {
            done.show.push(signed.clone());
        }
        if origin == Origin::Parked {
            return Ok(done);
        }
        // `take_ready` returns only what the rules accept now, so the parked
        // admission accepts it; a message logged already is not shown again.
        while let Some(ready) = self.take_ready() {
            if let Admission::Accept { show } = self.admit(room, Origin::Parked, cx.local, &ready, cx)
                && log.insert(&ready)?
            {
                done.evicted += self.apply_logged(room, &ready, log);
                if show {
                    done.show.push(ready);
                }
            }
        }
        Ok(done)
    }

    /// Applies a message just logged and makes the log forget the posts it
    /// deletes and what the room's bound evicts; returns how many messages
    /// were evicted. A message the log cannot forget is reported, not
    /// fatal: the rules already hide it.
    pub(crate) fn apply_logged(&mut self, room: &Room, signed: &Signed, log: &mut impl RoomLog) -> usize {
        let (deleted, evicted) = self.apply(signed);
        for (clock, target) in deleted.iter().chain(&evicted) {
            if let Err(e) = log.forget(room, *clock, target) {
                tracing::error!(%room, "cannot drop a deleted or evicted message: {e}");
            }
        }
        evicted.len()
    }

    /// Feeds an admitted message, newly logged, to the room's rules, and
    /// applies the room's bound. Returns the posts (clock, id) that are
    /// deleted now and whose text the log must drop, and the messages the
    /// bound evicted, which the log must drop too.
    pub(crate) fn apply(&mut self, signed: &Signed) -> (Vec<Key>, Vec<Key>) {
        let state = &mut self.rules;
        let horizon = state.horizon();
        add_to_rules(state, signed);
        let deleted = match signed.body() {
            Body::RoomOp(op) => {
                let clock_of = |t: MessageId| (state.post_clock(&t).unwrap_or_default(), t);
                match &op.action {
                    RoomAction::Delete(target) if state.is_deleted(target) => vec![clock_of(*target)],
                    // A change of rights can decide older deletes.
                    RoomAction::SetRole { .. } | RoomAction::Remove { .. } => {
                        state.deleted_posts().into_iter().map(clock_of).collect()
                    }
                    _ => Vec::new(),
                }
            }
            _ => Vec::new(),
        };
        // A deleted post leaves the log, so it no longer counts against the
        // bound: released before the bound is applied, as on a node that
        // knew the delete first and never logged the post.
        for (_, id) in &deleted {
            state.release_post(id);
        }
        let evicted = state.enforce_bound();
        // The horizon fell (a post stopped counting, or was deleted): what
        // was refused below it may be taken now.
        if state.horizon() < horizon {
            self.below_horizon.clear();
            self.below_horizon_set.clear();
        }
        // What was evicted is not fetched again either (a peer may still
        // hold it until it has what this node holds).
        for (_, id) in &evicted {
            self.remember_below_horizon(*id);
        }
        (deleted, evicted)
    }
}

/// The (clock, id) of a message the room's bound applies to: a post, or an
/// operation anyone may make (`room::is_bounded`); None for the rules.
pub(crate) fn bounded_key(message: &Signed) -> Option<Key> {
    match message.body() {
        Body::Hallway(p) => Some((p.clock, message.id())),
        Body::RoomOp(op) if is_bounded(&op.action) => Some((op.clock, message.id())),
        _ => None,
    }
}

/// Feeds a verified post or operation to a room's rules (anything else is
/// ignored): what rebuilding a room from its log and applying a new message
/// both do. The rules take plain values, so `crate::room` knows nothing of
/// envelopes.
pub(crate) fn add_to_rules(state: &mut RoomState, message: &Signed) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Identity;
    use crate::message::HallwayPost;
    use crate::node::limits::Limits;
    use crate::room::{ChatMode, Presence, Role, RoomOp};

    const NOW: u64 = 1_800_000_000_000;
    /// The work the fixture's stamps show and its node asks: little, so that
    /// minting thousands of them for floods is quick.
    const STAMP_BITS: u32 = 8;
    const WINDOW: u64 = 600_000;

    fn post(n: u8) -> Unsent {
        Unsent {
            id: MessageId::from_bytes([n; 32]),
            envelope: vec![n],
        }
    }

    /// A room, its host, and the node's surroundings, with time passed in.
    struct Fixture {
        room: Room,
        host: Identity,
        joined: JoinedRoom,
        blocked: HashSet<PeerId>,
        limiters: Limiters,
        local: PeerId,
    }

    impl Fixture {
        fn hosted() -> Self {
            let host = Identity::generate();
            let room = Room::hosted("stage", &host.peer_id()).unwrap();
            Self::with(room, host)
        }

        fn open() -> Self {
            Self::with(Room::new("lobby").unwrap(), Identity::generate())
        }

        fn with(room: Room, host: Identity) -> Self {
            let mut rooms = Rooms::new();
            rooms.join(&room, RoomState::new(room.clone()));
            let joined = rooms.joined.remove(&room).unwrap();
            Self {
                room,
                host,
                joined,
                blocked: HashSet::new(),
                limiters: Limiters::new(&Limits {
                    stamp_bits: STAMP_BITS,
                    ..Limits::default()
                }),
                local: Identity::generate().peer_id(),
            }
        }

        fn admit_at(&mut self, origin: Origin, source: PeerId, signed: &Signed, now_ms: u64) -> Admission {
            let mut cx = Context {
                now_ms,
                window_ms: WINDOW,
                local: self.local,
                presence_on: true,
                blocked: &self.blocked,
                limiters: &mut self.limiters,
            };
            self.joined.admit(&self.room, origin, source, signed, &mut cx)
        }

        /// Admits as the author's own gossip, and applies what is accepted.
        fn admit(&mut self, origin: Origin, signed: &Signed) -> Admission {
            let verdict = self.admit_at(origin, signed.author(), signed, NOW);
            if matches!(verdict, Admission::Accept { .. }) {
                self.joined.apply(signed);
            }
            verdict
        }

        /// A post, stamped as every node stamps its own.
        fn post(&self, by: &Identity, clock: u64, text: &str) -> Signed {
            self.post_stamped(by, clock, text, Some(self.stamp(by)))
        }

        fn post_stamped(&self, by: &Identity, clock: u64, text: &str, stamp: Option<u64>) -> Signed {
            Signed::sign(
                by,
                Body::Hallway(HallwayPost {
                    room: self.room.clone(),
                    text: text.into(),
                    time_ms: clock,
                    nick: None,
                    clock,
                    reply_to: None,
                    mentions: Vec::new(),
                    question: false,
                    stamp,
                }),
            )
        }

        /// `by`'s stamp for the room, of the fixture's `STAMP_BITS`.
        fn stamp(&self, by: &Identity) -> u64 {
            let key = crate::id::key_of(&by.peer_id()).unwrap();
            protocol::mint_stamp(self.room.as_str(), &key, STAMP_BITS)
        }

        fn op(&self, by: &Identity, clock: u64, action: RoomAction) -> Signed {
            Signed::sign(
                by,
                Body::RoomOp(RoomOp {
                    room: self.room.clone(),
                    clock,
                    time_ms: clock,
                    action,
                    stamp: Some(self.stamp(by)),
                }),
            )
        }

        fn presence(&self, by: &Identity, leaving: bool) -> Signed {
            Signed::sign(
                by,
                Body::Presence(Presence {
                    room: self.room.clone(),
                    time_ms: NOW,
                    nick: Some("ann".into()),
                    ttl_s: 60,
                    leaving,
                }),
            )
        }
    }

    const ACCEPT: Admission = Admission::Accept { show: true };

    /// The default newcomer period, in ms.
    const NEWCOMER_MS: u64 = 600_000;

    #[test]
    fn unsent_posts_keep_their_order_and_are_bounded() {
        let mut rooms = Rooms::new();
        let lobby = Room::new("lobby").unwrap();
        let topic = rooms.join(&lobby, RoomState::new(lobby.clone())).unwrap();
        assert!(rooms.join(&lobby, RoomState::new(lobby.clone())).is_none());
        assert_eq!(rooms.room_of(&topic.hash()), Some(&lobby));
        let joined = rooms.get_mut(&lobby).unwrap();
        joined.push_unsent(post(1));
        joined.push_unsent(post(2));
        let first = joined.pop_unsent().unwrap();
        assert_eq!(first.envelope, vec![1]);
        joined.requeue_front(first);
        assert_eq!(joined.pop_unsent().unwrap().envelope, vec![1]);
        assert_eq!(joined.pop_unsent().unwrap().envelope, vec![2]);
        for n in 0..MAX_UNSENT_PER_ROOM {
            assert!(joined.has_room_for_unsent());
            joined.push_unsent(post(n as u8));
        }
        assert!(!joined.has_room_for_unsent());
        assert_eq!(rooms.with_unsent(), vec![lobby.clone()]);
        assert_eq!(rooms.leave(&lobby).map(|(_, n)| n), Some(MAX_UNSENT_PER_ROOM));
        assert!(rooms.room_of(&topic.hash()).is_none());
        assert!(rooms.get(&lobby).is_none());
    }

    #[test]
    fn leaving_drops_everything_kept_about_the_room() {
        let mut f = Fixture::hosted();
        let (host, ann) = (f.host.clone(), Identity::generate());
        // A parked op, a participant present, an unsent post, a refusal and
        // rules.
        let early = f.op(&ann, NOW - 5, RoomAction::Delete(MessageId::from_bytes([7; 32])));
        f.admit(Origin::Live, &f.post(&host, NOW - 10, "hello"));
        f.admit(Origin::Live, &f.op(&host, NOW - 9, RoomAction::Chat(ChatMode::On)));
        let _ = f.admit(Origin::Live, &early);
        assert!(matches!(
            f.admit(Origin::Live, &f.presence(&ann, false)),
            Admission::Presence(Change::Here)
        ));
        let mut rooms = Rooms::new();
        rooms.joined.insert(f.room.clone(), f.joined);
        rooms
            .by_topic
            .insert(protocol::topic(f.room.as_str()).hash(), f.room.clone());
        rooms.get_mut(&f.room).unwrap().push_unsent(post(1));
        // A refusal over a forwarder's share, waiting to be asked again.
        let refused = MessageId::from_bytes([8; 32]);
        rooms
            .get_mut(&f.room)
            .unwrap()
            .refused
            .note(refused, PeerId::random(), NOW);
        assert_eq!(rooms.get(&f.room).unwrap().presence.len(), 1);
        assert_eq!(rooms.leave(&f.room).map(|(_, n)| n), Some(1));
        // Joining again starts from what the log holds, nothing else.
        rooms.join(&f.room, RoomState::new(f.room.clone()));
        let again = rooms.get(&f.room).unwrap();
        assert_eq!(
            (
                again.parked_len(),
                again.presence.len(),
                again.unsent_len(),
                again.refused.len()
            ),
            (0, 0, 0, 0)
        );
        assert_eq!(again.rules.post_count(), 0);
    }

    #[test]
    fn a_valid_post_is_accepted_by_every_origin() {
        for origin in [Origin::Live, Origin::History] {
            let mut f = Fixture::open();
            let ann = Identity::generate();
            assert_eq!(f.admit(origin, &f.post(&ann, NOW, "hi")), ACCEPT, "{origin:?}");
        }
    }

    #[test]
    fn wrong_room_and_wrong_kind_are_invalid_everywhere() {
        let mut f = Fixture::open();
        let ann = Identity::generate();
        let other = Room::new("elsewhere").unwrap();
        let mut elsewhere = f.post(&ann, NOW, "hi");
        if let Body::Hallway(p) = elsewhere.body() {
            let mut p = p.clone();
            p.room = other;
            elsewhere = Signed::sign(&ann, Body::Hallway(p));
        }
        for origin in [Origin::Live, Origin::History] {
            assert_eq!(
                f.admit(origin, &elsewhere),
                Admission::Refused {
                    reason: RejectReason::WrongRoom,
                    invalid: true
                }
            );
        }
        // Presence travels only live: a history page holding one is invalid.
        assert_eq!(
            f.admit(Origin::History, &f.presence(&ann, false)),
            Admission::Refused {
                reason: RejectReason::WrongKind,
                invalid: true
            }
        );
    }

    #[test]
    fn history_may_be_old_but_live_gossip_may_not() {
        let mut f = Fixture::open();
        let ann = Identity::generate();
        let old = f.post(&ann, NOW - 2 * WINDOW, "yesterday");
        assert_eq!(
            f.admit(Origin::Live, &old),
            Admission::Refused {
                reason: RejectReason::Stale,
                invalid: false
            }
        );
        // From history it is stored but not shown like a live post.
        assert_eq!(f.admit(Origin::History, &old), Admission::Accept { show: false });
        let recent = f.post(&ann, NOW - WINDOW / 2, "a minute ago");
        assert_eq!(f.admit(Origin::History, &recent), ACCEPT);
    }

    #[test]
    fn the_future_is_refused_by_every_origin() {
        let mut f = Fixture::open();
        let ann = Identity::generate();
        let ahead = f.post(&ann, NOW + 2 * WINDOW, "from the future");
        for origin in [Origin::Live, Origin::History] {
            assert_eq!(
                f.admit(origin, &ahead),
                Admission::Refused {
                    reason: RejectReason::FutureTime,
                    invalid: false
                }
            );
        }
        // A clock far ahead of a present time is refused too.
        let mut p = match f.post(&ann, NOW, "x").body() {
            Body::Hallway(p) => p.clone(),
            _ => unreachable!(),
        };
        p.clock = NOW + 2 * WINDOW;
        let skewed = Signed::sign(&ann, Body::Hallway(p));
        for origin in [Origin::Live, Origin::History] {
            assert_eq!(
                f.admit(origin, &skewed),
                Admission::Refused {
                    reason: RejectReason::FutureTime,
                    invalid: false
                }
            );
        }
    }

    #[test]
    fn blocked_authors_are_dropped_before_anything_else() {
        let mut f = Fixture::open();
        let ann = Identity::generate();
        f.blocked.insert(ann.peer_id());
        let other = Room::new("elsewhere").unwrap();
        let misplaced = Signed::sign(
            &ann,
            Body::Hallway(HallwayPost {
                room: other,
                text: "x".into(),
                time_ms: NOW,
                nick: None,
                clock: NOW,
                reply_to: None,
                mentions: Vec::new(),
                question: false,
                stamp: None,
            }),
        );
        for origin in [Origin::Live, Origin::History] {
            assert_eq!(f.admit(origin, &f.post(&ann, NOW, "hi")), Admission::Blocked);
            assert_eq!(f.admit(origin, &misplaced), Admission::Blocked);
        }
    }

    #[test]
    fn the_rate_limit_applies_to_live_posts_and_blames_only_the_author() {
        let mut f = Fixture::open();
        let ann = Identity::generate();
        let forwarder = Identity::generate().peer_id();
        let burst = Limits::default().posts_per_author.burst as u64;
        for i in 0..burst {
            let p = f.post(&ann, NOW + i, "flood");
            assert_eq!(f.admit_at(Origin::Live, forwarder, &p, NOW), ACCEPT);
        }
        let over = f.post(&ann, NOW + burst, "one more");
        assert_eq!(
            f.admit_at(Origin::Live, forwarder, &over, NOW),
            Admission::RateLimited { at_fault: false }
        );
        assert_eq!(
            f.admit_at(Origin::Live, ann.peer_id(), &over, NOW),
            Admission::RateLimited { at_fault: true }
        );
        // History is not rate limited (a catch-up is thousands of posts),
        // and the bucket refills with time.
        assert_eq!(f.admit_at(Origin::History, forwarder, &over, NOW), ACCEPT);
        assert_eq!(f.admit_at(Origin::Live, forwarder, &over, NOW + 1_000), ACCEPT);
    }

    impl Fixture {
        /// Admits what `source` sent at `now_ms`, and applies it if accepted.
        fn take(&mut self, origin: Origin, source: PeerId, signed: &Signed, now_ms: u64) -> Admission {
            let verdict = self.admit_at(origin, source, signed, now_ms);
            if matches!(verdict, Admission::Accept { .. }) {
                self.joined.apply(signed);
            }
            verdict
        }
    }

    /// How many of `posts` (each by a fresh key) `forwarder` gets accepted
    /// live at `now_ms`.
    fn accepted(f: &mut Fixture, forwarder: PeerId, posts: &[Signed], now_ms: u64) -> usize {
        posts
            .iter()
            .filter(|p| matches!(f.take(Origin::Live, forwarder, p, now_ms), Admission::Accept { .. }))
            .count()
    }

    #[test]
    fn a_flood_under_fresh_keys_shows_one_forwarders_share_whatever_the_keys() {
        let mut f = Fixture::open();
        let share = Limits::default().newcomers_per_peer;
        let attacker = Identity::generate().peer_id();
        let flood: Vec<Signed> = (0..2_000)
            .map(|i| f.post(&Identity::generate(), NOW, &format!("spam {i}")))
            .collect();
        // The burst, then nothing more at the same moment: the rest are
        // newcomers over the forwarder's share, not its fault.
        assert_eq!(accepted(&mut f, attacker, &flood[..1_000], NOW), share.burst as usize);
        let last = f.post(&Identity::generate(), NOW, "one more");
        assert_eq!(f.take(Origin::Live, attacker, &last, NOW), Admission::Newcomer);
        // Ten seconds later, the rate's worth.
        let later = accepted(&mut f, attacker, &flood[1_000..], NOW + 10_000);
        assert_eq!(later, (10.0 * share.per_s) as usize);
        // Another forwarder has a share of its own, and a key that comes
        // from its own connection takes none (the per-author limit holds
        // one key).
        let honest = Identity::generate().peer_id();
        let newcomer = f.post(&Identity::generate(), NOW, "hello, first time here");
        assert_eq!(f.take(Origin::Live, honest, &newcomer, NOW + 10_000), ACCEPT);
        let direct = Identity::generate();
        for i in 0..5 {
            let p = f.post(&direct, NOW + i, "from my own connection");
            assert_eq!(f.take(Origin::Live, direct.peer_id(), &p, NOW + 10_000), ACCEPT);
        }
    }

    #[test]
    fn a_flood_under_free_keys_shows_only_the_unstamped_share() {
        let mut f = Fixture::open();
        let (stamped, unstamped) = (
            Limits::default().newcomers_per_peer,
            Limits::default().unstamped_newcomers_per_peer,
        );
        let attacker = Identity::generate().peer_id();
        // Posts without a stamp, and posts whose stamp shows less work than
        // the node asks: both are free.
        let room = f.room.clone();
        let flood: Vec<Signed> = (0..300)
            .map(|i| {
                let key = Identity::generate();
                let cheap = (i % 2 == 1).then(|| {
                    let k = crate::id::key_of(&key.peer_id()).unwrap();
                    (1..)
                        .find(|s| protocol::stamp_strength(room.as_str(), &k, *s) < STAMP_BITS)
                        .unwrap()
                });
                f.post_stamped(&key, NOW, &format!("spam {i}"), cheap)
            })
            .collect();
        assert_eq!(accepted(&mut f, attacker, &flood[..200], NOW), unstamped.burst as usize);
        // The rest over the next 10 s, one every 100 ms: the share's rate.
        let later: usize = (0..100)
            .map(|k| accepted(&mut f, attacker, &flood[200 + k..201 + k], NOW + 100 * (k as u64 + 1)))
            .sum();
        let rate = (10.0 * unstamped.per_s) as usize;
        assert!((rate - 1..=rate).contains(&later), "{later} taken over 10 s");
        // The same connection's stamped newcomers have the larger share of
        // their own: paid keys are not held back by the free ones.
        let paid: Vec<Signed> = (0..stamped.burst as usize)
            .map(|i| f.post(&Identity::generate(), NOW, &format!("paid {i}")))
            .collect();
        assert_eq!(accepted(&mut f, attacker, &paid, NOW + 10_000), stamped.burst as usize);
        // An established author needs no stamp at all.
        let ann = Identity::generate();
        let old = f.post_stamped(&ann, NOW - 3_600_000, "an hour ago", None);
        add_to_rules(&mut f.joined.rules, &old);
        let now = f.post_stamped(&ann, NOW + 10_000, "still here", None);
        assert_eq!(f.take(Origin::Live, attacker, &now, NOW + 10_000), ACCEPT);
    }

    #[test]
    fn known_authors_are_never_charged_and_newcomers_are_for_ten_minutes() {
        let mut f = Fixture::open();
        let share = Limits::default().newcomers_per_peer.burst as usize;
        let relay = Identity::generate().peer_id();
        let (ann, bob) = (Identity::generate(), Identity::generate());
        // Ann is known from the log (a room rebuilt on join).
        let old = f.post(&ann, NOW - 3_600_000, "an hour ago");
        add_to_rules(&mut f.joined.rules, &old);
        // Bob's first post is accepted now: he is a newcomer.
        assert_eq!(f.take(Origin::Live, relay, &f.post(&bob, NOW, "hi"), NOW), ACCEPT);
        // The relay's share runs out on a flood of fresh keys.
        let flood: Vec<Signed> = (0..share)
            .map(|i| f.post(&Identity::generate(), NOW, &format!("spam {i}")))
            .collect();
        assert_eq!(accepted(&mut f, relay, &flood, NOW), share - 1);
        // Ann still gets through the same relay; Bob, a newcomer, does not.
        assert_eq!(
            f.take(Origin::Live, relay, &f.post(&ann, NOW + 1, "still here"), NOW),
            ACCEPT
        );
        assert_eq!(
            f.take(Origin::Live, relay, &f.post(&bob, NOW + 1, "anyone?"), NOW),
            Admission::Newcomer
        );
        // Ten minutes after his first post, Bob is not a newcomer any more,
        // although the relay's share is still spent.
        let t = NOW + NEWCOMER_MS;
        let more: Vec<Signed> = (0..=share)
            .map(|i| f.post(&Identity::generate(), t - 1, &format!("more spam {i}")))
            .collect();
        assert_eq!(accepted(&mut f, relay, &more, t), share);
        assert_eq!(f.take(Origin::Live, relay, &f.post(&bob, t, "back"), t), ACCEPT);
    }

    #[test]
    fn history_charges_each_unknown_author_once() {
        let mut f = Fixture::open();
        let share = Limits::default().newcomers_per_peer.burst as usize;
        let peer = Identity::generate().peer_id();
        // A catch-up of one author's thousands of posts takes one token.
        let ann = Identity::generate();
        for i in 0..3_000u64 {
            let p = f.post(&ann, NOW - 1_000_000 + i, "history");
            assert!(matches!(
                f.take(Origin::History, peer, &p, NOW),
                Admission::Accept { .. }
            ));
        }
        // A page of many unknown authors is cut at the peer's share; the rest
        // come with a later sync, as tokens come back.
        let authors: Vec<Signed> = (0..share + 20)
            .map(|i| f.post(&Identity::generate(), NOW - 500_000, &format!("{i}")))
            .collect();
        let taken = authors
            .iter()
            .filter(|p| matches!(f.take(Origin::History, peer, p, NOW), Admission::Accept { .. }))
            .count();
        assert_eq!(taken, share - 1);
        assert_eq!(
            f.take(Origin::History, peer, &authors[share + 10], NOW),
            Admission::Newcomer
        );
        assert!(matches!(
            f.take(Origin::History, peer, &authors[share + 10], NOW + 1_000),
            Admission::Accept { .. }
        ));
    }

    #[test]
    fn a_refused_post_fetched_back_is_charged_to_the_peer_that_served_it() {
        let mut f = Fixture::open();
        let share = Limits::default().newcomers_per_peer.burst as usize;
        let (hub, other) = (Identity::generate().peer_id(), Identity::generate().peer_id());
        // Bob is a newcomer (his first post was accepted); the hub's share
        // is spent on a flood, so Bob's next post through it is refused.
        let bob = Identity::generate();
        assert_eq!(f.take(Origin::Live, hub, &f.post(&bob, NOW, "hi"), NOW), ACCEPT);
        let flood: Vec<Signed> = (0..share)
            .map(|i| f.post(&Identity::generate(), NOW, &format!("spam {i}")))
            .collect();
        accepted(&mut f, hub, &flood, NOW);
        let again = f.post(&bob, NOW + 1, "anyone?");
        assert_eq!(f.take(Origin::Live, hub, &again, NOW + 1), Admission::Newcomer);
        // Fetched from another peer a second later, it is admitted (and
        // shown), as live traffic from that peer would be.
        assert_eq!(f.take(Origin::Recovered, other, &again, NOW + 1_000), ACCEPT);
        // The other peer's share is charged even for a newcomer the room
        // knows: a recovery is live traffic late, not a catch-up, so a
        // flood cannot come back through it beyond that peer's share.
        let more: Vec<Signed> = (0..share + 5)
            .map(|i| f.post(&bob, NOW + 2 + i as u64, &format!("more {i}")))
            .collect();
        let taken = more
            .iter()
            .filter(|p| f.take(Origin::Recovered, other, p, NOW + 1_000) == ACCEPT)
            .count();
        assert_eq!(taken, share - 1);
        // From history the same known author would not be charged at all.
        let third = Identity::generate().peer_id();
        let late = f.post(&bob, NOW + 500, "history");
        assert!(matches!(
            f.take(Origin::History, third, &late, NOW + 1_000),
            Admission::Accept { .. }
        ));
    }

    #[test]
    fn newcomers_tracked_per_room_are_bounded() {
        let mut f = Fixture::open();
        f.limiters = Limiters::new(&Limits {
            newcomer_for: std::time::Duration::from_millis(NEWCOMER_MS),
            stamp_bits: STAMP_BITS,
            ..Limits::unlimited()
        });
        let relay = Identity::generate().peer_id();
        let key = Identity::generate();
        let p = f.post(&key, NOW, "x");
        for _ in 0..MAX_NEWCOMERS {
            f.joined.note_newcomer(PeerId::random(), NOW, NEWCOMER_MS);
        }
        assert_eq!(f.joined.newcomer_count(), MAX_NEWCOMERS);
        // Full of authors still new: a stranger is refused, not tracked.
        assert_eq!(f.take(Origin::Live, relay, &p, NOW), Admission::Newcomer);
        assert_eq!(f.joined.newcomer_count(), MAX_NEWCOMERS);
        // Once they are not new, they are forgotten and the stranger is let in.
        let later = f.post(&key, NOW + NEWCOMER_MS, "x");
        assert_eq!(f.take(Origin::Live, relay, &later, NOW + NEWCOMER_MS), ACCEPT);
        assert_eq!(f.joined.newcomer_count(), 1);
    }

    #[test]
    fn a_post_below_the_horizon_is_refused_by_every_origin_and_not_fetched_again() {
        let mut f = Fixture::open();
        f.joined.rules = RoomState::new(f.room.clone()).with_bound(3);
        let ann = Identity::generate();
        let posts: Vec<Signed> = (0..5).map(|i| f.post(&ann, NOW - 100 + i, "line")).collect();
        for p in &posts[1..] {
            assert_eq!(f.admit(Origin::Live, p), ACCEPT);
        }
        // Three kept: the oldest of the four went, and the first post,
        // older still, is below the horizon whichever way it comes. It is
        // not the sender's fault (a peer that holds fewer keeps it).
        assert_eq!(f.joined.rules.kept_len(), 3);
        assert_eq!(f.joined.rules.evicted(), 1);
        let below = Admission::Refused {
            reason: RejectReason::BelowHorizon,
            invalid: false,
        };
        for origin in [Origin::Live, Origin::History] {
            assert_eq!(f.admit(origin, &posts[0]), below, "{origin:?}");
        }
        assert_eq!(f.admit(Origin::History, &posts[1]), below, "evicted, so refused again");
        assert!(f.joined.is_below_horizon(&posts[0].id()));
        // The rules are never below a horizon.
        let mut hosted = Fixture::hosted();
        hosted.joined.rules = RoomState::new(hosted.room.clone()).with_bound(1);
        let host = hosted.host.clone();
        assert_eq!(hosted.admit(Origin::Live, &hosted.post(&host, NOW - 10, "new")), ACCEPT);
        let old_mode = hosted.op(&host, NOW - 500, RoomAction::Chat(ChatMode::On));
        assert_eq!(hosted.admit(Origin::History, &old_mode), ACCEPT);
    }

    #[test]
    fn a_deleted_post_is_never_accepted_again() {
        let mut f = Fixture::open();
        let ann = Identity::generate();
        let p = f.post(&ann, NOW - 10, "oops");
        let delete = f.op(&ann, NOW - 5, RoomAction::Delete(p.id()));
        // The delete arrives first (by history), then the post by gossip and
        // by history: it is known deleted either way.
        assert_eq!(f.admit(Origin::History, &delete), ACCEPT);
        assert_eq!(f.admit(Origin::History, &p), Admission::Deleted);
        assert_eq!(f.admit(Origin::Live, &p), Admission::Deleted);
    }

    #[test]
    fn an_authors_delete_that_comes_first_deletes_the_post_live_too() {
        // Found by the simulation (node::sim): live, the post was checked
        // for deletes before it was known, so its author's delete did not
        // count; the post was logged and shown, and its text kept, although
        // the rules then said it was deleted.
        let mut f = Fixture::open();
        let ann = Identity::generate();
        let p = f.post(&ann, NOW - 10, "oops");
        let delete = f.op(&ann, NOW - 5, RoomAction::Delete(p.id()));
        assert_eq!(f.admit(Origin::Live, &delete), ACCEPT);
        assert_eq!(f.admit(Origin::Live, &p), Admission::Deleted);
        // Someone else's delete still does not count.
        let bob = Identity::generate();
        let q = f.post(&ann, NOW - 10, "mine");
        assert_eq!(
            f.admit(Origin::Live, &f.op(&bob, NOW - 5, RoomAction::Delete(q.id()))),
            ACCEPT
        );
        assert_eq!(f.admit(Origin::Live, &q), ACCEPT);
    }

    #[test]
    fn a_removed_participant_cannot_post_live_even_with_an_old_clock() {
        let mut f = Fixture::hosted();
        let (host, ann) = (f.host.clone(), Identity::generate());
        let removal = f.op(
            &host,
            NOW - 100,
            RoomAction::Remove {
                peer: ann.peer_id(),
                restore: false,
            },
        );
        assert_eq!(f.admit(Origin::Live, &removal), ACCEPT);
        let before = f.post(&ann, NOW - 200, "from before the removal");
        let after = f.post(&ann, NOW - 50, "after");
        let removed = Admission::Refused {
            reason: RejectReason::Removed,
            invalid: false,
        };
        assert_eq!(f.admit(Origin::Live, &before), removed);
        assert_eq!(f.admit(Origin::Live, &after), removed);
        // History is decided at the post's clock: before the removal it stands.
        assert_eq!(f.admit(Origin::History, &before), ACCEPT);
        assert_eq!(f.admit(Origin::History, &after), removed);
    }

    #[test]
    fn an_op_before_its_grant_is_parked_then_taken_when_the_grant_arrives() {
        for origin in [Origin::Live, Origin::History] {
            let mut f = Fixture::hosted();
            let (host, ann, bob) = (f.host.clone(), Identity::generate(), Identity::generate());
            let bobs = f.post(&bob, NOW - 30, "spam");
            assert_eq!(f.admit(origin, &bobs), ACCEPT);
            let grant = f.op(
                &host,
                NOW - 20,
                RoomAction::SetRole {
                    peer: ann.peer_id(),
                    role: Role::Moderator,
                },
            );
            let delete = f.op(&ann, NOW - 10, RoomAction::Delete(bobs.id()));
            assert_eq!(
                f.admit(origin, &delete),
                Admission::Parked {
                    reason: RejectReason::NotAllowed
                },
                "{origin:?}"
            );
            assert!(f.joined.take_ready().is_none(), "not before the grant");
            assert_eq!(
                f.admit(origin, &f.op(&host, NOW - 20, RoomAction::Chat(ChatMode::On))),
                ACCEPT
            );
            assert_eq!(f.admit(origin, &grant), ACCEPT);
            let ready = f.joined.take_ready().expect("the grant makes it valid");
            assert_eq!(ready.id(), delete.id());
            assert_eq!(f.admit(Origin::Parked, &ready), ACCEPT);
            assert_eq!(f.joined.apply(&ready).0, vec![(NOW - 30, bobs.id())]);
            assert!(f.joined.rules.is_deleted(&bobs.id()));
            assert_eq!(f.joined.parked_len(), 0);
        }
    }

    #[test]
    fn parking_is_bounded_and_keeps_one_copy() {
        let mut f = Fixture::hosted();
        let ann = Identity::generate();
        for i in 0..(MAX_PARKED as u64 + 10) {
            let op = f.op(&ann, NOW - 1000 + i, RoomAction::Chat(ChatMode::Off));
            assert!(matches!(f.admit(Origin::History, &op), Admission::Parked { .. }));
            let _ = f.admit(Origin::History, &op);
        }
        assert_eq!(f.joined.parked_len(), MAX_PARKED);
    }

    #[test]
    fn presence_is_taken_live_only_and_never_for_the_node_itself() {
        let mut f = Fixture::open();
        let ann = Identity::generate();
        assert_eq!(
            f.admit(Origin::Live, &f.presence(&ann, false)),
            Admission::Presence(Change::Here)
        );
        assert_eq!(
            f.admit(Origin::Live, &f.presence(&ann, true)),
            Admission::Presence(Change::Left)
        );
        let me = Identity::generate();
        f.local = me.peer_id();
        assert_eq!(f.admit(Origin::Live, &f.presence(&me, false)), Admission::NotTracked);
        assert_eq!(f.joined.presence.len(), 0);
    }

    #[test]
    fn the_verdict_does_not_depend_on_the_order_of_arrival() {
        // The same messages through live gossip and through history, in two
        // orders, leave the same rules.
        let f0 = Fixture::hosted();
        let (host, ann) = (f0.host.clone(), Identity::generate());
        let p = f0.post(&ann, NOW - 40, "question?");
        let msgs = vec![
            p.clone(),
            f0.op(
                &host,
                NOW - 30,
                RoomAction::SetRole {
                    peer: ann.peer_id(),
                    role: Role::Moderator,
                },
            ),
            f0.op(&ann, NOW - 20, RoomAction::Chat(ChatMode::ReadOnly)),
            f0.op(&host, NOW - 10, RoomAction::Delete(p.id())),
        ];
        let mut views = Vec::new();
        for (origin, reversed) in [(Origin::Live, false), (Origin::History, true), (Origin::Live, true)] {
            let mut f = Fixture::with(f0.room.clone(), host.clone());
            let mut order = msgs.clone();
            if reversed {
                order.reverse();
            }
            for m in &order {
                let _ = f.admit(origin, m);
                while let Some(ready) = f.joined.take_ready() {
                    if f.admit(Origin::Parked, &ready) == ACCEPT {
                        f.joined.apply(&ready);
                    }
                }
            }
            views.push((
                f.joined.rules.mode(),
                f.joined.rules.role(&ann.peer_id()),
                f.joined.rules.is_deleted(&p.id()),
            ));
        }
        assert!(views.iter().all(|v| *v == views[0]), "{views:?}");
        assert_eq!(views[0], (ChatMode::ReadOnly, Role::Moderator, true));
    }
}
