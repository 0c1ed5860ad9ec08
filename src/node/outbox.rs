//! The outbox: direct messages waiting for a receipt. Plain state and rules
//! with the time passed in, so retry and expiry are tested without a network.
//!
//! A DM stays in the outbox (and in the log's outbox index, so it survives
//! restarts) until a valid receipt arrives, the recipient refuses it, or it
//! expires. A failed attempt is retried after a bounded exponential backoff,
//! and at once when the recipient is seen again (a connection, mDNS, identify).

use std::collections::HashMap;
use std::time::Duration;

use libp2p::PeerId;

use crate::id::MessageId;

/// Retry and expiry settings (part of the node's `Config`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Wait after the first failed attempt; doubles per attempt.
    pub base: Duration,
    /// The longest wait between attempts.
    pub max: Duration,
    /// How long a DM is retried before it fails as expired.
    pub expiry: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            // A second covers a peer that restarts; doubling reaches the cap
            // after 9 attempts (~8.5 minutes of trying).
            base: Duration::from_secs(1),
            // Five minutes bounds the wait once the peer is back but we did
            // not see it come (no connection, no mDNS): rarely longer than a
            // short break.
            max: Duration::from_secs(300),
            // A week, like the issue asks: long enough for a trip, short
            // enough that a message is not delivered out of all context.
            expiry: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

/// One DM waiting for its receipt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEntry {
    /// The DM.
    pub id: MessageId,
    /// Its recipient.
    pub to: PeerId,
    /// Attempts made so far.
    pub attempts: u32,
    /// When the next attempt is due (ms since the Unix epoch).
    pub next_ms: u64,
    /// When it expires (ms since the Unix epoch).
    pub expires_ms: u64,
    /// An attempt is on the wire.
    pub in_flight: bool,
}

/// What to do after an attempt failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AfterFailure {
    /// Try again at this time (ms).
    RetryAt(u64),
    /// Give up: expired.
    Expired,
}

/// Attempts on the wire to one peer at most. Below the recipient's limit of
/// concurrent DM streams (128), so a burst of queued DMs released when a peer
/// comes back is paced instead of refused.
pub const WINDOW_PER_PEER: usize = 64;

/// An outbox entry's key: a message and one recipient (a group message has
/// one entry per member).
pub type Key = (MessageId, PeerId);

/// The DMs waiting for receipts.
#[derive(Debug, Default)]
pub struct Outbox {
    entries: HashMap<Key, OutboxEntry>,
    in_flight: HashMap<PeerId, usize>,
    policy: RetryPolicy,
}

impl Outbox {
    /// An empty outbox.
    pub fn new(policy: RetryPolicy) -> Self {
        Self {
            entries: HashMap::new(),
            in_flight: HashMap::new(),
            policy,
        }
    }

    /// Adds a new DM, due now; returns the entry.
    pub fn add(&mut self, id: MessageId, to: PeerId, now_ms: u64) -> OutboxEntry {
        let entry = OutboxEntry {
            id,
            to,
            attempts: 0,
            next_ms: now_ms,
            expires_ms: now_ms.saturating_add(self.policy.expiry.as_millis() as u64),
            in_flight: false,
        };
        self.entries.insert((id, to), entry.clone());
        entry
    }

