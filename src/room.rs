//! Rooms as plain state: who may do what in a room, which posts are shown,
//! with which text, reactions and question states, and in which order. No
//! network and no IO: the event loop feeds [`RoomState`] verified messages
//! and asks it what may pass, so every rule here is unit-tested.
//!
//! A room is **open** (just a name: anyone may post, no one moderates) or
//! **hosted**: its id `NAME~HOST` names the host's peer id, so every node can
//! check the host's signature without asking anyone ([`Room::host`]). The host
//! grants roles; the host and moderators delete posts, remove participants
//! and switch the hallway on, off or read-only; authors edit and delete their
//! own posts; host, moderators and speakers mark questions.
//!
//! Posts and operations carry a room **clock** (a hybrid Lamport clock in ms:
//! more than every clock the author saw in the room, and at least its own
//! wall clock). Everything is decided at the clock of the message: an
//! operation counts if its author had the right at that clock, given every
//! operation with a smaller (clock, id); a post counts if its author was not
//! removed and the hallway let it post at that clock. So two nodes that hold
//! the same messages show the same room, whatever order they arrived in.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::Hash;
use std::ops::Bound;

use libp2p::PeerId;

use crate::id::{MessageId, RejectReason, Room};
use crate::protocol::MAX_EMOJI_BYTES;

mod bound;
#[cfg(test)]
mod reference;

pub use bound::{DEFAULT_ROOM_BOUND, is_bounded};

/// A participant's role in a room. Ordered: each role may do what the ones
/// below it may.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Everyone.
    Listener,
    /// May post in a read-only hallway and mark questions.
    Speaker,
    /// May also delete posts, remove participants and set the hallway's mode.
    Moderator,
    /// The room's creator (named in a hosted room's id): may also grant roles.
    Host,
}

/// Who may post in a hallway.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChatMode {
    /// Everyone.
    On,
    /// No one.
    Off,
    /// The host, moderators and speakers; listeners may still ask questions.
    ReadOnly,
}

/// Where a question to the stage stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QuestionState {
    /// Waiting in the queue.
    Open,
    /// Answered from the stage.
    Answered,
    /// Dismissed.
    Dismissed,
}

/// An emoji reaction to a post (in a room) or a DM (in a conversation).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Reaction {
    /// The message reacted to.
    #[serde(with = "crate::id::as_text")]
    pub target: MessageId,
    /// The emoji.
    pub emoji: String,
    /// Takes the reaction back.
    pub retract: bool,
}

/// What a room operation does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RoomAction {
    /// Host only: set a participant's role (not [`Role::Host`]).
    SetRole {
        /// The participant.
        peer: PeerId,
        /// The new role ([`Role::Listener`] takes a role away).
        role: Role,
    },
    /// Delete a post: its author, a moderator or the host.
    Delete(MessageId),
    /// Replace a post's text: its author only.
    Edit {
        /// The post.
        target: MessageId,
        /// The new text.
        text: String,
    },
    /// Moderators and the host: remove a participant (or let them back).
    Remove {
        /// The participant.
        peer: PeerId,
        /// Lets a removed participant back in.
        restore: bool,
    },
    /// Moderators and the host: set the hallway's mode.
    Chat(ChatMode),
    /// Host, moderators and speakers (open rooms: the asker): mark a question.
    Question {
        /// The question post.
        target: MessageId,
        /// Its new state.
        state: QuestionState,
    },
    /// Anyone in the room: add or retract a reaction.
    React(Reaction),
}

/// A signed operation on a room (its author is the envelope's signer).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoomOp {
    /// The room.
    pub room: Room,
    /// The room clock.
    pub clock: u64,
    /// The author's clock, ms since the Unix epoch.
    pub time_ms: u64,
    /// What it does.
    pub action: RoomAction,
    /// The author's stamp for the room, as in [`crate::HallwayPost::stamp`].
    pub stamp: Option<u64>,
}

/// "I am in this room", with an expiry. Never stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Presence {
    /// The room.
    pub room: Room,
    /// The author's clock, ms since the Unix epoch.
    pub time_ms: u64,
    /// The author's display name.
    pub nick: Option<String>,
    /// Seconds the announcement holds.
    pub ttl_s: u32,
    /// The author is leaving the room.
    pub leaving: bool,
}

/// What the rules need to know of a post.
#[derive(Clone, Debug)]
struct PostMeta {
    author: PeerId,
    clock: u64,
    question: bool,
}

/// A (clock, id) key: the one order of a room.
pub type Key = (u64, MessageId);

/// Which operations a question about rights sees: those up to a bound in
/// room order. The rules of a post or of a new operation see everything up
/// to its clock ([`at_clock`]); the fold judges an operation by those before
/// its key alone ([`before`]), as if they had arrived in room order.
type Cut = Bound<Key>;

/// Every operation with this clock or an earlier one.
fn at_clock(clock: u64) -> Cut {
    Bound::Included((clock, MessageId::from_bytes([0xff; 32])))
}

/// Every operation before `key` in room order.
fn before(key: Key) -> Cut {
    Bound::Excluded(key)
}

/// The value of a timeline at a cut: its last entry within it.
fn value_at<T: Copy>(timeline: Option<&BTreeMap<Key, T>>, cut: Cut) -> Option<T> {
    timeline?.range((Bound::Unbounded, cut)).next_back().map(|(_, v)| *v)
}

/// Removes the entry `key` from `owner`'s timeline, and the timeline when it
/// is left empty.
fn remove_entry<K: Hash + Eq, V>(map: &mut HashMap<K, BTreeMap<Key, V>>, owner: &K, key: &Key) {
    if let Some(timeline) = map.get_mut(owner) {
        timeline.remove(key);
        if timeline.is_empty() {
            map.remove(owner);
        }
    }
}

