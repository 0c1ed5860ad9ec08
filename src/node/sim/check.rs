//! The properties a run must have once the network healed and history sync
//! quiesced, and the run's digest (which a replay must reproduce).
//!
//! - Every honest node holds the same log, in the same (clock, id) order.
//! - Every honest node shows the same room: the visible posts in order
//!   with their (edited) text, reactions and question states, the deleted
//!   posts, roles, removals and the hallway's mode; and it is the room the
//!   script made (the moderator's grant and removal stand, the forgers'
//!   operations changed nothing).
//! - The removed rogue's posts with a clock after its removal are in no
//!   node's view, and the ones it sent once the removal had reached every
//!   node were shown by no node.
//! - Nothing logged or shown by any node is an envelope whose signature
//!   fails (every one is an envelope an author signed).
//! - Every honest node keeps within the room's bound (`SimConfig::bound`):
//!   the posts and operations anyone may make in its log are the ones its
//!   rules hold, at most the bound of posts and of operations that count,
//!   and as many that do not.

use libp2p::PeerId;
use sha2::{Digest, Sha256};

use super::node::{Counts, Kind, Shown, SimNode};
use super::script::{HOST, MODERATOR, ROGUE, Script};
use super::{Sim, SimConfig};
use crate::envelope::Signed;
use crate::id::MessageId;
use crate::message::Body;
use crate::room::{ChatMode, QuestionState, Role};

/// How a run went.
#[derive(Debug)]
pub(crate) struct Outcome {
    pub(crate) config: SimConfig,
    /// What failed; empty for a good run.
    pub(crate) problems: Vec<String>,
    /// A hash of everything every node logged and showed, and the counts.
    pub(crate) digest: [u8; 32],
    pub(crate) counts: Counts,
    /// Gossip messages sent between nodes, and lost.
    pub(crate) sent: u64,
    pub(crate) lost: u64,
    /// Messages authors signed (posts, operations, presence), forgeries.
    pub(crate) genuine: usize,
    pub(crate) forgeries: u64,
    /// The rogue's backdated posts (sent after its removal with a clock
    /// from before it) that the honest nodes ended up logging.
    pub(crate) backdated_logged: usize,
    pub(crate) backdated_sent: usize,
    /// Messages in an honest node's log at the end.
    pub(crate) log_len: usize,
    /// Posts and operations in honest nodes' logs that do not count (taken
    /// before the node knew the change that refuses them; see `counted`).
    pub(crate) stale: usize,
    /// Messages the room's bound evicted, over every honest node.
    pub(crate) evicted: u64,
}

impl Outcome {
    /// Panics with the seed and the command that replays it if the run
    /// broke a property.
    pub(crate) fn assert_ok(&self) {
        assert!(
            self.problems.is_empty(),
            "simulation seed {} with {} nodes failed:\n  {}\nreplay with: {}",
            self.config.seed,
            self.config.nodes,
            self.problems.join("\n  "),
            self.config.replay_command()
        );
    }
}

/// A node's room, as its user would see it.
#[derive(Debug, PartialEq, Eq)]
struct View {
    posts: Vec<Post>,
    roles: Vec<(PeerId, Role)>,
    removed: Vec<PeerId>,
    mode: ChatMode,
}

/// A visible post with what decides how it looks.
#[derive(Debug, PartialEq, Eq)]
struct Post {
    clock: u64,
    id: MessageId,
    text: String,
    reactions: Vec<(String, Vec<PeerId>)>,
    question: Option<QuestionState>,
}

