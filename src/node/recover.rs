//! Fetching back what a forwarder's newcomer share refused.
//!
//! A newcomer's post or operation that a peer forwards over its share in a
//! room (`Limits::newcomers_per_peer`) is `Ignore`d, and gossipsub keeps its
//! id in its duplicate cache for a minute: the copies the other neighbours
//! send are dropped before the application sees them. Under a flood of
//! *paid* keys an honest hub spends its share at its neighbours on the spam
//! it admitted itself, so the honest newcomers' posts it forwards are
//! refused there, and would come back only with the next periodic sync (a
//! minute; issue 16's `sybil-paid` run lost 6 of 3,800 within its 10 s).
//!
//! So a room notes what it refused live and from whom ([`Refusals::note`]),
//! and a second later asks another peer of the room for those ids, with a
//! history-sync fetch ([`Refusals::take_due`]); what that peer does not
//! send (it refused the message too, or the page was cut) is asked again,
//! of a peer not yet asked and then of the forwarder itself, after 1, 2, 4
//! and 8 s ([`Refusals::retry`], [`MAX_ATTEMPTS`]). What comes back is admitted
//! as [`Origin::Recovered`](crate::node::rooms::Origin::Recovered):
//! charged, like live traffic, to the share of the peer that served it, so
//! the bound on what a flood shows holds per serving peer as it does per
//! forwarder, and a peer serves only what it admitted itself. What is still
//! missing after that is left to periodic sync.
//! Everything is bounded: [`MAX_PER_FORWARDER`] ids per forwarder,
//! [`MAX_FORWARDERS`] forwarders, [`MAX_ASKED`] ids asked per room per tick.

use std::collections::{HashMap, VecDeque};

use libp2p::PeerId;

use crate::id::MessageId;

/// A refusal is asked about once it is this old: by then the peers that
/// forwarded the message by other paths have had it for a while.
pub(crate) const RECOVER_AFTER_MS: u64 = 1_000;

/// Refusals due longer ago than this and still not asked (more were due
/// than a tick asks) are dropped: periodic sync finds them.
pub(crate) const FORGET_AFTER_MS: u64 = 30_000;

/// Asks for one refused message at most (1, 2, 4, 8 and 16 s after the
/// refusal).
pub(crate) const MAX_ATTEMPTS: usize = 5;

/// Refusals kept per forwarder (the oldest go first). A flooding connection
/// fills its own queue, not the others'.
pub(crate) const MAX_PER_FORWARDER: usize = 256;

/// Forwarders whose refusals are kept; refusals from more are not noted.
pub(crate) const MAX_FORWARDERS: usize = 64;

/// Ids asked for per room per tick, shared out among the forwarders that
/// have refusals due, so that one flooding connection cannot crowd out the
/// honest posts refused from another.
pub(crate) const MAX_ASKED: usize = 256;

/// A message refused over its forwarder's share, to be asked of others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pending {
    pub(crate) id: MessageId,
    /// The peer whose share refused it (it has the message, but its share
    /// here is spent).
    pub(crate) forwarder: PeerId,
    /// The peers asked for it so far.
    pub(crate) tried: Vec<PeerId>,
}

/// What a room refused live over forwarders' newcomer shares, waiting to be
/// asked of another peer.
#[derive(Debug, Default)]
pub(crate) struct Refusals {
    /// Per forwarder, oldest first, with when each is due.
    by_forwarder: HashMap<PeerId, VecDeque<(Pending, u64)>>,
}

impl Refusals {
    /// Notes that `id`, forwarded by `forwarder`, was refused over its share
    /// at `now_ms`: it is asked about [`RECOVER_AFTER_MS`] later.
    pub(crate) fn note(&mut self, id: MessageId, forwarder: PeerId, now_ms: u64) {
        let pending = Pending {
            id,
            forwarder,
            tried: Vec::new(),
        };
        self.queue(pending, now_ms + RECOVER_AFTER_MS);
    }

    /// Notes that the peer last asked for `pending` at `now_ms` did not send
    /// it (or it was refused again): it is asked again, of the peer that
    /// has waited longest, after twice the previous wait (1, 2, 4, 8 s),
    /// unless [`MAX_ATTEMPTS`] asks were made already. The backoff lets a
    /// forwarder whose share a flood keeps spent serve it once the flood
    /// is over.
    pub(crate) fn retry(&mut self, pending: Pending, now_ms: u64) {
        let n = pending.tried.len();
        if n < MAX_ATTEMPTS {
            let wait = RECOVER_AFTER_MS << n.saturating_sub(1).min(8);
            self.queue(pending, now_ms + wait);
        }
    }

    fn queue(&mut self, pending: Pending, due_ms: u64) {
        let forwarder = pending.forwarder;
        if !self.by_forwarder.contains_key(&forwarder) && self.by_forwarder.len() >= MAX_FORWARDERS {
            return;
        }
        let queue = self.by_forwarder.entry(forwarder).or_default();
        if queue.len() >= MAX_PER_FORWARDER {
            queue.pop_front();
        }
        queue.push_back((pending, due_ms));
    }

