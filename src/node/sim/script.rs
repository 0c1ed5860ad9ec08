//! The script of a run: who the nodes are, and what they do when. Two
//! phases of about 20 and 15 simulated seconds, each with lossy gossip and
//! partitions, each ended by a heal and quiescence:
//!
//! 1. The host grants a moderator; members post (some questions), edit,
//!    react and delete their own posts; the moderator switches the hallway
//!    read-only and back, deletes posts, marks questions and removes the
//!    rogue, who may still be posting while the removal spreads.
//! 2. Members go on; the removed rogue keeps posting, with current clocks
//!    and with clocks from before its removal, and keeps those posts in its
//!    log so that it serves them to history sync.
//!
//! Throughout, forgers send tampered envelopes, posts signed by one key
//! that claim another author's, garbage, history pages mixing forgeries
//! with a genuine envelope, and operations they have no right to; a few
//! members announce their presence. Honest actions go through the checks a
//! node makes before signing (`new_post`, `new_op`); one the rules refuse
//! is skipped, as the node would refuse it to its user.

use std::collections::HashSet;

use super::node::{Kind, post_body};
use super::{Sim, SimConfig, What};
use crate::envelope::Signed;
use crate::id::MessageId;
use crate::message::Body;
use crate::room::{ChatMode, QuestionState, Reaction, Role, RoomAction};
use crate::wire::RawEnvelope;

/// The host (its peer id is in the room's id).
pub(super) const HOST: usize = 0;
/// The member the host makes a moderator.
pub(super) const MODERATOR: usize = 1;
/// The member the moderator removes, who goes on posting.
pub(super) const ROGUE: usize = 2;
/// Forgers come after these.
const FIRST_FORGER: usize = 3;

/// Phase lengths, simulated ms.
const PHASE_ONE_MS: u64 = 20_000;
const PHASE_TWO_MS: u64 = 15_000;

/// What a node is, by its index.
pub(super) fn kind_of(config: &SimConfig, node: usize) -> Kind {
    match node {
        ROGUE => Kind::Rogue,
        n if (FIRST_FORGER..FIRST_FORGER + config.forgers).contains(&n) => Kind::Forger,
        _ => Kind::Honest,
    }
}

/// A scripted action, carried out by one node at its time.
#[derive(Clone, Copy, Debug)]
pub(super) enum Act {
    Post {
        question: bool,
    },
    Edit,
    React,
    DeleteOwn,
    ModDelete,
    Grant,
    Mode(ChatMode),
    /// The moderator removes the rogue; retried while its rules refuse it
    /// (the grant has not reached it yet).
    Remove,
    MarkQuestion,
    Announce,
    /// The rogue posts after its removal: with a current clock, or with a
    /// clock from before the removal.
    RoguePost {
        old: bool,
    },
    Forge,
    Partition {
        for_ms: u64,
    },
}

/// What the script did, for the checks.
#[derive(Default)]
pub(super) struct Script {
    /// SHA-256 of every envelope signed by its author's key.
    genuine: HashSet<[u8; 32]>,
    genuine_ids: HashSet<MessageId>,
    /// Every genuine post, in the order they were signed.
    pub(super) posts: Vec<MessageId>,
    /// The removal's clock, once the moderator made it.
    pub(super) removal: Option<u64>,
    /// The rogue's posts with a clock after its removal, and whether the
    /// removal had reached every node when it sent them.
    pub(super) rogue_after: Vec<(MessageId, bool)>,
    /// The rogue's posts sent after its removal with a clock from before it.
    pub(super) rogue_backdated: Vec<MessageId>,
    /// Forgeries sent (gossip messages and history pages).
    pub(super) forgeries: u64,
    /// Honest actions the acting node's rules refused (it lacked a right,
    /// or a post to act on).
    pub(super) skipped: u64,
    /// The removal has reached every node (the phase-one quiescence).
    removal_everywhere: bool,
}

impl Script {
    /// Notes a message signed by its author.
    pub(super) fn genuine(&mut self, signed: &Signed) {
        self.genuine.insert(super::gossip_id(signed.envelope()));
        self.genuine_ids.insert(signed.id());
        if matches!(signed.body(), Body::Hallway(_)) {
            self.posts.push(signed.id());
        }
    }

    /// Whether an envelope is one an author signed: the very bytes, or bytes
    /// that verify and carry a genuine message.
    pub(super) fn is_genuine(&self, envelope: &[u8]) -> bool {
        self.genuine.contains(&super::gossip_id(envelope))
            || Signed::open(envelope).is_ok_and(|s| self.genuine_ids.contains(&s.id()))
    }

