//! The bound on what a room keeps (issue 16). Keys cost nothing, so a flood
//! of valid posts under fresh keys is cheap, and every post a node keeps
//! costs it memory (its metadata here, and what hangs off it) and disk (its
//! envelope in the log). A room therefore keeps at most `bound` posts and,
//! apart, at most `bound` of the operations that are not rules (reactions,
//! edits, deletes, question marks; [`is_bounded`]). The rules (roles,
//! removals, the hallway's mode) come only from the host and the moderators
//! and decide what everything else means: they are never evicted, so no
//! flood can push them out.
//!
//! The rule every node applies alike (docs/PROTOCOL.md, "Bounded rooms"),
//! for each kind on its own: of the messages held that count (a visible
//! post; an operation valid by the rules before it, on a post held), keep
//! the `bound` highest in room order, (clock, id); once the room holds that
//! many, the lowest kept key is the kind's **horizon**, and everything of
//! the kind below it goes, whether it counts or not. A message below the
//! horizon is refused when it arrives again (by gossip or history sync), so
//! evicted messages do not come back. An evicted post's reactions, edits
//! and question marks show nothing and stop counting; they go by their own
//! keys. Operations are bounded apart from posts so that a post's own
//! reactions cannot push it out.
//!
//! Messages that do not count (a post by a participant removed before its
//! clock, an operation whose author had lost the right or whose post is not
//! held) are held apart: which of them a node holds depends on what it knew
//! when they arrived (`node::sim`'s checks call them stale), so they must
//! not move the horizon, or two nodes with the same room would keep
//! different posts. They are kept only above the horizon, and at most
//! `bound` of them.

use std::collections::{BTreeSet, HashMap};

use libp2p::PeerId;

use super::{Key, RoomAction, RoomState, before};
use crate::id::MessageId;

/// Posts and operations anyone may make that a room keeps by default
/// (`Config::room_bound`): as many as history sync serves (`history_max`),
/// so a node keeps what it offers. At the ~3 KB of memory and ~0.85 KB of
/// disk a post costs (docs/SECURITY.md, "Bounded rooms") that is ~30 MB of
/// memory and ~9 MB of disk per flooded room, and a day of a busy room's
/// hallway (hallway-50 posts 20/s for minutes, not for a day).
pub const DEFAULT_ROOM_BOUND: usize = 10_000;

/// Whether a room operation counts against the bound: every operation but
/// the rules (roles, removals, the hallway's mode), which only the host
/// and moderators make.
pub fn is_bounded(action: &RoomAction) -> bool {
    !matches!(
        action,
        RoomAction::SetRole { .. } | RoomAction::Remove { .. } | RoomAction::Chat(_)
    )
}

/// The post an operation hangs off, if any.
fn target_of(action: &RoomAction) -> Option<MessageId> {
    match action {
        RoomAction::Delete(t) | RoomAction::Edit { target: t, .. } | RoomAction::Question { target: t, .. } => Some(*t),
        RoomAction::React(r) => Some(r.target),
        RoomAction::SetRole { .. } | RoomAction::Remove { .. } | RoomAction::Chat(_) => None,
    }
}

/// The bounded messages of one kind (posts, or operations) a room holds.
#[derive(Default)]
struct Part {
    /// The keys of those held that count...
    counting: BTreeSet<Key>,
    /// ...and of those held that do not count now.
    dormant: BTreeSet<Key>,
}

impl Part {
    fn holds(&self, key: &Key) -> bool {
        self.counting.contains(key) || self.dormant.contains(key)
    }

    fn take(&mut self, key: &Key) -> bool {
        self.counting.remove(key) | self.dormant.remove(key)
    }

    fn len(&self) -> usize {
        self.counting.len() + self.dormant.len()
    }

    /// The lowest key that counts, once `bound` of them count.
    fn horizon(&self, bound: usize) -> Option<Key> {
        if self.counting.len() < bound {
            return None;
        }
        self.counting.first().copied()
    }

