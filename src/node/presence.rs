//! Who is in a room now: signed presence announcements with an expiry, as
//! plain state with the time passed in.
//!
//! Every participant announces itself when it joins, then every
//! [`interval_s`] seconds, and once more when it leaves. The interval grows
//! with the room (2 s per participant present, between 20 s and one hour), so
//! a room of up to 1,800 participants carries at most one announcement every
//! two seconds in all (a larger one, n / 3600 per second); an announcement
//! holds for three intervals, so a participant that vanishes without leaving
//! is gone within three intervals.

use std::collections::HashMap;

use libp2p::PeerId;

use crate::id::RejectReason;

/// Announcements that a join or an arrival calls for are delayed by a random
/// part of this window (2 s, plus 200 ms per participant present, at most
/// 30 s), so that a room of many nodes starting together does not verify
/// all their announcements in the same instant.
pub(crate) fn jitter_window_ms(present: usize) -> u64 {
    // Saturating: `present` may come from a peer's hint (`room_size_hint`).
    (200u64.saturating_mul(present as u64))
        .saturating_add(2_000)
        .min(30_000)
}

/// In a room of more than this many, a member answers a newcomer's arrival
/// only with probability ANSWERERS / present: the newcomer hears from about
/// this many at once and from the rest at their usual interval.
pub(crate) const ANSWERERS: usize = 20;

/// Participants remembered per room at most (the rest are not listed).
pub(crate) const MAX_PRESENT: usize = 10_000;

/// Longest an announcement may hold, in seconds.
pub(crate) const MAX_TTL_S: u32 = 3 * 3600;

/// Announcements of one participant are a token bucket: a burst of
/// [`BURST`] (a restart announces again at once), then one per
/// `MIN_GAP_MS`. More is a rate-limit violation (leaving is always accepted).
pub(crate) const MIN_GAP_MS: u64 = 5_000;
pub(crate) const BURST: u64 = 3;

/// The announcements of a whole room share one budget, as each node sees
/// them: one every `ROOM_GAP_MS` (two a second) with a burst of
/// [`ROOM_BURST`]. In a room this node counts larger than [`ANSWERERS`], a
/// first announcement or an answer that falls due while the room is over
/// its budget waits a random part of a window that doubles each time
/// ([`Book::due`]), so a join storm costs the room O(1) verifications a
/// second per member, not one per joiner at once. Renewals are not held
/// back (the interval already keeps them to one every two seconds in all),
/// nor is leaving.
pub(crate) const ROOM_GAP_MS: u64 = 500;
pub(crate) const ROOM_BURST: u64 = 4;

/// The receiving side of the same budget, with a larger burst for the
/// skew between what different nodes have heard: in a room it counts larger
/// than [`ANSWERERS`], a node takes announcements of participants it does
/// not list only while the room is within this burst of its budget, and
/// Ignores the others without verifying them ([`Book::takes_newcomers`]).
/// Senders that hold back as above are not refused; a storm of senders
/// whose view lags (every node in a saturated one-process lab) costs each
/// node at most two verifications a second after the burst, and so does a
/// flood of announcements under fresh keys.
pub(crate) const RECEIVE_BURST: u64 = 16;

/// A node that joined draws the moment of its first announcement once a
/// peer's sync answer has told it the room's size, or this long after the
/// join if none has ([`Book::due`]).
pub(crate) const LISTEN_MS: u64 = 5_000;

/// How far ahead the room's spent budget is remembered at most (sixty
/// announcements' worth).
pub(crate) const MAX_ROOM_DEBT_MS: u64 = 30_000;

/// The longest a held-back announcement waits at a time.
pub(crate) const MAX_HOLD_BACK_MS: u64 = 600_000;

/// Seconds between this node's announcements in a room with `present`
/// participants.
pub(crate) fn interval_s(present: usize) -> u32 {
    (2 * present.min(u32::MAX as usize / 2) as u32).clamp(20, 3600)
}

/// One participant as the room sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Present {
    pub(crate) nick: Option<String>,
    pub(crate) expires_ms: u64,
    /// When the bucket was last full, in ms: tokens = (now - this) / gap.
    full_since_ms: u64,
}

