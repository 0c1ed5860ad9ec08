//! History sync as plain state: what a node reconciles, how reconciliation
//! runs on either side, and the bounds that are this node's own policy (the
//! wire's bounds, such as the page size, are in [`crate::protocol`]). No IO: the event loop moves the
//! bytes (protocol `/backchannel/sync/1.0.0`, docs/PROTOCOL.md "History
//! sync").
//!
//! A room's **history set** is the (clock, message id) of its posts and
//! operations within the history window (by default the last 24 hours, at
//! most the last 10,000). Two nodes reconcile their sets with negentropy
//! (range-based set reconciliation: fingerprints of ranges, split where they
//! differ), so the bytes exchanged grow with the difference, not with the
//! history. The initiator then fetches what it lacks in pages and pushes what
//! the responder lacks.

use negentropy::{Id, Negentropy, NegentropyStorageVector};

use crate::id::{MessageId, Room};
use crate::protocol::{FRAME_LIMIT, MAX_PAGE_BYTES};

/// Rounds of one reconciliation at most; more means a broken or hostile peer.
pub const MAX_ROUNDS: u32 = 32;

/// Ids a node fetches or pushes in one sync at most (the history depth).
pub const MAX_TRANSFER_IDS: usize = 20_000;

/// A history-sync request (`SyncRequest` in proto/backchannel.proto),
/// decoded and checked by `crate::wire`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SyncRequest {
    /// The room whose history is reconciled.
    pub(crate) room: Room,
    /// What the requester asks.
    pub(crate) query: SyncQuery,
}

/// What a sync request asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SyncQuery {
    /// The initiator's next negentropy message.
    Reconcile(Vec<u8>),
    /// Messages the initiator lacks, at most [`crate::protocol::MAX_FETCH_IDS`].
    Fetch(Vec<MessageId>),
    /// Envelopes the responder lacks (verified on arrival like any page).
    Push(Vec<Vec<u8>>),
}

/// The answer to a sync request (`SyncResponse`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SyncResponse {
    /// The responder's negentropy message, and how many participants it
    /// counts present in the room (0: not said), a hint for a node that
    /// just joined ([`crate::node::presence`]).
    Reconcile { message: Vec<u8>, present: u32 },
    /// Envelopes for a fetch, in the order asked.
    Page(Vec<Vec<u8>>),
    /// Why the request was refused.
    Refused(SyncRefusal),
    /// A push was taken: how many envelopes were new.
    Pushed(u32),
}

/// Why a responder refused a sync request (`SyncRefusal`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SyncRefusal {
    /// No reason given (the responder could not read its log).
    Unspecified,
    /// The responder is not in that room.
    NotInRoom,
    /// The request is malformed or its negentropy message is invalid.
    Invalid,
    /// Too many requests from this peer: later.
    Busy,
    /// A code this version does not know (a newer peer).
    Unknown(i32),
}

/// Why a sync step failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SyncError {
    /// The peer's negentropy message is invalid.
    #[error("invalid reconciliation message: {0}")]
    Invalid(String),
    /// The reconciliation took more rounds than allowed.
    #[error("more than {MAX_ROUNDS} rounds")]
    TooManyRounds,
}

fn invalid(e: negentropy::Error) -> SyncError {
    SyncError::Invalid(e.to_string())
}

/// The negentropy storage of a history set.
fn storage(keys: &[(u64, MessageId)]) -> Result<NegentropyStorageVector, SyncError> {
    let mut storage = NegentropyStorageVector::with_capacity(keys.len());
    for (clock, id) in keys {
        storage
            .insert(*clock, Id::from_byte_array(*id.as_bytes()))
            .map_err(invalid)?;
    }
    storage.seal().map_err(invalid)?;
    Ok(storage)
}

/// The initiator's side of one reconciliation.
pub struct Reconciler {
    negentropy: Negentropy<'static, NegentropyStorageVector>,
    rounds: u32,
    /// Ids this node has and the peer lacks.
    pub have: Vec<MessageId>,
    /// Ids the peer has and this node lacks.
    pub need: Vec<MessageId>,
}

impl Reconciler {
    /// Starts a reconciliation of `keys` (this node's history set); returns
    /// the first message to send.
    pub fn start(keys: &[(u64, MessageId)]) -> Result<(Self, Vec<u8>), SyncError> {
        let mut negentropy = Negentropy::owned(storage(keys)?, FRAME_LIMIT).map_err(invalid)?;
        let first = negentropy.initiate().map_err(invalid)?;
        Ok((
            Self {
                negentropy,
                rounds: 0,
                have: Vec::new(),
                need: Vec::new(),
            },
            first,
        ))
    }

