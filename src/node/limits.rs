//! Rate limits as plain state: token buckets per author and per connected
//! peer, with the time passed in, and a bounded number of tracked keys.
//!
//! A bucket holds up to `burst` tokens and refills at `per_s`; each message
//! takes one. A message that finds the bucket empty is a violation: it is
//! dropped, counted (`rate_limited`) and, when the peer that sent it is the
//! one at fault, lowers that peer's gossipsub application score
//! ([`Penalties`]), which ends in graylisting a flooder.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::Duration;

use libp2p::PeerId;

use crate::id::Room;

/// A sustained rate and a burst.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Tokens added per second.
    pub per_s: f64,
    /// Tokens at most (and at first).
    pub burst: f64,
}

impl Rate {
    /// `per_s` per second with bursts of `burst`.
    pub const fn new(per_s: f64, burst: f64) -> Self {
        Self { per_s, burst }
    }
}

/// Every rate limit of a node; [`Limits::default`] documents the defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Hallway posts per author: 5/s, bursts of 20. A person types far
    /// slower; a script posting faster is a flood.
    pub posts_per_author: Rate,
    /// Room operations (reactions, edits, moderation) per author: 5/s,
    /// bursts of 30 (a moderator clearing spam).
    pub ops_per_author: Rate,
    /// DMs (and group messages) accepted from one peer: 200/s, bursts of
    /// 1,000 (an outbox flushing after a reconnection, a bot). More is
    /// refused as BUSY and the sender's outbox retries later.
    pub dms_per_peer: Rate,
    /// Everything one connected peer sends on room topics, whoever authored
    /// it: 500/s, bursts of 1,000, checked before any signature so that a
    /// flood from one connection costs a map lookup a message. More is
    /// ignored and counted but never penalised: a forwarder in a busy room
    /// relays the sum of its neighbours' traffic, so being over this proves
    /// nothing against it.
    pub gossip_per_peer: Rate,
    /// Everything one connected peer sends on room topics, far over
    /// [`Limits::gossip_per_peer`]: 2,000/s, bursts of 4,000. An honest
    /// forwarder relays only what it admitted, which the per-author limits
    /// and the newcomers' shares bound far below this (400 established
    /// authors at their full rate), so a peer over it is flooding: each
    /// message over it is a violation the peer is penalised for, and it is
    /// graylisted within ~80 of them. Gossipsub then drops its messages
    /// before recording them, which is what bounds the memory a flood from
    /// one connection costs (gossipsub keeps ~2 KB for two minutes for
    /// every message it receives, refused or not: a node flooded by one
    /// raw connection at ~20,000 a second grew from 20 to 390 MB in 30 s
    /// without this, and stayed at 24 MB with it, docs/PERFORMANCE.md).
    pub gossip_flood_per_peer: Rate,
    /// Posts and operations by newcomers that one connected peer forwards
    /// into one room (newcomers: authors the room had no message of until
    /// `newcomer_for` ago; the author's own connection is not counted):
    /// 20/s, bursts of 200. Keys cost nothing, so the per-author limits do
    /// nothing against a flood under fresh keys; this bounds what such a
    /// flood shows through one connection to 200 + 20/s, whatever the
    /// number of keys. More is ignored and counted, never penalised (an
    /// honest forwarder relays honest newcomers too).
    ///
    /// Why so much: in a new room everyone is a newcomer to everyone, and a
    /// node with one neighbour in the room hears all of it through that
    /// neighbour. The share is the busiest room the project is measured
    /// with (hallway-50: 20 posts/s of 50 new members), so such a room
    /// loses nothing to it; 1/s with bursts of 80 lost 6.4% of a 50-node
    /// room's deliveries with no attacker (docs/SECURITY.md, "Floods under
    /// fresh keys").
    pub newcomers_per_peer: Rate,
    /// The share as [`Limits::newcomers_per_peer`] for newcomers whose
    /// message carries no stamp of [`Limits::stamp_bits`] for the room
    /// (docs/PROTOCOL.md, "Stamps"): 1/s, bursts of 1. Every Backchannel
    /// node stamps its posts and operations, so this share holds what a
    /// flood under free keys shows (1 + 1/s per connection, whatever the
    /// number of keys: 250 posts under 10 keys showed 10 with bursts of 10,
    /// 4% of the flood, docs/PERFORMANCE.md); it also carries the first posts
    /// in a room of an implementation that does not stamp, one a second
    /// through each forwarder (what a forwarder refused is fetched back
    /// from another peer, `node::recover`).
    pub unstamped_newcomers_per_peer: Rate,
    /// The work a stamp must show ([`crate::protocol::stamp_strength`]) for
    /// a newcomer's message to be taken from the stamped share, and the work
    /// this node puts into its own stamps: 18 bits, about 2^18 hashes once
    /// per room joined (~0.03 s of one core on the project's test machine
    /// in a release build; a phone takes a few times that). A flood must pay
    /// as much per key: a thousand keys cost about half a minute of a core
    /// instead of nothing. At most 32.
    pub stamp_bits: u32,
    /// How long an author stays a newcomer in a room after this node
    /// accepted its first message there: ten minutes, the clock window (a
    /// key's first post could still be live gossip until then). Long, so
    /// that the keys a flood got in early do not post unhindered later in
    /// the same flood; it costs honest newcomers nothing while the room is
    /// not flooded (their messages fit in every forwarder's share).
    pub newcomer_for: Duration,
    /// History-sync requests from one peer: 20/s, bursts of 200 (a catch-up
    /// of 10,000 posts is ~45 requests).
    pub sync_per_peer: Rate,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            posts_per_author: Rate::new(5.0, 20.0),
            ops_per_author: Rate::new(5.0, 30.0),
            dms_per_peer: Rate::new(200.0, 1000.0),
            gossip_per_peer: Rate::new(500.0, 1000.0),
            gossip_flood_per_peer: Rate::new(2000.0, 4000.0),
            newcomers_per_peer: Rate::new(20.0, 200.0),
            unstamped_newcomers_per_peer: Rate::new(1.0, 1.0),
            stamp_bits: DEFAULT_STAMP_BITS,
            newcomer_for: Duration::from_secs(600),
            sync_per_peer: Rate::new(20.0, 200.0),
        }
    }
}

