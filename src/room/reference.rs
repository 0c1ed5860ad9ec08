//! The straightforward fold of a room's operations, as `RoomState` did it
//! before late operations became cheap: every operation older than the
//! newest one folded decides everything again from the start. Kept only as
//! the oracle of the model test in `room::tests`: whatever order operations
//! arrive in, `RoomState` must show exactly what this shows.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use libp2p::PeerId;

use super::{ChatMode, Key, QuestionState, Role, RoomAction};
use crate::id::{MessageId, RejectReason, Room};

/// What the rules need to know of a post.
#[derive(Clone, Debug)]
struct PostMeta {
    author: PeerId,
    clock: u64,
    question: bool,
}

/// What the operations folded so far decided.
#[derive(Default)]
struct Derived {
    /// Role changes per participant, in order: (clock, role).
    roles: HashMap<PeerId, Vec<(u64, Role)>>,
    /// Removals per participant, in order: (clock, removed?).
    removed: HashMap<PeerId, Vec<(u64, bool)>>,
    /// Mode changes, in order.
    modes: Vec<(u64, ChatMode)>,
    /// Deletes per target: (author, the author was a moderator or the host).
    deletes: HashMap<MessageId, Vec<(PeerId, bool)>>,
    /// Edits per target, in order: (author, text).
    edits: HashMap<MessageId, Vec<(PeerId, String)>>,
    /// Question marks per target, in order: (author, author's role, state).
    questions: HashMap<MessageId, Vec<(PeerId, Role, QuestionState)>>,
    /// Reactions per target: emoji → who.
    reactions: HashMap<MessageId, BTreeMap<String, BTreeSet<PeerId>>>,
}

/// The value of a timeline at `clock`: its last entry at or before it.
fn at<T: Copy>(timeline: Option<&Vec<(u64, T)>>, clock: u64) -> Option<T> {
    timeline?.iter().rev().find(|(c, _)| *c <= clock).map(|(_, v)| *v)
}

/// One room's posts and operations, and what they decide.
pub(super) struct Reference {
    host: Option<PeerId>,
    posts: HashMap<MessageId, PostMeta>,
    ops: BTreeMap<Key, (PeerId, RoomAction)>,
    derived: Derived,
    /// The last operation folded into `derived`.
    folded: Option<Key>,
}

impl Reference {
    /// An empty room.
    pub(super) fn new(room: Room) -> Self {
        Self {
            host: room.host(),
            posts: HashMap::new(),
            ops: BTreeMap::new(),
            derived: Derived::default(),
            folded: None,
        }
    }

    /// `peer`'s role at `clock`.
    pub(super) fn role_at(&self, peer: &PeerId, clock: u64) -> Role {
        if self.host == Some(*peer) {
            return Role::Host;
        }
        if self.host.is_none() {
            return Role::Listener;
        }
        at(self.derived.roles.get(peer), clock).unwrap_or(Role::Listener)
    }

    /// `peer`'s role now.
    pub(super) fn role(&self, peer: &PeerId) -> Role {
        self.role_at(peer, u64::MAX)
    }

    /// Whether `peer` was removed at `clock`.
    pub(super) fn removed_at(&self, peer: &PeerId, clock: u64) -> bool {
        at(self.derived.removed.get(peer), clock).unwrap_or(false)
    }

    /// Whether `peer` is removed now.
    pub(super) fn is_removed(&self, peer: &PeerId) -> bool {
        self.removed_at(peer, u64::MAX)
    }

    /// The hallway's mode at `clock`.
    pub(super) fn mode_at(&self, clock: u64) -> ChatMode {
        at(Some(&self.derived.modes), clock).unwrap_or(ChatMode::On)
    }

