//! The API's event stream: every node event and every answer the API gave,
//! as the [`JsonLine`] `run --json` prints, numbered.
//!
//! Each frame is one JSON object: the line's fields plus `"seq"`, a number
//! that grows by one per line. The last `replay` frames are kept, so a
//! client that reconnects with the last number it saw (`?since=N`) gets
//! everything after it and misses nothing. A client asking for frames
//! already forgotten, or one too slow to keep up with the live stream, gets
//! a `reload` line and the socket closes: it reads the state again over HTTP
//! and reconnects from the `seq` of that line.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use tokio::sync::broadcast;

use crate::JsonLine;

/// One numbered line, serialized once for every client.
pub type Frame = Arc<str>;

/// The numbered lines, the recent ones kept for replay.
pub struct EventLog {
    inner: Mutex<Ring>,
    live: broadcast::Sender<Frame>,
    replay: usize,
}

struct Ring {
    /// The number the next line gets. Starts at 1, so `since=0` means "from
    /// the beginning".
    next: u64,
    frames: VecDeque<Frame>,
}

#[derive(Serialize)]
struct Numbered<'a> {
    seq: u64,
    #[serde(flatten)]
    line: &'a JsonLine,
}

/// What a client reconnecting with `since` gets.
pub enum Subscription {
    /// The frames after `since`, then everything live.
    Frames(Vec<Frame>, broadcast::Receiver<Frame>),
    /// `since` is older than what is kept: read the state again.
    Reload(Frame),
}

impl EventLog {
    /// Keeps the last `replay` lines; a live client may fall `lag` lines
    /// behind before it is told to reload.
    pub fn new(replay: usize, lag: usize) -> Self {
        let (live, _) = broadcast::channel(lag.max(1));
        Self {
            inner: Mutex::new(Ring {
                next: 1,
                frames: VecDeque::with_capacity(replay.min(4096)),
            }),
            live,
            replay: replay.max(1),
        }
    }

    fn ring(&self) -> std::sync::MutexGuard<'_, Ring> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Numbers `line`, keeps it and sends it to every live client.
    pub fn publish(&self, line: &JsonLine) -> u64 {
        let mut ring = self.ring();
        let seq = ring.next;
        ring.next += 1;
        let frame = numbered(seq, line);
        if ring.frames.len() == self.replay {
            ring.frames.pop_front();
        }
        ring.frames.push_back(frame.clone());
        // Under the lock, so a subscriber sees each frame either in its
        // backlog or live, never both and never neither.
        let _ = self.live.send(frame);
        seq
    }

    /// The number of the last line (0 before the first).
    pub fn last_seq(&self) -> u64 {
        self.ring().next - 1
    }

    /// Subscribes from just after `since` (None: only what comes next).
    pub fn subscribe(&self, since: Option<u64>) -> Subscription {
        let ring = self.ring();
        let last = ring.next - 1;
        let rx = self.live.subscribe();
        let Some(since) = since else {
            return Subscription::Frames(Vec::new(), rx);
        };
        let oldest = ring.next - ring.frames.len() as u64;
        if since > last || since + 1 < oldest {
            return Subscription::Reload(reload(last));
        }
        let skip = (since + 1 - oldest) as usize;
        Subscription::Frames(ring.frames.iter().skip(skip).cloned().collect(), rx)
    }

    /// The `reload` frame for a client that fell behind the live stream.
    pub fn reload_now(&self) -> Frame {
        reload(self.last_seq())
    }

    /// Bytes held for replay (for the performance figures).
    pub fn replay_bytes(&self) -> usize {
        self.ring().frames.iter().map(|f| f.len()).sum()
    }
}

fn numbered(seq: u64, line: &JsonLine) -> Frame {
    serde_json::to_string(&Numbered { seq, line })
        .unwrap_or_else(|e| format!(r#"{{"seq":{seq},"type":"error","message":"unserializable line: {e}"}}"#))
        .into()
}

/// A `reload` line numbered with the last line's number: the client reads
/// the state and reconnects with `since` set to it.
fn reload(last: u64) -> Frame {
    numbered(last, &JsonLine::Reload)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seqs(frames: &[Frame]) -> Vec<u64> {
        frames
            .iter()
            .map(|f| {
                serde_json::from_str::<serde_json::Value>(f).expect("json")["seq"]
                    .as_u64()
                    .expect("seq")
            })
            .collect()
    }

    #[test]
    fn replay_from_since_then_reload_when_forgotten() {
        let log = EventLog::new(3, 8);
        for _ in 0..5 {
            log.publish(&JsonLine::Stopped);
        }
        let Subscription::Frames(backlog, _) = log.subscribe(Some(3)) else {
            panic!("3 is still kept");
        };
        assert_eq!(seqs(&backlog), vec![4, 5]);
        let Subscription::Frames(backlog, _) = log.subscribe(Some(2)) else {
            panic!("2 is the one before the oldest kept");
        };
        assert_eq!(seqs(&backlog), vec![3, 4, 5]);
        assert!(matches!(log.subscribe(Some(1)), Subscription::Reload(_)));
        assert!(matches!(log.subscribe(Some(9)), Subscription::Reload(_)));
        let Subscription::Frames(backlog, mut rx) = log.subscribe(Some(5)) else {
            panic!("up to date");
        };
        assert!(backlog.is_empty());
        log.publish(&JsonLine::Stopped);
        assert_eq!(seqs(&[rx.try_recv().expect("live")]), vec![6]);
        let frame: serde_json::Value = serde_json::from_str(&log.reload_now()).expect("json");
        assert_eq!(
            (frame["type"].as_str(), frame["seq"].as_u64()),
            (Some("reload"), Some(6))
        );
    }
}