impl Sim {
    /// Checks the properties; the outcome holds what failed.
    pub(super) fn check(self) -> Outcome {
        let mut problems = self.problems.clone();
        let script = &self.script;
        let honest: Vec<usize> = (0..self.nodes.len())
            .filter(|n| self.nodes[*n].kind == Kind::Honest)
            .collect();
        let first = &self.nodes[honest[0]];
        let mut texts = Texts::default();
        let order = counted(first, &first.joined.rules, &mut texts);
        let view = view(first, script, &mut texts, &mut problems);
        let mut stale = 0;
        for &n in &honest[1..] {
            let node = &self.nodes[n];
            let theirs = counted(node, &first.joined.rules, &mut texts);
            stale += node.log.index.len() - theirs.len();
            if theirs != order {
                let theirs: std::collections::BTreeSet<_> = theirs.iter().collect();
                let mine: std::collections::BTreeSet<_> = order.iter().collect();
                let describe = |keys: Vec<&&(u64, MessageId)>, node: &SimNode| -> Vec<String> {
                    keys.into_iter()
                        .map(|(clock, id)| {
                            let body = self
                                .nodes
                                .iter()
                                .find_map(|n| n.log.envelopes.get(id))
                                .and_then(|e| Signed::open_trusted(e).ok());
                            let what = body.map_or("?".to_owned(), |s| format!("{:?} by {}", s.body(), s.author()));
                            format!(
                                "{clock} {id} {what} visible:{} deleted:{}",
                                node.joined.rules.is_visible(id),
                                node.joined.rules.is_deleted(id)
                            )
                        })
                        .collect()
                };
                problems.push(format!(
                    "node {n}'s log differs from node {}'s: only there {:?}, only here {:?}",
                    honest[0],
                    describe(mine.difference(&theirs).collect(), first),
                    describe(theirs.difference(&mine).collect(), node),
                ));
            }
            let theirs = self::view(node, script, &mut texts, &mut problems);
            if theirs != view {
                let fields = [
                    ("posts", format!("{:?}", theirs.posts) != format!("{:?}", view.posts)),
                    ("roles", theirs.roles != view.roles),
                    ("removed", theirs.removed != view.removed),
                    ("mode", theirs.mode != view.mode),
                ];
                let differ: Vec<&str> = fields.iter().filter(|(_, d)| *d).map(|(f, _)| *f).collect();
                let extra: Vec<String> = theirs
                    .posts
                    .iter()
                    .filter(|p| !view.posts.contains(p))
                    .map(|p| format!("{p:?}"))
                    .collect();
                let missing: Vec<String> = view
                    .posts
                    .iter()
                    .filter(|p| !theirs.posts.contains(p))
                    .map(|p| format!("{p:?}"))
                    .collect();
                problems.push(format!(
                    "node {n}'s view differs from node {}'s in {differ:?}: here {extra:?}, there {missing:?}",
                    honest[0]
                ));
            }
            if problems.len() > 20 {
                problems.push("(more left unchecked)".into());
                break;
            }
        }
        // Deleted by any honest node's rules (a node that never received a
        // post its author deleted does not know it is deleted).
        let deleted: Vec<MessageId> = script
            .posts
            .iter()
            .filter(|id| honest.iter().any(|n| self.nodes[*n].joined.rules.is_deleted(id)))
            .copied()
            .collect();
        let expected_roles = vec![(self.peer(HOST), Role::Host), (self.peer(MODERATOR), Role::Moderator)];
        if view.roles != expected_roles {
            problems.push(format!("roles are {:?}, not the host and the moderator", view.roles));
        }
        if view.removed != vec![self.peer(ROGUE)] {
            problems.push(format!("removed are {:?}, not the rogue alone", view.removed));
        }
        if view.mode != ChatMode::On {
            problems.push(format!("the hallway is {:?}, not on", view.mode));
        }
        for (n, node) in self.nodes.iter().enumerate() {
            if node.kind == Kind::Rogue {
                continue;
            }
            for (id, everywhere) in &script.rogue_after {
                if node.joined.rules.is_visible(id) {
                    problems.push(format!("node {n} shows the removed rogue's post {id} in its view"));
                }
                let shown = node
                    .shown
                    .iter()
                    .any(|s| matches!(s, Shown::Message { id: i, .. } if i == id));
                if *everywhere && shown {
                    problems.push(format!("node {n} showed the removed rogue's post {id}"));
                }
            }
            for id in &deleted {
                if node.joined.rules.is_visible(id) || node.log.envelopes.contains_key(id) {
                    let rules = &node.joined.rules;
                    problems.push(format!(
                        "node {n} still shows or keeps the deleted post {id} (deleted here: {}, visible: {}, logged: {})",
                        rules.is_deleted(id),
                        rules.is_visible(id),
                        node.log.envelopes.contains_key(id)
                    ));
                }
            }
            if node.kind == Kind::Honest {
                bounded(n, node, self.config.bound, &mut texts, &mut problems);
            }
            for envelope in node.log.envelopes.values() {
                if !script.is_genuine(envelope) {
                    problems.push(format!("node {n} logged an envelope no author signed"));
                }
            }
            for shown in &node.shown {
                if let Shown::Message { id, envelope } = shown
                    && !script.is_genuine_hash(envelope)
                {
                    problems.push(format!("node {n} showed {id} from an envelope no author signed"));
                }
            }
        }
        let backdated_logged = script
            .rogue_backdated
            .iter()
            .filter(|id| first.log.envelopes.contains_key(id))
            .count();
        Outcome {
            digest: self.digest(),
            config: self.config.clone(),
            problems,
            counts: self.counts,
            sent: self.sent,
            lost: self.lost,
            genuine: script.genuine_len(),
            forgeries: script.forgeries,
            backdated_logged,
            backdated_sent: script.rogue_backdated.len(),
            log_len: order.len(),
            stale,
            evicted: honest.iter().map(|n| self.nodes[*n].joined.rules.evicted()).sum(),
        }
    }