/// A copy of `owner`'s timeline from `from` on (dropping the timeline if it
/// is empty).
fn tail<K: Hash + Eq, V: Copy>(map: &mut HashMap<K, BTreeMap<Key, V>>, owner: &K, from: Key) -> BTreeMap<Key, V> {
    let Some(timeline) = map.get(owner) else {
        return BTreeMap::new();
    };
    let out = timeline.range(from..).map(|(k, v)| (*k, *v)).collect();
    if timeline.is_empty() {
        map.remove(owner);
    }
    out
}

/// What the valid operations decide, each entry under the key of the
/// operation that made it, so that one operation's effect can be taken back
/// and judged again without touching the others.
#[derive(Default)]
struct Derived {
    /// Role changes per participant.
    roles: HashMap<PeerId, BTreeMap<Key, Role>>,
    /// Removals (true) and returns (false) per participant.
    removed: HashMap<PeerId, BTreeMap<Key, bool>>,
    /// Mode changes.
    modes: BTreeMap<Key, ChatMode>,
    /// Deletes per target: (author, the author was a moderator or the host).
    deletes: HashMap<MessageId, BTreeMap<Key, (PeerId, bool)>>,
    /// Edits per target, by author (the text stays in the operation).
    edits: HashMap<MessageId, BTreeMap<Key, PeerId>>,
    /// Question marks per target: (author, author's role, state).
    questions: HashMap<MessageId, BTreeMap<Key, (PeerId, Role, QuestionState)>>,
    /// Reactions per target, emoji and participant: whether each one retracts;
    /// the participant's last one in room order counts.
    reactions: HashMap<MessageId, Reactions>,
}

/// One message's reactions: emoji → participant → (key → retract).
type Reactions = BTreeMap<String, BTreeMap<PeerId, BTreeMap<Key, bool>>>;

/// One room's posts and operations, and what they decide.
///
/// The fold judges each operation by the rules before it in room order, so
/// an operation that arrives late could change the verdict on everything
/// after it. It does not have to look at everything, though: only grants
/// and removals (the *rights* operations) decide other operations' verdicts,
/// and every other operation depends only on its own author's rights. So a
/// late operation that is not a rights operation is judged alone, in
/// O(log n); a late rights operation judges the rights operations after it
/// again (a few, and only from the host and moderators), and then the later
/// operations of the participants whose rights came out different.
pub struct RoomState {
    room: Room,
    host: Option<PeerId>,
    posts: HashMap<MessageId, PostMeta>,
    ops: BTreeMap<Key, (PeerId, RoomAction)>,
    /// The keys of the rights operations (grants and removals).
    rights: BTreeSet<Key>,
    /// The keys of every other operation, by author: what a change of the
    /// author's rights judges again.
    by_author: HashMap<PeerId, BTreeSet<Key>>,
    /// Everyone with a post or an operation here, with how many: the
    /// authors the room knows, which the admission of newcomers
    /// (`node::rooms`) asks about. An author whose last message is evicted
    /// is forgotten, so a flood under fresh keys does not grow it.
    authors: HashMap<PeerId, usize>,
    derived: Derived,
    /// The bound on what anyone may add to the room (`room::bound`).
    kept: bound::Kept,
    max_clock: u64,
    /// Operations judged so far, counting each judgment again.
    judged: u64,
}

impl RoomState {
    /// An empty room.
    pub fn new(room: Room) -> Self {
        Self {
            host: room.host(),
            room,
            posts: HashMap::new(),
            ops: BTreeMap::new(),
            rights: BTreeSet::new(),
            by_author: HashMap::new(),
            authors: HashMap::new(),
            derived: Derived::default(),
            kept: bound::Kept::default(),
            max_clock: 0,
            judged: 0,
        }
    }

    /// The room.
    pub fn room(&self) -> &Room {
        &self.room
    }

    /// The host, for a hosted room.
    pub fn host(&self) -> Option<PeerId> {
        self.host
    }

    /// The clock for a new message of this node's: more than every clock
    /// seen here, and at least `now_ms`.
    pub fn next_clock(&self, now_ms: u64) -> u64 {
        (self.max_clock + 1).max(now_ms)
    }

    /// The highest clock seen.
    pub fn max_clock(&self) -> u64 {
        self.max_clock
    }

    /// Whether `author` has a post or an operation here.
    pub fn knows_author(&self, author: &PeerId) -> bool {
        self.authors.contains_key(author)
    }

    /// Posts known (deleted ones included).
    pub fn post_count(&self) -> usize {
        self.posts.len()
    }

    /// How many times an operation was judged (each new operation once, and
    /// again each time a late change of rights could change its verdict):
    /// the work the room's operations have cost, which the benchmark and the
    /// tests of late operations read.
    pub fn judged(&self) -> u64 {
        self.judged
    }

    /// `peer`'s role at `clock`.
    pub fn role_at(&self, peer: &PeerId, clock: u64) -> Role {
        self.role_within(peer, at_clock(clock))
    }

    fn role_within(&self, peer: &PeerId, cut: Cut) -> Role {
        if self.host == Some(*peer) {
            return Role::Host;
        }
        if self.host.is_none() {
            return Role::Listener;
        }
        value_at(self.derived.roles.get(peer), cut).unwrap_or(Role::Listener)
    }

    /// `peer`'s role now.
    pub fn role(&self, peer: &PeerId) -> Role {
        self.role_at(peer, u64::MAX)
    }

    /// Whether `peer` was removed at `clock`.
    pub fn removed_at(&self, peer: &PeerId, clock: u64) -> bool {
        self.removed_within(peer, at_clock(clock))
    }

    fn removed_within(&self, peer: &PeerId, cut: Cut) -> bool {
        value_at(self.derived.removed.get(peer), cut).unwrap_or(false)
    }