/// What an announcement changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Change {
    /// A participant is now present (or changed nickname).
    Here,
    /// A participant left.
    Left,
    /// Nothing to report (a renewal).
    Same,
}

/// The participants of one room, and when this node announces next.
#[derive(Default)]
pub(crate) struct Book {
    present: HashMap<PeerId, Present>,
    /// When this node's next announcement is due (0: at once).
    next_due_ms: u64,
    /// When this node last announced itself here (0: not since it joined).
    last_sent_ms: u64,
    /// The largest room size a peer told this node in a sync answer
    /// ([`Book::room_size_hint`]), for the window of its first announcement.
    size_hint: usize,
    /// When the first announcement since the join was first drawn (about
    /// the join): hints draw it again from here, never from later.
    first_drawn_ms: u64,
    /// When this node started waiting to draw its first announcement (its
    /// first tick after the join).
    listening_since_ms: Option<u64>,
    /// A peer's sync answer has told this node the room's size.
    sized: bool,
    /// The next announcement was brought forward by an arrival
    /// ([`Book::peer_appeared`]): it answers it.
    answering: bool,
    /// The room's announcement budget as this node saw it spent: when it is
    /// next back to full, less the burst ([`ROOM_GAP_MS`]; a generic cell
    /// rate: each announcement heard or sent moves it one gap later).
    room_busy_until_ms: u64,
    /// How often the pending announcement was held back by the room's
    /// budget: each time the window it waits in doubles.
    held_back: u32,
}

/// Why this node announces itself in a room ([`Book::next_cause`]): what
/// `Stats` counts, to tell where a join storm's announcements come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cause {
    /// The first since it joined.
    First,
    /// Brought forward by a participant that appeared.
    Answer,
    /// Its interval came round.
    Periodic,
}

impl Book {
    /// A peer appeared in the room: it does not know this node yet. Brings
    /// the next announcement forward unless one went out in the last quarter
    /// interval (so joins in a large room cost at most four times the usual
    /// presence traffic).
    /// `random` (uniform u64) picks the delay within [`jitter_window_ms`] and,
    /// in a large room, whether this member answers at all ([`ANSWERERS`]).
    pub(crate) fn peer_appeared(&mut self, now_ms: u64, random: u64) {
        let present = self.counted();
        if present > ANSWERERS && (random >> 32) % present as u64 >= ANSWERERS as u64 {
            return;
        }
        let quarter = u64::from(interval_s(present)) * 1000 / 4;
        if now_ms >= self.last_sent_ms + quarter {
            let answer = now_ms + random % jitter_window_ms(present);
            if answer < self.next_due_ms && self.last_sent_ms != 0 {
                self.answering = true;
            }
            self.next_due_ms = self.next_due_ms.min(answer);
        }
    }

    /// Whether this node's announcement is due at `now_ms`. After a join
    /// (nothing scheduled yet), once a peer's sync answer has said how
    /// large the room is ([`Book::room_size_hint`]) or [`LISTEN_MS`] after
    /// the first call, the first one is scheduled a `random` (uniform u64)
    /// part of the [`jitter_window_ms`] after that first call, for a room of
    /// `peers` known peers or the size heard, whichever is larger: a node
    /// that joins a room of hundreds in a storm hears that first, and does
    /// not announce within the 2-3 s its few neighbours would give it.
    ///
    /// A renewal (neither the first announcement nor an answer) falls due
    /// one interval after the last announcement, the interval of the room
    /// as this node counts it *when it falls due*: receivers hold an
    /// announcement for at least three intervals of the room as they count
    /// it ([`Book::observe`]), so one sent while this node listed a few,
    /// early in a storm, still holds in the room of hundreds it lists now.
    pub(crate) fn due(&mut self, now_ms: u64, peers: usize, random: u64) -> bool {
        if self.next_due_ms == 0 {
            let since = *self.listening_since_ms.get_or_insert(now_ms);
            if !self.sized && now_ms < since + LISTEN_MS {
                return false;
            }
            let window = jitter_window_ms(peers.max(self.len()).max(self.size_hint).saturating_add(1));
            self.first_drawn_ms = since;
            self.next_due_ms = since + random % window;
        }
        if self.next_due_ms <= now_ms && self.last_sent_ms != 0 && !self.answering {
            let renewal = self.last_sent_ms + u64::from(self.interval_s()) * 1000;
            self.next_due_ms = self.next_due_ms.max(renewal);
        }
        if self.next_due_ms > now_ms {
            return false;
        }
        let size = self.counted().max(self.size_hint);
        if self.next_cause() != Cause::Periodic && size > ANSWERERS && !self.room_has_budget(now_ms) {
            let window = jitter_window_ms(size)
                .saturating_mul(1 << self.held_back.min(10))
                .min(MAX_HOLD_BACK_MS);
            self.held_back = self.held_back.saturating_add(1);
            self.next_due_ms = now_ms + 1 + random % window;
            return false;
        }
        true
    }