    /// What `bound` evicts: the lowest that count beyond it, what does not
    /// count below the horizon, and the lowest that do not count beyond it.
    fn beyond(&self, bound: usize) -> Vec<Key> {
        let over = self.counting.len().saturating_sub(bound);
        let mut out: Vec<Key> = self.counting.iter().take(over).copied().collect();
        let horizon = self.counting.iter().nth(over).copied();
        let mut dormant: Vec<Key> = self.dormant.iter().copied().collect();
        if self.counting.len() >= bound
            && let Some(h) = horizon
        {
            let below = dormant.partition_point(|k| *k < h);
            out.extend(dormant.drain(..below));
        }
        let extra = dormant.len().saturating_sub(bound);
        out.extend(dormant.drain(..extra));
        out
    }
}

/// The bounded messages a room holds, and what was evicted. Posts and
/// operations are bounded apart, each to `bound`: an operation on a post
/// counts only while the post is held, so if they shared one bound, a
/// post's own reactions could push it out.
pub(super) struct Kept {
    /// At most this many posts, and this many operations, that count are kept.
    bound: usize,
    posts: Part,
    ops: Part,
    /// Bounded operations by the post they target: a deleted post (not held)
    /// is forgotten with the last of them.
    by_target: HashMap<MessageId, BTreeSet<Key>>,
    /// A rules operation arrived since the last [`RoomState::enforce_bound`]:
    /// what counts must be decided again.
    pub(super) recount: bool,
    /// Keys evicted that the caller has not taken yet (the log must forget
    /// them).
    evicted: Vec<Key>,
    /// Messages evicted since the room was loaded.
    total: u64,
}

impl Default for Kept {
    fn default() -> Self {
        Self {
            bound: usize::MAX,
            posts: Part::default(),
            ops: Part::default(),
            by_target: HashMap::new(),
            recount: false,
            evicted: Vec::new(),
            total: 0,
        }
    }
}

impl RoomState {
    /// The room with a bound on the posts and on the operations anyone may
    /// make (at least one each). Without one, a room keeps everything.
    pub fn with_bound(mut self, bound: usize) -> Self {
        self.kept.bound = bound.max(1);
        self
    }

    /// The room's bound.
    pub fn bound(&self) -> usize {
        self.kept.bound
    }

    /// The lowest post kept, once the room keeps as many posts that count
    /// as its bound: a post below it is evicted at once, so it is refused
    /// when it arrives.
    pub fn horizon(&self) -> Option<Key> {
        self.kept.posts.horizon(self.kept.bound)
    }

    /// Whether a bounded message with this key (a post, or else an
    /// operation anyone may make) is below the horizon of its kind.
    pub fn below_horizon(&self, key: Key, post: bool) -> bool {
        let part = if post { &self.kept.posts } else { &self.kept.ops };
        part.horizon(self.kept.bound).is_some_and(|h| key < h)
    }

    /// Bounded messages held (the log holds these and the rules).
    pub fn kept_len(&self) -> usize {
        self.kept.posts.len() + self.kept.ops.len()
    }

    /// Messages evicted since the room was loaded.
    pub fn evicted(&self) -> u64 {
        self.kept.total
    }

    /// A deleted post's text left the log: it is not held any more. What
    /// the rules need of it stays while a delete of it does.
    pub fn release_post(&mut self, id: &MessageId) {
        if let Some(p) = self.posts.get(id) {
            let key = (p.clock, *id);
            self.kept.posts.take(&key);
            self.reclassify_hanging(id);
        }
    }

    /// Applies the bound after messages were added (and deleted posts
    /// released): decides again what counts if the rules changed, evicts
    /// what is beyond the bound, and returns the keys evicted, which the log
    /// must forget. Posts first: evicting a post makes the operations on it
    /// stop counting.
    pub fn enforce_bound(&mut self) -> Vec<Key> {
        if self.kept.recount {
            self.kept.recount = false;
            let posts = std::mem::take(&mut self.kept.posts);
            let ops = std::mem::take(&mut self.kept.ops);
            for key in posts.counting.into_iter().chain(posts.dormant) {
                self.classify(key);
            }
            for key in ops.counting.into_iter().chain(ops.dormant) {
                self.classify(key);
            }
        }
        for key in self.kept.posts.beyond(self.kept.bound) {
            self.evict(key);
        }
        for key in self.kept.ops.beyond(self.kept.bound) {
            self.evict_op(key);
        }
        std::mem::take(&mut self.kept.evicted)
    }

