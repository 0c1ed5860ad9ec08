//! The admission rule for DM-protocol requests (direct messages, group ops
//! and group messages) as plain code: the bytes a peer sent, what the node
//! knows, and the time in; a [`DmAdmission`] out, which the event loop
//! carries out (refusal code, counters, storing and the receipt). No IO.

use std::collections::{HashMap, HashSet};

use libp2p::PeerId;

use super::limits::Limiters;
use crate::envelope::{Signed, check_time};
use crate::id::{MessageId, RejectReason};
use crate::message::Body;

/// What the node knows besides the request, for [`admit_dm`].
pub(crate) struct DmContext<'a> {
    pub(crate) now_ms: u64,
    /// How far authors' clocks may be ahead of ours (`Config::clock_window`);
    /// a DM may be days late by design (an outbox retrying), never early.
    pub(crate) window_ms: u64,
    pub(crate) local: PeerId,
    pub(crate) blocked: &'a HashSet<PeerId>,
    pub(crate) contacts: &'a HashMap<PeerId, String>,
    /// Whether DMs from non-contacts are taken as requests (`/requests on`).
    pub(crate) accept_requests: bool,
    pub(crate) limiters: &'a mut Limiters,
}

/// The decision about one request.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum DmAdmission {
    /// The peer is over its DM rate: refused BUSY (the sender's outbox
    /// retries later), and the peer, the one at fault, is penalised.
    Busy,
    /// Not a valid envelope, or its time is in the future: refused INVALID,
    /// counted under the reason.
    Invalid(RejectReason),
    /// The author is blocked here: refused NOT_ACCEPTED, nothing stored.
    Blocked(PeerId),
    /// A group op or group message: decided by the group rules.
    Group(Signed),
    /// A DM for someone else: refused WRONG_RECIPIENT, counted.
    WrongRecipient,
    /// Not something the DM protocol carries: refused WRONG_KIND, counted.
    WrongKind,
    /// A request (the author is no contact) while requests are off, and not
    /// one stored before: answered with a signed NOT_ACCEPTED receipt,
    /// nothing stored.
    RequestsOff(Signed),
    /// Store it; once on disk, answer with the receipt and show it.
    /// `request`: the author is no contact (it goes to the requests inbox).
    Accept { signed: Signed, request: bool },
}