    /// Refusals noted and not yet asked.
    pub(crate) fn len(&self) -> usize {
        self.by_forwarder.values().map(VecDeque::len).sum()
    }

    /// Takes the refusals due at `now_ms`, at most [`MAX_ASKED`] shared out
    /// among their forwarders, and says whom to ask for each, among the
    /// room's peers now (`peers`): one other than its forwarder not asked
    /// for it yet (picked with `random`); once every other peer was asked,
    /// the forwarder itself (it has the message, and its share may have
    /// room again: in a line it is the only one that has it); after that,
    /// the peer asked longest ago. Each taken refusal records the peer
    /// asked in `tried`. Refusals when the room has no peer, and those due
    /// over [`FORGET_AFTER_MS`] ago and still not asked, are dropped.
    pub(crate) fn take_due(
        &mut self,
        now_ms: u64,
        peers: &[PeerId],
        mut random: impl FnMut() -> u64,
    ) -> Vec<(PeerId, Vec<Pending>)> {
        let forget_before = now_ms.saturating_sub(FORGET_AFTER_MS);
        for queue in self.by_forwarder.values_mut() {
            queue.retain(|(_, due)| *due >= forget_before);
        }
        self.by_forwarder.retain(|_, queue| !queue.is_empty());
        if peers.is_empty() {
            self.by_forwarder.clear();
            return Vec::new();
        }
        let mut due: Vec<PeerId> = self
            .by_forwarder
            .iter()
            .filter(|(_, queue)| queue.iter().any(|(_, at)| *at <= now_ms))
            .map(|(forwarder, _)| *forwarder)
            .collect();
        if due.is_empty() {
            return Vec::new();
        }
        // A different order each tick, so that what is left over when the
        // ids asked per tick run out is not always the same forwarder's.
        let n = due.len();
        due.rotate_left((random() % n as u64) as usize);
        let each = (MAX_ASKED / n).max(1);
        let mut asks: HashMap<PeerId, Vec<Pending>> = HashMap::new();
        let mut asked = 0;
        for forwarder in due {
            let Some(queue) = self.by_forwarder.get_mut(&forwarder) else {
                continue;
            };
            let others: Vec<PeerId> = peers.iter().copied().filter(|p| *p != forwarder).collect();
            let mut candidates = others.clone();
            if peers.contains(&forwarder) {
                candidates.push(forwarder);
            }
            let mut taken = 0;
            let mut kept = VecDeque::with_capacity(queue.len());
            while let Some((mut pending, at)) = queue.pop_front() {
                if at > now_ms || taken >= each || asked >= MAX_ASKED {
                    kept.push_back((pending, at));
                    continue;
                }
                let Some(ask) = choose(&pending, &others, &candidates, &mut random) else {
                    continue;
                };
                pending.tried.push(ask);
                asks.entry(ask).or_default().push(pending);
                taken += 1;
                asked += 1;
            }
            *queue = kept;
        }
        self.by_forwarder.retain(|_, queue| !queue.is_empty());
        asks.into_iter().collect()
    }
}