    /// Participants with a role (not listeners), host first.
    pub(super) fn roles(&self) -> Vec<(PeerId, Role)> {
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
    pub(super) fn check_post(&self, author: &PeerId, clock: u64, question: bool) -> Result<(), RejectReason> {
        if self.removed_at(author, clock) {
            return Err(RejectReason::Removed);
        }
        match self.mode_at(clock) {
            ChatMode::On => Ok(()),
            ChatMode::ReadOnly if question || self.role_at(author, clock) >= Role::Speaker => Ok(()),
            ChatMode::ReadOnly | ChatMode::Off => Err(RejectReason::ChatClosed),
        }
    }

    /// Whether `author` may do `action` at `clock`, given what is known.
    pub(super) fn check_op(&self, author: &PeerId, clock: u64, action: &RoomAction) -> Result<(), RejectReason> {
        if self.removed_at(author, clock) {
            return Err(RejectReason::Removed);
        }
        let role = self.role_at(author, clock);
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
                if role == Role::Moderator && self.role_at(peer, clock) >= Role::Moderator {
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
    pub(super) fn add_post(&mut self, id: MessageId, author: PeerId, clock: u64, question: bool) -> bool {
        self.posts
            .insert(
                id,
                PostMeta {
                    author,
                    clock,
                    question,
                },
            )
            .is_none()
    }

    /// Participants removed now.
    pub(super) fn removed(&self) -> Vec<PeerId> {
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

    /// Adds a verified operation (already checked) and folds it in. Returns
    /// false if it was known.
    pub(super) fn add_op(&mut self, id: MessageId, author: PeerId, clock: u64, action: RoomAction) -> bool {
        let key = (clock, id);
        if self.ops.contains_key(&key) {
            return false;
        }
        self.ops.insert(key, (author, action));
        if self.folded.is_none_or(|last| key > last) {
            self.fold(key);
        } else {
            // An operation from the past (history, a healed partition):
            // decide everything again in order.
            self.derived = Derived::default();
            self.folded = None;
            let keys: Vec<Key> = self.ops.keys().copied().collect();
            for key in keys {
                self.fold(key);
            }
        }
        true
    }

    fn fold(&mut self, key: Key) {
        self.folded = Some(key);
        let (clock, _) = key;
        let Some((author, action)) = self.ops.get(&key).cloned() else {
            return;
        };
        // Rights are judged as they were at the operation's clock.
        if self.check_op(&author, clock, &action).is_err() {
            return;
        }
        let role = self.role_at(&author, clock);
        let d = &mut self.derived;
        match action {
            RoomAction::SetRole { peer, role } => d.roles.entry(peer).or_default().push((clock, role)),
            RoomAction::Remove { peer, restore } => d.removed.entry(peer).or_default().push((clock, !restore)),
            RoomAction::Chat(mode) => d.modes.push((clock, mode)),
            RoomAction::Delete(target) => d
                .deletes
                .entry(target)
                .or_default()
                .push((author, role >= Role::Moderator)),
            RoomAction::Edit { target, text } => d.edits.entry(target).or_default().push((author, text)),
            RoomAction::Question { target, state } => {
                d.questions.entry(target).or_default().push((author, role, state));
            }
            RoomAction::React(r) => {
                let by_emoji = d.reactions.entry(r.target).or_default();
                if r.retract {
                    if let Some(who) = by_emoji.get_mut(&r.emoji) {
                        who.remove(&author);
                        if who.is_empty() {
                            by_emoji.remove(&r.emoji);
                        }
                    }
                } else {
                    by_emoji.entry(r.emoji).or_default().insert(author);
                }
            }
        }
    }

    /// Whether a post is deleted: by a moderator or the host, or by its own
    /// author.
    pub(super) fn is_deleted(&self, id: &MessageId) -> bool {
        let Some(deletes) = self.derived.deletes.get(id) else {
            return false;
        };
        let author = self.posts.get(id).map(|p| p.author);
        deletes.iter().any(|(by, moderator)| *moderator || Some(*by) == author)
    }

    /// Whether a post by `author`, known or not, is deleted: what
    /// `is_deleted` says once the post is known, so that its
    /// author's delete that arrived first counts.
    pub(super) fn is_deleted_as(&self, id: &MessageId, author: &PeerId) -> bool {
        self.derived
            .deletes
            .get(id)
            .is_some_and(|deletes| deletes.iter().any(|(by, moderator)| *moderator || by == author))
    }

    /// Whether a known post is shown: not deleted and allowed at its clock.
    pub(super) fn is_visible(&self, id: &MessageId) -> bool {
        let Some(post) = self.posts.get(id) else {
            return false;
        };
        !self.is_deleted(id) && self.check_post(&post.author, post.clock, post.question).is_ok()
    }

    /// A post's latest text by its author, if edited.
    pub(super) fn edited_text(&self, id: &MessageId) -> Option<&str> {
        let author = self.posts.get(id)?.author;
        self.derived
            .edits
            .get(id)?
            .iter()
            .rev()
            .find(|(by, _)| *by == author)
            .map(|(_, text)| text.as_str())
    }

    /// A question's state (None: not a question).
    pub(super) fn question_state(&self, id: &MessageId) -> Option<QuestionState> {
        let post = self.posts.get(id)?;
        if !post.question {
            return None;
        }
        let marks = self.derived.questions.get(id);
        let hosted = self.host.is_some();
        let state = marks
            .into_iter()
            .flatten()
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
    pub(super) fn reactions(&self, id: &MessageId) -> Vec<(String, Vec<PeerId>)> {
        self.derived
            .reactions
            .get(id)
            .map(|m| {
                m.iter()
                    .map(|(e, who)| (e.clone(), who.iter().copied().collect()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Posts whose deletion is decided: their text should leave the log.
    pub(super) fn deleted_posts(&self) -> Vec<MessageId> {
        self.derived
            .deletes
            .keys()
            .filter(|id| self.posts.contains_key(id) && self.is_deleted(id))
            .copied()
            .collect()
    }

    /// The questions, in room order, with their states.
    pub(super) fn questions(&self) -> Vec<(Key, QuestionState)> {
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