    /// Messages authors signed.
    pub(super) fn genuine_len(&self) -> usize {
        self.genuine.len()
    }

    /// Whether the envelope hash of a shown message is a genuine envelope.
    pub(super) fn is_genuine_hash(&self, hash: &[u8; 32]) -> bool {
        self.genuine.contains(hash)
    }
}

impl Sim {
    /// Plays the script: both phases, each healed and quiesced.
    pub(super) fn play(&mut self) {
        let n = self.config.nodes;
        for node in 0..n {
            let first = self.rng.below(self.config.sync_every_ms as usize) as u64;
            self.schedule(self.now + first, node, What::Sync);
        }
        let start = self.now;
        self.at(start + 200, HOST, Act::Grant);
        self.at(start + 6_000, MODERATOR, Act::Mode(ChatMode::ReadOnly));
        self.at(start + 9_000, MODERATOR, Act::Mode(ChatMode::On));
        self.at(start + 12_000, MODERATOR, Act::Remove);
        for _ in 0..3 {
            self.within(start + 8_000, start + 19_000, Some(MODERATOR), Act::ModDelete);
        }
        for _ in 0..2 {
            self.within(start + 10_000, start + 19_000, Some(MODERATOR), Act::MarkQuestion);
        }
        self.busy_phase(start, PHASE_ONE_MS);
        self.run_until(start + PHASE_ONE_MS);
        let quiet = self.quiesce();
        self.note_quiescence(quiet, 1);
        if self.script.removal.is_none() {
            // The grant reached the moderator only in the quiescence.
            self.act(MODERATOR, Act::Remove);
            let quiet = self.quiesce();
            self.note_quiescence(quiet, 1);
        }
        self.script.removal_everywhere = self.script.removal.is_some();

        let start = self.now;
        for i in 0..8 {
            let at = start + 1_000 + i * 1_500;
            self.at(at, ROGUE, Act::RoguePost { old: i % 2 == 1 });
        }
        self.at(start + 5_000, MODERATOR, Act::Mode(ChatMode::ReadOnly));
        self.at(start + 7_000, MODERATOR, Act::Mode(ChatMode::On));
        for _ in 0..2 {
            self.within(start, start + PHASE_TWO_MS, Some(MODERATOR), Act::ModDelete);
        }
        self.busy_phase(start, PHASE_TWO_MS);
        self.run_until(start + PHASE_TWO_MS);
        let quiet = self.quiesce();
        self.note_quiescence(quiet, 2);
    }

    fn note_quiescence(&mut self, quiet: bool, phase: u32) {
        if !quiet {
            self.problems
                .push(format!("phase {phase}: history sync did not quiesce"));
        }
    }

    /// What every phase has: posts, edits, reactions, deletes by authors,
    /// presence, forgeries and partitions, at random times.
    fn busy_phase(&mut self, start: u64, length: u64) {
        let end = start + length - 1_000;
        let posts = self.config.posts;
        for _ in 0..posts {
            let question = self.rng.below(5) == 0;
            self.within(start, end, None, Act::Post { question });
        }
        for _ in 0..posts / 5 {
            self.within(start + 2_000, end, None, Act::Edit);
        }
        for _ in 0..posts / 3 {
            self.within(start + 2_000, end, None, Act::React);
        }
        for _ in 0..2 {
            self.within(start + 2_000, end, None, Act::DeleteOwn);
        }
        for _ in 0..self.config.announcers {
            self.within(start, end, None, Act::Announce);
        }
        for forger in FIRST_FORGER..FIRST_FORGER + self.config.forgers {
            for _ in 0..4 {
                self.within(start, end, Some(forger), Act::Forge);
            }
        }
        for _ in 0..self.config.partitions {
            let for_ms = 2_000 + self.rng.below(4_001) as u64;
            self.within(start + 1_000, end - 5_000, Some(HOST), Act::Partition { for_ms });
        }
    }

    fn at(&mut self, at: u64, node: usize, act: Act) {
        self.schedule(at, node, What::Act(act));
    }

    /// Schedules an act at a random time in `from..to`, by `node` or by a
    /// random member (the rogue too, before its removal).
    fn within(&mut self, from: u64, to: u64, node: Option<usize>, act: Act) {
        let at = from + self.rng.below((to - from) as usize) as u64;
        let node = node.unwrap_or_else(|| {
            let mut member = self.rng.below(self.config.nodes);
            while self.nodes[member].kind == Kind::Forger {
                member = self.rng.below(self.config.nodes);
            }
            member
        });
        self.at(at, node, act);
    }

