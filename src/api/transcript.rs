//! [`Transcript`]: a node's log as `backchannel history` prints it, in the
//! lines `/history` shows. `GET /api/v1/history` answers with one read from
//! the running node; `backchannel history` builds the same from the log of a
//! node that is not running, and prints either the same way.

use serde::{Deserialize, Serialize};

use crate::id::as_text;
use crate::json_line::{Contact, History};
use crate::node::LogView;
use crate::{PeerId, Room};

/// A node's log as `history` shows it: rooms as they show now, DM
/// conversations, and the contacts' petnames to name people by.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transcript {
    /// The node whose log it is, when known.
    #[serde(with = "as_text::option")]
    pub me: Option<PeerId>,
    /// Each room's last posts as the room shows them (kind `hallway`, with
    /// `post`), in the room's order.
    pub rooms: Vec<RoomLines>,
    /// Each conversation's last messages (kind `dm`), oldest first.
    pub conversations: Vec<ConversationLines>,
    /// Contacts and their petnames.
    pub contacts: Vec<Contact>,
}

/// A room's lines in a [`Transcript`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoomLines {
    /// The room.
    #[serde(with = "as_text")]
    pub room: Room,
    /// Its posts as it shows them.
    pub lines: Vec<History>,
}

/// A DM conversation's lines in a [`Transcript`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConversationLines {
    /// The other peer.
    #[serde(with = "as_text")]
    pub peer: PeerId,
    /// The messages exchanged with it.
    pub lines: Vec<History>,
}

impl From<LogView> for Transcript {
    fn from(view: LogView) -> Self {
        Transcript {
            me: view.me,
            rooms: view
                .rooms
                .into_iter()
                .map(|(room, posts)| RoomLines {
                    lines: posts.into_iter().map(|p| History::from_post(room.clone(), p)).collect(),
                    room,
                })
                .collect(),
            conversations: view
                .conversations
                .into_iter()
                .map(|(peer, messages)| ConversationLines {
                    peer,
                    lines: messages.iter().filter_map(History::from_logged).collect(),
                })
                .collect(),
            contacts: view
                .contacts
                .into_iter()
                .map(|(peer, nick)| Contact { peer, nick })
                .collect(),
        }
    }
}
