//! The names a session knows people by: nicknames seen on messages and local
//! petnames of contacts. They turn peer ids into names for people, and names
//! typed in commands (`/dm bob ...`) back into peer ids.

use std::collections::HashMap;

use backchannel::{Event, PeerId};

/// Nicknames seen on messages, and petnames.
#[derive(Default)]
pub struct Names {
    by_peer: HashMap<PeerId, String>,
    by_nick: HashMap<String, PeerId>,
    /// Local petnames of contacts: they win over the names people give themselves.
    petnames: HashMap<PeerId, String>,
}

impl Names {
    /// Remembers the nickname an event carries (or a contact's new petname).
    pub fn learn(&mut self, event: &Event) {
        match event {
            Event::Hallway { from, post, .. } => self.nick(*from, post.nick.as_deref()),
            Event::Presence { peer, nick, .. } => self.nick(*peer, nick.as_deref()),
            Event::Dm { from, dm, .. } => self.nick(*from, dm.nick.as_deref()),
            Event::GroupMessage { from, message, .. } => self.nick(*from, message.nick.as_deref()),
            Event::ContactChanged { peer, petname } if !petname.is_empty() => {
                self.petnames.insert(*peer, petname.clone());
            }
            _ => {}
        }
    }

    fn nick(&mut self, peer: PeerId, nick: Option<&str>) {
        if let Some(nick) = nick {
            self.by_peer.insert(peer, nick.to_owned());
            self.by_nick.insert(nick.to_owned(), peer);
        }
    }

    /// Replaces the petnames with the node's contacts.
    pub fn set_petnames(&mut self, contacts: Vec<(PeerId, String)>) {
        self.petnames = contacts.into_iter().collect();
    }

    /// "nick (…abc123)" or "…abc123".
    pub fn who(&self, peer: &PeerId) -> String {
        let short = short(peer);
        match self
            .petnames
            .get(peer)
            .filter(|n| !n.is_empty())
            .or(self.by_peer.get(peer))
        {
            Some(nick) => format!("{nick} ({short})"),
            None => short,
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
}

/// The last 6 characters of a peer id: enough to tell people apart.
fn short(peer: &PeerId) -> String {
    let s = peer.to_string();
    format!("…{}", &s[s.len().saturating_sub(6)..])
}
