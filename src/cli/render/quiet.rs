//! What people are shown, and when: the terminal of a node that runs for
//! hours must not fill with repeats and routine, and a DM's own line must
//! come before what happened to it. Scripts (`--json`) see every line as it
//! comes; `--verbose` people see every line too, in the same order as here.

use std::collections::{HashSet, VecDeque};

use backchannel::{JsonLine, MessageId};

/// Lines about a DM held back until the DM's own line is shown. The
/// command prints that line when the node has taken the DM, and the node's
/// events about it can come a moment before. A DM this session never shows
/// (one carrying a group change, say) must not hold lines forever: beyond
/// this many the oldest is dropped (with `--verbose`, printed late), as a
/// stale receipt line out of context would only confuse; /outbox has it all.
const HELD_MAX: usize = 64;

/// Ids remembered per kind; the oldest are forgotten beyond this many (a
/// forgotten id at worst shows one repeated line).
const IDS_MAX: usize = 4096;

/// What a person has already been told.
#[derive(Default)]
pub struct Shown {
    /// Peers (or addresses, for dials that named no peer) reported
    /// unreachable since they were last connected: a dead `--peer` is
    /// redialled every few seconds, and one line says it.
    unreachable: HashSet<String>,
    /// DMs whose own line was shown (or that were sent by an earlier run).
    announced: Ids,
    /// DMs that were reported waiting in the outbox once already.
    queued: Ids,
    /// Messages that are group messages: their per-member DM lines are
    /// summed up by `group_delivered`.
    groups: Ids,
    /// Lines waiting for their DM's own line.
    held: VecDeque<(MessageId, JsonLine)>,
    /// Rooms whose own posts are being paced: one line when it starts and
    /// one when all are sent, not one per post or per second.
    pacing: HashSet<String>,
}

/// A bounded set of ids.
#[derive(Default)]
struct Ids {
    set: HashSet<MessageId>,
    order: VecDeque<MessageId>,
}

impl Ids {
    fn insert(&mut self, id: MessageId) -> bool {
        if !self.set.insert(id) {
            return false;
        }
        self.order.push_back(id);
        if self.order.len() > IDS_MAX
            && let Some(old) = self.order.pop_front()
        {
            self.set.remove(&old);
        }
        true
    }

    fn contains(&self, id: &MessageId) -> bool {
        self.set.contains(id)
    }
}

impl Shown {
    /// DMs sent before this session (still in the outbox): their lines are
    /// shown as they come.
    pub fn announce(&mut self, ids: impl IntoIterator<Item = MessageId>) {
        for id in ids {
            self.announced.insert(id);
        }
    }

    /// The lines to show now for `line`: none (a repeat or routine), the
    /// line, or the line and the ones that waited for it. `verbose` keeps
    /// every line but still puts a DM's own line first.
    pub fn admit(&mut self, line: JsonLine, verbose: bool) -> Vec<JsonLine> {
        let new = match &line {
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
            // Presence says who is here, with their name; the subscription
            // under it is for the curious.
            JsonLine::RoomPeerJoined { .. } | JsonLine::RoomPeerLeft { .. } => false,
            JsonLine::PostsWaiting { room, waiting: 0 } => self.pacing.remove(room.as_str()),
            JsonLine::PostsWaiting { room, .. } => self.pacing.insert(room.to_string()),
            // Each paced post going out: the count above says it.
            JsonLine::PostSent { room, .. } => !self.pacing.contains(room.as_str()),
            // A sync that brought nothing happens every minute per peer.
            JsonLine::Synced { received, .. } => *received > 0,
            JsonLine::DmSent { id, .. } | JsonLine::DmReactionSent { id, .. } => {
                let id = *id;
                self.announced.insert(id);
                let mut out = vec![line];
                out.extend(self.release(&id, verbose));
                return out;
            }
            JsonLine::GroupSent { id, .. } | JsonLine::GroupDelivered { id, .. } => {
                let id = *id;
                self.groups.insert(id);
                // Held per-member lines are now known to be a group's.
                let mut out = self.release(&id, verbose);
                out.push(line);
                return out;
            }
            JsonLine::Queued { id, .. } | JsonLine::Delivered { id, .. } | JsonLine::DmFailed { id, .. } => {
                let id = *id;
                if self.groups.contains(&id) {
                    // One `group_delivered` line per receipt says it.
                    verbose
                } else if !self.announced.contains(&id) {
                    return self.hold(id, line, verbose);
                } else if matches!(line, JsonLine::Queued { .. }) {
                    // The first retry says the DM waits; the next ones only
                    // repeat it (/outbox shows them all).
                    self.queued.insert(id)
                } else {
                    true
                }
            }
            _ => true,
        };
        if new || verbose { vec![line] } else { Vec::new() }
    }