    /// A hash of every node's log order and of everything it showed, in
    /// node order, and of the counts: two runs of a seed must agree on it.
    fn digest(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        for node in &self.nodes {
            for (clock, id) in &node.log.index {
                h.update(clock.to_be_bytes());
                h.update(id.as_bytes());
            }
            h.update(b"|");
            for shown in &node.shown {
                match shown {
                    Shown::Message { id, envelope } => {
                        h.update(id.as_bytes());
                        h.update(envelope);
                    }
                    Shown::Presence { peer, present } => {
                        h.update(peer.to_bytes());
                        h.update([u8::from(*present)]);
                    }
                }
            }
            h.update(b"/");
        }
        let c = self.counts;
        for n in [c.opened, c.verifications, c.invalid, c.logged, self.sent, self.lost] {
            h.update(n.to_be_bytes());
        }
        h.finalize().into()
    }
}

/// A node's log in room order, without what does not count by the room's
/// final rules. A node that took a post or an operation live before it knew
/// the change that refuses it (a mode change, a removal at an earlier clock)
/// keeps it in its log, while a node that knew refused it and never logs
/// it: such messages change no view, but the logs differ by them. Dropping
/// them from the log when the change arrives is not safe, as an operation
/// with a smaller clock arriving later can make them count again (the
/// simulation found a post lost that way).
fn counted(node: &SimNode, rules: &crate::room::RoomState, texts: &mut Texts) -> Vec<(u64, MessageId)> {
    node.log
        .index
        .iter()
        .filter(
            |(clock, id)| match node.log.envelopes.get(id).and_then(|e| texts.op(id, e)) {
                Some((author, action)) => rules.check_op(&author, *clock, &action).is_ok(),
                None => rules.is_visible(id),
            },
        )
        .copied()
        .collect()
}

/// Checks that node `n` keeps within the room's bound: the posts and
/// operations anyone may make in its log are what its rules hold (nothing
/// evicted stays in the log), and those are at most four times the bound
/// (the bound of posts and of operations that count, and as many that do
/// not).
fn bounded(n: usize, node: &SimNode, bound: usize, texts: &mut Texts, problems: &mut Vec<String>) {
    let in_log = node
        .log
        .index
        .iter()
        .filter(|(_, id)| {
            node.log.envelopes.get(id).is_none_or(|e| {
                texts
                    .op(id, e)
                    .is_none_or(|(_, action)| crate::room::is_bounded(&action))
            })
        })
        .count();
    let rules = &node.joined.rules;
    if in_log != rules.kept_len() {
        problems.push(format!(
            "node {n}'s log has {in_log} posts and operations under the bound, its rules hold {}",
            rules.kept_len()
        ));
    }
    if rules.kept_len() > 4 * bound {
        problems.push(format!(
            "node {n} keeps {} messages, over its bound of {bound}",
            rules.kept_len()
        ));
    }
}

/// The text of each post and the author and action of each operation,
/// decoded once for all nodes (decoding a hosted room's id costs a curve
/// point decompression).
#[derive(Default)]
struct Texts(std::collections::BTreeMap<MessageId, Decoded>);

#[derive(Clone)]
enum Decoded {
    Post(String),
    Op(PeerId, crate::room::RoomAction),
    Other,
}

impl Texts {
    fn decoded(&mut self, id: &MessageId, envelope: &[u8]) -> &Decoded {
        self.0
            .entry(*id)
            .or_insert_with(|| match Signed::open_trusted(envelope) {
                Ok(s) => match s.body() {
                    Body::Hallway(post) => Decoded::Post(post.text.clone()),
                    Body::RoomOp(op) => Decoded::Op(s.author(), op.action.clone()),
                    _ => Decoded::Other,
                },
                Err(_) => Decoded::Other,
            })
    }

    /// A logged operation's author and action (None for a post).
    fn op(&mut self, id: &MessageId, envelope: &[u8]) -> Option<(PeerId, crate::room::RoomAction)> {
        match self.decoded(id, envelope) {
            Decoded::Op(author, action) => Some((*author, action.clone())),
            _ => None,
        }
    }

    /// A logged post's text (None for an operation).
    fn of(&mut self, id: &MessageId, envelope: &[u8]) -> Option<&str> {
        match self.decoded(id, envelope) {
            Decoded::Post(text) => Some(text),
            _ => None,
        }
    }
}

/// A node's view of the room, from its rules and its log. A post its rules
/// show but whose text it does not have is a problem.
fn view(node: &SimNode, script: &Script, texts: &mut Texts, problems: &mut Vec<String>) -> View {
    let rules = &node.joined.rules;
    let mut posts = Vec::new();
    for (clock, id) in &node.log.index {
        if !rules.is_visible(id) {
            continue;
        }
        let Some(text) = node.log.envelopes.get(id).and_then(|e| texts.of(id, e)) else {
            continue;
        };
        posts.push(Post {
            clock: *clock,
            id: *id,
            text: rules.edited_text(id).unwrap_or(text).to_owned(),
            reactions: rules.reactions(id),
            question: rules.question_state(id),
        });
    }
    for id in &script.posts {
        if rules.is_visible(id) && !node.log.envelopes.contains_key(id) {
            problems.push(format!("a node shows post {id} but has not got its text"));
        }
    }
    View {
        posts,
        roles: rules.roles(),
        removed: rules.removed(),
        mode: rules.mode(),
    }
}