    /// Whether the room's announcements, as this node heard them, leave
    /// room for one more now ([`ROOM_GAP_MS`], [`ROOM_BURST`]).
    pub(crate) fn room_has_budget(&self, now_ms: u64) -> bool {
        self.room_busy_until_ms <= now_ms + (ROOM_BURST - 1) * ROOM_GAP_MS
    }

    /// Whether this node takes, at `now_ms`, the announcement of a
    /// participant it does not list ([`RECEIVE_BURST`]): always in a room it
    /// counts at most [`ANSWERERS`] strong; otherwise only within the room's
    /// budget.
    pub(crate) fn takes_newcomers(&self, now_ms: u64) -> bool {
        self.counted().max(self.size_hint) <= ANSWERERS
            || self.room_busy_until_ms <= now_ms + (RECEIVE_BURST - 1) * ROOM_GAP_MS
    }

    /// Whether `peer` is listed as present.
    pub(crate) fn lists(&self, peer: &PeerId) -> bool {
        self.present.contains_key(peer)
    }

    /// An announcement went out in the room at `now_ms` (this node's own or
    /// one it took): it spends the room's budget.
    /// What was spent is remembered for at most [`MAX_ROOM_DEBT_MS`] ahead,
    /// so a burst long past (or a flood of announcements) holds nobody back
    /// for longer than that after it ends.
    fn spend_room_budget(&mut self, now_ms: u64) {
        self.room_busy_until_ms = (self.room_busy_until_ms.max(now_ms) + ROOM_GAP_MS).min(now_ms + MAX_ROOM_DEBT_MS);
    }

    /// A peer answering this node's sync said it counts `present`
    /// participants in the room (a `SyncResponse.present` hint): the first
    /// announcement may now be drawn ([`Book::due`]). Until this
    /// node's first announcement since it joined, a hint of a room larger
    /// than any before draws that announcement again within the room's
    /// [`jitter_window_ms`] from when it was first drawn (about the join;
    /// `random`: uniform u64), so it stays uniform over the window of the
    /// largest size heard and never comes later than 30 s after the join: a node
    /// that joined knows only its few neighbours, and hundreds joining at
    /// once would otherwise announce within the same two seconds, each
    /// verified by every member. The event loop also gives it the count of
    /// participants this node lists, as announcements come in, so a room
    /// growing under a joiner widens its window. Only a room of more than
    /// [`ANSWERERS`] draws again (a small one keeps the first draw: its
    /// newcomers show at once). A peer that lies can delay the first
    /// announcement to at most 30 s after the join, and changes nothing else.
    pub(crate) fn room_size_hint(&mut self, present: usize, random: u64) {
        self.sized = true;
        self.size_hint_from_count(present, random);
    }

    /// The count of participants this node lists, as announcements come in:
    /// a hint like a sync answer's ([`Book::room_size_hint`]), but it does not
    /// tell the room's size (only those heard so far), so the first
    /// announcement still waits for a sync answer or [`LISTEN_MS`].
    pub(crate) fn size_hint_from_count(&mut self, present: usize, random: u64) {
        if self.last_sent_ms != 0 || present <= self.size_hint {
            return;
        }
        let before = jitter_window_ms(self.size_hint);
        self.size_hint = present;
        let window = jitter_window_ms(present);
        if self.next_due_ms != 0 && window > before && present > ANSWERERS {
            self.next_due_ms = self.first_drawn_ms + random % window;
        }
    }

