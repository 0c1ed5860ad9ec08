//! One simulated node: the room core a real node runs ([`JoinedRoom`] with
//! its admission rule and [`JoinedRoom::commit`]), over an in-memory log,
//! with what it showed kept for the checks. What the event loop adds around
//! it (sockets, sled, events) is left out; what it decides is not.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

use libp2p::PeerId;
use sha2::{Digest, Sha256};

use crate::envelope::Signed;
use crate::id::{MessageId, RejectReason, Room};
use crate::identity::Identity;
use crate::message::{Body, HallwayPost};
use crate::node::limits::{Limiters, Limits};
use crate::node::presence::Change;
use crate::node::rooms::{Admission, Context, JoinedRoom, Origin, RoomLog};
use crate::room::{Presence, RoomAction, RoomOp, RoomState};
use crate::store::StoreError;

/// How far authors' clocks may be from ours: `Config::clock_window`'s default.
pub(super) const WINDOW_MS: u64 = 600_000;

/// What a node reconciles: `Config::history_window` and `history_max`.
pub(super) const HISTORY_WINDOW_MS: u64 = 24 * 3600 * 1000;
pub(super) const HISTORY_MAX: usize = 10_000;

/// What a node is in the script.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    /// Runs the core as shipped and posts by the rules.
    Honest,
    /// Runs the core, and also signs posts the rules refuse it (it is
    /// removed from the room) and keeps them in its log, so that it serves
    /// them to history sync.
    Rogue,
    /// Runs the core, and also sends tampered, misattributed and garbage
    /// bytes and operations it has no right to.
    Forger,
}

/// A room's log in memory, as the sled store keeps it: envelopes by id, and
/// the room's index in (clock, id) order. A deleted post is forgotten from
/// both.
#[derive(Default)]
pub(super) struct MemLog {
    pub(super) envelopes: BTreeMap<MessageId, Vec<u8>>,
    pub(super) index: BTreeSet<(u64, MessageId)>,
    /// Posts the rogue keeps whatever the rules say, to serve them to
    /// history sync.
    pub(super) pinned: BTreeSet<MessageId>,
}

impl RoomLog for MemLog {
    fn insert(&mut self, signed: &Signed) -> Result<bool, StoreError> {
        let id = signed.id();
        if self.envelopes.contains_key(&id) {
            return Ok(false);
        }
        let clock = signed.body().room_clock().map_or(0, |(_, clock)| clock);
        self.envelopes.insert(id, signed.envelope().to_vec());
        self.index.insert((clock, id));
        Ok(true)
    }

    fn forget(&mut self, _room: &Room, clock: u64, id: &MessageId) -> Result<(), StoreError> {
        if self.pinned.contains(id) {
            return Ok(());
        }
        self.index.remove(&(clock, *id));
        self.envelopes.remove(id);
        Ok(())
    }
}

impl MemLog {
    /// The history set a node reconciles at `now_ms` (`Store::room_keys`).
    pub(super) fn keys(&self, now_ms: u64) -> Vec<(u64, MessageId)> {
        let min = now_ms.saturating_sub(HISTORY_WINDOW_MS);
        let mut keys: Vec<(u64, MessageId)> = self
            .index
            .range((min, MessageId::from_bytes([0; 32]))..)
            .rev()
            .take(HISTORY_MAX)
            .copied()
            .collect();
        keys.reverse();
        keys
    }
}

/// Something a node showed (what the event loop emits as `Event::Hallway`,
/// `Event::RoomOp` or `Event::Presence`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Shown {
    /// A post or an operation, with the hash of the envelope it came in.
    Message { id: MessageId, envelope: [u8; 32] },
    /// A participant came or left.
    Presence { peer: PeerId, present: bool },
}

/// Counts over a run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    /// Envelopes nodes opened: one per gossip message a node had not seen,
    /// one per envelope of a history page.
    pub(crate) opened: u64,
    /// ed25519 signature checks made (fewer than `opened` when nodes share
    /// them: `SimConfig::shared_checks`).
    pub(crate) verifications: u64,
    /// Envelopes whose signature or encoding failed.
    pub(crate) invalid: u64,
    /// Messages admitted and new to a log.
    pub(crate) logged: u64,
}