    /// Puts back an entry read from the log after a restart (not in flight).
    pub fn restore(&mut self, mut entry: OutboxEntry) {
        entry.in_flight = false;
        self.entries.insert((entry.id, entry.to), entry);
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the outbox is empty.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entries, oldest deadline first.
    pub fn entries(&self) -> Vec<OutboxEntry> {
        let mut v: Vec<_> = self.entries.values().cloned().collect();
        v.sort_by_key(|e| (e.expires_ms, e.id));
        v
    }

    /// One entry.
    pub fn get(&self, key: &Key) -> Option<&OutboxEntry> {
        self.entries.get(key)
    }

    /// How many recipients of message `id` still wait for it.
    pub fn waiting_for(&self, id: &MessageId) -> usize {
        self.entries.keys().filter(|(m, _)| m == id).count()
    }

    /// Marks an attempt started; returns false if the DM is unknown, already
    /// on the wire, or its recipient's window is full.
    pub fn start_attempt(&mut self, key: &Key) -> bool {
        match self.entries.get_mut(key) {
            Some(e) if !e.in_flight => {
                let flying = self.in_flight.entry(e.to).or_default();
                if *flying >= WINDOW_PER_PEER {
                    return false;
                }
                *flying += 1;
                e.in_flight = true;
                e.attempts += 1;
                true
            }
            _ => false,
        }
    }

    fn landed(&mut self, to: &PeerId) {
        if let Some(n) = self.in_flight.get_mut(to) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.in_flight.remove(to);
            }
        }
    }

    /// The DMs due for an attempt now, and the ones that expired (removed).
    pub fn due(&mut self, now_ms: u64) -> (Vec<Key>, Vec<OutboxEntry>) {
        let expired: Vec<Key> = self
            .entries
            .values()
            .filter(|e| !e.in_flight && now_ms >= e.expires_ms)
            .map(|e| (e.id, e.to))
            .collect();
        let expired = expired.iter().filter_map(|id| self.entries.remove(id)).collect();
        let mut due: Vec<&OutboxEntry> = self
            .entries
            .values()
            .filter(|e| !e.in_flight && now_ms >= e.next_ms)
            .collect();
        due.sort_by_key(|e| (e.next_ms, e.id));
        (due.into_iter().map(|e| (e.id, e.to)).collect(), expired)
    }

    /// The DMs for `peer` that are not on the wire: try them now, whatever
    /// their backoff (the peer was just seen).
    pub fn for_peer(&self, peer: &PeerId) -> Vec<Key> {
        let mut v: Vec<&OutboxEntry> = self
            .entries
            .values()
            .filter(|e| e.to == *peer && !e.in_flight)
            .collect();
        v.sort_by_key(|e| (e.next_ms, e.id));
        v.into_iter().map(|e| (e.id, e.to)).collect()
    }

    /// An attempt failed for a reason worth retrying.
    pub fn failed(&mut self, key: &Key, now_ms: u64) -> Option<AfterFailure> {
        let id = key;
        let e = self.entries.get_mut(id)?;
        let (was_flying, to) = (std::mem::replace(&mut e.in_flight, false), e.to);
        if was_flying {
            self.landed(&to);
        }
        let e = self.entries.get_mut(id)?;
        if now_ms >= e.expires_ms {
            self.entries.remove(id);
            return Some(AfterFailure::Expired);
        }
        let shift = e.attempts.saturating_sub(1).min(20);
        let wait = self.policy.base.saturating_mul(1 << shift).min(self.policy.max);
        e.next_ms = now_ms.saturating_add(wait.as_millis() as u64);
        Some(AfterFailure::RetryAt(e.next_ms))
    }

    /// The DM is done (delivered, refused or cancelled): remove it.
    pub fn remove(&mut self, key: &Key) -> Option<OutboxEntry> {
        let entry = self.entries.remove(key)?;
        if entry.in_flight {
            self.landed(&entry.to);
        }
        Some(entry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outbox() -> (Outbox, PeerId, MessageId) {
        let policy = RetryPolicy {
            base: Duration::from_secs(1),
            max: Duration::from_secs(8),
            expiry: Duration::from_secs(60),
        };
        (Outbox::new(policy), PeerId::random(), MessageId::from_bytes([1; 32]))
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_and_expiry_ends_it() {
        let (mut o, to, id) = (outbox().0, outbox().1, outbox().2);
        o.add(id, to, 0);
        let k = (id, to);
        let mut now = 0;
        let mut waits = Vec::new();
        loop {
            let (due, expired) = o.due(now);
            if !expired.is_empty() {
                assert_eq!(expired[0].id, id);
                break;
            }
            if due.contains(&k) {
                assert!(o.start_attempt(&k));
                assert!(!o.start_attempt(&k), "one attempt at a time");
                match o.failed(&k, now).unwrap() {
                    AfterFailure::RetryAt(at) => waits.push(at - now),
                    AfterFailure::Expired => break,
                }
            }
            now += 500;
            assert!(now < 100_000, "expiry ends the retries");
        }
        assert_eq!(&waits[..5], &[1000, 2000, 4000, 8000, 8000]);
        assert!(o.is_empty());
    }

    #[test]
    fn seeing_the_peer_makes_its_dms_due_at_once() {
        let (mut o, to, id) = outbox();
        o.add(id, to, 0);
        let k = (id, to);
        assert!(o.start_attempt(&k));
        assert_eq!(o.for_peer(&to), vec![], "in flight");
        o.failed(&k, 0);
        assert_eq!(o.due(10).0, vec![], "backing off");
        assert_eq!(o.for_peer(&to), vec![k]);
        assert_eq!(o.for_peer(&PeerId::random()), vec![]);
        o.remove(&k);
        assert!(o.for_peer(&to).is_empty());
    }

    #[test]
    fn at_most_a_window_of_attempts_per_peer() {
        let (mut o, to, _) = outbox();
        let ids: Vec<MessageId> = (0..=WINDOW_PER_PEER as u8)
            .map(|i| MessageId::from_bytes([i; 32]))
            .collect();
        for id in &ids {
            o.add(*id, to, 0);
        }
        let keys: Vec<Key> = ids.iter().map(|id| (*id, to)).collect();
        let started = keys.iter().filter(|k| o.start_attempt(k)).count();
        assert_eq!(started, WINDOW_PER_PEER);
        let waiting = *keys.iter().find(|k| !o.get(k).unwrap().in_flight).unwrap();
        let flying = *keys.iter().find(|k| o.get(k).unwrap().in_flight).unwrap();
        o.remove(&flying);
        assert!(o.start_attempt(&waiting), "a landed attempt frees a slot");
    }

    #[test]
    fn restored_entries_are_not_in_flight() {
        let (mut o, to, id) = outbox();
        let mut e = o.add(id, to, 5);
        e.in_flight = true;
        let mut fresh = Outbox::new(RetryPolicy::default());
        fresh.restore(e);
        assert_eq!(fresh.due(5).0, vec![(id, to)]);
    }
}