    /// Whether `peer` is removed now.
    pub fn is_removed(&self, peer: &PeerId) -> bool {
        self.removed_at(peer, u64::MAX)
    }

    /// The hallway's mode at `clock`.
    pub fn mode_at(&self, clock: u64) -> ChatMode {
        value_at(Some(&self.derived.modes), at_clock(clock)).unwrap_or(ChatMode::On)
    }

    /// The hallway's mode now.
    pub fn mode(&self) -> ChatMode {
        self.mode_at(u64::MAX)
    }

    /// Participants with a role (not listeners), host first.
    pub fn roles(&self) -> Vec<(PeerId, Role)> {
        let mut out: Vec<(PeerId, Role)> = self.host.iter().map(|h| (*h, Role::Host)).collect();
        let mut others: Vec<(PeerId, Role)> = self
            .derived
            .roles
            .keys()
            .map(|p| (*p, self.role(p)))
            .filter(|(p, r)| *r > Role::Listener && Some(*p) != self.host)
            .collect();
        others.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        out.extend(others);
        out
    }

    /// Whether a post by `author` at `clock` may stand, by the rules at that
    /// clock (the deterministic check, for history).
    pub fn check_post(&self, author: &PeerId, clock: u64, question: bool) -> Result<(), RejectReason> {
        if self.removed_at(author, clock) {
            return Err(RejectReason::Removed);
        }
        match self.mode_at(clock) {
            ChatMode::On => Ok(()),
            ChatMode::ReadOnly if question || self.role_at(author, clock) >= Role::Speaker => Ok(()),
            ChatMode::ReadOnly | ChatMode::Off => Err(RejectReason::ChatClosed),
        }
    }

    /// The check for a live post: the rules at its clock, and its author is
    /// not removed now (a removed participant cannot slip posts in with an
    /// old clock while the removal is known).
    pub fn check_live_post(&self, author: &PeerId, clock: u64, question: bool) -> Result<(), RejectReason> {
        if self.is_removed(author) {
            return Err(RejectReason::Removed);
        }
        self.check_post(author, clock, question)
    }

    /// Whether `author` may do `action` at `clock`, given what is known.
    pub fn check_op(&self, author: &PeerId, clock: u64, action: &RoomAction) -> Result<(), RejectReason> {
        self.check_op_within(author, at_clock(clock), action)
    }

    /// [`RoomState::check_op`] by the rights within `cut`.
    fn check_op_within(&self, author: &PeerId, cut: Cut, action: &RoomAction) -> Result<(), RejectReason> {
        if self.removed_within(author, cut) {
            return Err(RejectReason::Removed);
        }
        let role = self.role_within(author, cut);
        let post_author = |target: &MessageId| self.posts.get(target).map(|p| p.author);
        match action {
            RoomAction::SetRole { peer, role: new } => {
                if role != Role::Host || Some(*peer) == self.host || *new == Role::Host {
                    return Err(RejectReason::NotModerator);
                }
            }
            RoomAction::Delete(target) => {
                // A moderator may delete anything; anyone else only their own
                // posts (a delete of a post not seen yet waits for it).
                if role < Role::Moderator && post_author(target).is_some_and(|a| a != *author) {
                    return Err(RejectReason::NotAllowed);
                }
            }
            RoomAction::Edit { target, .. } => {
                if post_author(target).is_some_and(|a| a != *author) {
                    return Err(RejectReason::NotAllowed);
                }
            }
            RoomAction::Remove { peer, .. } => {
                if role < Role::Moderator || Some(*peer) == self.host || peer == author {
                    return Err(RejectReason::NotModerator);
                }
                if role == Role::Moderator && self.role_within(peer, cut) >= Role::Moderator {
                    return Err(RejectReason::NotModerator);
                }
            }
            RoomAction::Chat(_) => {
                if role < Role::Moderator {
                    return Err(RejectReason::NotModerator);
                }
            }
            RoomAction::Question { target, .. } => {
                let allowed = if self.host.is_some() {
                    role >= Role::Speaker
                } else {
                    post_author(target).is_none_or(|a| a == *author)
                };
                if !allowed {
                    return Err(RejectReason::NotAllowed);
                }
            }
            RoomAction::React(_) => {}
        }
        Ok(())
    }

    /// Adds a verified post (already checked). Returns false if known.
    pub fn add_post(&mut self, id: MessageId, author: PeerId, clock: u64, question: bool) -> bool {
        self.max_clock = self.max_clock.max(clock);
        let new = !self.posts.contains_key(&id);
        if new {
            *self.authors.entry(author).or_default() += 1;
            self.posts.insert(
                id,
                PostMeta {
                    author,
                    clock,
                    question,
                },
            );
        }
        self.hold_post(id);
        new
    }

    /// A known post's clock.
    pub fn post_clock(&self, id: &MessageId) -> Option<u64> {
        self.posts.get(id).map(|p| p.clock)
    }

    /// Participants removed now.
    pub fn removed(&self) -> Vec<PeerId> {
        let mut out: Vec<PeerId> = self
            .derived
            .removed
            .keys()
            .filter(|p| self.is_removed(p))
            .copied()
            .collect();
        out.sort();
        out
    }

    /// Whether a post is known (deleted ones included).
    pub fn knows_post(&self, id: &MessageId) -> bool {
        self.posts.contains_key(id)
    }