    /// Whether this node's next announcement has a time (it has none right
    /// after a join).
    pub(crate) fn is_scheduled(&self) -> bool {
        self.next_due_ms != 0
    }

    /// This node announced itself at `now_ms`: the next one is due an
    /// interval later.
    pub(crate) fn announced(&mut self, now_ms: u64) {
        self.last_sent_ms = now_ms;
        self.next_due_ms = now_ms + u64::from(self.interval_s()) * 1000;
        self.answering = false;
        self.held_back = 0;
        self.spend_room_budget(now_ms);
    }

    /// How often the pending announcement has been held back by the room's
    /// budget since the last one went out.
    pub(crate) fn held_back(&self) -> u32 {
        self.held_back
    }

    /// Why the next announcement goes out: the first since the join, an
    /// answer to an arrival, or the interval.
    pub(crate) fn next_cause(&self) -> Cause {
        if self.last_sent_ms == 0 {
            Cause::First
        } else if self.answering {
            Cause::Answer
        } else {
            Cause::Periodic
        }
    }

    /// How many are in the room as this node counts it: those it lists and
    /// itself.
    pub(crate) fn counted(&self) -> usize {
        self.present.len() + 1
    }

    /// This node's announcement interval, for the room as it is now.
    pub(crate) fn interval_s(&self) -> u32 {
        interval_s(self.counted())
    }

    /// How long this node's announcement holds: three intervals.
    pub(crate) fn ttl_s(&self) -> u32 {
        3 * self.interval_s()
    }

    /// Takes a verified announcement received at `now_ms`.
    pub(crate) fn observe(
        &mut self,
        peer: PeerId,
        nick: Option<String>,
        ttl_s: u32,
        leaving: bool,
        now_ms: u64,
    ) -> Result<Change, RejectReason> {
        if leaving {
            self.spend_room_budget(now_ms);
            return Ok(match self.present.remove(&peer) {
                Some(_) => Change::Left,
                None => Change::Same,
            });
        }
        // At least three intervals of the room as this node counts it: a
        // sender that joined in a storm drew its hold from the few it
        // listed then, and renews for the room it counts when the renewal
        // falls due ([`Book::due`]), so that a large room is not renewed at
        // a small room's pace.
        let hold_s = ttl_s.max(3 * self.interval_s()).min(MAX_TTL_S);
        let expires_ms = now_ms + u64::from(hold_s) * 1000;
        let result = self.take(peer, nick, expires_ms, now_ms);
        if result.is_ok() {
            self.spend_room_budget(now_ms);
        }
        result
    }

    fn take(
        &mut self,
        peer: PeerId,
        nick: Option<String>,
        expires_ms: u64,
        now_ms: u64,
    ) -> Result<Change, RejectReason> {
        match self.present.get_mut(&peer) {
            Some(p) => {
                // Tokens refill one per gap, up to the burst.
                let floor = now_ms.saturating_sub(BURST * MIN_GAP_MS);
                let start = p.full_since_ms.max(floor);
                if now_ms < start + MIN_GAP_MS {
                    return Err(RejectReason::RateLimited);
                }
                p.full_since_ms = start + MIN_GAP_MS;
                let renamed = p.nick != nick;
                p.nick = nick;
                p.expires_ms = expires_ms;
                Ok(if renamed { Change::Here } else { Change::Same })
            }
            None => {
                if self.present.len() >= MAX_PRESENT {
                    return Err(RejectReason::RateLimited);
                }
                self.present.insert(
                    peer,
                    Present {
                        nick,
                        expires_ms,
                        full_since_ms: now_ms.saturating_sub((BURST - 1) * MIN_GAP_MS),
                    },
                );
                Ok(Change::Here)
            }
        }
    }

