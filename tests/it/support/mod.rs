//! Shared helpers: the lab from the library, plus a raw libp2p peer that
//! speaks the wire protocol without Backchannel's checks (an attacker, an
//! observer, or "another implementation").

pub mod api;
pub mod crafted;
pub mod http;
pub mod raw;
pub mod webdriver;
pub mod wire;

use std::time::Duration;

use backchannel::lab::{Lab, LabConfig, Topology};
use backchannel::{Event, Handle, MessageId, Room, Stats};

/// Every wait in the tests has this limit; nothing waits by sleeping.
pub const T: Duration = Duration::from_secs(20);

pub fn room(name: &str) -> Room {
    Room::new(name).expect("valid room")
}

/// A lab of `n` nodes wired in `topology` with every node in `room`.
pub async fn mesh(n: usize, topology: Topology, room: &Room) -> Lab {
    let mut lab = Lab::start(n, LabConfig::default()).await.expect("lab starts");
    lab.connect(topology, T).await.expect("nodes connect");
    lab.join_all(room, &topology.edges(n, 0), T).await.expect("mesh forms");
    lab
}

/// The node's counters once `ready` holds for them, read every 100 ms for
/// up to `limit` (counters have no event to wait for); panics with `what`
/// if they never do.
pub async fn stats_once(handle: &Handle, what: &str, limit: Duration, ready: impl Fn(&Stats) -> bool) -> Stats {
    let poll = async {
        let mut check = tokio::time::interval(Duration::from_millis(100));
        loop {
            check.tick().await;
            let stats = handle.stats().await.expect("the node answers");
            if ready(&stats) {
                return stats;
            }
        }
    };
    tokio::time::timeout(limit, poll)
        .await
        .unwrap_or_else(|_| panic!("{what} within {limit:?}"))
}

/// Picks the hallway post with this id.
pub fn hallway(id: MessageId) -> impl FnMut(&Event) -> Option<String> {
    move |e| match e {
        Event::Hallway { id: got, post, .. } if *got == id => Some(post.text.clone()),
        _ => None,
    }
}
