//! The rooms a node has joined and the posts waiting for a room's first peer.
//! Plain state with no IO, so the rules are testable without a network.

use std::collections::{BTreeMap, HashMap, VecDeque};

use libp2p::gossipsub::{IdentTopic, TopicHash};

use crate::id::{MessageId, Room};
use crate::protocol;

/// Posts kept per room while no peer of the room is known. A person typing
/// offline never gets near it; a script that floods an empty room is told.
pub(crate) const MAX_UNSENT_PER_ROOM: usize = 1000;

pub(crate) struct Rooms {
    joined: BTreeMap<Room, RoomState>,
    by_topic: HashMap<TopicHash, Room>,
}

pub(crate) struct RoomState {
    pub(crate) topic: IdentTopic,
    unsent: VecDeque<Unsent>,
}

/// A logged post that gossipsub has not accepted yet.
pub(crate) struct Unsent {
    pub(crate) id: MessageId,
    pub(crate) envelope: Vec<u8>,
}

impl Rooms {
    pub(crate) fn new() -> Self {
        Self {
            joined: BTreeMap::new(),
            by_topic: HashMap::new(),
        }
    }

    /// Adds a room; returns its topic, or None if already joined.
    pub(crate) fn join(&mut self, room: &Room) -> Option<IdentTopic> {
        if self.joined.contains_key(room) {
            return None;
        }
        let topic = protocol::topic(room.as_str());
        self.by_topic.insert(topic.hash(), room.clone());
        self.joined.insert(
            room.clone(),
            RoomState {
                topic: topic.clone(),
                unsent: VecDeque::new(),
            },
        );
        Some(topic)
    }

    /// Removes a room; returns its topic and how many posts were unsent.
    pub(crate) fn leave(&mut self, room: &Room) -> Option<(IdentTopic, usize)> {
        let state = self.joined.remove(room)?;
        self.by_topic.remove(&state.topic.hash());
        Some((state.topic, state.unsent.len()))
    }

    pub(crate) fn get(&self, room: &Room) -> Option<&RoomState> {
        self.joined.get(room)
    }

    pub(crate) fn room_of(&self, topic: &TopicHash) -> Option<&Room> {
        self.by_topic.get(topic)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (&Room, &RoomState)> {
        self.joined.iter()
    }

    /// Whether another post may be queued in the room.
    pub(crate) fn has_room_for_unsent(&self, room: &Room) -> bool {
        self.joined
            .get(room)
            .is_some_and(|s| s.unsent.len() < MAX_UNSENT_PER_ROOM)
    }

    /// Queues a post at the back (in posting order).
    pub(crate) fn push_unsent(&mut self, room: &Room, post: Unsent) {
        if let Some(state) = self.joined.get_mut(room) {
            state.unsent.push_back(post);
        }
    }

    /// Puts a post that still could not be sent back at the front.
    pub(crate) fn requeue_front(&mut self, room: &Room, post: Unsent) {
        if let Some(state) = self.joined.get_mut(room) {
            state.unsent.push_front(post);
        }
    }

    pub(crate) fn pop_unsent(&mut self, room: &Room) -> Option<Unsent> {
        self.joined.get_mut(room)?.unsent.pop_front()
    }

    pub(crate) fn unsent_len(&self, room: &Room) -> usize {
        self.joined.get(room).map_or(0, |s| s.unsent.len())
    }

    /// Rooms with posts waiting.
    pub(crate) fn with_unsent(&self) -> Vec<Room> {
        self.joined
            .iter()
            .filter(|(_, s)| !s.unsent.is_empty())
            .map(|(r, _)| r.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn post(n: u8) -> Unsent {
        Unsent {
            id: MessageId::from_bytes([n; 32]),
            envelope: vec![n],
        }
    }

    #[test]
    fn unsent_posts_keep_their_order_and_are_bounded() {
        let mut rooms = Rooms::new();
        let lobby = Room::new("lobby").unwrap();
        assert!(!rooms.has_room_for_unsent(&lobby), "not joined");
        let topic = rooms.join(&lobby).unwrap();
        assert!(rooms.join(&lobby).is_none());
        assert_eq!(rooms.room_of(&topic.hash()), Some(&lobby));
        rooms.push_unsent(&lobby, post(1));
        rooms.push_unsent(&lobby, post(2));
        let first = rooms.pop_unsent(&lobby).unwrap();
        assert_eq!(first.envelope, vec![1]);
        rooms.requeue_front(&lobby, first);
        assert_eq!(rooms.pop_unsent(&lobby).unwrap().envelope, vec![1]);
        assert_eq!(rooms.pop_unsent(&lobby).unwrap().envelope, vec![2]);
        for n in 0..MAX_UNSENT_PER_ROOM {
            assert!(rooms.has_room_for_unsent(&lobby));
            rooms.push_unsent(&lobby, post(n as u8));
        }
        assert!(!rooms.has_room_for_unsent(&lobby));
        assert_eq!(rooms.leave(&lobby).map(|(_, n)| n), Some(MAX_UNSENT_PER_ROOM));
        assert!(rooms.room_of(&topic.hash()).is_none());
    }
}