/// Whom to ask for `pending` ([`Refusals::take_due`]): a peer in `others`
/// (the room's peers but its forwarder) not asked yet, at random; else the
/// forwarder if not asked yet and in `candidates`; else the candidate asked
/// longest ago. None if there is no candidate.
fn choose(
    pending: &Pending,
    others: &[PeerId],
    candidates: &[PeerId],
    random: &mut impl FnMut() -> u64,
) -> Option<PeerId> {
    let untried: Vec<PeerId> = others.iter().copied().filter(|p| !pending.tried.contains(p)).collect();
    if !untried.is_empty() {
        return Some(untried[(random() % untried.len() as u64) as usize]);
    }
    if candidates.contains(&pending.forwarder) && !pending.tried.contains(&pending.forwarder) {
        return Some(pending.forwarder);
    }
    // The candidate whose last ask is the earliest.
    candidates
        .iter()
        .copied()
        .min_by_key(|c| pending.tried.iter().rposition(|t| t == c).map_or(0, |i| i + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u32) -> MessageId {
        let mut bytes = [0u8; 32];
        bytes[..4].copy_from_slice(&n.to_be_bytes());
        MessageId::from_bytes(bytes)
    }

    /// A fixed sequence for `random`.
    fn counter() -> impl FnMut() -> u64 {
        let mut n = 0;
        move || {
            n += 1;
            n
        }
    }

    /// Each peer asked, with the ids asked of it.
    fn ids(asks: &[(PeerId, Vec<Pending>)]) -> Vec<(PeerId, Vec<MessageId>)> {
        asks.iter()
            .map(|(peer, pending)| (*peer, pending.iter().map(|p| p.id).collect()))
            .collect()
    }

    #[test]
    fn a_refusal_is_asked_of_another_peer_once_it_is_a_second_old() {
        let (hub, other, third) = (PeerId::random(), PeerId::random(), PeerId::random());
        let mut r = Refusals::default();
        r.note(id(1), hub, 10_000);
        r.note(id(2), hub, 10_500);
        let peers = [hub, other, third];
        assert!(r.take_due(10_900, &peers, counter()).is_empty(), "not due yet");
        let asks = ids(&r.take_due(11_000, &peers, counter()));
        assert_eq!(asks.len(), 1);
        assert_ne!(asks[0].0, hub, "never the forwarder that was refused");
        assert_eq!(asks[0].1, vec![id(1)]);
        let asks = ids(&r.take_due(11_500, &peers, counter()));
        assert_eq!(asks[0].1, vec![id(2)]);
        assert_ne!(asks[0].0, hub);
        assert!(r.take_due(20_000, &peers, counter()).is_empty(), "taken once");
        assert_eq!(r.len(), 0);
    }

    #[test]
    fn what_a_peer_did_not_send_is_asked_again_with_a_backoff_then_given_up() {
        let (hub, b, c) = (PeerId::random(), PeerId::random(), PeerId::random());
        let peers = [hub, b, c];
        let mut r = Refusals::default();
        r.note(id(1), hub, 0);
        // (when, whom) of each ask; every answer lacks it.
        let mut asked = Vec::new();
        for now in (0..60_000).step_by(500) {
            for (peer, mut pending) in r.take_due(now, &peers, counter()) {
                let pending = pending.pop().expect("one");
                assert_eq!(pending.tried.last(), Some(&peer));
                asked.push((now, peer));
                r.retry(pending, now);
            }
        }
        let when: Vec<u64> = asked.iter().map(|(t, _)| *t).collect();
        assert_eq!(when, vec![1_000, 2_000, 4_000, 8_000, 16_000], "1 s, then doubling");
        let whom: Vec<PeerId> = asked.iter().map(|(_, p)| *p).collect();
        // Both other peers first, then the forwarder (its share may have
        // room again, and in a line it is the only one that has it), then
        // whoever was asked longest ago.
        assert_ne!(whom[0], whom[1]);
        assert!(!whom[..2].contains(&hub));
        assert_eq!(whom[2], hub);
        assert_eq!(whom[3], whom[0]);
        assert_eq!(whom[4], whom[1]);
        assert_eq!(r.len(), 0, "given up after {MAX_ATTEMPTS}");
    }

    #[test]
    fn with_nobody_else_in_the_room_the_forwarder_is_asked_and_with_nobody_nothing_is_kept() {
        let hub = PeerId::random();
        let mut r = Refusals::default();
        r.note(id(1), hub, 0);
        // The end of a line: its only peer is the forwarder, whose share
        // may have room a second later.
        assert_eq!(ids(&r.take_due(5_000, &[hub], counter())), vec![(hub, vec![id(1)])]);
        r.note(id(2), hub, 0);
        assert!(r.take_due(5_000, &[], counter()).is_empty());
        assert_eq!(r.len(), 0);
    }

    #[test]
    fn old_refusals_are_left_to_periodic_sync() {
        let (hub, other) = (PeerId::random(), PeerId::random());
        let mut r = Refusals::default();
        // Due at 1 s and at 31.5 s; a tick at 31.5 s drops the first,
        // unasked for 30 s (more were due than ticks asked).
        r.note(id(1), hub, 0);
        r.note(id(2), hub, 30_500);
        let asks = ids(&r.take_due(31_500, &[hub, other], counter()));
        assert_eq!(asks, vec![(other, vec![id(2)])]);
    }

    #[test]
    fn a_flooding_forwarder_fills_its_own_queue_and_does_not_crowd_out_another() {
        let (flooder, honest, other) = (PeerId::random(), PeerId::random(), PeerId::random());
        let peers = [flooder, honest, other];
        let mut r = Refusals::default();
        for n in 0..10_000 {
            r.note(id(n), flooder, 0);
        }
        assert_eq!(r.len(), MAX_PER_FORWARDER, "bounded per forwarder");
        for n in 0..5 {
            r.note(id(100_000 + n), honest, 0);
        }
        let asks = r.take_due(RECOVER_AFTER_MS, &peers, counter());
        let asked: Vec<&Pending> = asks.iter().flat_map(|(_, p)| p).collect();
        assert!(asked.len() <= MAX_ASKED, "bounded per tick: {}", asked.len());
        for n in 0..5 {
            assert!(
                asked.iter().any(|p| p.id == id(100_000 + n)),
                "the honest forwarder's refusals are asked"
            );
        }
        for (peer, pending) in &asks {
            for p in pending {
                assert_ne!(*peer, p.forwarder);
            }
        }
        // What was left over is asked on the next ticks.
        let mut now = RECOVER_AFTER_MS;
        while r.len() > 0 {
            now += 1_000;
            let more: usize = r.take_due(now, &peers, counter()).iter().map(|(_, p)| p.len()).sum();
            assert!(more > 0 && more <= MAX_ASKED);
        }
    }

    #[test]
    fn forwarders_tracked_are_bounded() {
        let mut r = Refusals::default();
        for n in 0..(MAX_FORWARDERS as u32 + 10) {
            r.note(id(n), PeerId::random(), 0);
        }
        assert_eq!(r.len(), MAX_FORWARDERS);
    }
}