    /// Adds a verified operation (already checked) and folds it in, whatever
    /// its place in room order. Returns false if it was known.
    pub fn add_op(&mut self, id: MessageId, author: PeerId, clock: u64, action: RoomAction) -> bool {
        let key = (clock, id);
        if self.ops.contains_key(&key) {
            return false;
        }
        self.max_clock = self.max_clock.max(clock);
        *self.authors.entry(author).or_default() += 1;
        let changes_rights = matches!(action, RoomAction::SetRole { .. } | RoomAction::Remove { .. });
        let bounded = is_bounded(&action);
        self.ops.insert(key, (author, action));
        if changes_rights {
            self.rights.insert(key);
            self.judge_rights_from(key);
        } else {
            self.by_author.entry(author).or_default().insert(key);
            self.judge(key);
        }
        if bounded {
            self.hold_op(key);
        } else {
            self.kept.recount = true;
        }
        true
    }

    /// Judges the rights operations from `from` on again, in room order (each
    /// one's verdict depends on those before it), then the other operations
    /// since `from` of every participant whose rights came out different.
    fn judge_rights_from(&mut self, from: Key) {
        let later: Vec<Key> = self.rights.range(from..).copied().collect();
        let mut touched: BTreeSet<PeerId> = BTreeSet::new();
        for key in &later {
            if let Some((_, RoomAction::SetRole { peer, .. } | RoomAction::Remove { peer, .. })) = self.ops.get(key) {
                touched.insert(*peer);
            }
        }
        // Only these participants' timelines have entries from `from` on:
        // they are cut there and grown again by the judgments below.
        let mut old = Vec::with_capacity(touched.len());
        for peer in touched {
            let roles = self.derived.roles.get_mut(&peer).map(|t| t.split_off(&from));
            let removed = self.derived.removed.get_mut(&peer).map(|t| t.split_off(&from));
            old.push((peer, roles.unwrap_or_default(), removed.unwrap_or_default()));
        }
        for key in later {
            self.judge(key);
        }
        for (peer, roles, removed) in old {
            let now_roles = tail(&mut self.derived.roles, &peer, from);
            let now_removed = tail(&mut self.derived.removed, &peer, from);
            if now_roles == roles && now_removed == removed {
                continue;
            }
            let again: Vec<Key> = self
                .by_author
                .get(&peer)
                .map(|keys| keys.range(from..).copied().collect())
                .unwrap_or_default();
            for key in again {
                self.unjudge(key);
                self.judge(key);
            }
        }
    }

    /// Judges one operation by the rules before it in room order and, if it
    /// is valid, records what it decides.
    fn judge(&mut self, key: Key) {
        self.judged += 1;
        let Some((author, action)) = self.ops.get(&key) else {
            return;
        };
        let cut = before(key);
        if self.check_op_within(author, cut, action).is_err() {
            return;
        }
        let role = self.role_within(author, cut);
        let author = *author;
        let d = &mut self.derived;
        match action {
            RoomAction::SetRole { peer, role } => {
                d.roles.entry(*peer).or_default().insert(key, *role);
            }
            RoomAction::Remove { peer, restore } => {
                d.removed.entry(*peer).or_default().insert(key, !restore);
            }
            RoomAction::Chat(mode) => {
                d.modes.insert(key, *mode);
            }
            RoomAction::Delete(target) => {
                let moderator = role >= Role::Moderator;
                d.deletes.entry(*target).or_default().insert(key, (author, moderator));
            }
            RoomAction::Edit { target, .. } => {
                d.edits.entry(*target).or_default().insert(key, author);
            }
            RoomAction::Question { target, state } => {
                d.questions
                    .entry(*target)
                    .or_default()
                    .insert(key, (author, role, *state));
            }
            RoomAction::React(r) => {
                let by_peer = d
                    .reactions
                    .entry(r.target)
                    .or_default()
                    .entry(r.emoji.clone())
                    .or_default();
                by_peer.entry(author).or_default().insert(key, r.retract);
            }
        }
    }

    /// Takes back what an operation (not a rights operation) decided, if
    /// anything.
    fn unjudge(&mut self, key: Key) {
        let Some((author, action)) = self.ops.get(&key) else {
            return;
        };
        let d = &mut self.derived;
        match action {
            RoomAction::SetRole { .. } | RoomAction::Remove { .. } => {}
            RoomAction::Chat(_) => {
                d.modes.remove(&key);
            }
            RoomAction::Delete(target) => remove_entry(&mut d.deletes, target, &key),
            RoomAction::Edit { target, .. } => remove_entry(&mut d.edits, target, &key),
            RoomAction::Question { target, .. } => remove_entry(&mut d.questions, target, &key),
            RoomAction::React(r) => {
                let Some(by_emoji) = d.reactions.get_mut(&r.target) else {
                    return;
                };
                if let Some(by_peer) = by_emoji.get_mut(&r.emoji) {
                    if let Some(marks) = by_peer.get_mut(author) {
                        marks.remove(&key);
                        if marks.is_empty() {
                            by_peer.remove(author);
                        }
                    }
                    if by_peer.is_empty() {
                        by_emoji.remove(&r.emoji);
                    }
                }
                if by_emoji.is_empty() {
                    d.reactions.remove(&r.target);
                }
            }
        }
    }

    /// Whether a post is deleted: by a moderator or the host, or by its own
    /// author.
    pub fn is_deleted(&self, id: &MessageId) -> bool {
        let Some(deletes) = self.derived.deletes.get(id) else {
            return false;
        };
        let author = self.posts.get(id).map(|p| p.author);
        deletes
            .values()
            .any(|(by, moderator)| *moderator || Some(*by) == author)
    }

    /// Whether a post by `author`, known or not, is deleted: what
    /// [`RoomState::is_deleted`] says once the post is known, so that its
    /// author's delete that arrived first counts.
    pub fn is_deleted_as(&self, id: &MessageId, author: &PeerId) -> bool {
        self.derived
            .deletes
            .get(id)
            .is_some_and(|deletes| deletes.values().any(|(by, moderator)| *moderator || by == author))
    }