    fn hold(&mut self, id: MessageId, line: JsonLine, verbose: bool) -> Vec<JsonLine> {
        self.held.push_back((id, line));
        if self.held.len() > HELD_MAX
            && let Some((_, oldest)) = self.held.pop_front()
            && verbose
        {
            return vec![oldest];
        }
        Vec::new()
    }

    /// The held lines of DM `id`, in order, filtered as if they came now.
    fn release(&mut self, id: &MessageId, verbose: bool) -> Vec<JsonLine> {
        let (mine, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut self.held).into_iter().partition(|(i, _)| i == id);
        self.held = rest.into();
        mine.into_iter()
            .flat_map(|(_, line)| self.admit(line, verbose))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use backchannel::{Identity, PeerId};

    use super::*;

    fn peer() -> PeerId {
        Identity::from_secret([3; 32]).peer_id()
    }

    fn kinds(lines: &[JsonLine]) -> Vec<&'static str> {
        lines
            .iter()
            .map(|l| match l {
                JsonLine::DmSent { .. } => "sent",
                JsonLine::Queued { .. } => "queued",
                JsonLine::Delivered { .. } => "delivered",
                JsonLine::GroupDelivered { .. } => "group",
                _ => "other",
            })
            .collect()
    }

    #[test]
    fn a_dm_line_comes_before_what_happened_to_it_and_retries_show_once() {
        let (id, to) = (MessageId::from_bytes([1; 32]), peer());
        let queued = JsonLine::Queued {
            id,
            to,
            retry_at: 0,
            reason: backchannel::DmFailure::NoRoute,
        };
        let mut s = Shown::default();
        assert!(s.admit(queued.clone(), false).is_empty(), "held");
        let sent = JsonLine::DmSent {
            to,
            id,
            text: "hi".into(),
        };
        assert_eq!(kinds(&s.admit(sent, false)), ["sent", "queued"]);
        assert!(s.admit(queued.clone(), false).is_empty(), "a retry repeats it");
        assert_eq!(kinds(&s.admit(queued, true)), ["queued"], "verbose shows it");
        assert_eq!(kinds(&s.admit(JsonLine::Delivered { id, to }, false)), ["delivered"]);
    }

    #[test]
    fn group_messages_show_one_line_per_receipt_not_two() {
        let (id, to) = (MessageId::from_bytes([2; 32]), peer());
        let group = backchannel::GroupId::from_bytes([3; 32]);
        let mut s = Shown::default();
        assert!(s.admit(JsonLine::Delivered { id, to }, false).is_empty());
        let progress = JsonLine::GroupDelivered {
            group,
            id,
            delivered: 1,
            of: 2,
        };
        assert_eq!(kinds(&s.admit(progress, false)), ["group"]);
        assert!(s.admit(JsonLine::Delivered { id, to }, false).is_empty());
    }

    #[test]
    fn held_lines_are_bounded() {
        let mut s = Shown::default();
        let to = peer();
        let mut shown = 0;
        for i in 0..=HELD_MAX {
            let id = MessageId::from_bytes([i as u8; 32]);
            shown += s.admit(JsonLine::Delivered { id, to }, false).len();
        }
        assert_eq!((shown, s.held.len()), (0, HELD_MAX), "the oldest is dropped");
        let id = MessageId::from_bytes([200; 32]);
        assert_eq!(
            s.admit(JsonLine::Delivered { id, to }, true).len(),
            1,
            "verbose prints it late"
        );
    }
}
