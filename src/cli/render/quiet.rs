//! What people are shown once, not every time: the terminal of a node that
//! runs for hours must not fill with repeats. Scripts (`--json`) and
//! `--verbose` see every line; this filter only thins the human view.

use std::collections::HashSet;

use backchannel::JsonLine;

/// What a person has already been told.
#[derive(Default)]
pub struct Shown {
    /// Peers (or addresses, for dials that named no peer) reported
    /// unreachable since they were last connected: a dead `--peer` is
    /// redialled every few seconds, and one line says it.
    unreachable: HashSet<String>,
}

impl Shown {
    /// Whether `line` tells a person something new; it updates what they know.
    pub fn worth_showing(&mut self, line: &JsonLine) -> bool {
        match line {
            JsonLine::DialFailed { peer, addr, .. } => {
                let key = match (peer, addr) {
                    (Some(peer), _) => peer.to_string(),
                    (None, Some(addr)) => addr.to_string(),
                    (None, None) => String::new(),
                };
                self.unreachable.insert(key)
            }
            JsonLine::PeerConnected { peer } => {
                self.unreachable.remove(&peer.to_string());
                true
            }
            _ => true,
        }
    }
}
