//! This node's stamps: one per joined room (`protocol::mint_stamp`), put on
//! its posts and operations so that other nodes admit it as a newcomer from
//! the stamped share (`Limits::stamp_bits`, docs/PROTOCOL.md "Stamps").
//!
//! Minting costs about 2^bits hashes, a few hundredths of a second at the
//! default, so it runs on a blocking thread and never in the event loop;
//! the loop takes the result from [`Minting::next`]. A minted stamp is kept
//! in the log's settings, so a room joined again (after a restart, too) has
//! its stamp at once. While it is minted, the calls that would make a
//! message in the room (join, post, operation) are held and carried out
//! when it is ready, in order: everything the node sends in a room carries
//! its stamp, and a post without one would be admitted by the other nodes
//! from the small unstamped share only.

use std::collections::HashMap;

use tokio::task::{Id, JoinSet};

use super::handle::Call;
use crate::id::Room;
use crate::protocol::{mint_stamp, stamp_strength};
use crate::store::{Store, StoreError};

/// Calls held per room while its stamp is minted; beyond, they are carried
/// out at once, without a stamp (the same bound as posts waiting for peers).
pub(crate) const MAX_HELD: usize = crate::node::rooms::MAX_UNSENT_PER_ROOM;

/// Stamps being minted, one task per room at most, and the calls that wait
/// for them.
#[derive(Default)]
pub(crate) struct Minting {
    tasks: JoinSet<(Room, u64)>,
    rooms: HashMap<Id, Room>,
    held: HashMap<Room, Vec<Call>>,
}

/// A stamp minting finished.
pub(crate) struct Minted {
    pub(crate) room: Room,
    /// None if the task was lost (a panic, which `mint_stamp` has no path
    /// to): the room goes unstamped until it is joined again.
    pub(crate) stamp: Option<u64>,
    /// The calls that waited for it, in the order they came.
    pub(crate) held: Vec<Call>,
}

impl Minting {
    /// Starts minting `key`'s stamp for `room`, unless it is under way.
    pub(crate) fn start(&mut self, room: &Room, key: [u8; 32], bits: u32) {
        if self.is_minting(room) {
            return;
        }
        let owned = room.clone();
        let task = self.tasks.spawn_blocking(move || {
            let stamp = mint_stamp(owned.as_str(), &key, bits);
            (owned, stamp)
        });
        self.rooms.insert(task.id(), room.clone());
    }

    /// Whether `room`'s stamp is being minted.
    pub(crate) fn is_minting(&self, room: &Room) -> bool {
        self.rooms.values().any(|r| r == room)
    }

    /// Holds `call` until its room's stamp is minted, if it makes a message
    /// in a room whose stamp is being minted (or answers a join of one);
    /// gives it back otherwise, to be carried out now.
    pub(crate) fn hold(&mut self, call: Call) -> Option<Call> {
        let room = match &call {
            // A leave is held too, so that it comes after the join it follows.
            Call::Join { room, .. }
            | Call::Prepare { room, .. }
            | Call::Leave { room, .. }
            | Call::Post { room, .. }
            | Call::RoomOp { room, .. } => room,
            _ => return Some(call),
        };
        if !self.is_minting(room) {
            return Some(call);
        }
        let held = self.held.entry(room.clone()).or_default();
        if held.len() >= MAX_HELD {
            return Some(call);
        }
        held.push(call);
        None
    }

    /// Whether a stamp is being minted (the loop polls [`Minting::next`]
    /// only then: an empty set would finish at once).
    pub(crate) fn busy(&self) -> bool {
        !self.tasks.is_empty()
    }

    /// The next minting finished.
    pub(crate) async fn next(&mut self) -> Option<Minted> {
        let (id, stamp) = match self.tasks.join_next_with_id().await? {
            Ok((id, (_, stamp))) => (id, Some(stamp)),
            Err(e) => (e.id(), None),
        };
        let room = self.rooms.remove(&id)?;
        let held = self.held.remove(&room).unwrap_or_default();
        Some(Minted { room, stamp, held })
    }
}

fn setting(room: &Room) -> String {
    format!("stamp/{}", room.as_str())
}

/// The stamp kept for `room`, if it shows `bits` of work for `key` (a
/// stamp minted under a smaller `Limits::stamp_bits` is minted again).
pub(crate) fn kept(store: &Store, room: &Room, key: &[u8; 32], bits: u32) -> Option<u64> {
    let raw = store.setting(&setting(room)).ok()??;
    let stamp = u64::from_le_bytes(raw.as_slice().try_into().ok()?);
    (stamp_strength(room.as_str(), key, stamp) >= bits).then_some(stamp)
}

/// Keeps a minted stamp for `room`.
pub(crate) fn keep(store: &Store, room: &Room, stamp: u64) -> Result<(), StoreError> {
    store.set_setting(&setting(room), &stamp.to_le_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_stamp_is_minted_once_per_room_and_kept() {
        let store = Store::in_memory();
        let room = Room::new("lobby").unwrap();
        let key = [3; 32];
        let mut minting = Minting::default();
        minting.start(&room, key, 10);
        // A second join while it is under way starts nothing more, and the
        // calls that make messages in the room wait for it, in order; other
        // calls do not.
        minting.start(&room, key, 10);
        assert!(minting.is_minting(&room));
        let (reply, _answer) = tokio::sync::oneshot::channel();
        assert!(
            minting
                .hold(Call::Join {
                    room: room.clone(),
                    reply
                })
                .is_none()
        );
        let (reply, _answer) = tokio::sync::oneshot::channel();
        let post = Call::Post {
            room: room.clone(),
            text: "first".into(),
            options: crate::node::PostOptions::default(),
            reply,
        };
        assert!(minting.hold(post).is_none());
        let (reply, _answer) = tokio::sync::oneshot::channel();
        assert!(minting.hold(Call::Stats { reply }).is_some());
        let (reply, _answer) = tokio::sync::oneshot::channel();
        let elsewhere = Call::Join {
            room: Room::new("elsewhere").unwrap(),
            reply,
        };
        assert!(minting.hold(elsewhere).is_some());
        let minted = minting.next().await.unwrap();
        assert_eq!(minted.room, room);
        assert!(matches!(minted.held[..], [Call::Join { .. }, Call::Post { .. }]));
        assert!(!minting.busy() && !minting.is_minting(&room));
        let stamp = minted.stamp.unwrap();
        assert!(stamp_strength(room.as_str(), &key, stamp) >= 10);
        assert_eq!(kept(&store, &room, &key, 10), None);
        keep(&store, &room, stamp).unwrap();
        assert_eq!(kept(&store, &room, &key, 10), Some(stamp));
        // Kept for another key, or with less work than now asked: minted again.
        assert_eq!(kept(&store, &room, &[4; 32], 10), None);
        let strength = stamp_strength(room.as_str(), &key, stamp);
        assert_eq!(kept(&store, &room, &key, strength + 1), None);
        // The room can be minted again once done.
        minting.start(&room, key, 1);
        assert!(minting.next().await.unwrap().stamp.is_some());
    }
}
