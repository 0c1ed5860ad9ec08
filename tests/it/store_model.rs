//! A model-based test of the log: random operations, including restarts,
//! against a plain in-memory model, over many seeds.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use std::collections::BTreeMap;

use backchannel::lab::Rng;
use backchannel::store::{Delivery, Direction, Inserted, OutboxItem, Store};
use backchannel::{Body, DirectMessage, HallwayPost, Identity, MessageId, PeerId, Room, Signed};

/// What the log should hold.
#[derive(Default)]
struct Model {
    rooms: BTreeMap<String, Vec<MessageId>>,
    conversations: BTreeMap<PeerId, Vec<MessageId>>,
    delivery: BTreeMap<MessageId, Delivery>,
    outbox: BTreeMap<MessageId, OutboxItem>,
    all: Vec<Signed>,
}

fn check(store: &Store, model: &Model) {
    for (room, ids) in &model.rooms {
        let got: Vec<MessageId> = store
            .room(&Room::new(room.as_str()).unwrap(), 10_000)
            .unwrap()
            .iter()
            .map(|m| m.message.id())
            .collect();
        assert_eq!(&got, ids, "room {room}");
    }
    for (peer, ids) in &model.conversations {
        let log = store.conversation(peer, 10_000).unwrap();
        let got: Vec<MessageId> = log.iter().map(|m| m.message.id()).collect();
        assert_eq!(&got, ids, "conversation with {peer}");
        for m in &log {
            assert_eq!(
                Some(&m.delivery),
                model.delivery.get(&m.message.id()).or(Some(&Delivery::None))
            );
        }
    }
    let mut outbox = store.outbox().unwrap();
    outbox.sort_by_key(|i| i.id);
    assert_eq!(outbox, model.outbox.values().cloned().collect::<Vec<_>>());
}

#[test]
fn the_log_matches_a_model_through_random_operations_and_restarts() {
    let people: Vec<Identity> = (0..4).map(|i| Identity::from_secret([i + 1; 32])).collect();
    let me = &people[0];
    let rooms = ["a", "b", "ab"];
    for seed in 0..20u64 {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let mut store = Store::open(&path).unwrap();
        let mut model = Model::default();
        let mut rng = Rng::new(seed);
        for step in 0..150u64 {
            match rng.below(10) {
                0..=2 => {
                    let author = &people[rng.below(people.len())];
                    let room = rooms[rng.below(rooms.len())];
                    let m = Signed::sign(
                        author,
                        Body::Hallway(HallwayPost {
                            room: Room::new(room).unwrap(),
                            text: format!("post {}", rng.next_u64()),
                            time_ms: 1,
                            nick: None,
                            clock: step + 1,
                            reply_to: None,
                            mentions: Vec::new(),
                            question: false,
                        }),
                    );
                    let dir = if author.peer_id() == me.peer_id() {
                        Direction::Sent
                    } else {
                        Direction::Received
                    };
                    assert!(matches!(
                        store.insert(&m, dir, &me.peer_id()).unwrap(),
                        Inserted::New(_)
                    ));
                    model.rooms.entry(room.into()).or_default().push(m.id());
                    model.all.push(m);
                }
                3..=4 => {
                    let other = &people[1 + rng.below(people.len() - 1)];
                    let outgoing = rng.below(2) == 0;
                    let (from, to) = if outgoing { (me, other) } else { (other, me) };
                    let m = Signed::sign(
                        from,
                        Body::Direct(DirectMessage {
                            recipient: to.peer_id(),
                            text: format!("dm {}", rng.next_u64()),
                            time_ms: 1,
                            nick: None,
                            reaction: None,
                        }),
                    );
                    let dir = if outgoing { Direction::Sent } else { Direction::Received };
                    store.insert(&m, dir, &me.peer_id()).unwrap();
                    model.conversations.entry(other.peer_id()).or_default().push(m.id());
                    if outgoing {
                        model.delivery.insert(m.id(), Delivery::Queued);
                        let item = OutboxItem {
                            id: m.id(),
                            to: other.peer_id(),
                            attempts: 0,
                            next_ms: rng.next_u64() % 1000,
                            expires_ms: 10_000,
                        };
                        store.outbox_put(&item).unwrap();
                        model.outbox.insert(m.id(), item);
                    }
                    model.all.push(m);
                }
                5 => {
                    // A duplicate changes nothing.
                    if !model.all.is_empty() {
                        let m = &model.all[rng.below(model.all.len())];
                        assert_eq!(
                            store.insert(m, Direction::Received, &me.peer_id()).unwrap(),
                            Inserted::Duplicate
                        );
                    }
                }
                6 => {
                    // A pending DM is delivered or fails.
                    if let Some(id) = model.outbox.keys().nth(rng.below(model.outbox.len().max(1))).copied() {
                        let state = if rng.below(2) == 0 {
                            Delivery::Delivered
                        } else {
                            Delivery::Failed("expired".into())
                        };
                        assert!(store.set_delivery(&id, &state, None).unwrap());
                        store.outbox_remove(&id, &model.outbox[&id].to).unwrap();
                        model.outbox.remove(&id);
                        model.delivery.insert(id, state);
                    }
                }
                7 => {
                    if let Some(mut item) = model.outbox.values().next().cloned() {
                        item.attempts += 1;
                        item.next_ms += 1000;
                        store.outbox_put(&item).unwrap();
                        model.outbox.insert(item.id, item);
                    }
                }
                8 => store.flush().unwrap(),
                _ => {
                    // A clean restart: flush, close, reopen.
                    store.flush().unwrap();
                    drop(store);
                    store = Store::open_waiting(&path, std::time::Duration::from_secs(5)).unwrap();
                }
            }
            check(&store, &model);
        }
    }
}
