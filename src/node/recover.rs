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
//! send (it refused the message too, or the page was cut) is asked again of
//! a peer not yet asked, a second later, up to [`MAX_ATTEMPTS`] times
//! ([`Refusals::retry`]). What comes back is admitted
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

/// Refusals older than this are dropped unasked: periodic sync finds them.
pub(crate) const FORGET_AFTER_MS: u64 = 30_000;

/// Peers asked for one refused message at most.
pub(crate) const MAX_ATTEMPTS: usize = 3;

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
    /// at `now_ms`.
    pub(crate) fn note(&mut self, id: MessageId, forwarder: PeerId, now_ms: u64) {
        let pending = Pending {
            id,
            forwarder,
            tried: Vec::new(),
        };
        self.queue(pending, now_ms);
    }

    /// Notes that the peer last asked for `pending` at `now_ms` did not send
    /// it (or it was refused again): it is asked of another peer a second
    /// later, unless [`MAX_ATTEMPTS`] peers were asked already.
    pub(crate) fn retry(&mut self, pending: Pending, now_ms: u64) {
        if pending.tried.len() < MAX_ATTEMPTS {
            self.queue(pending, now_ms);
        }
    }

    fn queue(&mut self, pending: Pending, now_ms: u64) {
        let forwarder = pending.forwarder;
        if !self.by_forwarder.contains_key(&forwarder) && self.by_forwarder.len() >= MAX_FORWARDERS {
            return;
        }
        let queue = self.by_forwarder.entry(forwarder).or_default();
        if queue.len() >= MAX_PER_FORWARDER {
            queue.pop_front();
        }
        queue.push_back((pending, now_ms));
    }

    /// Refusals noted and not yet asked.
    pub(crate) fn len(&self) -> usize {
        self.by_forwarder.values().map(VecDeque::len).sum()
    }

    /// Takes the refusals due at `now_ms` (noted [`RECOVER_AFTER_MS`] ago or
    /// more), at most [`MAX_ASKED`] shared out among their forwarders, and
    /// says whom to ask for each: a peer of the room (`peers`, now) other
    /// than its forwarder, picked at random with `random` among those not
    /// asked for it yet (among all of them if every one was: one may have
    /// it by now). Each taken refusal records the peer asked in `tried`.
    /// Refusals whose forwarder is the room's only peer, and those noted
    /// over [`FORGET_AFTER_MS`] ago, are dropped.
    pub(crate) fn take_due(
        &mut self,
        now_ms: u64,
        peers: &[PeerId],
        mut random: impl FnMut() -> u64,
    ) -> Vec<(PeerId, Vec<Pending>)> {
        let due_before = now_ms.saturating_sub(RECOVER_AFTER_MS);
        let forget_before = now_ms.saturating_sub(FORGET_AFTER_MS);
        for queue in self.by_forwarder.values_mut() {
            while queue.front().is_some_and(|(_, at)| *at < forget_before) {
                queue.pop_front();
            }
        }
        self.by_forwarder.retain(|_, queue| !queue.is_empty());
        let mut due: Vec<PeerId> = self
            .by_forwarder
            .iter()
            .filter(|(_, queue)| queue.front().is_some_and(|(_, at)| *at <= due_before))
            .map(|(forwarder, _)| *forwarder)
            .collect();
        if due.is_empty() {
            return Vec::new();
        }
        // A different order each tick, so that what is left over when the
        // share runs out is not always the same forwarder's.
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
            if others.is_empty() {
                // Nobody else to ask: periodic sync will, once there is.
                queue.retain(|(_, at)| *at > due_before);
                continue;
            }
            let mut taken = 0;
            while taken < each
                && asked < MAX_ASKED
                && queue.front().is_some_and(|(_, at)| *at <= due_before)
                && let Some((mut pending, _)) = queue.pop_front()
            {
                let untried: Vec<PeerId> = others.iter().copied().filter(|p| !pending.tried.contains(p)).collect();
                let from = if untried.is_empty() { &others } else { &untried };
                let ask = from[(random() % from.len() as u64) as usize];
                pending.tried.push(ask);
                asks.entry(ask).or_default().push(pending);
                taken += 1;
                asked += 1;
            }
        }
        self.by_forwarder.retain(|_, queue| !queue.is_empty());
        asks.into_iter().collect()
    }
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
    fn what_a_peer_did_not_send_is_asked_of_another_then_given_up() {
        let (hub, b, c) = (PeerId::random(), PeerId::random(), PeerId::random());
        let peers = [hub, b, c];
        let mut r = Refusals::default();
        r.note(id(1), hub, 0);
        let mut now = RECOVER_AFTER_MS;
        let mut asked = Vec::new();
        loop {
            let mut asks = r.take_due(now, &peers, counter());
            let Some((peer, mut pending)) = asks.pop() else {
                break;
            };
            let pending = pending.pop().expect("one");
            assert_eq!(pending.tried.last(), Some(&peer));
            asked.push(peer);
            // The peer did not send it.
            r.retry(pending, now);
            now += RECOVER_AFTER_MS;
        }
        assert_eq!(asked.len(), MAX_ATTEMPTS, "{asked:?}");
        assert!(!asked.contains(&hub));
        // Both other peers were asked before either was asked again.
        assert_ne!(asked[0], asked[1]);
        assert_eq!(r.len(), 0);
    }

    #[test]
    fn with_nobody_else_in_the_room_nothing_is_asked_and_nothing_kept() {
        let hub = PeerId::random();
        let mut r = Refusals::default();
        r.note(id(1), hub, 0);
        assert!(r.take_due(5_000, &[hub], counter()).is_empty());
        assert_eq!(r.len(), 0);
    }

    #[test]
    fn old_refusals_are_left_to_periodic_sync() {
        let (hub, other) = (PeerId::random(), PeerId::random());
        let mut r = Refusals::default();
        r.note(id(1), hub, 0);
        r.note(id(2), hub, 29_000);
        let asks = ids(&r.take_due(FORGET_AFTER_MS + 1, &[hub, other], counter()));
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