    /// Drops expired participants and returns them.
    pub(crate) fn expire(&mut self, now_ms: u64) -> Vec<PeerId> {
        let gone: Vec<PeerId> = self
            .present
            .iter()
            .filter(|(_, p)| p.expires_ms <= now_ms)
            .map(|(peer, _)| *peer)
            .collect();
        for peer in &gone {
            self.present.remove(peer);
        }
        gone
    }

    /// The participants present, by peer id.
    pub(crate) fn list(&self) -> Vec<(PeerId, Present)> {
        let mut out: Vec<(PeerId, Present)> = self.present.iter().map(|(p, v)| (*p, v.clone())).collect();
        out.sort_by_key(|(p, _)| *p);
        out
    }

    /// How many are present.
    pub(crate) fn len(&self) -> usize {
        self.present.len()
    }

    /// The peers whose nickname is `nick`.
    pub(crate) fn by_nick(&self, nick: &str) -> Vec<PeerId> {
        self.present
            .iter()
            .filter(|(_, p)| p.nick.as_deref() == Some(nick))
            .map(|(peer, _)| *peer)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Book {
        /// A book whose node has heard from a peer's sync answer.
        fn sized() -> Self {
            Book {
                sized: true,
                ..Book::default()
            }
        }
    }

    fn peer(n: u8) -> PeerId {
        crate::identity::Identity::from_secret([n; 32]).peer_id()
    }

    #[test]
    fn participants_come_renew_and_go() {
        let mut book = Book::sized();
        let a = peer(1);
        assert_eq!(book.observe(a, Some("ann".into()), 60, false, 0), Ok(Change::Here));
        assert_eq!(book.observe(a, Some("ann".into()), 60, false, 10_000), Ok(Change::Same));
        assert_eq!(
            book.observe(a, Some("anna".into()), 60, false, 20_000),
            Ok(Change::Here)
        );
        assert_eq!(book.by_nick("anna"), vec![a]);
        assert!(book.expire(79_999).is_empty());
        assert_eq!(book.expire(80_000), vec![a]);
        assert_eq!(book.len(), 0);
        book.observe(a, None, 60, false, 90_000).unwrap();
        assert_eq!(book.observe(a, None, 0, true, 91_000), Ok(Change::Left));
    }

    #[test]
    fn announcements_are_rate_limited_and_capped() {
        let mut book = Book::sized();
        let a = peer(1);
        book.observe(a, None, 60, false, 100_000).unwrap();
        // A burst of three (the first, and a restart's twice), then one per gap.
        book.observe(a, None, 60, false, 100_100).unwrap();
        book.observe(a, None, 60, false, 100_200).unwrap();
        assert_eq!(
            book.observe(a, None, 60, false, 100_300),
            Err(RejectReason::RateLimited)
        );
        book.observe(a, None, 60, false, 105_000).unwrap();
        assert_eq!(
            book.observe(a, None, 60, false, 106_000),
            Err(RejectReason::RateLimited)
        );
        book.observe(a, None, u32::MAX, false, 200_000).unwrap();
        assert_eq!(book.list()[0].1.expires_ms, 200_000 + u64::from(MAX_TTL_S) * 1000);
    }

    #[test]
    fn a_new_peer_brings_the_announcement_forward_at_most_every_quarter_interval() {
        let mut book = Book {
            next_due_ms: 100_000,
            last_sent_ms: 0,
            ..Book::sized()
        };
        book.peer_appeared(10_000, 0);
        assert!(book.next_due_ms <= 10_000 + jitter_window_ms(1));
        assert_eq!(book.next_due_ms, 10_000);
        book.next_due_ms = 100_000;
        book.last_sent_ms = 10_000;
        book.peer_appeared(11_000, 0);
        assert_eq!(
            book.next_due_ms, 100_000,
            "announced 1 s ago: a quarter of 20 s has not passed"
        );
    }

    #[test]
    fn a_receiver_holds_an_announcement_for_three_of_its_own_intervals_at_least() {
        let peer = PeerId::random();
        // A small room: the announcement's own hold.
        let mut small = Book::sized();
        small.observe(peer, None, 60, false, 0).unwrap();
        assert_eq!(small.present[&peer].expires_ms, 60_000);
        // A room of 600 as this node counts it (interval 1,200 s): a
        // joiner's 60 s hold, drawn from the few it listed, holds for
        // three of this room's intervals.
        let mut large = Book::sized();
        for _ in 0..599 {
            large.observe(PeerId::random(), None, 60, false, 0).unwrap();
        }
        large.observe(peer, None, 60, false, 0).unwrap();
        assert_eq!(large.present[&peer].expires_ms, 3 * 1_200 * 1000);
        // A longer hold than that is kept, up to the cap.
        large.observe(peer, None, u32::MAX, false, 10_000).unwrap();
        assert_eq!(large.present[&peer].expires_ms, 10_000 + u64::from(MAX_TTL_S) * 1000);
    }

    #[test]
    fn a_renewal_falls_due_one_interval_of_the_room_as_counted_when_due() {
        let mut book = Book::sized();
        assert!(book.due(1_000, 3, 0));
        book.announced(1_000);
        // It listed nobody: the next one 20 s later.
        assert!(!book.due(20_999, 3, 0));
        // Meanwhile the room turned out to be 600 strong (a storm): the
        // renewal waits for an interval of that room, 1,200 s.
        for _ in 0..599 {
            book.observe(PeerId::random(), None, 3_600, false, 5_000).unwrap();
        }
        assert!(!book.due(21_000, 600, 0), "not renewed at a small room's pace");
        assert!(!book.due(1_000 + 1_199_999, 600, 0));
        assert!(book.due(1_000 + 1_200_000, 600, 0));
        // An answer to an arrival is not held back.
        let mut answering = Book::sized();
        assert!(answering.due(1_000, 3, 0));
        answering.announced(1_000);
        for _ in 0..5 {
            answering.observe(PeerId::random(), None, 60, false, 2_000).unwrap();
        }
        answering.peer_appeared(11_000, 0);
        assert!(answering.due(11_000, 6, 0));
    }

    #[test]
    fn each_announcement_says_why_it_goes_out() {
        let mut book = Book::sized();
        assert!(book.due(1_000, 3, 0));
        assert_eq!(book.next_cause(), Cause::First);
        // An arrival before the first announcement does not make it an
        // answer: it is still the first.
        book.peer_appeared(1_000, 0);
        assert_eq!(book.next_cause(), Cause::First);
        book.announced(1_000);
        assert_eq!(book.next_cause(), Cause::Periodic);
        // An arrival after a quarter interval brings the next one forward:
        // an answer, until it is sent.
        book.peer_appeared(11_000, 0);
        assert!(book.due(11_000, 3, 0));
        assert_eq!(book.next_cause(), Cause::Answer);
        book.announced(11_000);
        assert_eq!(book.next_cause(), Cause::Periodic);
        // One within the quarter interval changes nothing.
        book.peer_appeared(12_000, 0);
        assert_eq!(book.next_cause(), Cause::Periodic);
    }

    #[test]
    fn the_first_announcement_comes_within_the_jitter_window_then_every_interval() {
        let mut book = Book::sized();
        // Joined a room of 9 known peers at t = 50 s.
        let window = jitter_window_ms(10);
        assert!(!book.due(50_000, 9, 1_234), "1.234 s into a {window} ms window");
        assert!(!book.due(51_233, 9, 0), "the delay drawn at join holds");
        assert!(book.due(51_234, 9, 0));
        assert!(book.due(50_000 + window, 9, 0));
        book.announced(51_234);
        assert_eq!(book.ttl_s(), 3 * 20);
        assert!(!book.due(51_234 + 19_999, 9, 0));
        assert!(book.due(51_234 + 20_000, 9, 0));
        // A drawn delay never reaches past the window.
        let mut late = Book::sized();
        assert!(!late.due(0, 9, u64::MAX - 1));
        assert!(late.due(window - 1, 9, 0));
    }

    #[test]
    fn a_joiner_told_the_room_is_large_spreads_its_first_announcement_over_the_rooms_window() {
        // Joined at 50 s knowing 4 neighbours: due within 2.8 s.
        let mut book = Book::sized();
        assert!(!book.due(50_000, 4, 1_000));
        assert_eq!(book.next_due_ms, 51_000);
        // A small room keeps the first draw.
        book.room_size_hint(ANSWERERS, 7_000);
        assert_eq!(book.next_due_ms, 51_000);
        // A neighbour's sync answer says 600 are present: drawn again over
        // the room's window, 30 s from the join.
        book.room_size_hint(600, 20_000);
        assert_eq!(book.next_due_ms, 70_000);
        assert!(!book.due(69_999, 4, 0) && book.due(70_000, 4, 0));
        // A smaller or equal hint changes nothing; so does a larger one once
        // the window is at its cap.
        book.room_size_hint(10, 0);
        book.room_size_hint(600, 0);
        book.room_size_hint(1_000_000, 0);
        assert_eq!(book.next_due_ms, 70_000);
        // Once announced, hints change nothing: the interval rules.
        book.announced(70_000);
        let next = book.next_due_ms;
        let mut later = Book { size_hint: 0, ..book };
        later.room_size_hint(5_000, 0);
        assert_eq!(later.next_due_ms, next);
        // A hint that comes before the first tick sets the window the first
        // announcement is drawn in.
        let mut early = Book::sized();
        early.room_size_hint(600, 0);
        assert_eq!(early.next_due_ms, 0, "nothing scheduled yet");
        assert!(!early.due(50_000, 4, 29_999));
        assert_eq!(early.next_due_ms, 50_000 + 29_999);
        // However large the room claimed, and however many hints came, the
        // first announcement is due within 30 s of the join.
        let mut lied = Book::sized();
        assert!(!lied.due(50_000, 4, 0) || lied.next_due_ms == 50_000);
        for (n, random) in [(100usize, u64::MAX), (200, u64::MAX - 7), (usize::MAX, u64::MAX - 3)] {
            lied.room_size_hint(n, random);
            assert!(lied.next_due_ms < 50_000 + 30_000, "{}", lied.next_due_ms);
        }
    }

    #[test]
    fn in_a_large_room_over_its_budget_first_announcements_and_answers_wait_their_turn() {
        // Joined at 1 s a room where 29 announced at once: 30 counted, and
        // 29 announcements spent 14.5 s of the room's budget.
        let mut book = Book::sized();
        for _ in 0..29 {
            book.observe(PeerId::random(), None, 60, false, 0).unwrap();
        }
        assert!(!book.room_has_budget(12_999) && book.room_has_budget(13_000));
        let window = jitter_window_ms(30);
        assert!(!book.due(1_000, 4, 0), "due at once, but held back");
        assert_eq!(book.held_back(), 1);
        assert!(book.next_due_ms > 1_000 && book.next_due_ms <= 1_000 + window);
        // Held back again: the window it waits in doubles.
        let again = book.next_due_ms;
        assert!(!book.due(again, 4, 2 * window - 1));
        assert_eq!(book.held_back(), 2);
        assert_eq!(
            book.next_due_ms,
            again + 2 * window,
            "the last moment of a doubled window"
        );
        // Once the room has budget, it goes out, and the count starts over.
        assert!(book.due(13_000.max(book.next_due_ms), 4, 0));
        assert_eq!(book.next_cause(), Cause::First);
        book.announced(book.next_due_ms);
        assert_eq!(book.held_back(), 0);
        // A renewal is never held back, however busy the room.
        for _ in 0..100 {
            book.observe(PeerId::random(), None, 60, false, book.last_sent_ms)
                .unwrap();
        }
        let renewal = book.last_sent_ms + u64::from(book.interval_s()) * 1000;
        assert!(!book.room_has_budget(book.last_sent_ms));
        assert!(book.due(renewal, 4, 0));
        // An answer is held back like a first announcement: ten listed
        // announce again just before a newcomer appears.
        book.announced(renewal);
        let ten: Vec<PeerId> = (0..10).map(|_| PeerId::random()).collect();
        for &p in &ten {
            book.observe(p, None, 60, false, renewal + 1).unwrap();
        }
        let arrival = renewal + u64::from(book.interval_s()) * 1000 / 4;
        for &p in &ten {
            assert_eq!(book.observe(p, None, 60, false, arrival - 1), Ok(Change::Same));
        }
        book.peer_appeared(arrival, 0);
        assert_eq!(book.next_cause(), Cause::Answer);
        assert!(!book.due(arrival, 4, 0));
        assert_eq!(book.held_back(), 1);
    }

    #[test]
    fn a_joiner_draws_its_first_announcement_once_a_sync_answer_tells_the_rooms_size() {
        // Joined at 50 s with 4 neighbours; nothing heard yet.
        let mut book = Book::default();
        assert!(!book.due(50_000, 4, 0));
        assert!(!book.is_scheduled(), "listening");
        // Announcements heard are no answer: they count only those heard.
        for _ in 0..3 {
            book.observe(PeerId::random(), None, 60, false, 50_100).unwrap();
        }
        book.size_hint_from_count(book.counted(), 0);
        assert!(!book.due(50_200, 4, 0) && !book.is_scheduled());
        // A neighbour answers: the room has 100. Drawn from the join over
        // the window of 100 (22 s).
        book.room_size_hint(100, 0);
        assert!(!book.due(50_300, 4, 21_999));
        assert_eq!(book.next_due_ms, 50_000 + 21_999);
        // A room that never answers: drawn 5 s after the join, from the join.
        let mut silent = Book::default();
        assert!(!silent.due(50_000, 4, 0));
        assert!(!silent.due(54_999, 4, 0));
        assert!(silent.due(55_000, 4, 1_000), "drawn at 51 s: due at once");
        // A small room's answer comes at once, and so does its first
        // announcement, as before.
        let mut small = Book::default();
        assert!(!small.due(50_000, 1, 0));
        small.room_size_hint(2, 0);
        assert!(small.due(50_050, 1, 40));
    }

    #[test]
    fn a_small_room_is_never_held_back_and_a_past_burst_is_forgotten() {
        // 20 counted: every first announcement goes out at once.
        let mut small = Book::sized();
        for _ in 0..19 {
            small.observe(PeerId::random(), None, 60, false, 0).unwrap();
        }
        assert!(!small.room_has_budget(0));
        assert!(small.due(0, 4, 0));
        // A flood of announcements is remembered for 30 s ahead at most.
        let mut flooded = Book::sized();
        for _ in 0..5_000 {
            flooded.observe(PeerId::random(), None, 60, false, 0).unwrap();
        }
        assert!(!flooded.room_has_budget(28_499));
        assert!(flooded.room_has_budget(28_500));
    }

    #[test]
    fn over_its_budget_a_large_room_takes_no_new_participants_for_a_while() {
        // 20 counted: new participants are always taken.
        let mut small = Book::default();
        for _ in 0..19 {
            small.observe(PeerId::random(), None, 60, false, 0).unwrap();
        }
        assert!(small.takes_newcomers(0));
        // A joiner told the room has 100 takes a burst of 16, then two a
        // second.
        let mut book = Book::sized();
        book.room_size_hint(100, 0);
        let mut taken = 0;
        let mut now = 1_000;
        while book.takes_newcomers(now) {
            book.observe(PeerId::random(), None, 60, false, now).unwrap();
            taken += 1;
        }
        assert_eq!(taken, RECEIVE_BURST);
        // Those it lists are still taken: their renewals (`lists`).
        let listed = book.list()[0].0;
        assert!(book.lists(&listed) && !book.lists(&PeerId::random()));
        now += ROOM_GAP_MS;
        assert!(book.takes_newcomers(now));
        book.observe(PeerId::random(), None, 60, false, now).unwrap();
        assert!(!book.takes_newcomers(now));
    }

    #[test]
    fn the_interval_keeps_room_traffic_bounded() {
        assert_eq!(interval_s(1), 20);
        assert_eq!(interval_s(50), 100);
        assert_eq!(interval_s(1_000_000), 3600);
        // Announcements per second in the whole room.
        for n in [1usize, 10, 100, 1_800] {
            let rate = n as f64 / f64::from(interval_s(n));
            assert!(rate <= 0.5, "{n}: {rate}");
        }
    }
}
