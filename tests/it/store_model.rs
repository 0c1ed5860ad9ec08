//! A model-based test of the log: random operations, including restarts,
//! against a plain in-memory model, over many seeds; on sled (the product's
//! engine) and on the in-memory engine, which also fails writes and flushes
//! and crashes, losing what was not flushed.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use std::collections::BTreeMap;

use backchannel::lab::Rng;
use backchannel::{Body, DirectMessage, HallwayPost, Identity, MessageId, PeerId, Room, Signed};
use backchannel::{Delivery, Direction, Faults, Inserted, MemoryEngine, OutboxItem, Store};

/// What the log should hold.
#[derive(Default, Clone)]
struct Model {
    rooms: BTreeMap<String, Vec<MessageId>>,
    conversations: BTreeMap<PeerId, Vec<MessageId>>,
    delivery: BTreeMap<MessageId, Delivery>,
    outbox: BTreeMap<MessageId, OutboxItem>,
    all: Vec<Signed>,
    /// Who writes: `people[0]` is this node.
    people: Vec<Identity>,
}

impl Model {
    fn me(&self) -> PeerId {
        self.people[0].peer_id()
    }
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
    for seed in 0..20u64 {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let mut log = Sled {
            store: Some(Store::open(&path).unwrap()),
            path,
        };
        run(seed, &mut log, 10);
    }
}

#[test]
fn the_in_memory_engine_matches_the_same_model_and_loses_only_what_was_not_flushed() {
    for seed in 0..20u64 {
        let engine = MemoryEngine::new();
        let mut log = Memory {
            store: Store::with_engine(engine.clone()),
            engine,
        };
        // The sled steps, then the failures only this engine can inject.
        run(seed, &mut log, 13);
    }
}

/// A log under test, with its engine.
trait Log {
    fn store(&self) -> &Store;
    /// A clean restart: flush, close, reopen.
    fn restart(&mut self);
    /// Injects failure `kind` (10 and up); returns whether the log now holds
    /// only what the model held at the last successful flush.
    fn fail(&mut self, kind: usize, rng: &mut Rng, step: u64, model: &Model) -> bool;
}

struct Sled {
    store: Option<Store>,
    path: std::path::PathBuf,
}

impl Log for Sled {
    fn store(&self) -> &Store {
        self.store.as_ref().unwrap()
    }

    fn restart(&mut self) {
        self.store().flush().unwrap();
        drop(self.store.take());
        self.store = Some(Store::open_waiting(&self.path, std::time::Duration::from_secs(5)).unwrap());
    }

    fn fail(&mut self, _: usize, _: &mut Rng, _: u64, _: &Model) -> bool {
        unreachable!("sled is not asked to fail")
    }
}

struct Memory {
    store: Store,
    engine: MemoryEngine,
}

impl Log for Memory {
    fn store(&self) -> &Store {
        &self.store
    }

    fn restart(&mut self) {
        // What a restart finds is what was flushed: after this flush, all.
        self.store.flush().unwrap();
        self.engine = self.engine.after_crash();
        self.store = Store::with_engine(self.engine.clone());
    }

    fn fail(&mut self, kind: usize, rng: &mut Rng, step: u64, model: &Model) -> bool {
        match kind {
            10 => {
                // A failed write: the error reaches the caller and nothing
                // of the message is seen.
                self.engine.fail_writes(Faults::Next(1));
                let m = post(&model.people[1], "a", step, rng);
                assert!(self.store.insert(&m, Direction::Received, &model.me()).is_err());
                self.engine.heal();
                false
            }
            11 => {
                self.engine.fail_flushes(Faults::Next(1));
                assert!(self.store.flush().is_err());
                false
            }
            _ => {
                // A crash: whatever was not flushed is lost.
                self.engine = self.engine.after_crash();
                self.store = Store::with_engine(self.engine.clone());
                true
            }
        }
    }
}

fn post(author: &Identity, room: &str, step: u64, rng: &mut Rng) -> Signed {
    Signed::sign(
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
            stamp: None,
        }),
    )
}

/// `steps` random operations of `kinds` kinds (10: the sled ones), each
/// followed by a check of the whole log against the model.
fn run(seed: u64, log: &mut impl Log, kinds: usize) {
    let mut model = Model {
        people: (0..4).map(|i| Identity::from_secret([i + 1; 32])).collect(),
        ..Model::default()
    };
    let people = model.people.clone();
    let me = &people[0];
    let rooms = ["a", "b", "ab"];
    // The model as of the last successful flush: what survives a crash.
    let mut durable = model.clone();
    let mut rng = Rng::new(seed);
    for step in 0..150u64 {
        let store = log.store();
        match rng.below(kinds) {
            0..=2 => {
                let author = &people[rng.below(people.len())];
                let room = rooms[rng.below(rooms.len())];
                let m = post(author, room, step, &mut rng);
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
            8 => {
                store.flush().unwrap();
                durable = model.clone();
            }
            9 => {
                log.restart();
                durable = model.clone();
            }
            kind => {
                if log.fail(kind, &mut rng, step, &model) {
                    model = durable.clone();
                }
            }
        }
        check(log.store(), &model);
    }
}
