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

use libp2p::PeerId;

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
    /// it: 500/s, bursts of 1,000. A forwarder in a busy room relays many
    /// authors; more than this is a flood from that peer.
    pub gossip_per_peer: Rate,
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
            sync_per_peer: r,
        }
    }
}

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

/// Penalty points decay by this factor per second (half-life ~2.3 min): a
/// flooder graylisted after ~80 violations stays graylisted for minutes (its
/// messages no longer reach the application once it is, so no new
/// violations are seen to keep it there), and a peer that stopped is
/// forgiven within the quarter hour.
pub(crate) const PENALTY_DECAY_PER_S: f64 = 0.995;

/// Each peer's penalty for rate-limit violations: the negative of this is
/// its gossipsub application-specific score.
#[derive(Debug, Default)]
pub(crate) struct Penalties {
    points: HashMap<PeerId, (f64, u64)>,
}

impl Penalties {
    /// Adds a violation by `peer`; returns its penalty now.
    pub(crate) fn add(&mut self, peer: PeerId, now_ms: u64) -> f64 {
        if !self.points.contains_key(&peer) && self.points.len() >= MAX_KEYS {
            self.decay_all(now_ms);
            self.points.retain(|_, (p, _)| *p >= 1.0);
        }
        let (points, at) = self.points.entry(peer).or_insert((0.0, now_ms));
        *points = decayed(*points, *at, now_ms) + PENALTY_PER_VIOLATION;
        *at = now_ms;
        *points
    }

    /// Decays every penalty to `now_ms`; returns the peers whose penalty
    /// changed noticeably, with their penalty now (0 once forgiven).
    pub(crate) fn decay_all(&mut self, now_ms: u64) -> Vec<(PeerId, f64)> {
        let mut out = Vec::new();
        for (peer, (points, at)) in self.points.iter_mut() {
            let now = decayed(*points, *at, now_ms);
            if (*points - now).abs() >= 0.5 || (now < 0.5 && *points >= 0.5) {
                out.push((*peer, if now < 0.5 { 0.0 } else { now }));
            }
            *points = now;
            *at = now_ms;
        }
        self.points.retain(|_, (p, _)| *p >= 0.5);
        out
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
}