impl Limits {
    /// Limits far above anything a benchmark sends (a million a second), for
    /// capacity measurements; never for a node people use.
    pub fn unlimited() -> Self {
        let r = Rate::new(1e6, 1e6);
        Self {
            posts_per_author: r,
            ops_per_author: r,
            dms_per_peer: r,
            gossip_per_peer: r,
            gossip_flood_per_peer: r,
            newcomers_per_peer: r,
            unstamped_newcomers_per_peer: r,
            stamp_bits: DEFAULT_STAMP_BITS,
            newcomer_for: Duration::ZERO,
            sync_per_peer: r,
        }
    }
}

/// [`Limits::stamp_bits`] by default.
pub(crate) const DEFAULT_STAMP_BITS: u32 = 18;

/// The most work a node asks of a stamp, or puts into its own: 2^32 hashes
/// are minutes of a core already.
pub(crate) const MAX_STAMP_BITS: u32 = 32;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at_ms: u64,
}

/// Keys tracked per limiter at most; beyond, the fullest buckets (the keys
/// that have been quiet longest) are forgotten, which only ever gives a key
/// a fresh burst.
pub(crate) const MAX_KEYS: usize = 10_000;

/// Token buckets per key.
#[derive(Debug)]
pub(crate) struct Limiter<K> {
    rate: Rate,
    buckets: HashMap<K, Bucket>,
}

impl<K: Hash + Eq + Clone> Limiter<K> {
    pub(crate) fn new(rate: Rate) -> Self {
        Self {
            rate,
            buckets: HashMap::new(),
        }
    }

