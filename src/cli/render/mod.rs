//! Where a session's output goes: every line is a [`JsonLine`], shown as
//! text for people ([`human`]) or written as JSON for scripts ([`json`]).

mod human;
mod json;
mod quiet;

use std::sync::{Arc, Mutex, MutexGuard};

use anyhow::Context;
use backchannel::json_line::History;
use backchannel::{Body, Event, JsonLine, LoggedMessage, PeerId};

use super::names::Names;
use quiet::Shown;

/// The output of a session: readable lines, or JSON lines for scripts.
#[derive(Clone)]
pub struct Out {
    json: bool,
    /// People see every line, repeats and routine ones too.
    verbose: bool,
    /// Shared by the task that prints events and the one that runs commands.
    names: Arc<Mutex<Names>>,
    /// What people have been told already (not used for scripts).
    shown: Arc<Mutex<Shown>>,
    /// This node (to tell whether a post mentions it).
    pub me: Option<PeerId>,
}

impl Out {
    /// Output for people, or for scripts with `json`; `verbose` people
    /// see every line.
    pub fn new(json: bool, verbose: bool) -> Self {
        Self {
            json,
            verbose,
            names: Arc::default(),
            shown: Arc::default(),
            me: None,
        }
    }

    /// Prints a line: as JSON, or as text (lines meant only for scripts print
    /// nothing for people).
    pub fn emit(&self, line: &JsonLine) {
        if self.json {
            outln!("{}", json::line(line));
        } else if let Some(text) = human::line(line, &self.names()) {
            outln!("{text}");
        }
    }

    /// Reports an error.
    pub fn error(&self, message: &str) {
        self.emit(&JsonLine::Error {
            message: message.to_owned(),
        });
    }

    /// Prints an event, after learning the names it carries (for people:
    /// only if it tells them something new, unless verbose).
    pub fn event(&self, event: &Event) {
        self.names().learn(event);
        let Some(line) = JsonLine::from_event(event, self.me) else {
            return;
        };
        let new = self.shown.lock().expect("shown lock").worth_showing(&line);
        if self.json || self.verbose || new {
            self.emit(&line);
        }
    }

    /// Prints a message read back from the log.
    pub fn logged(&self, m: &LoggedMessage) {
        let (id, from, direction) = (m.message.id(), m.message.author(), m.direction);
        let history = match m.message.body() {
            Body::Hallway(post) => History::Hallway {
                room: post.room.clone(),
                from,
                nick: post.nick.clone(),
                id,
                text: post.text.clone(),
                time: post.time_ms,
                direction,
                post: None,
            },
            Body::Group(g) => History::Group {
                group: g.group,
                from,
                nick: g.nick.clone(),
                id,
                text: g.text.clone(),
                time: g.time_ms,
                lamport: g.lamport,
                direction,
            },
            Body::Direct(dm) => History::Dm {
                from,
                to: dm.recipient,
                nick: dm.nick.clone(),
                id,
                text: dm.text.clone(),
                time: dm.time_ms,
                direction,
                delivery: m.delivery.clone(),
            },
            _ => return,
        };
        self.emit(&JsonLine::History(history));
    }

    /// The name book. The guard must not be held across an await: the
    /// task printing events needs it.
    fn names(&self) -> MutexGuard<'_, Names> {
        self.names.lock().expect("names lock")
    }

    /// Replaces the petnames with the node's contacts.
    pub fn set_petnames(&self, contacts: Vec<(PeerId, String)>) {
        self.names().set_petnames(contacts);
    }

    /// A peer id, a petname, or a nickname seen on a message.
    pub fn resolve(&self, name: &str) -> Option<PeerId> {
        self.names().resolve(name)
    }

    /// "nick (…abc123)" or "…abc123".
    pub fn who(&self, peer: &PeerId) -> String {
        self.names().who(peer)
    }

    /// The peer a command names: a peer id, a petname, or a nickname seen on
    /// a message.
    pub fn peer(&self, name: &str) -> anyhow::Result<PeerId> {
        self.resolve(name)
            .with_context(|| format!("unknown peer {name:?}: use a peer id or a nickname seen in a room"))
    }
}