    /// Whether a known post is shown: not deleted and allowed at its clock.
    pub fn is_visible(&self, id: &MessageId) -> bool {
        let Some(post) = self.posts.get(id) else {
            return false;
        };
        !self.is_deleted(id) && self.check_post(&post.author, post.clock, post.question).is_ok()
    }

    /// A post's latest text by its author, if edited.
    pub fn edited_text(&self, id: &MessageId) -> Option<&str> {
        let author = self.posts.get(id)?.author;
        let (key, _) = self
            .derived
            .edits
            .get(id)?
            .iter()
            .rev()
            .find(|(_, by)| **by == author)?;
        match self.ops.get(key) {
            Some((_, RoomAction::Edit { text, .. })) => Some(text.as_str()),
            _ => None,
        }
    }

    /// A question's state (None: not a question).
    pub fn question_state(&self, id: &MessageId) -> Option<QuestionState> {
        let post = self.posts.get(id)?;
        if !post.question {
            return None;
        }
        let marks = self.derived.questions.get(id);
        let hosted = self.host.is_some();
        let state = marks
            .into_iter()
            .flat_map(|m| m.values())
            .rev()
            .find(|(by, role, _)| {
                if hosted {
                    *role >= Role::Speaker
                } else {
                    *by == post.author
                }
            })
            .map(|(_, _, s)| *s);
        Some(state.unwrap_or(QuestionState::Open))
    }

    /// A message's reactions: emoji → who, in emoji order.
    pub fn reactions(&self, id: &MessageId) -> Vec<(String, Vec<PeerId>)> {
        let Some(by_emoji) = self.derived.reactions.get(id) else {
            return Vec::new();
        };
        by_emoji
            .iter()
            .filter_map(|(emoji, by_peer)| {
                let who: Vec<PeerId> = by_peer
                    .iter()
                    .filter(|(_, marks)| marks.values().next_back() == Some(&false))
                    .map(|(peer, _)| *peer)
                    .collect();
                (!who.is_empty()).then(|| (emoji.clone(), who))
            })
            .collect()
    }

    /// Posts whose deletion is decided: their text should leave the log.
    pub fn deleted_posts(&self) -> Vec<MessageId> {
        self.derived
            .deletes
            .keys()
            .filter(|id| self.posts.contains_key(id) && self.is_deleted(id))
            .copied()
            .collect()
    }

    /// The questions, in room order, with their states.
    pub fn questions(&self) -> Vec<(Key, QuestionState)> {
        let mut out: Vec<(Key, QuestionState)> = self
            .posts
            .iter()
            .filter(|(id, p)| p.question && self.is_visible(id))
            .filter_map(|(id, p)| Some(((p.clock, *id), self.question_state(id)?)))
            .collect();
        out.sort();
        out
    }
}