    /// Carries out an act at `node`.
    pub(super) fn act(&mut self, node: usize, act: Act) {
        let (room, now) = (self.room.clone(), self.now);
        let action = match act {
            Act::Post { question } => {
                let text = format!("post {} from {node}", self.script.posts.len());
                match self.nodes[node].new_post(&room, now, text, question) {
                    Some(body) => {
                        self.publish_own(node, body);
                    }
                    None => self.script.skipped += 1,
                }
                return;
            }
            Act::Announce => {
                let body = self.nodes[node].presence(&room, now);
                let signed = self.publish_presence(node, body);
                self.script.genuine(&signed);
                return;
            }
            Act::RoguePost { old } => return self.rogue_post(old),
            Act::Forge => return self.forge(node),
            Act::Partition { for_ms } => return self.partition(for_ms),
            Act::Edit => self.own_post(node).map(|target| RoomAction::Edit {
                target,
                text: format!("edited by {node}"),
            }),
            Act::React => self.any_post(node, None).map(|target| {
                RoomAction::React(Reaction {
                    target,
                    emoji: ["👍", "🎉", "❓"][node % 3].to_owned(),
                    retract: false,
                })
            }),
            Act::DeleteOwn => self.own_post(node).map(RoomAction::Delete),
            Act::ModDelete => self.any_post(node, Some(node)).map(RoomAction::Delete),
            Act::MarkQuestion => self.question(node).map(|target| RoomAction::Question {
                target,
                state: QuestionState::Answered,
            }),
            Act::Grant => Some(RoomAction::SetRole {
                peer: self.peer(MODERATOR),
                role: Role::Moderator,
            }),
            Act::Mode(mode) => Some(RoomAction::Chat(mode)),
            Act::Remove => Some(RoomAction::Remove {
                peer: self.peer(ROGUE),
                restore: false,
            }),
        };
        let body = action.and_then(|action| self.nodes[node].new_op(&room, now, action));
        match (body, act) {
            (Some(body), _) => {
                let signed = self.publish_own(node, body);
                if let (Act::Remove, Body::RoomOp(op)) = (act, signed.body()) {
                    self.script.removal = Some(op.clock);
                }
            }
            (None, Act::Remove) if self.script.removal.is_none() => {
                // Not a moderator here yet: try again in a second.
                self.at(now + 1_000, node, act);
            }
            (None, _) => self.script.skipped += 1,
        }
    }

    /// Presence is published, never logged.
    fn publish_presence(&mut self, node: usize, body: Body) -> Signed {
        let nonce = self.nonce();
        let signed = self.nodes[node].sign(body, nonce);
        let now = self.nodes[node].now(self.now);
        self.nodes[node].joined.presence.announced(now);
        self.publish(node, signed.envelope().to_vec());
        signed
    }

    /// A random post of this node's own in its log.
    fn own_post(&mut self, node: usize) -> Option<MessageId> {
        let me = self.peer(node);
        let own: Vec<MessageId> = self.nodes[node]
            .logged_posts()
            .into_iter()
            .filter(|(_, author)| *author == me)
            .map(|(id, _)| id)
            .collect();
        (!own.is_empty()).then(|| own[self.rng.below(own.len())])
    }

    /// A random visible post in this node's log (not its own if `not_by`).
    fn any_post(&mut self, node: usize, not_by: Option<usize>) -> Option<MessageId> {
        let not = not_by.map(|n| self.peer(n));
        let rules = &self.nodes[node].joined.rules;
        let posts: Vec<MessageId> = self.nodes[node]
            .logged_posts()
            .into_iter()
            .filter(|(id, author)| Some(*author) != not && rules.is_visible(id))
            .map(|(id, _)| id)
            .collect();
        (!posts.is_empty()).then(|| posts[self.rng.below(posts.len())])
    }

    /// A random open question in this node's view.
    fn question(&mut self, node: usize) -> Option<MessageId> {
        let open: Vec<MessageId> = self.nodes[node]
            .joined
            .rules
            .questions()
            .into_iter()
            .filter(|(_, state)| *state == QuestionState::Open)
            .map(|((_, id), _)| id)
            .collect();
        (!open.is_empty()).then(|| open[self.rng.below(open.len())])
    }