/// The work of the simulation's stamps (`Limits::stamp_bits`).
const STAMP_BITS: u32 = 4;

/// One node of the simulation.
pub(super) struct SimNode {
    pub(super) identity: Identity,
    pub(super) peer: PeerId,
    pub(super) kind: Kind,
    pub(super) joined: JoinedRoom,
    pub(super) log: MemLog,
    limiters: Limiters,
    blocked: HashSet<PeerId>,
    /// Gossip ids (SHA-256 of the bytes, as `protocol::gossip_message_id`)
    /// seen: gossipsub drops a message it has seen before validating it.
    seen: HashSet<[u8; 32], BuildHasherDefault<IdHasher>>,
    pub(super) shown: Vec<Shown>,
    /// This node's clock minus the simulation's, in ms.
    pub(super) skew_ms: i64,
}

/// What a node does with a gossip message after validating it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Forward it to the other mesh peers (`MessageAcceptance::Accept`).
    Forward,
    /// Drop it.
    Drop,
}

/// Hashes a gossip id by its first eight bytes: it is a SHA-256 already,
/// and the simulation looks up millions of them.
#[derive(Default)]
pub(super) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for (i, b) in bytes.iter().take(8).enumerate() {
            self.0 |= u64::from(*b) << (8 * i);
        }
    }
}