/// Decides what to do with the bytes `peer` sent on the DM protocol.
/// `logged` says whether a message id is in the log already (a retry of a
/// request accepted while requests were on is still answered with its
/// receipt); it is asked only for a request while requests are off.
pub(crate) fn admit_dm(
    peer: PeerId,
    request: &[u8],
    cx: &mut DmContext<'_>,
    logged: impl FnOnce(&MessageId) -> bool,
) -> DmAdmission {
    // Before the signature check: a flood costs a map lookup each.
    if !cx.limiters.dms.allow(&peer, cx.now_ms) {
        return DmAdmission::Busy;
    }
    let signed = match Signed::open(request) {
        Ok(signed) => signed,
        Err(reason) => return DmAdmission::Invalid(reason),
    };
    let author = signed.author();
    if cx.blocked.contains(&author) {
        return DmAdmission::Blocked(author);
    }
    let time = match signed.body() {
        Body::Direct(dm) => Some(dm.time_ms),
        Body::Group(m) => Some(m.time_ms),
        _ => None,
    };
    if let Some(time) = time
        && let Err(reason) = check_time(time, cx.now_ms, cx.window_ms, false)
    {
        return DmAdmission::Invalid(reason);
    }
    match signed.body() {
        Body::GroupOp(_) | Body::Group(_) => DmAdmission::Group(signed),
        Body::Direct(dm) if dm.recipient != cx.local => DmAdmission::WrongRecipient,
        Body::Direct(_) => {
            let request = !cx.contacts.contains_key(&author);
            if request && !cx.accept_requests && !logged(&signed.id()) {
                DmAdmission::RequestsOff(signed)
            } else {
                DmAdmission::Accept { signed, request }
            }
        }
        _ => DmAdmission::WrongKind,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::Room;
    use crate::identity::Identity;
    use crate::message::{DirectMessage, HallwayPost};
    use crate::node::limits::Limits;

    const NOW: u64 = 1_800_000_000_000;
    const WINDOW: u64 = 600_000;

    struct Fixture {
        me: Identity,
        blocked: HashSet<PeerId>,
        contacts: HashMap<PeerId, String>,
        accept_requests: bool,
        limiters: Limiters,
    }

    impl Fixture {
        fn new() -> Self {
            Self {
                me: Identity::generate(),
                blocked: HashSet::new(),
                contacts: HashMap::new(),
                accept_requests: true,
                limiters: Limiters::new(&Limits::default()),
            }
        }

        fn admit_at(&mut self, peer: PeerId, bytes: &[u8], now_ms: u64, logged: bool) -> DmAdmission {
            let mut cx = DmContext {
                now_ms,
                window_ms: WINDOW,
                local: self.me.peer_id(),
                blocked: &self.blocked,
                contacts: &self.contacts,
                accept_requests: self.accept_requests,
                limiters: &mut self.limiters,
            };
            admit_dm(peer, bytes, &mut cx, |_| logged)
        }

        fn admit(&mut self, from: &Identity, bytes: &[u8]) -> DmAdmission {
            self.admit_at(from.peer_id(), bytes, NOW, false)
        }

        fn dm(&self, from: &Identity, time_ms: u64) -> Signed {
            dm_to(from, self.me.peer_id(), time_ms)
        }
    }

    fn dm_to(from: &Identity, to: PeerId, time_ms: u64) -> Signed {
        Signed::sign(
            from,
            Body::Direct(DirectMessage {
                recipient: to,
                text: "hi".into(),
                time_ms,
                nick: None,
                reaction: None,
            }),
        )
    }

    fn accepted(signed: &Signed, request: bool) -> DmAdmission {
        DmAdmission::Accept {
            signed: signed.clone(),
            request,
        }
    }

    #[test]
    fn a_dm_from_a_contact_is_accepted_and_from_a_stranger_is_a_request() {
        let mut f = Fixture::new();
        let (ann, bob) = (Identity::generate(), Identity::generate());
        f.contacts.insert(ann.peer_id(), "ann".into());
        let from_ann = f.dm(&ann, NOW);
        assert_eq!(f.admit(&ann, from_ann.envelope()), accepted(&from_ann, false));
        let from_bob = f.dm(&bob, NOW);
        assert_eq!(f.admit(&bob, from_bob.envelope()), accepted(&from_bob, true));
    }

    #[test]
    fn with_requests_off_a_stranger_gets_a_signed_no_unless_it_was_logged_before() {
        let mut f = Fixture::new();
        f.accept_requests = false;
        let bob = Identity::generate();
        let dm = f.dm(&bob, NOW);
        assert_eq!(f.admit(&bob, dm.envelope()), DmAdmission::RequestsOff(dm.clone()));
        // A retry of a DM taken while requests were on gets its receipt again.
        assert_eq!(f.admit_at(bob.peer_id(), dm.envelope(), NOW, true), accepted(&dm, true));
    }

    #[test]
    fn garbage_forgeries_and_the_future_are_invalid() {
        let mut f = Fixture::new();
        let bob = Identity::generate();
        assert!(matches!(f.admit(&bob, b"not an envelope"), DmAdmission::Invalid(_)));
        let mut tampered = f.dm(&bob, NOW).envelope().to_vec();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert!(matches!(f.admit(&bob, &tampered), DmAdmission::Invalid(_)));
        let early = f.dm(&bob, NOW + 2 * WINDOW);
        assert_eq!(
            f.admit(&bob, early.envelope()),
            DmAdmission::Invalid(RejectReason::FutureTime)
        );
        // Late is fine: an outbox may retry for days.
        let late = f.dm(&bob, NOW - 3 * 24 * 3600 * 1000);
        assert_eq!(f.admit(&bob, late.envelope()), accepted(&late, true));
    }

    #[test]
    fn blocked_authors_misaddressed_dms_and_other_kinds_are_refused() {
        let mut f = Fixture::new();
        let (bob, carol) = (Identity::generate(), Identity::generate());
        let for_carol = dm_to(&bob, carol.peer_id(), NOW);
        assert_eq!(f.admit(&bob, for_carol.envelope()), DmAdmission::WrongRecipient);
        let post = Signed::sign(
            &bob,
            Body::Hallway(HallwayPost {
                room: Room::new("lobby").unwrap(),
                text: "x".into(),
                time_ms: NOW,
                nick: None,
                clock: NOW,
                reply_to: None,
                mentions: Vec::new(),
                question: false,
                stamp: None,
            }),
        );
        assert_eq!(f.admit(&bob, post.envelope()), DmAdmission::WrongKind);
        f.blocked.insert(bob.peer_id());
        let dm = f.dm(&bob, NOW);
        assert_eq!(f.admit(&bob, dm.envelope()), DmAdmission::Blocked(bob.peer_id()));
        // Blocking is by author, whoever relays the bytes.
        assert_eq!(
            f.admit_at(carol.peer_id(), dm.envelope(), NOW, false),
            DmAdmission::Blocked(bob.peer_id())
        );
    }

    #[test]
    fn a_peer_over_its_rate_is_busy_before_any_signature_is_checked() {
        let mut f = Fixture::new();
        let bob = Identity::generate();
        let burst = Limits::default().dms_per_peer.burst as usize;
        for _ in 0..burst {
            assert!(matches!(f.admit(&bob, b"garbage"), DmAdmission::Invalid(_)));
        }
        let dm = f.dm(&bob, NOW);
        assert_eq!(f.admit(&bob, dm.envelope()), DmAdmission::Busy);
        // Per peer: another peer is not affected; time refills the bucket.
        let carol = Identity::generate();
        let from_carol = f.dm(&carol, NOW);
        assert_eq!(f.admit(&carol, from_carol.envelope()), accepted(&from_carol, true));
        assert_eq!(
            f.admit_at(bob.peer_id(), dm.envelope(), NOW + 1_000, false),
            accepted(&dm, true)
        );
    }
}