    /// The removed rogue signs a post its rules refuse, logs it and sends it.
    fn rogue_post(&mut self, old: bool) {
        let Some(removal) = self.script.removal else {
            return;
        };
        let node = &self.nodes[ROGUE];
        let now = node.now(self.now);
        let clock = if old {
            removal - 1 - self.rng.below(5_000) as u64
        } else {
            node.joined.rules.next_clock(now)
        };
        let text = format!("rogue post at {clock}");
        // A clock is never behind its own time (the wire refuses that), so
        // a backdated post is dated back too.
        let body = post_body(&self.room, now.min(clock), clock, text, false, node.joined.stamp);
        let nonce = self.nonce();
        let signed = self.nodes[ROGUE].sign(body, nonce);
        self.script.genuine(&signed);
        if old {
            self.script.rogue_backdated.push(signed.id());
        } else {
            let everywhere = self.script.removal_everywhere;
            self.script.rogue_after.push((signed.id(), everywhere));
        }
        let room = self.room.clone();
        self.nodes[ROGUE].log.pinned.insert(signed.id());
        self.nodes[ROGUE].publish_own(&room, &signed);
        self.publish(ROGUE, signed.envelope().to_vec());
    }

    /// A forger sends one forgery to its mesh peers.
    fn forge(&mut self, node: usize) {
        self.script.forgeries += 1;
        let victim = self.rng.below(self.config.nodes);
        let bytes = match self.rng.below(5) {
            0 => self.tampered(node),
            1 => self.impersonation(node, victim),
            2 => {
                let len = 1 + self.rng.below(300);
                (0..len).map(|_| self.rng.next_u64() as u8).collect()
            }
            3 => {
                // Signed by its author, but the author has no such right.
                let action = match self.rng.below(3) {
                    0 => RoomAction::Remove {
                        peer: self.peer(MODERATOR),
                        restore: false,
                    },
                    1 => RoomAction::Chat(ChatMode::Off),
                    _ => RoomAction::SetRole {
                        peer: self.peer(node),
                        role: Role::Moderator,
                    },
                };
                let now = self.nodes[node].now(self.now);
                let clock = self.nodes[node].joined.rules.next_clock(now);
                let body = Body::RoomOp(crate::room::RoomOp {
                    room: self.room.clone(),
                    clock,
                    time_ms: now,
                    action,
                    stamp: self.nodes[node].joined.stamp,
                });
                let nonce = self.nonce();
                let signed = self.nodes[node].sign(body, nonce);
                self.script.genuine(&signed);
                signed.envelope().to_vec()
            }
            _ => {
                // A history page: forgeries around one genuine envelope, so
                // the batch check fails and each is checked alone.
                let mut page = vec![self.tampered(node), self.impersonation(node, victim)];
                if let Some(genuine) = self.nodes[node].log.envelopes.values().next() {
                    page.push(genuine.clone());
                }
                let to = self.links[node][self.rng.below(self.links[node].len())].0;
                self.schedule(
                    self.now + 20,
                    to,
                    What::Page {
                        from: node,
                        envelopes: page,
                    },
                );
                return;
            }
        };
        self.publish(node, bytes);
    }

    /// A genuine envelope from the forger's log (or a fresh post of its
    /// own) with one byte of its payload or signature changed.
    fn tampered(&mut self, node: usize) -> Vec<u8> {
        let logged: Vec<&Vec<u8>> = self.nodes[node].log.envelopes.values().collect();
        let mut bytes = if logged.is_empty() {
            let now = self.nodes[node].now(self.now);
            let stamp = self.nodes[node].joined.stamp;
            let body = post_body(&self.room, now, now, "tampered".into(), false, stamp);
            let nonce = self.nonce();
            self.nodes[node].sign(body, nonce).envelope().to_vec()
        } else {
            logged[self.rng.below(logged.len())].clone()
        };
        // The payload starts after a few bytes of framing; the public key
        // (34 bytes with its framing) and the signature (66) end it.
        let at = if self.rng.below(2) == 0 {
            bytes.len() - 1 - self.rng.below(64)
        } else {
            4 + self.rng.below(bytes.len().saturating_sub(110).max(1))
        };
        bytes[at] ^= 1 + self.rng.below(255) as u8;
        bytes
    }

    /// A post signed by the forger whose envelope names the victim's key.
    fn impersonation(&mut self, node: usize, victim: usize) -> Vec<u8> {
        let now = self.nodes[node].now(self.now);
        let stamp = self.nodes[node].joined.stamp;
        let body = post_body(&self.room, now, now, format!("I am {victim}"), false, stamp);
        let nonce = self.nonce();
        let signed = self.nodes[node].sign(body, nonce);
        // The forger did sign this; what it names is someone else's key
        // (unless it drew itself as the victim: then it is simply its post).
        self.script.genuine(&signed);
        let Some(mut envelope) = RawEnvelope::decode(signed.envelope()) else {
            return Vec::new();
        };
        envelope.public_key = self.nodes[victim].identity.verifying_key().to_bytes().to_vec();
        envelope.encode()
    }
}