/// Checks an emoji: 1..=32 bytes, no whitespace or control characters.
pub fn check_emoji(emoji: &str) -> Result<(), RejectReason> {
    if emoji.is_empty() || emoji.len() > MAX_EMOJI_BYTES || emoji.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(RejectReason::InvalidField);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::identity::Identity;

    fn peer(n: u8) -> PeerId {
        Identity::from_secret([n; 32]).peer_id()
    }

    fn id(n: u8) -> MessageId {
        MessageId::from_bytes([n; 32])
    }

    fn hosted(host: PeerId) -> RoomState {
        RoomState::new(Room::hosted("stage", &host).unwrap())
    }

    #[test]
    fn a_hosted_room_names_its_host_and_an_open_room_none() {
        let h = peer(1);
        let room = Room::hosted("stage", &h).unwrap();
        assert_eq!(room.host(), Some(h));
        assert_eq!(room.name(), "stage");
        assert_eq!(Room::new(room.as_str()).unwrap(), room);
        assert_eq!(Room::new("lobby").unwrap().host(), None);
        assert!(Room::new("a~b").is_err(), "a ~ must be followed by a peer id");
    }

    #[test]
    fn only_the_host_grants_roles_and_only_moderators_moderate() {
        let (h, m, l) = (peer(1), peer(2), peer(3));
        let mut r = hosted(h);
        let grant = RoomAction::SetRole {
            peer: m,
            role: Role::Moderator,
        };
        assert_eq!(r.check_op(&l, 10, &grant), Err(RejectReason::NotModerator));
        assert_eq!(
            r.check_op(&l, 10, &RoomAction::Chat(ChatMode::Off)),
            Err(RejectReason::NotModerator)
        );
        r.add_op(id(1), h, 10, grant);
        assert_eq!(r.role(&m), Role::Moderator);
        assert_eq!(r.role_at(&m, 9), Role::Listener);
        assert_eq!(r.check_op(&m, 11, &RoomAction::Chat(ChatMode::Off)), Ok(()));
        assert_eq!(
            r.check_op(&m, 9, &RoomAction::Chat(ChatMode::Off)),
            Err(RejectReason::NotModerator)
        );
        // A moderator cannot remove the host or another moderator.
        let remove_host = RoomAction::Remove {
            peer: h,
            restore: false,
        };
        assert_eq!(r.check_op(&m, 11, &remove_host), Err(RejectReason::NotModerator));
    }

    #[test]
    fn a_moderator_deletes_any_post_and_an_author_only_their_own() {
        let (h, m, a, b) = (peer(1), peer(2), peer(3), peer(4));
        let mut r = hosted(h);
        r.add_op(
            id(1),
            h,
            10,
            RoomAction::SetRole {
                peer: m,
                role: Role::Moderator,
            },
        );
        r.add_post(id(2), a, 20, false);
        r.add_post(id(3), a, 21, false);
        assert_eq!(
            r.check_op(&b, 30, &RoomAction::Delete(id(2))),
            Err(RejectReason::NotAllowed)
        );
        r.add_op(id(4), m, 30, RoomAction::Delete(id(2)));
        r.add_op(id(5), a, 31, RoomAction::Delete(id(3)));
        assert!(r.is_deleted(&id(2)) && r.is_deleted(&id(3)));
        assert!(!r.is_visible(&id(2)));
        let mut deleted = r.deleted_posts();
        deleted.sort();
        assert_eq!(deleted, vec![id(2), id(3)]);
    }

    #[test]
    fn a_delete_that_arrives_before_its_post_counts_only_for_the_author() {
        let (a, b) = (peer(3), peer(4));
        let mut r = RoomState::new(Room::new("lobby").unwrap());
        r.add_op(id(9), b, 30, RoomAction::Delete(id(2)));
        r.add_op(id(8), a, 31, RoomAction::Delete(id(3)));
        r.add_post(id(2), a, 20, false);
        r.add_post(id(3), a, 21, false);
        assert!(!r.is_deleted(&id(2)), "b cannot delete a's post");
        assert!(r.is_deleted(&id(3)));
    }

    #[test]
    fn a_removed_participant_posts_nothing_after_the_removal() {
        let (h, x) = (peer(1), peer(5));
        let mut r = hosted(h);
        r.add_post(id(2), x, 10, false);
        r.add_op(
            id(3),
            h,
            20,
            RoomAction::Remove {
                peer: x,
                restore: false,
            },
        );
        assert!(r.is_visible(&id(2)), "earlier posts stay");
        assert_eq!(r.check_post(&x, 25, false), Err(RejectReason::Removed));
        assert_eq!(r.check_post(&x, 15, false), Ok(()), "by the rules at clock 15");
        assert_eq!(r.check_live_post(&x, 15, false), Err(RejectReason::Removed));
        assert_eq!(
            r.check_op(
                &x,
                25,
                &RoomAction::React(Reaction {
                    target: id(2),
                    emoji: "👍".into(),
                    retract: false
                })
            ),
            Err(RejectReason::Removed)
        );
        r.add_op(id(4), h, 30, RoomAction::Remove { peer: x, restore: true });
        assert_eq!(r.check_post(&x, 35, false), Ok(()));
    }

    #[test]
    fn the_hallway_mode_decides_who_posts() {
        let (h, s, l) = (peer(1), peer(2), peer(3));
        let mut r = hosted(h);
        r.add_op(
            id(1),
            h,
            10,
            RoomAction::SetRole {
                peer: s,
                role: Role::Speaker,
            },
        );
        r.add_op(id(2), h, 20, RoomAction::Chat(ChatMode::ReadOnly));
        assert_eq!(r.check_post(&l, 25, false), Err(RejectReason::ChatClosed));
        assert_eq!(r.check_post(&l, 25, true), Ok(()), "questions still reach the stage");
        assert_eq!(r.check_post(&s, 25, false), Ok(()));
        r.add_op(id(3), h, 30, RoomAction::Chat(ChatMode::Off));
        assert_eq!(r.check_post(&h, 35, false), Err(RejectReason::ChatClosed));
        assert_eq!(r.check_post(&l, 15, false), Ok(()));
    }

    #[test]
    fn a_late_revocation_undoes_what_followed_it_in_every_order() {
        let (h, m, a) = (peer(1), peer(2), peer(3));
        let ops = [
            (
                id(1),
                h,
                10,
                RoomAction::SetRole {
                    peer: m,
                    role: Role::Moderator,
                },
            ),
            (
                id(2),
                h,
                20,
                RoomAction::SetRole {
                    peer: m,
                    role: Role::Listener,
                },
            ),
            (id(3), m, 30, RoomAction::Delete(id(9))),
            (id(4), m, 15, RoomAction::Chat(ChatMode::Off)),
        ];
        let mut outcomes = BTreeSet::new();
        // Every arrival order gives the same room.
        for perm in [[0, 1, 2, 3], [3, 2, 1, 0], [2, 0, 3, 1], [1, 3, 0, 2]] {
            let mut r = hosted(h);
            r.add_post(id(9), a, 5, false);
            for i in perm {
                let (oid, author, clock, action) = ops[i].clone();
                r.add_op(oid, author, clock, action);
            }
            outcomes.insert((r.is_deleted(&id(9)), r.mode_at(16) == ChatMode::Off, r.mode()));
        }
        assert_eq!(outcomes.len(), 1, "{outcomes:?}");
        let (deleted, off_at_16, _) = outcomes.into_iter().next().unwrap();
        assert!(!deleted, "m was no longer a moderator at 30");
        assert!(off_at_16, "m was a moderator at 15");
    }

    #[test]
    fn edits_count_only_from_the_author_and_the_latest_wins() {
        let (a, b) = (peer(3), peer(4));
        let mut r = RoomState::new(Room::new("lobby").unwrap());
        r.add_post(id(1), a, 10, false);
        r.add_op(
            id(2),
            a,
            11,
            RoomAction::Edit {
                target: id(1),
                text: "v2".into(),
            },
        );
        r.add_op(
            id(3),
            a,
            12,
            RoomAction::Edit {
                target: id(1),
                text: "v3".into(),
            },
        );
        assert_eq!(
            r.check_op(
                &b,
                13,
                &RoomAction::Edit {
                    target: id(1),
                    text: "x".into()
                }
            ),
            Err(RejectReason::NotAllowed)
        );
        assert_eq!(r.edited_text(&id(1)), Some("v3"));
    }

    #[test]
    fn reactions_add_and_retract() {
        let (a, b) = (peer(3), peer(4));
        let mut r = RoomState::new(Room::new("lobby").unwrap());
        let react = |retract| {
            RoomAction::React(Reaction {
                target: id(1),
                emoji: "🎉".into(),
                retract,
            })
        };
        r.add_op(id(2), a, 10, react(false));
        r.add_op(id(3), b, 11, react(false));
        r.add_op(id(4), a, 12, react(true));
        assert_eq!(r.reactions(&id(1)), vec![("🎉".to_string(), vec![b])]);
    }

    #[test]
    fn questions_are_marked_from_the_stage_and_queued_in_order() {
        let (h, s, l) = (peer(1), peer(2), peer(3));
        let mut r = hosted(h);
        r.add_op(
            id(1),
            h,
            10,
            RoomAction::SetRole {
                peer: s,
                role: Role::Speaker,
            },
        );
        r.add_post(id(5), l, 30, true);
        r.add_post(id(4), l, 20, true);
        r.add_post(id(6), l, 25, false);
        let answered = RoomAction::Question {
            target: id(4),
            state: QuestionState::Answered,
        };
        assert_eq!(r.check_op(&l, 40, &answered), Err(RejectReason::NotAllowed));
        r.add_op(id(7), s, 40, answered);
        assert_eq!(
            r.questions(),
            vec![
                ((20, id(4)), QuestionState::Answered),
                ((30, id(5)), QuestionState::Open)
            ]
        );
        assert_eq!(r.question_state(&id(6)), None);
    }

    #[test]
    fn the_next_clock_is_past_everything_seen_and_the_wall_clock() {
        let mut r = RoomState::new(Room::new("lobby").unwrap());
        assert_eq!(r.next_clock(1000), 1000);
        r.add_post(id(1), peer(1), 5000, false);
        assert_eq!(r.next_clock(1000), 5001);
    }

    /// One operation of the model test, by indices into its small worlds.
    #[derive(Clone, Debug)]
    enum Act {
        SetRole(usize, u8),
        Remove(usize, bool),
        Chat(u8),
        Delete(usize),
        Edit(usize, u8),
        Question(usize, bool),
        React(usize, u8, bool),
    }

    const PEERS: usize = 5;
    const TARGETS: usize = 6;

    fn act() -> impl Strategy<Value = Act> {
        prop_oneof![
            2 => (0..PEERS, 0..4u8).prop_map(|(p, r)| Act::SetRole(p, r)),
            2 => (0..PEERS, any::<bool>()).prop_map(|(p, r)| Act::Remove(p, r)),
            1 => (0..3u8).prop_map(Act::Chat),
            2 => (0..TARGETS).prop_map(Act::Delete),
            2 => (0..TARGETS, 0..3u8).prop_map(|(t, x)| Act::Edit(t, x)),
            2 => (0..TARGETS, any::<bool>()).prop_map(|(t, a)| Act::Question(t, a)),
            4 => (0..TARGETS, 0..2u8, any::<bool>()).prop_map(|(t, e, r)| Act::React(t, e, r)),
        ]
    }

    /// The authors of a room's messages: the host (peer 0) more often, so
    /// that grants and removals are valid often enough to matter.
    fn author() -> impl Strategy<Value = usize> {
        prop_oneof![2 => Just(0usize), 3 => 0..PEERS]
    }

    /// A room of posts and operations with clocks from a small range (so
    /// that equal clocks are common), and an order of arrival for them.
    /// Whether the room is hosted; its posts (author, clock, question); its
    /// operations (author, clock, a byte of their id, what they do); the
    /// order of arrival of posts and operations together.
    type World = (bool, Vec<(usize, u64, bool)>, Vec<(usize, u64, u8, Act)>, Vec<usize>);

    fn room_world() -> impl Strategy<Value = World> {
        let posts = proptest::collection::vec((0..PEERS, 0..30u64, any::<bool>()), 0..TARGETS);
        let ops = proptest::collection::vec((author(), 0..30u64, any::<u8>(), act()), 0..40);
        (any::<bool>(), posts, ops).prop_flat_map(|(hosted, posts, ops)| {
            let order: Vec<usize> = (0..posts.len() + ops.len()).collect();
            (Just(hosted), Just(posts), Just(ops), Just(order).prop_shuffle())
        })
    }

    fn target(t: usize) -> MessageId {
        id(200 + t as u8)
    }

    fn action(a: &Act, peers: &[PeerId]) -> RoomAction {
        let emojis = ["👍", "🎉"];
        let roles = [Role::Listener, Role::Speaker, Role::Moderator, Role::Host];
        let modes = [ChatMode::On, ChatMode::Off, ChatMode::ReadOnly];
        match a {
            Act::SetRole(p, r) => RoomAction::SetRole {
                peer: peers[*p],
                role: roles[*r as usize],
            },
            Act::Remove(p, restore) => RoomAction::Remove {
                peer: peers[*p],
                restore: *restore,
            },
            Act::Chat(m) => RoomAction::Chat(modes[*m as usize]),
            Act::Delete(t) => RoomAction::Delete(target(*t)),
            Act::Edit(t, x) => RoomAction::Edit {
                target: target(*t),
                text: format!("v{x}"),
            },
            Act::Question(t, answered) => RoomAction::Question {
                target: target(*t),
                state: if *answered {
                    QuestionState::Answered
                } else {
                    QuestionState::Dismissed
                },
            },
            Act::React(t, e, retract) => RoomAction::React(Reaction {
                target: target(*t),
                emoji: emojis[*e as usize].into(),
                retract: *retract,
            }),
        }
    }

    /// Everything a room shows, read from both.
    fn same_room(
        r: &RoomState,
        m: &reference::Reference,
        peers: &[PeerId],
        authors: &HashMap<MessageId, PeerId>,
    ) -> Result<(), proptest::test_runner::TestCaseError> {
        let clocks = (0..32u64).chain([u64::MAX]);
        for c in clocks {
            prop_assert_eq!(r.mode_at(c), m.mode_at(c), "mode at {}", c);
            for p in peers {
                prop_assert_eq!(r.role_at(p, c), m.role_at(p, c), "role at {}", c);
                prop_assert_eq!(r.removed_at(p, c), m.removed_at(p, c), "removed at {}", c);
                for quest in [false, true] {
                    prop_assert_eq!(r.check_post(p, c, quest), m.check_post(p, c, quest));
                }
            }
        }
        for t in (0..TARGETS).map(target) {
            prop_assert_eq!(r.is_deleted(&t), m.is_deleted(&t));
            prop_assert_eq!(r.is_visible(&t), m.is_visible(&t));
            prop_assert_eq!(r.edited_text(&t), m.edited_text(&t));
            prop_assert_eq!(r.question_state(&t), m.question_state(&t));
            prop_assert_eq!(r.reactions(&t), m.reactions(&t));
            // Asked of a post not known yet, by whoever may turn out to be
            // its author; of a known post, by its author (a post's id
            // names its author, so no one asks otherwise).
            let authors: Vec<PeerId> = match authors.get(&t) {
                Some(author) => vec![*author],
                None => peers.to_vec(),
            };
            for p in &authors {
                prop_assert_eq!(r.is_deleted_as(&t, p), m.is_deleted_as(&t, p));
            }
        }
        let sorted = |mut v: Vec<MessageId>| {
            v.sort();
            v
        };
        prop_assert_eq!(sorted(r.deleted_posts()), sorted(m.deleted_posts()));
        prop_assert_eq!(r.questions(), m.questions());
        prop_assert_eq!(r.roles(), m.roles());
        prop_assert_eq!(r.removed(), m.removed());
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Whatever order posts and operations arrive in, the room shows
        /// exactly what the straightforward fold (every late operation
        /// decides everything again from the start) shows.
        #[test]
        fn late_operations_decide_what_the_full_fold_decides((hosted, posts, ops, order) in room_world()) {
            let peers: Vec<PeerId> = (1..=PEERS as u8).map(peer).collect();
            let room = if hosted {
                Room::hosted("stage", &peers[0]).expect("room")
            } else {
                Room::new("lobby").expect("room")
            };
            let mut r = RoomState::new(room.clone());
            let mut m = reference::Reference::new(room);
            let mut authors = HashMap::new();
            for i in order {
                if let Some((author, clock, question)) = posts.get(i) {
                    let post = target(i);
                    authors.insert(post, peers[*author]);
                    r.add_post(post, peers[*author], *clock, *question);
                    m.add_post(post, peers[*author], *clock, *question);
                } else {
                    let n = i - posts.len();
                    let (author, clock, salt, act) = &ops[n];
                    // The salt orders operations of equal clocks differently
                    // from their arrival.
                    let mut bytes = [0u8; 32];
                    bytes[0] = *salt;
                    bytes[1] = n as u8;
                    let op = MessageId::from_bytes(bytes);
                    let new = r.add_op(op, peers[*author], *clock, action(act, &peers));
                    prop_assert_eq!(new, m.add_op(op, peers[*author], *clock, action(act, &peers)));
                }
            }
            same_room(&r, &m, &peers, &authors)?;
        }
    }

    /// A room of `count` reactions and edits with distinct clocks, and a
    /// grant or removal by the host every 500 operations; fed in a shuffled
    /// order (a seeded Fisher-Yates), it must judge each operation about
    /// once, not once per operation that arrived before it.
    #[test]
    fn late_operations_are_judged_about_once_each() {
        let count = 20_000usize;
        let host = peer(1);
        let people: Vec<PeerId> = (2..40).map(peer).collect();
        let mut r = hosted(host);
        for (i, p) in people.iter().enumerate() {
            r.add_post(id(100 + i as u8), *p, 1 + i as u64, false);
        }
        let mut ops = Vec::with_capacity(count);
        for i in 0..count {
            let author = people[i % people.len()];
            let target = id(100 + (i * 7 % people.len()) as u8);
            let action = match i % 500 {
                0 => RoomAction::Remove {
                    peer: people[i / 500 % people.len()],
                    restore: i % 1000 == 0,
                },
                250 => RoomAction::SetRole {
                    peer: people[i / 250 % people.len()],
                    role: Role::Moderator,
                },
                n if n % 2 == 0 => RoomAction::Edit {
                    target,
                    text: format!("{i}"),
                },
                _ => RoomAction::React(Reaction {
                    target,
                    emoji: "👍".into(),
                    retract: i % 3 == 0,
                }),
            };
            let author = if i % 250 == 0 { host } else { author };
            let mut bytes = [0u8; 32];
            bytes[..8].copy_from_slice(&(i as u64).to_be_bytes());
            ops.push((MessageId::from_bytes(bytes), author, 1000 + i as u64, action));
        }
        let mut order: Vec<usize> = (0..count).collect();
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        for i in (1..count).rev() {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            order.swap(i, (seed % (i as u64 + 1)) as usize);
        }
        for i in order {
            let (op, author, clock, action) = ops[i].clone();
            r.add_op(op, author, clock, action);
        }
        // Each of the 80 changes of rights judges the later changes again
        // (at most 80 each) and its target's later operations (at most
        // count / 38 each); everything else is judged once.
        let bound = count as u64 + 80 * 80 + 80 * (count / people.len()) as u64;
        assert!(
            r.judged() <= bound,
            "{} judgments for {count} operations (bound {bound})",
            r.judged()
        );
        assert!(r.judged() >= count as u64);
    }

    #[test]
    fn emoji_are_checked() {
        assert!(check_emoji("👍").is_ok());
        for bad in ["", "a b", "\n", &"x".repeat(33)] {
            assert!(check_emoji(bad).is_err(), "{bad:?}");
        }
    }
}