    /// Takes the responder's answer: the next message to send, or None when
    /// the sets are reconciled (`have` and `need` are then complete).
    pub fn step(&mut self, answer: &[u8]) -> Result<Option<Vec<u8>>, SyncError> {
        self.rounds += 1;
        if self.rounds > MAX_ROUNDS {
            return Err(SyncError::TooManyRounds);
        }
        let mut have = Vec::new();
        let mut need = Vec::new();
        let next = self
            .negentropy
            .reconcile_with_ids(answer, &mut have, &mut need)
            .map_err(invalid)?;
        self.have
            .extend(have.into_iter().map(|id| MessageId::from_bytes(id.to_bytes())));
        self.need
            .extend(need.into_iter().map(|id| MessageId::from_bytes(id.to_bytes())));
        if self.have.len() + self.need.len() > 2 * MAX_TRANSFER_IDS {
            return Err(SyncError::Invalid("difference larger than the history depth".into()));
        }
        Ok(next)
    }
}

/// The responder's side: answers one negentropy message over `keys`. Keeps
/// no state between rounds.
pub fn respond(keys: &[(u64, MessageId)], query: &[u8]) -> Result<Vec<u8>, SyncError> {
    let mut negentropy = Negentropy::owned(storage(keys)?, FRAME_LIMIT).map_err(invalid)?;
    negentropy.reconcile(query).map_err(invalid)
}

/// Cuts envelopes into pages of at most [`MAX_PAGE_BYTES`]; an envelope is
/// never split.
pub fn pages(envelopes: Vec<Vec<u8>>) -> Vec<Vec<Vec<u8>>> {
    let mut out: Vec<Vec<Vec<u8>>> = Vec::new();
    let mut bytes = 0;
    for envelope in envelopes {
        if out.is_empty() || bytes + envelope.len() > MAX_PAGE_BYTES {
            out.push(Vec::new());
            bytes = 0;
        }
        bytes += envelope.len() + 4;
        if let Some(page) = out.last_mut() {
            page.push(envelope);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(range: std::ops::Range<u32>) -> Vec<(u64, MessageId)> {
        range
            .map(|i| {
                let mut id = [0u8; 32];
                id[..4].copy_from_slice(&i.to_be_bytes());
                id[4] = 0xaa;
                (1_000 + u64::from(i), MessageId::from_bytes(id))
            })
            .collect()
    }

    /// Runs a reconciliation in memory; returns (have, need, bytes exchanged).
    fn reconcile(mine: &[(u64, MessageId)], theirs: &[(u64, MessageId)]) -> (Vec<MessageId>, Vec<MessageId>, usize) {
        let (mut r, mut msg) = Reconciler::start(mine).unwrap();
        let mut bytes = msg.len();
        loop {
            let answer = respond(theirs, &msg).unwrap();
            bytes += answer.len();
            match r.step(&answer).unwrap() {
                Some(next) => {
                    bytes += next.len();
                    msg = next;
                }
                None => break,
            }
        }
        r.have.sort();
        r.need.sort();
        (r.have, r.need, bytes)
    }

    #[test]
    fn finds_both_sides_of_the_difference() {
        let mine = keys(0..1000);
        let mut theirs = keys(5..1000);
        theirs.extend(keys(2000..2003));
        let (have, need, _) = reconcile(&mine, &theirs);
        assert_eq!(have, keys(0..5).into_iter().map(|k| k.1).collect::<Vec<_>>());
        assert_eq!(need, keys(2000..2003).into_iter().map(|k| k.1).collect::<Vec<_>>());
    }

    #[test]
    fn bytes_grow_with_the_difference_not_the_history() {
        let all = keys(0..10_000);
        let mut fewer = all.clone();
        for i in (0..10).map(|i| i * 997) {
            fewer.remove(i);
        }
        let (_, need, bytes) = reconcile(&fewer, &all);
        assert_eq!(need.len(), 10);
        // A full transfer of the ids alone would be 320,000 bytes.
        assert!(bytes < 32_000, "{bytes} bytes for 10 differences");
        let (have, need, _) = reconcile(&all, &all);
        assert!(have.is_empty() && need.is_empty());
    }

    #[test]
    fn an_empty_side_needs_everything() {
        let theirs = keys(0..3000);
        let (have, need, _) = reconcile(&[], &theirs);
        assert!(have.is_empty());
        assert_eq!(need.len(), 3000);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let mine = keys(0..10);
        for junk in [&b""[..], b"\x61", b"\x61\xff\xff\xff", b"\x00garbage", &[0x61; 100]] {
            let _ = respond(&mine, junk);
            let (mut r, _) = Reconciler::start(&mine).unwrap();
            let _ = r.step(junk);
        }
    }

    #[test]
    fn pages_hold_at_most_the_limit() {
        let envelopes = vec![vec![0u8; 300_000]; 10];
        let pages = pages(envelopes);
        assert_eq!(pages.len(), 4);
        assert!(
            pages
                .iter()
                .all(|p| p.iter().map(Vec::len).sum::<usize>() <= MAX_PAGE_BYTES)
        );
    }
}