    /// Holds a post just added, unless it is deleted (a deleted post is not
    /// logged).
    pub(super) fn hold_post(&mut self, id: MessageId) {
        let Some(p) = self.posts.get(&id) else {
            return;
        };
        let key = (p.clock, id);
        if self.is_held(&key) || self.is_deleted(&id) {
            return;
        }
        self.classify(key);
        self.reclassify_hanging(&id);
    }

    /// Decides again whether the operations on a post count, when the post
    /// is held, deleted or evicted (an operation on a post counts only
    /// while the post is held, and whether an edit, delete or question mark
    /// is valid can depend on the post's author).
    fn reclassify_hanging(&mut self, post: &MessageId) {
        let hanging: Vec<Key> = self
            .kept
            .by_target
            .get(post)
            .map(|keys| keys.iter().copied().collect())
            .unwrap_or_default();
        for op in hanging {
            if self.kept.ops.take(&op) {
                self.classify(op);
            }
        }
    }

    /// Holds a bounded operation just added.
    pub(super) fn hold_op(&mut self, key: Key) {
        if let Some((_, action)) = self.ops.get(&key)
            && let Some(target) = target_of(action)
        {
            self.kept.by_target.entry(target).or_default().insert(key);
        }
        self.classify(key);
    }

    fn is_held(&self, key: &Key) -> bool {
        self.kept.posts.holds(key) || self.kept.ops.holds(key)
    }

    /// Files a held message as counting or not.
    fn classify(&mut self, key: Key) {
        let post = self.posts.get(&key.1).is_some_and(|p| p.clock == key.0);
        let counts = match self.posts.get(&key.1) {
            Some(p) if p.clock == key.0 => self.is_visible(&key.1),
            _ => match self.ops.get(&key) {
                // An operation on a post counts only while the post is held
                // (known and not deleted): whether an operation on a post
                // not held is valid depends on whether the node ever knew
                // the post, which depends on the order of arrival.
                Some((author, action)) => {
                    target_of(action).is_none_or(|t| self.posts.contains_key(&t) && !self.is_deleted(&t))
                        && self.check_op_within(author, before(key), action).is_ok()
                }
                None => return,
            },
        };
        let part = if post { &mut self.kept.posts } else { &mut self.kept.ops };
        if counts {
            part.counting.insert(key);
        } else {
            part.dormant.insert(key);
        }
    }

    /// Evicts a held message. What the operations on an evicted post
    /// decided about it (reactions, edits, question marks) is not shown any
    /// more, as the post is not; the operations themselves stop counting
    /// and stay until their own keys fall below the horizon (or beyond the
    /// bound of those that do not count). Taking them along with the post
    /// would make what a node keeps depend on the order messages arrived in:
    /// a node that never held the post keeps them, and a post evicted by a
    /// node that had them counted would stay on one that had not.
    fn evict(&mut self, key: Key) {
        if self.posts.get(&key.1).is_none_or(|p| p.clock != key.0) {
            return self.evict_op(key);
        }
        self.drop_held(key);
        if let Some(p) = self.posts.remove(&key.1) {
            self.forget_author(p.author);
        }
        self.reclassify_hanging(&key.1);
    }

    fn evict_op(&mut self, key: Key) {
        self.unjudge(key);
        let Some((author, action)) = self.ops.remove(&key) else {
            return;
        };
        self.drop_held(key);
        if let Some(keys) = self.by_author.get_mut(&author) {
            keys.remove(&key);
            if keys.is_empty() {
                self.by_author.remove(&author);
            }
        }
        self.forget_author(author);
        let Some(target) = target_of(&action) else {
            return;
        };
        let mut keys_left_empty = false;
        if let Some(keys) = self.kept.by_target.get_mut(&target) {
            keys.remove(&key);
            keys_left_empty = keys.is_empty();
        }
        if keys_left_empty {
            self.kept.by_target.remove(&target);
        }
        // A deleted post is not held, but what the rules need of it stays
        // for its deletes: it goes with the first delete evicted (were it
        // kept, the post would show again without its delete).
        if (keys_left_empty || matches!(action, RoomAction::Delete(_)))
            && let Some(p) = self.posts.get(&target)
            && !self.is_held(&(p.clock, target))
        {
            let author = p.author;
            self.posts.remove(&target);
            self.forget_author(author);
        }
    }