    /// Takes a token for `key` at `now_ms`; false if there was none.
    pub(crate) fn allow(&mut self, key: &K, now_ms: u64) -> bool {
        if !self.buckets.contains_key(key) && self.buckets.len() >= MAX_KEYS {
            self.evict(now_ms);
        }
        let rate = self.rate;
        let bucket = self.buckets.entry(key.clone()).or_insert(Bucket {
            tokens: rate.burst,
            at_ms: now_ms,
        });
        let elapsed = now_ms.saturating_sub(bucket.at_ms) as f64 / 1000.0;
        bucket.tokens = (bucket.tokens + elapsed * rate.per_s).min(rate.burst);
        bucket.at_ms = now_ms.max(bucket.at_ms);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Forgets the buckets that are full by now (their keys were quiet), or
    /// half of them all if none is.
    fn evict(&mut self, now_ms: u64) {
        let rate = self.rate;
        let full = |b: &Bucket| b.tokens + now_ms.saturating_sub(b.at_ms) as f64 / 1000.0 * rate.per_s >= rate.burst;
        self.buckets.retain(|_, b| !full(b));
        if self.buckets.len() >= MAX_KEYS {
            let keep = MAX_KEYS / 2;
            let mut n = 0;
            self.buckets.retain(|_, _| {
                n += 1;
                n <= keep
            });
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.buckets.len()
    }
}

/// The limiters of one node.
#[derive(Debug)]
pub(crate) struct Limiters {
    pub(crate) posts: Limiter<PeerId>,
    pub(crate) ops: Limiter<PeerId>,
    pub(crate) dms: Limiter<PeerId>,
    pub(crate) gossip: Limiter<PeerId>,
    /// The same, far over: a flood the peer is penalised for.
    pub(crate) gossip_flood: Limiter<PeerId>,
    /// Newcomers' posts forwarded, per room and forwarding peer.
    pub(crate) newcomers: Limiter<(Room, PeerId)>,
    /// The same for newcomers' messages without a stamp of `stamp_bits`.
    pub(crate) unstamped: Limiter<(Room, PeerId)>,
    /// `Limits::stamp_bits`, at most [`MAX_STAMP_BITS`].
    pub(crate) stamp_bits: u32,
    /// `Limits::newcomer_for`, in ms.
    pub(crate) newcomer_ms: u64,
    pub(crate) sync: Limiter<PeerId>,
    /// `Event::Rejected` is emitted at most 20 times a second (bursts of
    /// 100): a flood is counted in full in `Stats`, but must not crowd the
    /// application's event queue.
    pub(crate) reject_events: Limiter<()>,
    /// This node's own hallway posts: paced under what its peers accept
    /// from one author (`posts_per_author`), so that a pasted paragraph
    /// reaches them in full instead of being cut at their limit.
    pub(crate) own_posts: Limiter<()>,
    pub(crate) penalties: Penalties,
}

impl Limiters {
    pub(crate) fn new(limits: &Limits) -> Self {
        Self {
            posts: Limiter::new(limits.posts_per_author),
            ops: Limiter::new(limits.ops_per_author),
            dms: Limiter::new(limits.dms_per_peer),
            gossip: Limiter::new(limits.gossip_per_peer),
            gossip_flood: Limiter::new(limits.gossip_flood_per_peer),
            newcomers: Limiter::new(limits.newcomers_per_peer),
            unstamped: Limiter::new(limits.unstamped_newcomers_per_peer),
            stamp_bits: limits.stamp_bits.min(MAX_STAMP_BITS),
            newcomer_ms: limits.newcomer_for.as_millis() as u64,
            sync: Limiter::new(limits.sync_per_peer),
            reject_events: Limiter::new(Rate::new(20.0, 100.0)),
            own_posts: Limiter::new(own_pace(limits.posts_per_author)),
            penalties: Penalties::default(),
        }
    }
}

/// The pace of this node's own posts under the network's per-author limit:
/// 90 % of its rate and 80 % of its burst. Receivers see the posts later
/// than they were sent, and unevenly (a forwarder may hold some back, then
/// pass them on together); the margin absorbs that, so they are not cut.
/// It assumes peers use the same limits (the defaults).
pub(crate) fn own_pace(network: Rate) -> Rate {
    Rate::new(network.per_s * 0.9, (network.burst * 0.8).floor().max(1.0))
}

/// Penalty points per rate-limit violation a peer caused.
pub(crate) const PENALTY_PER_VIOLATION: f64 = 1.0;

/// Penalty points decay by this factor per second: a half-life of
/// ln 2 / ln(1/0.995) = 138 s. A peer with p points is reported to
/// gossipsub at most [`REPORT_STEP`] away from its exact penalty and is
/// forgiven (reported 0, then forgotten) once its penalty falls under
/// [`FORGIVEN_BELOW`]: ln(2p) / ln(1/0.995) seconds after its last violation,
/// 12 minutes from 18 points, 18 minutes from 100. It stays graylisted
/// (under −80) for ln(p / 80) / ln(1/0.995) seconds: 138 s from 160 points,
/// 8.4 minutes from 1,000. What a flooder sends while graylisted never
/// reaches the application; it is charged by
/// [`Penalties::add_if_penalised`] instead.
pub(crate) const PENALTY_DECAY_PER_S: f64 = 0.995;

/// A penalty is reported to gossipsub again once it has moved this far
/// from the value last reported (not from the last tick's: at 0.5 % a
/// second, a penalty under 100 points moves less than 0.5 in one tick, and
/// comparing tick with tick never reported its decay).
pub(crate) const REPORT_STEP: f64 = 0.5;

/// A penalty under this many points is forgiven: reported as 0 and
/// forgotten.
pub(crate) const FORGIVEN_BELOW: f64 = 0.5;

/// One peer's penalty: its points at `at_ms`, and what gossipsub was last
/// told.
#[derive(Debug, Clone, Copy)]
struct Penalty {
    points: f64,
    at_ms: u64,
    reported: f64,
}

impl Penalty {
    /// Decays the penalty to `now_ms` and adds `n` violations; the result
    /// is what the caller reports to gossipsub.
    fn charge(&mut self, n: u64, now_ms: u64) -> f64 {
        self.points = decayed(self.points, self.at_ms, now_ms) + PENALTY_PER_VIOLATION * n as f64;
        self.at_ms = now_ms.max(self.at_ms);
        self.reported = self.points;
        self.points
    }
}

/// Each peer's penalty for rate-limit violations: the negative of this is
/// its gossipsub application-specific score.
#[derive(Debug, Default)]
pub(crate) struct Penalties {
    points: HashMap<PeerId, Penalty>,
}

impl Penalties {
    /// Adds a violation by `peer`; returns its penalty now, which the caller
    /// reports to gossipsub.
    pub(crate) fn add(&mut self, peer: PeerId, now_ms: u64) -> f64 {
        if !self.points.contains_key(&peer) && self.points.len() >= MAX_KEYS {
            self.decay_all(now_ms);
            self.points.retain(|_, p| p.points >= 1.0);
        }
        let p = self.points.entry(peer).or_insert(Penalty {
            points: 0.0,
            at_ms: now_ms,
            reported: 0.0,
        });
        p.charge(1, now_ms)
    }

    /// Adds `n` violations by `peer` if it has a penalty already (it flooded
    /// before); returns its penalty now, or None if it had none. A flooder
    /// is graylisted after ~80 violations, and from then on gossipsub drops
    /// what it sends before the application sees it: counting those
    /// messages keeps a flooder that goes on flooding graylisted, instead of
    /// letting it back after the ~80 points decay (seconds).
    pub(crate) fn add_if_penalised(&mut self, peer: PeerId, n: u64, now_ms: u64) -> Option<f64> {
        Some(self.points.get_mut(&peer)?.charge(n, now_ms))
    }

    /// Decays every penalty to `now_ms`; returns the peers whose penalty
    /// moved [`REPORT_STEP`] or more from what was last reported, with
    /// their penalty now (0 once forgiven), and forgets the forgiven.
    pub(crate) fn decay_all(&mut self, now_ms: u64) -> Vec<(PeerId, f64)> {
        let mut out = Vec::new();
        for (peer, p) in self.points.iter_mut() {
            p.points = decayed(p.points, p.at_ms, now_ms);
            p.at_ms = now_ms.max(p.at_ms);
            let now = if p.points < FORGIVEN_BELOW { 0.0 } else { p.points };
            if (p.reported - now).abs() >= REPORT_STEP || (now == 0.0 && p.reported > 0.0) {
                out.push((*peer, now));
                p.reported = now;
            }
        }
        self.points.retain(|_, p| p.points >= FORGIVEN_BELOW);
        out
    }

    /// What gossipsub was last told of `peer`'s penalty (0 if nothing).
    #[cfg(test)]
    pub(crate) fn reported(&self, peer: &PeerId) -> f64 {
        self.points.get(peer).map_or(0.0, |p| p.reported)
    }
}

fn decayed(points: f64, at_ms: u64, now_ms: u64) -> f64 {
    let secs = now_ms.saturating_sub(at_ms) as f64 / 1000.0;
    points * PENALTY_DECAY_PER_S.powf(secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_its_rate() {
        let mut l = Limiter::new(Rate::new(5.0, 20.0));
        let allowed = (0..100).filter(|_| l.allow(&"a", 0)).count();
        assert_eq!(allowed, 20);
        // One second later, five more.
        let allowed = (0..100).filter(|_| l.allow(&"a", 1000)).count();
        assert_eq!(allowed, 5);
        // Another key has its own bucket.
        assert!(l.allow(&"b", 1000));
        // A clock that goes backwards gives nothing extra.
        assert!(!l.allow(&"a", 500));
    }

    #[test]
    fn a_flood_of_keys_is_bounded() {
        let mut l = Limiter::new(Rate::new(1.0, 1.0));
        for k in 0..(3 * MAX_KEYS) {
            l.allow(&k, 0);
        }
        assert!(l.len() <= MAX_KEYS);
    }

    #[test]
    fn penalties_grow_with_violations_and_decay() {
        let mut p = Penalties::default();
        let peer = PeerId::random();
        for _ in 0..100 {
            p.add(peer, 0);
        }
        let now = p.add(peer, 0);
        assert!(now >= 100.0);
        let after = p.decay_all(60_000);
        let left = after
            .iter()
            .find(|(q, _)| *q == peer)
            .map(|(_, v)| *v)
            .expect("changed");
        assert!(left < 80.0 && left > 70.0, "{left}");
        let gone = p.decay_all(3_600_000);
        assert_eq!(gone, vec![(peer, 0.0)]);
    }

    /// Penalties with one peer charged `violations` times at 0, and the
    /// penalty the last charge returned.
    fn penalised(violations: usize) -> (Penalties, PeerId, f64) {
        let mut p = Penalties::default();
        let peer = PeerId::random();
        let mut seen = 0.0;
        for _ in 0..violations {
            seen = p.add(peer, 0);
        }
        (p, peer, seen)
    }

    /// What gossipsub sees when the event loop reports every change
    /// [`Penalties::decay_all`] returns, ticking once a second.
    fn seen_by_gossipsub(p: &mut Penalties, peer: PeerId, from_ms: u64, ticks: u64, seen: &mut f64) -> Vec<f64> {
        (1..=ticks)
            .map(|t| {
                for (q, v) in p.decay_all(from_ms + t * 1000) {
                    if q == peer {
                        *seen = v;
                    }
                }
                *seen
            })
            .collect()
    }

    #[test]
    fn a_small_penalty_decays_tick_by_tick_and_is_forgiven_on_time() {
        // The bug: a peer at 18 points stayed reported at 18 for minutes,
        // because each tick compared with the previous tick (a change of
        // 0.09) instead of with what was reported.
        let (mut p, peer, mut seen) = penalised(18);
        assert_eq!(seen, 18.0);
        let ticks = 20 * 60;
        let reported = seen_by_gossipsub(&mut p, peer, 0, ticks, &mut seen);
        // What gossipsub sees never rises, and is never more than one report
        // step from the exact penalty.
        for (t, v) in reported.iter().enumerate() {
            let exact = 18.0 * PENALTY_DECAY_PER_S.powf((t + 1) as f64);
            let exact = if exact < FORGIVEN_BELOW { 0.0 } else { exact };
            assert!((v - exact).abs() < REPORT_STEP, "tick {t}: reported {v}, exact {exact}");
            if t > 0 {
                assert!(*v <= reported[t - 1], "tick {t} rose");
            }
        }
        // After 130 s (what the issue measured, still at 18) it is about 9.4.
        assert!((reported[129] - 18.0 * 0.995f64.powf(130.0)).abs() < REPORT_STEP);
        assert!(reported[129] < 10.0, "{}", reported[129]);
        // Forgiven when the documented formula says: ln(2p) / ln(1/0.995).
        let forgiven_s = ((2.0 * 18.0f64).ln() / (1.0 / PENALTY_DECAY_PER_S).ln()).ceil() as usize;
        assert_eq!(forgiven_s, 715, "docs/SECURITY.md and PROTOCOL.md quote 12 minutes");
        assert!(reported[forgiven_s - 2] > 0.0);
        assert_eq!(reported[forgiven_s - 1], 0.0, "forgiven at {forgiven_s} s");
        assert_eq!(p.reported(&peer), 0.0);
        assert!(p.points.is_empty(), "a forgiven peer is forgotten");
    }

    #[test]
    fn only_a_peer_penalised_already_is_charged_for_what_it_sends_while_graylisted() {
        let (mut p, flooder, _) = penalised(80);
        let other = PeerId::random();
        assert_eq!(p.add_if_penalised(flooder, 900, 0), Some(980.0));
        assert_eq!(p.add_if_penalised(other, 900, 0), None);
        assert_eq!(p.reported(&other), 0.0);
    }

    #[test]
    fn a_graylisted_flooder_comes_back_over_the_graylist_when_documented() {
        // 160 points: under the graylist (−80) for ln(160/80) / ln(1/0.995)
        // = 138 s.
        let (mut p, peer, mut seen) = penalised(160);
        let reported = seen_by_gossipsub(&mut p, peer, 0, 200, &mut seen);
        // Reported within one report step of the exact value: at 80 points
        // the penalty falls 0.4 a second, so up to ~2 s later.
        let back = reported
            .iter()
            .position(|v| *v <= 80.0)
            .expect("back over the graylist")
            + 1;
        assert!((138..=140).contains(&back), "{back} s");
        // Violations in between restart from the decayed value, not the peak.
        let again = p.add(peer, 200_000);
        assert!((again - (160.0 * 0.995f64.powf(200.0) + 1.0)).abs() < 1e-6, "{again}");
    }
}