/// The gossip id of some bytes.
pub(super) fn gossip_id(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

impl SimNode {
    pub(super) fn new(identity: Identity, kind: Kind, room: &Room, skew_ms: i64, bound: usize) -> Self {
        let mut joined = JoinedRoom::new(room, RoomState::new(room.clone()).with_bound(bound));
        // Stamped as a node stamps its own, with little work: a thousand
        // nodes mint theirs in moments.
        let key = crate::id::key_of(&identity.peer_id()).expect("an ed25519 identity");
        joined.stamp = Some(crate::protocol::mint_stamp(room.as_str(), &key, STAMP_BITS));
        Self {
            peer: identity.peer_id(),
            identity,
            kind,
            joined,
            log: MemLog::default(),
            limiters: Limiters::new(&Limits {
                stamp_bits: STAMP_BITS,
                ..Limits::default()
            }),
            blocked: HashSet::new(),
            seen: HashSet::default(),
            shown: Vec::new(),
            skew_ms,
        }
    }

    /// This node's clock at simulated time `sim_ms`.
    pub(super) fn now(&self, sim_ms: u64) -> u64 {
        sim_ms.saturating_add_signed(self.skew_ms)
    }

    /// Marks bytes as seen by gossip (its own publications); false if seen.
    pub(super) fn see(&mut self, gossip_id: [u8; 32]) -> bool {
        self.seen.insert(gossip_id)
    }

    /// A verified gossip message from mesh peer `source` (new to this
    /// node): admit it, and carry out the admission as `admit_room_message`
    /// does.
    pub(super) fn on_gossip(
        &mut self,
        room: &Room,
        sim_ms: u64,
        source: PeerId,
        signed: Signed,
        counts: &mut Counts,
    ) -> Verdict {
        self.admit(room, Origin::Live, sim_ms, source, signed, counts)
    }

    /// A page of history from `source`, opened: each message that verified,
    /// in the room's order, as `apply_history` does. Returns how many were
    /// new to the log.
    pub(super) fn on_page(
        &mut self,
        room: &Room,
        sim_ms: u64,
        source: PeerId,
        opened: Vec<Result<Signed, RejectReason>>,
        counts: &mut Counts,
    ) -> usize {
        let mut opened: Vec<Signed> = opened
            .into_iter()
            .filter_map(|result| {
                if result.is_err() {
                    counts.invalid += 1;
                }
                result.ok()
            })
            .collect();
        opened.sort_by_key(|s| (s.body().room_clock().map_or(0, |(_, clock)| clock), s.id()));
        let before = counts.logged;
        for signed in opened {
            self.admit(room, Origin::History, sim_ms, source, signed, counts);
        }
        (counts.logged - before) as usize
    }

    fn admit(
        &mut self,
        room: &Room,
        origin: Origin,
        sim_ms: u64,
        source: PeerId,
        signed: Signed,
        counts: &mut Counts,
    ) -> Verdict {
        let mut cx = Context {
            now_ms: self.now(sim_ms),
            window_ms: WINDOW_MS,
            local: self.peer,
            presence_on: true,
            blocked: &self.blocked,
            limiters: &mut self.limiters,
        };
        match self.joined.admit(room, origin, source, &signed, &mut cx) {
            Admission::Accept { show } => {
                let Ok(done) = self.joined.commit(room, origin, &signed, show, &mut cx, &mut self.log) else {
                    return Verdict::Drop;
                };
                if done.new {
                    counts.logged += 1;
                }
                for s in done.show {
                    self.shown.push(Shown::Message {
                        id: s.id(),
                        envelope: gossip_id(s.envelope()),
                    });
                }
                Verdict::Forward
            }
            Admission::Presence(change) => {
                if change != Change::Same {
                    self.shown.push(Shown::Presence {
                        peer: signed.author(),
                        present: change == Change::Here,
                    });
                }
                Verdict::Forward
            }
            _ => Verdict::Drop,
        }
    }

    /// Signs a body with a nonce from the simulation's generator, so that
    /// a seed gives the same ids every time.
    pub(super) fn sign(&self, body: Body, nonce: [u8; 16]) -> Signed {
        Signed::sign_with_nonce(&self.identity, body, nonce)
    }

    /// A post of this node's, if the rules let it post now (`new_post`).
    pub(super) fn new_post(&self, room: &Room, sim_ms: u64, text: String, question: bool) -> Option<Body> {
        let now = self.now(sim_ms);
        let rules = &self.joined.rules;
        let clock = rules.next_clock(now);
        rules.check_live_post(&self.peer, clock, question).ok()?;
        Some(post_body(room, now, clock, text, question, self.joined.stamp))
    }

    /// An operation of this node's, if the rules allow it now (`new_op`).
    pub(super) fn new_op(&self, room: &Room, sim_ms: u64, action: RoomAction) -> Option<Body> {
        let now = self.now(sim_ms);
        let rules = &self.joined.rules;
        let clock = rules.next_clock(now);
        rules.check_op(&self.peer, clock, &action).ok()?;
        Some(Body::RoomOp(RoomOp {
            room: room.clone(),
            clock,
            time_ms: now,
            action,
            stamp: self.joined.stamp,
        }))
    }

    /// A presence announcement of this node's.
    pub(super) fn presence(&self, room: &Room, sim_ms: u64) -> Body {
        Body::Presence(Presence {
            room: room.clone(),
            time_ms: self.now(sim_ms),
            nick: None,
            ttl_s: self.joined.presence.ttl_s(),
            leaving: false,
        })
    }

    /// Logs and applies a message of this node's (`publish_own`); it is not
    /// shown here, as a node does not show its own messages.
    pub(super) fn publish_own(&mut self, room: &Room, signed: &Signed) {
        if let Ok(true) = self.log.insert(signed) {
            self.joined.apply_logged(room, signed, &mut self.log);
        }
    }

    /// The posts in this node's log, in room order, with their authors.
    pub(super) fn logged_posts(&self) -> Vec<(MessageId, PeerId)> {
        self.log
            .index
            .iter()
            .filter_map(|(_, id)| {
                let signed = Signed::open_trusted(self.log.envelopes.get(id)?).ok()?;
                matches!(signed.body(), Body::Hallway(_)).then(|| (*id, signed.author()))
            })
            .collect()
    }
}

/// The body of a post.
pub(super) fn post_body(
    room: &Room,
    time_ms: u64,
    clock: u64,
    text: String,
    question: bool,
    stamp: Option<u64>,
) -> Body {
    Body::Hallway(HallwayPost {
        room: room.clone(),
        text,
        time_ms,
        nick: None,
        clock,
        reply_to: None,
        mentions: Vec::new(),
        question,
        stamp,
    })
}
