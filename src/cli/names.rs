//! The names a session knows people by: nicknames seen on messages (live or
//! in the log), local petnames of contacts, and this node's own name. They
//! turn peer ids into names for people, and names typed in commands
//! (`/dm bob ...`, `history --peer bob`) back into peer ids. Groups and
//! hosted rooms get short labels here too.

use std::collections::HashMap;

use backchannel::json_line::History;
use backchannel::{Body, Event, GroupId, LoggedMessage, PeerId, Room};

/// Nicknames seen on messages, petnames, group names.
#[derive(Default)]
pub struct Names {
    by_peer: HashMap<PeerId, String>,
    by_nick: HashMap<String, PeerId>,
    /// Local petnames of contacts: they win over the names people give themselves.
    petnames: HashMap<PeerId, String>,
    /// This node: shown as "NICK (you)", or "you" without a nickname.
    me: Option<PeerId>,
    /// Group names, for `[g NAME]` instead of an id.
    groups: HashMap<GroupId, String>,
    /// Show hosted rooms by their full id (verbose), not a short label.
    pub full_rooms: bool,
}

impl Names {
    /// Remembers the nickname an event carries (or a contact's new petname,
    /// or a group's name).
    pub fn learn(&mut self, event: &Event) {
        match event {
            Event::Hallway { from, post, .. } => self.nick(*from, post.nick.as_deref()),
            Event::Presence { peer, nick, .. } => self.nick(*peer, nick.as_deref()),
            Event::Dm { from, dm, .. } => self.nick(*from, dm.nick.as_deref()),
            Event::GroupMessage { from, message, .. } => self.nick(*from, message.nick.as_deref()),
            Event::ContactChanged { peer, petname } if !petname.is_empty() => {
                self.petnames.insert(*peer, petname.clone());
            }
            Event::GroupChanged { group, name, .. } => self.group(*group, name),
            _ => {}
        }
    }

    /// Remembers the nickname on a message read from the log.
    pub fn learn_logged(&mut self, m: &LoggedMessage) {
        let author = m.message.author();
        match m.message.body() {
            Body::Hallway(p) => self.nick(author, p.nick.as_deref()),
            Body::Direct(dm) => self.nick(author, dm.nick.as_deref()),
            Body::Group(g) => self.nick(author, g.nick.as_deref()),
            _ => {}
        }
    }

    /// Remembers the nickname on a `history` line.
    pub fn learn_history(&mut self, line: &History) {
        match line {
            History::Hallway { from, nick, .. }
            | History::Group { from, nick, .. }
            | History::Dm { from, nick, .. } => {
                self.nick(*from, nick.as_deref());
            }
        }
    }

    /// Remembers `peer`'s nickname.
    pub fn nick(&mut self, peer: PeerId, nick: Option<&str>) {
        if let Some(nick) = nick {
            self.by_peer.insert(peer, nick.to_owned());
            self.by_nick.insert(nick.to_owned(), peer);
        }
    }

    /// Remembers a group's name.
    pub fn group(&mut self, group: GroupId, name: &str) {
        self.groups.insert(group, name.to_owned());
    }

    /// This node, and the nickname it gives itself.
    pub fn set_me(&mut self, me: PeerId, nick: Option<&str>) {
        self.me = Some(me);
        self.nick(me, nick);
    }

    /// Replaces the petnames with the node's contacts.
    pub fn set_petnames(&mut self, contacts: Vec<(PeerId, String)>) {
        self.petnames = contacts.into_iter().filter(|(_, n)| !n.is_empty()).collect();
    }

    /// "nick (…abc123)", "nick (you)", "you" or "…abc123".
    pub fn who(&self, peer: &PeerId) -> String {
        let name = self.petnames.get(peer).or(self.by_peer.get(peer));
        if self.me == Some(*peer) {
            return match name {
                Some(nick) => format!("{nick} (you)"),
                None => "you".into(),
            };
        }
        let short = short(peer);
        match name {
            Some(nick) => format!("{nick} ({short})"),
            None => short,
        }
    }

    /// A group's name, or its short id when the name is not known.
    pub fn group_name(&self, group: &GroupId) -> String {
        self.groups.get(group).cloned().unwrap_or_else(|| group.short())
    }

    /// A room as a line prefix shows it: an open room by its name, a hosted
    /// room as `name~…abc123` (its full id is 60 characters), unless verbose.
    pub fn room(&self, room: &Room) -> String {
        match room.as_str().split_once('~') {
            Some((name, host)) if !self.full_rooms => {
                format!("{name}~…{}", &host[host.len().saturating_sub(6)..])
            }
            _ => room.to_string(),
        }
    }

    /// A peer id, a petname, or a nickname seen on a message.
    pub fn resolve(&self, name: &str) -> Option<PeerId> {
        if let Ok(peer) = name.parse() {
            return Some(peer);
        }
        self.petnames
            .iter()
            .find(|(_, n)| n.as_str() == name)
            .map(|(p, _)| *p)
            .or_else(|| self.by_nick.get(name).copied())
    }

    /// Every name a person can type for a peer (for completion).
    pub fn all_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.petnames.values().chain(self.by_nick.keys()).cloned().collect();
        names.sort();
        names.dedup();
        names
    }

    /// Every group name (for completion).
    pub fn group_names(&self) -> Vec<String> {
        self.groups.values().cloned().collect()
    }
}

/// The last 6 characters of a peer id: enough to tell people apart.
fn short(peer: &PeerId) -> String {
    let s = peer.to_string();
    format!("…{}", &s[s.len().saturating_sub(6)..])
}