    fn drop_held(&mut self, key: Key) {
        self.kept.posts.take(&key);
        self.kept.ops.take(&key);
        self.kept.evicted.push(key);
        self.kept.total += 1;
    }

    fn forget_author(&mut self, author: PeerId) {
        if let Some(n) = self.authors.get_mut(&author) {
            *n -= 1;
            if *n == 0 {
                self.authors.remove(&author);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use proptest::test_runner::TestCaseError;

    use super::*;
    use crate::id::Room;
    use crate::identity::Identity;
    use crate::room::{ChatMode, QuestionState, Reaction, Role};

    fn peer(n: u16) -> PeerId {
        let mut secret = [7u8; 32];
        secret[..2].copy_from_slice(&n.to_be_bytes());
        Identity::from_secret(secret).peer_id()
    }

    fn id(n: u16) -> MessageId {
        let mut bytes = [0u8; 32];
        bytes[..2].copy_from_slice(&n.to_be_bytes());
        MessageId::from_bytes(bytes)
    }

    /// A message of the tests: a post (None) or an operation.
    #[derive(Clone, Debug)]
    struct Msg {
        id: MessageId,
        author: PeerId,
        clock: u64,
        action: Option<RoomAction>,
    }

    fn post(n: u16, author: PeerId, clock: u64) -> Msg {
        Msg {
            id: id(n),
            author,
            clock,
            action: None,
        }
    }

    fn op(n: u16, author: PeerId, clock: u64, action: RoomAction) -> Msg {
        Msg {
            id: id(n),
            author,
            clock,
            action: Some(action),
        }
    }

    fn react(target: MessageId) -> RoomAction {
        RoomAction::React(Reaction {
            target,
            emoji: "👍".into(),
            retract: false,
        })
    }

    /// Offers a message as a node's admission does (`node::rooms`: the
    /// horizon, deletes, the rules at its clock) and, if it is taken,
    /// applies it as `JoinedRoom::apply` does. Returns whether it was taken.
    fn offer(r: &mut RoomState, m: &Msg) -> bool {
        let key = (m.clock, m.id);
        if m.action.as_ref().is_none_or(is_bounded) && r.below_horizon(key, m.action.is_none()) {
            return false;
        }
        match &m.action {
            None => {
                if r.is_deleted_as(&m.id, &m.author) || r.check_post(&m.author, m.clock, false).is_err() {
                    return false;
                }
                r.add_post(m.id, m.author, m.clock, false);
            }
            Some(action) => {
                if r.check_op(&m.author, m.clock, action).is_err() {
                    return false;
                }
                r.add_op(m.id, m.author, m.clock, action.clone());
                if let RoomAction::Delete(target) = action
                    && r.is_deleted(target)
                {
                    r.release_post(target);
                }
            }
        }
        r.enforce_bound();
        true
    }

    /// A post as a user sees it: shown, its edited text, its reactions.
    type Shown = (MessageId, bool, Option<String>, usize);

    /// What a room keeps and shows: the keys that count under the bound
    /// (which of those that do not count a node holds depends on what it
    /// knew when they arrived), and each post known with whether it is
    /// visible, its text and reactions.
    fn room_of(r: &RoomState, ids: &[MessageId]) -> (Vec<Key>, Vec<Shown>) {
        let held: Vec<Key> = r
            .kept
            .posts
            .counting
            .iter()
            .chain(&r.kept.ops.counting)
            .copied()
            .collect();
        let shown = ids
            .iter()
            .map(|i| {
                // What a user sees: nothing of a post not shown.
                let shown = r.is_visible(i);
                (
                    *i,
                    shown,
                    r.edited_text(i).filter(|_| shown).map(str::to_owned),
                    if shown { r.reactions(i).len() } else { 0 },
                )
            })
            .collect();
        (held, shown)
    }

    /// An open room's messages: posts by a few authors, and reactions,
    /// edits and deletes by anyone (of posts that may or may not be
    /// there), with clocks from a small range so that equal clocks are
    /// common.
    fn world(kinds: u8) -> impl Strategy<Value = (usize, Vec<Msg>, Vec<usize>, Vec<usize>)> {
        let msgs = proptest::collection::vec((0..kinds, 0..4u16, 0..40u64, 0..12u16), 1..40);
        (1..12usize, msgs).prop_flat_map(|(bound, raw)| {
            let msgs: Vec<Msg> = raw
                .iter()
                .enumerate()
                .map(|(i, (kind, author, clock, target))| {
                    let (n, author, target) = (i as u16, peer(*author), id(*target));
                    match kind {
                        0 => post(n, author, *clock),
                        1 => op(n, author, *clock, react(target)),
                        2 => op(
                            n,
                            author,
                            *clock,
                            RoomAction::Edit {
                                target,
                                text: format!("v{n}"),
                            },
                        ),
                        _ => op(n, author, *clock, RoomAction::Delete(target)),
                    }
                })
                .collect();
            let order: Vec<usize> = (0..msgs.len()).collect();
            (
                Just(bound),
                Just(msgs),
                Just(order.clone()).prop_shuffle(),
                Just(order).prop_shuffle(),
            )
        })
    }

    /// Two rooms offered `msgs` in two orders, checked within the bound
    /// after every message.
    fn two_rooms(
        bound: usize,
        msgs: &[Msg],
        one: Vec<usize>,
        two: Vec<usize>,
    ) -> Result<Vec<RoomState>, TestCaseError> {
        let mut rooms = Vec::new();
        for order in [one, two] {
            let mut r = RoomState::new(Room::new("lobby").unwrap()).with_bound(bound);
            for i in order {
                offer(&mut r, &msgs[i]);
                for part in [&r.kept.posts, &r.kept.ops] {
                    prop_assert!(part.counting.len() <= bound && part.dormant.len() <= bound);
                }
            }
            rooms.push(r);
        }
        Ok(rooms)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]

        /// Posts: two nodes offered the same posts in different orders keep
        /// the same ones and show the same room, without syncing. (An
        /// operation that arrives before its post does not count until the
        /// post does, and may be evicted meanwhile: with operations, the
        /// nodes agree once they have synced, below.)
        #[test]
        fn the_kept_set_does_not_depend_on_the_order_of_arrival((bound, msgs, one, two) in world(1)) {
            let ids: Vec<MessageId> = msgs.iter().map(|m| m.id).collect();
            let rooms = two_rooms(bound, &msgs, one, two)?;
            prop_assert_eq!(room_of(&rooms[0], &ids), room_of(&rooms[1], &ids));
        }

        /// With edits and deletes by anyone too, whose validity depends on
        /// a post that may come later: two nodes keep the same that count,
        /// and show the same room, once they have synced.
        #[test]
        fn nodes_that_synced_keep_and_show_the_same((bound, msgs, one, two) in world(4)) {
            let ids: Vec<MessageId> = msgs.iter().map(|m| m.id).collect();
            let mut rooms = two_rooms(bound, &msgs, one, two)?;
            let (a, b) = rooms.split_at_mut(1);
            for _ in 0..3 {
                sync(&a[0], &mut b[0], &msgs);
                sync(&b[0], &mut a[0], &msgs);
            }
            prop_assert_eq!(room_of(&a[0], &ids), room_of(&b[0], &ids));
        }
    }

    #[test]
    fn a_flood_keeps_the_newest_posts_and_never_the_rules() {
        let (host, moderator, rogue) = (peer(1), peer(2), peer(3));
        let mut r = RoomState::new(Room::hosted("stage", &host).unwrap()).with_bound(10);
        let grant = RoomAction::SetRole {
            peer: moderator,
            role: Role::Moderator,
        };
        assert!(offer(&mut r, &op(1, host, 1, grant)));
        assert!(offer(
            &mut r,
            &op(2, moderator, 2, RoomAction::Chat(ChatMode::ReadOnly))
        ));
        let removal = RoomAction::Remove {
            peer: rogue,
            restore: false,
        };
        assert!(offer(&mut r, &op(3, moderator, 3, removal)));
        assert!(offer(&mut r, &op(4, moderator, 4, RoomAction::Chat(ChatMode::On))));
        // A thousand posts under fresh keys.
        for n in 0..1000u16 {
            assert!(offer(&mut r, &post(100 + n, peer(1000 + n), 10 + u64::from(n))));
        }
        assert_eq!(r.kept_len(), 10);
        assert_eq!(r.post_count(), 10, "evicted posts leave memory");
        assert_eq!(r.evicted(), 990);
        assert_eq!(r.horizon(), Some((1000, id(1090))));
        assert!((1090..1100).all(|n| r.is_visible(&id(n))));
        assert!(!r.is_visible(&id(100)));
        assert!(!r.knows_author(&peer(1000)), "an evicted author is forgotten");
        assert!(r.knows_author(&peer(1999)));
        // The rules stand.
        assert_eq!(r.role(&moderator), Role::Moderator);
        assert!(r.is_removed(&rogue));
        assert_eq!(r.mode(), ChatMode::On);
        assert_eq!(r.mode_at(3), ChatMode::ReadOnly);
        // An old post is below the horizon, a new one is taken.
        assert!(!offer(&mut r, &post(5000, peer(5000), 500)));
        assert!(offer(&mut r, &post(5001, peer(5001), 2000)));
        assert_eq!(r.kept_len(), 10);
    }

    #[test]
    fn operations_anyone_may_make_are_bounded_too() {
        // A flood of reactions under fresh keys grows memory like a flood
        // of posts: it is bounded alike. Reactions to a post held count
        // against the bound like posts; those to posts not held (here: not
        // there at all) do not count, and are kept at most the bound.
        let mut r = RoomState::new(Room::new("lobby").unwrap()).with_bound(20);
        assert!(offer(&mut r, &post(1, peer(1), 1)));
        for n in 0..500u16 {
            assert!(offer(
                &mut r,
                &op(10 + n, peer(100 + n), 2 + u64::from(n), react(id(9_000 + n)))
            ));
        }
        assert_eq!(r.ops.len(), 20);
        assert_eq!(r.derived.reactions.len(), 20);
        assert_eq!(r.authors.len(), 21);
        assert_eq!(r.horizon(), None, "nothing counts but the post");
        for n in 0..500u16 {
            assert!(offer(
                &mut r,
                &op(1000 + n, peer(1000 + n), 600 + u64::from(n), react(id(1)))
            ));
        }
        assert!(r.knows_post(&id(1)), "a post's reactions do not push it out");
        assert!(
            r.kept_len() <= 1 + 2 * 20 && r.ops.len() <= 2 * 20,
            "{} kept",
            r.kept_len()
        );
        assert!(r.authors.len() <= 2 * 20 && r.derived.reactions.len() <= 2 * 20);
    }

    #[test]
    fn an_evicted_posts_reactions_edits_and_marks_show_nothing_and_leave_by_their_own_keys() {
        let (ann, bob) = (peer(1), peer(2));
        let mut r = RoomState::new(Room::new("lobby").unwrap()).with_bound(4);
        let q = post(1, ann, 10);
        r.add_post(q.id, ann, 10, true);
        r.enforce_bound();
        let edit = RoomAction::Edit {
            target: q.id,
            text: "v2".into(),
        };
        let answered = RoomAction::Question {
            target: q.id,
            state: QuestionState::Answered,
        };
        assert!(offer(&mut r, &op(2, ann, 11, edit)));
        assert!(offer(&mut r, &op(3, bob, 12, react(q.id))));
        assert!(offer(&mut r, &op(4, ann, 13, answered)));
        assert_eq!(r.edited_text(&q.id), Some("v2"));
        assert_eq!(r.question_state(&q.id), Some(QuestionState::Answered));
        assert_eq!(r.reactions(&q.id).len(), 1);
        // Four newer posts evict the question, the oldest.
        for n in 0..4u16 {
            assert!(offer(&mut r, &post(5 + n, bob, 20 + u64::from(n))));
        }
        assert!(!r.knows_post(&q.id));
        assert_eq!(r.edited_text(&q.id), None);
        assert_eq!(r.question_state(&q.id), None);
        assert!(r.questions().is_empty());
        // Its edit, reaction and mark do not count any more; four newer
        // operations that do push them out.
        for n in 0..4u16 {
            assert!(offer(&mut r, &op(20 + n, ann, 30 + u64::from(n), react(id(8)))));
        }
        assert_eq!(r.ops.len(), 4);
        assert!(r.derived.edits.is_empty() && r.derived.questions.is_empty());
        assert_eq!(r.derived.reactions.len(), 1, "the reactions to the newest post");
        assert_eq!(r.evicted(), 4);
    }

    #[test]
    fn a_deleted_post_does_not_count_and_its_delete_keeps_it_out() {
        let ann = peer(1);
        let mut r = RoomState::new(Room::new("lobby").unwrap()).with_bound(3);
        assert!(offer(&mut r, &post(1, ann, 10)));
        assert!(offer(&mut r, &op(2, ann, 11, RoomAction::Delete(id(1)))));
        // The delete is held, the post is not (its text left the log), and
        // the delete keeps it deleted.
        assert_eq!(r.kept_len(), 1);
        assert!(r.is_deleted(&id(1)));
        assert!(!offer(&mut r, &post(1, ann, 10)), "refused again");
        for n in 0..3u16 {
            assert!(offer(&mut r, &post(10 + n, ann, 20 + u64::from(n))));
        }
        assert_eq!(r.kept_len(), 4, "the delete is held, apart");
        for n in 0..3u16 {
            assert!(offer(&mut r, &op(20 + n, ann, 30 + u64::from(n), react(id(12)))));
        }
        assert!(!r.knows_post(&id(1)));
        assert!(r.derived.deletes.is_empty());
        assert!(!offer(&mut r, &post(1, ann, 10)), "below the horizon now");
    }

    /// What `from` holds of `msgs` and `to` does not, offered to `to` in
    /// room order: a history sync one way.
    fn sync(from: &RoomState, to: &mut RoomState, msgs: &[Msg]) {
        let mut missing: Vec<&Msg> = msgs
            .iter()
            .filter(|m| from.is_held(&(m.clock, m.id)) && !to.is_held(&(m.clock, m.id)))
            .collect();
        missing.sort_by_key(|m| (m.clock, m.id));
        for m in missing {
            offer(to, m);
        }
    }

    #[test]
    fn a_post_that_stops_counting_does_not_move_the_horizon() {
        // The rogue's post was taken before its removal (at an earlier
        // clock) arrived. It stops counting when the removal arrives, so
        // that this node and one that knew the removal first, and never
        // took the post, keep the same posts once they have synced.
        let (host, ann, rogue) = (peer(1), peer(2), peer(3));
        let room = Room::hosted("stage", &host).unwrap();
        let removal = op(
            1,
            host,
            5,
            RoomAction::Remove {
                peer: rogue,
                restore: false,
            },
        );
        let posts = vec![post(2, ann, 10), post(3, rogue, 11), post(4, ann, 12), post(5, ann, 13)];
        let mut late = RoomState::new(room.clone()).with_bound(3);
        for p in &posts {
            assert!(offer(&mut late, p));
        }
        assert!(offer(&mut late, &removal));
        assert_eq!(late.horizon(), None, "the rogue's post does not count now");
        let mut early = RoomState::new(room).with_bound(3);
        assert!(offer(&mut early, &removal));
        for p in &posts {
            offer(&mut early, p);
        }
        assert!(!early.is_held(&(11, id(3))));
        sync(&early, &mut late, &posts);
        sync(&late, &mut early, &posts);
        let ids: Vec<MessageId> = posts.iter().map(|p| p.id).collect();
        assert_eq!(room_of(&late, &ids), room_of(&early, &ids));
        assert!([2, 4, 5].iter().all(|n| late.is_visible(&id(*n))));
        // The late node holds the rogue's post apart, not counting.
        assert_eq!(late.kept_len(), early.kept_len() + 1);
    }
}
