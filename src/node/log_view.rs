//! What `backchannel history` shows of a node's log, read in one go: each
//! room as it shows now (edits applied, deleted posts gone, reactions
//! counted), each DM conversation, and the contacts whose petnames name
//! people. The CLI reads it straight from the log of a node that is not
//! running ([`LogView::read`]); a running node reads it for its local API
//! ([`Handle::log_view`](super::Handle::log_view)). Both read the same log
//! through the same room view as `/history`, so `history` prints the same
//! lines whether the node runs or not.

use libp2p::PeerId;

use super::RoomPost;
use super::event_loop::view_from_log;
use crate::id::Room;
use crate::store::{LoggedMessage, Store, StoreError};

/// Which rooms a [`LogView`] holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogRooms {
    /// Every room the log has posts of.
    All,
    /// One room (empty if the log has none of its posts).
    Only(Room),
    /// None: only the conversations.
    None,
}

/// A node's log as `backchannel history` shows it.
#[derive(Debug, Clone)]
pub struct LogView {
    /// The node whose log it is, when known (its key may be gone).
    pub me: Option<PeerId>,
    /// Each room's last posts as the room shows them, in the room's order.
    pub rooms: Vec<(Room, Vec<RoomPost>)>,
    /// Each DM conversation's last messages, oldest first.
    pub conversations: Vec<(PeerId, Vec<LoggedMessage>)>,
    /// Contacts and their petnames (may be empty).
    pub contacts: Vec<(PeerId, String)>,
}

impl LogView {
    /// Reads the log of a node that is not running: `limit` posts of each
    /// room of `rooms` and messages of each conversation (the latest). A
    /// room's rules are rebuilt from its messages, as the node does when it
    /// joins the room again.
    pub fn read(store: &Store, me: Option<PeerId>, rooms: &LogRooms, limit: usize) -> Result<LogView, StoreError> {
        Self::read_with(store, me, rooms, limit, |room, limit| {
            view_from_log(store, room, me, limit)
        })
    }

    /// [`LogView::read`] with the room view given: a running node shows its
    /// joined rooms under the rules it holds in memory.
    pub(crate) fn read_with<E: From<StoreError>>(
        store: &Store,
        me: Option<PeerId>,
        rooms: &LogRooms,
        limit: usize,
        mut view: impl FnMut(&Room, usize) -> Result<Vec<RoomPost>, E>,
    ) -> Result<LogView, E> {
        let rooms = match rooms {
            LogRooms::All => store.rooms()?,
            LogRooms::Only(room) => vec![room.clone()],
            LogRooms::None => Vec::new(),
        };
        let mut shown = Vec::with_capacity(rooms.len());
        for room in rooms {
            let posts = view(&room, limit)?;
            shown.push((room, posts));
        }
        let mut conversations = Vec::new();
        for peer in store.conversations()? {
            conversations.push((peer, store.conversation(&peer, limit)?));
        }
        Ok(LogView {
            me,
            rooms: shown,
            conversations,
            contacts: store.contacts()?,
        })
    }
}
