//! sync: history sync of a room with 10,000 posts, on loopback.
//! `cargo bench --bench sync`
//!
//! 1. Catch-up: a node that has the room's 10,000 posts (signed by 20
//!    authors, written to its log before it starts) and a new node that joins
//!    the room; the time from the join to the new node's `Synced` event, every
//!    signature verified (strictly, one by one) and every post logged.
//!    Target: <= 1 s. Also prints the CPU time both nodes used meanwhile
//!    (`cpu_seconds`, all threads), which varies less than the wall time
//!    on a shared machine.
//! 2. Reconcile: two nodes that share 9,990 of the 10,000 posts; the bytes of
//!    the sync requests and responses either way, against a full transfer (what
//!    the catch-up moved). Target: <= 5%.
//!
//! Prints one JSON line per measurement.

#![allow(missing_docs)]

use std::path::Path;
use std::time::{Duration, Instant};

use backchannel::lab::secret;
use backchannel::{Body, Config, Direction, Event, HallwayPost, Handle, Identity, Node, Room, Signed, Store};
use serde_json::json;
use tokio::sync::mpsc;

const POSTS: usize = 10_000;
const AUTHORS: usize = 20;
const DIFFERENCE: usize = 10;
const LIMIT: Duration = Duration::from_secs(60);

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64
}

/// The room's posts: an hour old (history, not live), 140 bytes of text each.
fn posts(room: &Room) -> Vec<Signed> {
    let authors: Vec<Identity> = (0..AUTHORS).map(|i| Identity::from_secret(secret(99, i))).collect();
    let start = now_ms() - 3_600_000;
    (0..POSTS)
        .map(|i| {
            let time = start + i as u64 * 100;
            Signed::sign(
                &authors[i % AUTHORS],
                Body::Hallway(HallwayPost {
                    room: room.clone(),
                    text: format!("{i:06} {}", "lorem ipsum dolor sit amet ".repeat(5)),
                    time_ms: time,
                    nick: Some(format!("author{}", i % AUTHORS)),
                    clock: time,
                    reply_to: None,
                    mentions: Vec::new(),
                    question: false,
                    stamp: None,
                }),
            )
        })
        .collect()
}

/// Writes posts into a node's log before it starts.
fn prefill(dir: &Path, posts: &[Signed], local: &Identity) {
    let store = Store::open(&dir.join("log")).expect("log");
    for p in posts {
        store.insert(p, Direction::Received, &local.peer_id()).expect("insert");
    }
    store.flush().expect("flush");
}

async fn start(dir: &Path, index: usize) -> (Handle, mpsc::Receiver<Event>, backchannel::Multiaddr) {
    let identity = Identity::from_secret(secret(7, index));
    let mut config = Config::new(dir);
    config.listen = vec!["/ip4/127.0.0.1/tcp/0".parse().expect("addr")];
    config.mdns = false;
    config.presence = false;
    let Node { handle, mut events } = Node::start(config, identity).await.expect("node starts");
    let addr = loop {
        match tokio::time::timeout(LIMIT, events.recv()).await {
            Ok(Some(Event::Listening { addr })) => break addr,
            Ok(Some(_)) => {}
            _ => panic!("no listen address"),
        }
    };
    (handle, events, addr)
}

/// CPU time this process has used so far (all threads, user and system),
/// from /proc/self/stat: on a machine shared with other work the wall time
/// of a run varies with the load, the CPU time it needs much less.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name, which is in parentheses: utime and
    // stime are the 12th and 13th, in clock ticks (100 per second on Linux).
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let ticks: u64 = after
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|f| f.parse::<u64>().ok())
        .sum();
    ticks as f64 / 100.0
}

/// Waits until sync brought `want` messages (in one or more pages).
async fn synced(events: &mut mpsc::Receiver<Event>, want: usize) -> usize {
    let deadline = tokio::time::Instant::now() + LIMIT;
    let mut got = 0;
    while got < want {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(Event::Synced { received, .. })) => got += received,
            Ok(Some(_)) => {}
            _ => panic!("sync brought {got} of {want} in time"),
        }
    }
    got
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let room = Room::new("history").expect("room");
        let all = posts(&room);
        let full_bytes: usize = all.iter().map(|p| p.envelope().len()).sum();
        let root = tempfile::tempdir().expect("tmp");

        // 1. Catch-up of 10,000 posts.
        let (a_dir, b_dir) = (root.path().join("a"), root.path().join("b"));
        prefill(&a_dir, &all, &Identity::from_secret(secret(7, 0)));
        let (a, _a_events, a_addr) = start(&a_dir, 0).await;
        a.join(&room).await.expect("join");
        let (b, mut b_events, _) = start(&b_dir, 1).await;
        b.dial(a_addr.clone()).await.expect("dial");
        let (t0, cpu0) = (Instant::now(), cpu_seconds());
        b.join(&room).await.expect("join");
        let received = synced(&mut b_events, POSTS).await;
        let catch_up = t0.elapsed();
        let cpu = cpu_seconds() - cpu0;
        let view = b.room_view(&room, usize::MAX).await.expect("view");
        let stats = b.stats().await.expect("stats");
        println!(
            "{}",
            json!({
                "bench": "sync", "measure": "catch-up",
                "posts": POSTS, "received": received, "shown_in_order": view.len(),
                "seconds": catch_up.as_secs_f64(),
                "cpu_seconds": cpu,
                "posts_per_s": received as f64 / catch_up.as_secs_f64(),
                "bytes_in": stats.sync_bytes_in, "bytes_out": stats.sync_bytes_out,
                "rejected": stats.rejected_total(),
                "target": "10,000 posts verified and logged in <= 1 s",
                "met": received == POSTS && view.len() == POSTS && catch_up.as_secs_f64() <= 1.0,
            })
        );
        let full_transfer = stats.sync_bytes_in + stats.sync_bytes_out;
        b.shutdown().await;

        // 2. Two nodes that differ by 10 posts out of 10,000.
        let c_dir = root.path().join("c");
        let mut most = all.clone();
        let step = POSTS / DIFFERENCE;
        for k in (0..DIFFERENCE).rev() {
            most.remove(k * step + step / 2);
        }
        prefill(&c_dir, &most, &Identity::from_secret(secret(7, 2)));
        let (c, mut c_events, _) = start(&c_dir, 2).await;
        c.dial(a_addr).await.expect("dial");
        c.join(&room).await.expect("join");
        let t0 = Instant::now();
        let received = synced(&mut c_events, DIFFERENCE).await;
        let elapsed = t0.elapsed();
        let stats = c.stats().await.expect("stats");
        let bytes = stats.sync_bytes_in + stats.sync_bytes_out;
        println!(
            "{}",
            json!({
                "bench": "sync", "measure": "reconcile",
                "posts": POSTS, "differ_by": DIFFERENCE, "received": received,
                "seconds": elapsed.as_secs_f64(),
                "bytes": bytes, "full_transfer_bytes": full_transfer,
                "envelope_bytes_of_history": full_bytes,
                "percent_of_full": 100.0 * bytes as f64 / full_transfer as f64,
                "target": "<= 5% of a full transfer",
                "met": received == DIFFERENCE && (bytes as f64) <= 0.05 * full_transfer as f64,
            })
        );
        c.shutdown().await;
        a.shutdown().await;
    });
}
