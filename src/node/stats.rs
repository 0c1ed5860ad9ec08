//! [`Stats`]: the node's counters.

use std::collections::BTreeMap;

use crate::id::RejectReason;

/// Counters: what the node did and what it refused (and whether its log
/// waits for a flush).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Stats {
    /// Rejected inputs by reason (in JSON, keyed by [`RejectReason::as_str`]).
    pub rejected: BTreeMap<RejectReason, u64>,
    /// Rejected inputs by the peer that sent them (at most
    /// [`Stats::MAX_PEERS_TRACKED`] peers).
    pub rejected_by_peer: BTreeMap<String, u64>,
    /// Valid messages seen again (not shown twice).
    pub duplicates: u64,
    /// Hallway posts received and shown.
    pub hallway_received: u64,
    /// DMs received and shown.
    pub dms_received: u64,
    /// Posts this node published.
    pub posts_sent: u64,
    /// DMs this node sent.
    pub dms_sent: u64,
    /// DMs acknowledged by a valid receipt.
    pub dms_delivered: u64,
    /// DMs that failed.
    pub dms_failed: u64,
    /// DMs from non-contacts refused because requests are off.
    pub requests_refused: u64,
    /// Posts and DMs from blocked peers, dropped before being stored or shown.
    pub dropped_blocked: u64,
    /// Events the application did not take in time (the messages are in the log).
    pub events_dropped: u64,
    /// Room operations received and applied.
    pub room_ops_received: u64,
    /// Reconciliations this node started, and how many completed.
    pub syncs_started: u64,
    /// Reconciliations completed.
    pub syncs_completed: u64,
    /// Posts and operations received through history sync.
    pub synced_received: u64,
    /// Posts and operations sent to peers that lacked them (fetched or pushed).
    pub synced_sent: u64,
    /// Bytes of sync requests and responses this node received.
    pub sync_bytes_in: u64,
    /// Bytes of sync requests and responses this node sent.
    pub sync_bytes_out: u64,
    /// `Event::Rejected` events not emitted because rejections came faster
    /// than 20 a second (they are all counted in `rejected`).
    pub rejected_events_suppressed: u64,
    /// Relayed connections upgraded to direct ones by hole punching.
    #[serde(default)]
    pub hole_punches: u64,
    /// Connections established, both ways, since the node started (each
    /// costs a Noise handshake; DHT queries open many, docs/PERFORMANCE.md).
    #[serde(default)]
    pub connections_established: u64,
    /// Hole punches that failed (the connection stays relayed).
    #[serde(default)]
    pub hole_punch_failures: u64,
    /// DHT lookups of a peer's addresses, and how many found them.
    #[serde(default)]
    pub peer_lookups: u64,
    /// Lookups that found a peer's address record.
    #[serde(default)]
    pub peer_lookups_found: u64,
    /// Posts and operations the rooms' bound evicted (`Config::room_bound`):
    /// the oldest of a room that holds more than its bound. A count that
    /// grows fast is a flood.
    #[serde(default)]
    pub room_evicted: u64,
    /// Presence announcements this node published (joins, renewals, leaving).
    #[serde(default)]
    pub presence_sent: u64,
    /// Of those, the first in each room since joining it.
    #[serde(default)]
    pub presence_sent_first: u64,
    /// Of those, announcements an arrival brought forward (answers, so that
    /// the newcomer lists this node). The rest are periodic renewals and
    /// leavings.
    #[serde(default)]
    pub presence_sent_answers: u64,
    /// First announcements and answers held back because the room was over
    /// its announcement budget (docs/PROTOCOL.md "Presence"), each time.
    #[serde(default)]
    pub presence_held_back: u64,
    /// Announcements of new participants this node skipped unverified
    /// because the room was over its announcement budget.
    #[serde(default)]
    pub presence_over_budget: u64,
    /// Presence announcements of others this node verified and admitted
    /// (renewals included): what a join storm costs each member.
    #[serde(default)]
    pub presence_received: u64,
    /// Room stamps this node minted (docs/PROTOCOL.md "Stamps"): one per
    /// room it joined or prepared ([`crate::Handle::prepare_room`]) without a
    /// stamp kept in its log.
    #[serde(default)]
    pub stamps_minted: u64,
    /// Newcomers' posts and operations this node refused over a
    /// forwarder's share and asked another peer for (`node::recover`):
    /// gossipsub drops the other copies of what it refused.
    #[serde(default)]
    pub recovery_asked: u64,
    /// Of those, how many came back and were admitted.
    #[serde(default)]
    pub recovered: u64,
    /// Whether something this node logged without waiting for the disk
    /// (received posts and operations, delivery states of sent DMs) is not
    /// known to be on disk yet. A flush covering it is queued within 200 ms
    /// of it being logged; once this is false again, everything shown
    /// before survives a crash.
    #[serde(default)]
    pub awaiting_flush: bool,
}

impl Stats {
    /// Peers tracked in `rejected_by_peer`; more would let an attacker grow
    /// memory by rotating identities.
    pub const MAX_PEERS_TRACKED: usize = 1024;

    /// All rejections.
    pub fn rejected_total(&self) -> u64 {
        self.rejected.values().sum()
    }

    /// Counts `n` inputs from `from` rejected for `reason`: always by
    /// reason, and by peer for the first [`Stats::MAX_PEERS_TRACKED`] peers
    /// (those keep counting; a new peer beyond them is counted by reason
    /// only).
    pub(crate) fn count_rejected(&mut self, from: &libp2p::PeerId, reason: RejectReason, n: u64) {
        *self.rejected.entry(reason).or_default() += n;
        let key = from.to_string();
        let by_peer = &mut self.rejected_by_peer;
        if by_peer.contains_key(&key) || by_peer.len() < Self::MAX_PEERS_TRACKED {
            *by_peer.entry(key).or_default() += n;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejections_are_counted_in_full_and_by_peer_for_a_bounded_number_of_peers() {
        let mut stats = Stats::default();
        let peers: Vec<libp2p::PeerId> = (0..Stats::MAX_PEERS_TRACKED + 500)
            .map(|_| libp2p::PeerId::random())
            .collect();
        for peer in &peers {
            stats.count_rejected(peer, RejectReason::RateLimited, 2);
        }
        assert_eq!(
            stats.rejected_total(),
            2 * peers.len() as u64,
            "every rejection counted"
        );
        assert_eq!(
            stats.rejected_by_peer.len(),
            Stats::MAX_PEERS_TRACKED,
            "peers tracked are bounded"
        );
        // A tracked peer keeps counting; one beyond the bound is not added.
        stats.count_rejected(&peers[0], RejectReason::Malformed, 1);
        stats.count_rejected(peers.last().expect("a peer"), RejectReason::Malformed, 1);
        assert_eq!(stats.rejected_by_peer[&peers[0].to_string()], 3);
        assert!(
            !stats
                .rejected_by_peer
                .contains_key(&peers.last().expect("a peer").to_string())
        );
        assert_eq!(stats.rejected_by_peer.len(), Stats::MAX_PEERS_TRACKED);
        assert_eq!(stats.rejected[&RejectReason::Malformed], 2);
    }
}
