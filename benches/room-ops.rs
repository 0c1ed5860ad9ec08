//! room-ops: the cost of room operations that arrive out of order.
//! `cargo bench --bench room-ops` (or `-- 20000` for another count).
//!
//! A hosted room with 1,000 posts by 200 participants takes 100,000
//! operations with distinct clocks: reactions, edits, question marks and
//! deletes from everyone, a few hallway modes from moderators, and a grant,
//! revocation or removal by the host about once per 500 operations (the
//! changes of rights that decide every later operation of their target).
//! They are fed to `RoomState` twice: in room order, and shuffled (a seeded
//! permutation, so about every operation is older than the newest one seen,
//! what history sync and healed partitions deliver). Any participant can send
//! old clocks at will within the rate limits, so the shuffled case is the
//! one an attacker picks.
//!
//! Prints one JSON line per order: total seconds, µs per operation, how many
//! arrived late, and how many times an operation was judged.

#![allow(missing_docs)]

use std::time::Instant;

use backchannel::{ChatMode, QuestionState, Reaction, Role, RoomAction, RoomState};
use backchannel::{Identity, MessageId, PeerId, Room};
use serde_json::json;

const POSTS: usize = 1_000;
const PARTICIPANTS: usize = 200;
const DEFAULT_OPS: usize = 100_000;
const SEED: u64 = 0x0005_eed0_f0b5;

/// splitmix64: a seeded generator, so every run feeds the same operations in
/// the same order.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn id(tag: u8, n: usize) -> MessageId {
    let mut bytes = [0u8; 32];
    bytes[0] = tag;
    bytes[1..9].copy_from_slice(&(n as u64).to_be_bytes());
    MessageId::from_bytes(bytes)
}

struct Workload {
    room: Room,
    posts: Vec<(MessageId, PeerId, u64, bool)>,
    ops: Vec<(MessageId, PeerId, u64, RoomAction)>,
}

fn workload(count: usize) -> Workload {
    let mut rng = Rng(SEED);
    let people: Vec<PeerId> = (0..PARTICIPANTS)
        .map(|i| {
            let mut secret = [7u8; 32];
            secret[..8].copy_from_slice(&(i as u64).to_be_bytes());
            Identity::from_secret(secret).peer_id()
        })
        .collect();
    let host = people[0];
    let moderators = &people[1..4];
    let room = Room::hosted("stage", &host).expect("room");
    let posts: Vec<(MessageId, PeerId, u64, bool)> = (0..POSTS)
        .map(|i| (id(1, i), people[rng.below(PARTICIPANTS)], 1 + i as u64, i % 10 == 0))
        .collect();
    let mut ops = Vec::with_capacity(count);
    // The host's grants come first, so the moderators moderate.
    for (i, m) in moderators.iter().enumerate() {
        let action = RoomAction::SetRole {
            peer: *m,
            role: Role::Moderator,
        };
        ops.push((id(2, i), host, 10_000 + i as u64, action));
    }
    let emojis = ["👍", "🎉", "❤", "🔥"];
    for i in ops.len()..count {
        let clock = 10_000 + i as u64;
        let target = posts[rng.below(POSTS)].0;
        let author = people[1 + rng.below(PARTICIPANTS - 1)];
        let (author, action) = match rng.below(1000) {
            0 => {
                let peer = people[4 + rng.below(PARTICIPANTS - 4)];
                let role = [Role::Listener, Role::Speaker, Role::Moderator][rng.below(3)];
                (host, RoomAction::SetRole { peer, role })
            }
            1 => {
                let peer = people[4 + rng.below(PARTICIPANTS - 4)];
                let restore = rng.below(2) == 0;
                (host, RoomAction::Remove { peer, restore })
            }
            2 => {
                let mode = [ChatMode::On, ChatMode::ReadOnly, ChatMode::On][rng.below(3)];
                (moderators[rng.below(3)], RoomAction::Chat(mode))
            }
            3..=600 => {
                let emoji = emojis[rng.below(emojis.len())].to_string();
                let retract = rng.below(4) == 0;
                let reaction = Reaction { target, emoji, retract };
                (author, RoomAction::React(reaction))
            }
            601..=800 => {
                let text = format!("edit {i}");
                (author, RoomAction::Edit { target, text })
            }
            801..=950 => {
                let state = [QuestionState::Answered, QuestionState::Dismissed][rng.below(2)];
                (moderators[rng.below(3)], RoomAction::Question { target, state })
            }
            _ => (author, RoomAction::Delete(target)),
        };
        ops.push((id(3, i), author, clock, action));
    }
    Workload { room, posts, ops }
}

/// Feeds the operations in `order`; returns the seconds taken and how many
/// arrived older than the newest seen before them.
fn run(w: &Workload, order: &[usize]) -> (f64, usize, RoomState) {
    let mut state = RoomState::new(w.room.clone());
    for (id, author, clock, question) in &w.posts {
        state.add_post(*id, *author, *clock, *question);
    }
    let mut late = 0;
    let mut newest = 0;
    let started = Instant::now();
    for &i in order {
        let (id, author, clock, action) = &w.ops[i];
        if *clock < newest {
            late += 1;
        }
        newest = newest.max(*clock);
        state.add_op(*id, *author, *clock, action.clone());
    }
    (started.elapsed().as_secs_f64(), late, state)
}

fn main() {
    let count = std::env::args()
        .skip(1)
        .find_map(|a| a.parse::<usize>().ok())
        .unwrap_or(DEFAULT_OPS);
    let w = workload(count);
    let in_order: Vec<usize> = (0..count).collect();
    let mut shuffled = in_order.clone();
    let mut rng = Rng(SEED ^ 1);
    for i in (1..shuffled.len()).rev() {
        shuffled.swap(i, rng.below(i + 1));
    }
    let mut states = Vec::new();
    for (name, order) in [("in_order", &in_order), ("shuffled", &shuffled)] {
        let (secs, late, state) = run(&w, order);
        println!(
            "{}",
            json!({
                "bench": "room-ops",
                "order": name,
                "ops": count,
                "late": late,
                "total_s": secs,
                "per_op_us": secs * 1e6 / count as f64,
            })
        );
        states.push(state);
    }
    // Both orders must decide the same room.
    let [a, b] = &states[..] else { unreachable!() };
    let deleted = |s: &RoomState| {
        let mut d = s.deleted_posts();
        d.sort();
        d
    };
    assert_eq!(deleted(a), deleted(b), "the two orders disagree on deletes");
    assert_eq!(a.roles(), b.roles(), "the two orders disagree on roles");
    assert_eq!(a.questions(), b.questions(), "the two orders disagree on questions");
}
