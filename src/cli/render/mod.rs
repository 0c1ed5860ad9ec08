//! Where a session's output goes: every line is a [`JsonLine`], shown as
//! text for people ([`human`]) or written as JSON for scripts ([`json`]).
//! People see what is new to them ([`quiet`]); scripts see every line.

mod human;
mod json;
mod quiet;

use std::sync::{Arc, Mutex, MutexGuard};

use anyhow::Context;
use backchannel::json_line::History;
use backchannel::{Event, GroupInfo, JsonLine, LoggedMessage, MessageId, PeerId};

use super::editor::Known;
use super::names::Names;
use quiet::Shown;

pub use human::{mode_word, role_word, state_word};

/// Where finished lines go: stdout, or (with a line editor) a printer that
/// keeps the prompt and the half-typed line intact below them.
pub type Sink = Arc<dyn Fn(&str) + Send + Sync>;

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
    /// Where lines are written.
    sink: Arc<Mutex<Sink>>,
    /// Rooms and message ids shown, for the line editor's completion.
    known: Arc<Mutex<Known>>,
    /// This node (to tell whether a post mentions it).
    pub me: Option<PeerId>,
}

impl Out {
    /// Output for people, or for scripts with `json`; `verbose` people
    /// see every line.
    pub fn new(json: bool, verbose: bool) -> Self {
        let mut names = Names::default();
        names.full_rooms = verbose;
        let stdout: Sink = Arc::new(|text| outln!("{text}"));
        Self {
            json,
            verbose,
            names: Arc::new(Mutex::new(names)),
            shown: Arc::default(),
            sink: Arc::new(Mutex::new(stdout)),
            known: Arc::default(),
            me: None,
        }
    }

    /// Writes lines through `sink` from now on.
    pub fn set_sink(&self, sink: Sink) {
        *self.sink.lock().expect("sink lock") = sink;
    }

    fn write(&self, text: &str) {
        let sink = self.sink.lock().expect("sink lock").clone();
        sink(text);
    }

    /// Prints a line: as JSON, or as text for people when it tells them
    /// something (lines meant only for scripts print nothing for people).
    pub fn emit(&self, line: &JsonLine) {
        self.known.lock().expect("known lock").learn(line);
        if self.json {
            self.write(&json::line(line));
            return;
        }
        let lines = self.shown.lock().expect("shown lock").admit(line.clone(), self.verbose);
        for line in lines {
            let text = human::line(&line, &self.names());
            if let Some(text) = text {
                self.write(&text);
            }
        }
    }

    /// A hint for people; scripts get nothing (the facts are in other lines).
    pub fn note(&self, text: &str) {
        if !self.json {
            self.write(text);
        }
    }

    /// Reports an error.
    pub fn error(&self, message: &str) {
        self.emit(&JsonLine::Error {
            message: message.to_owned(),
        });
    }

    /// Prints an event, after learning the names it carries.
    pub fn event(&self, event: &Event) {
        self.names().learn(event);
        if let Some(line) = JsonLine::from_event(event, self.me) {
            self.emit(&line);
        }
    }

    /// Prints a message read back from the log.
    pub fn logged(&self, m: &LoggedMessage) {
        self.names().learn_logged(m);
        if let Some(history) = History::from_logged(m) {
            self.emit(&JsonLine::History(history));
        }
    }

    /// The name book and what was shown, shared with the line editor.
    pub fn for_editor(&self) -> (Arc<Mutex<Names>>, Arc<Mutex<Known>>) {
        (self.names.clone(), self.known.clone())
    }

    /// The name book. The guard must not be held across an await: the
    /// task printing events needs it.
    pub fn names(&self) -> MutexGuard<'_, Names> {
        self.names.lock().expect("names lock")
    }

    /// Replaces the petnames with the node's contacts.
    pub fn set_petnames(&self, contacts: Vec<(PeerId, String)>) {
        self.names().set_petnames(contacts);
    }

    /// This node and its own nickname.
    pub fn set_me(&mut self, me: PeerId, nick: Option<&str>) {
        self.me = Some(me);
        self.names().set_me(me, nick);
    }

    /// Learns the names of the node's groups.
    pub fn set_groups(&self, groups: &[GroupInfo]) {
        let mut names = self.names();
        for g in groups {
            names.group(g.id, &g.name);
        }
    }

    /// DMs sent before this session: their lines show as they come.
    pub fn announce(&self, ids: impl IntoIterator<Item = MessageId>) {
        self.shown.lock().expect("shown lock").announce(ids);
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
