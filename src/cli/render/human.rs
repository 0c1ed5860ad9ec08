//! Lines for people. README.md shows some of them; a test compares the
//! README's samples with what the binary prints.

use backchannel::RoomPost;
use backchannel::json_line::{History, Op};
use backchannel::{ChatMode, QuestionState, Reaction, Role};
use backchannel::{Delivery, JsonLine, PeerId, Room};

use super::super::names::Names;

/// The text that shows `line`, or None for a line meant only for scripts
/// (every attempt to send a DM, each rejected input, the ids of one's own
/// posts).
pub fn line(line: &JsonLine, names: &Names) -> Option<String> {
    let who = |peer: &PeerId| names.who(peer);
    let room = |room: &Room| names.room(room);
    Some(match line {
        JsonLine::Listening { addr } => format!("listening on {addr}"),
        JsonLine::PeerConnected { peer } => format!("* connected to {}", who(peer)),
        JsonLine::PeerDisconnected { peer } => format!("* disconnected from {}", who(peer)),
        // The subscriptions under presence (shown with --verbose).
        JsonLine::RoomPeerJoined { room: r, peer } => format!("[{}] · {} subscribed", room(r), who(peer)),
        JsonLine::RoomPeerLeft { room: r, peer } => format!("[{}] · {} unsubscribed", room(r), who(peer)),
        JsonLine::PostSent { room: r, id } => format!("[{}] * waiting post [{}] sent", room(r), id.short()),
        JsonLine::PostsWaiting { room: r, waiting: 0 } => format!("[{}] all your posts are sent", room(r)),
        JsonLine::PostsWaiting { room: r, waiting } => format!(
            "[{}] sending {waiting} more… (others take 5 posts a second from one person)",
            room(r)
        ),
        JsonLine::Hallway {
            room: r,
            from,
            id,
            text,
            time,
            reply_to,
            mentions_me,
            question,
            ..
        } => {
            let reply = reply_to.map(|r| format!(" ↪[{}]", r.short())).unwrap_or_default();
            let kind = if *question { " ❓" } else { "" };
            let ping = if *mentions_me { "  ← mentions you" } else { "" };
            format!(
                "[{}] {} [{}] {}{reply}{kind}: {text}{ping}",
                room(r),
                clock(*time),
                id.short(),
                who(from),
            )
        }
        JsonLine::RoomOp { room: r, from, op, .. } => {
            format!("[{}] * {} {}", room(r), who(from), describe(op, names))
        }
        JsonLine::Presence {
            room: r, peer, present, ..
        } => {
            let verb = if *present { "is here" } else { "left" };
            format!("[{}] * {} {verb}", room(r), who(peer))
        }
        JsonLine::Synced {
            room: r,
            peer,
            received,
            sent,
        } => format!(
            "[{}] * history sync with {}: {received} new, {sent} sent",
            room(r),
            who(peer)
        ),
        JsonLine::DialFailed { peer, addr, reason } => match (peer, addr) {
            (Some(peer), Some(addr)) => format!("* cannot reach {} at {addr}: {reason}", who(peer)),
            (Some(peer), None) => format!("* cannot reach {}: {reason}", who(peer)),
            (None, Some(addr)) => format!("* cannot reach {addr}: {reason}"),
            (None, None) => format!("* a connection failed: {reason}"),
        },
        JsonLine::Dm {
            from,
            id,
            text,
            time,
            request,
            reaction,
            ..
        } => {
            let inbox = if *request { "request" } else { "dm" };
            let hint = if *request {
                "  (/accept, /decline or /block them)"
            } else {
                ""
            };
            let text = reaction.as_ref().map_or_else(|| text.clone(), reacts);
            format!(
                "[{inbox}] {} [{}] {} → you: {text}{hint}",
                clock(*time),
                id.short(),
                who(from)
            )
        }
        JsonLine::Queued {
            id,
            to,
            retry_at,
            reason,
        } => {
            let wait = retry_at.saturating_sub(now_ms()) / 1000;
            format!(
                "[dm] … {} to {} queued ({reason}); retrying in {wait}s or when they appear",
                id.short(),
                who(to)
            )
        }
        JsonLine::Group {
            name,
            moderator,
            members,
            ..
        } => {
            let members: Vec<String> = members.iter().map(who).collect();
            format!(
                "[group {name}] members: {} (moderator {})",
                members.join(", "),
                who(moderator)
            )
        }
        JsonLine::GroupWarning { name, blocked, .. } => {
            let blocked: Vec<String> = blocked.iter().map(who).collect();
            format!(
                "[group {name}] warning: you were added to a group with people you blocked: {}",
                blocked.join(", ")
            )
        }
        JsonLine::GroupMessage {
            group,
            from,
            text,
            time,
            ..
        } => format!("[g {}] {} {}: {text}", names.group_name(group), clock(*time), who(from)),
        JsonLine::GroupDelivered {
            group,
            id,
            delivered,
            of,
        } => format!(
            "[g {}] ✓ {} delivered to {delivered} of {of}",
            names.group_name(group),
            id.short()
        ),
        JsonLine::Contact { peer, .. } => format!("{} is a contact", who(peer)),
        JsonLine::Declined { peer, deleted } => format!("declined {}: {deleted} message(s) deleted", who(peer)),
        JsonLine::RequestsSetting { accept: true } => "message requests from non-contacts are accepted".into(),
        JsonLine::RequestsSetting { accept: false } => {
            "message requests from non-contacts are refused (senders are told)".into()
        }
        JsonLine::Blocked { peer } => format!("blocked {}", who(peer)),
        JsonLine::Unblocked { peer } => format!("unblocked {}", who(peer)),
        JsonLine::Delivered { id, to } => format!("[dm] ✓ {} delivered to {}", id.short(), who(to)),
        JsonLine::DmFailed { id, to, reason } => format!("[dm] ✗ {} to {} failed: {reason}", id.short(), who(to)),
        JsonLine::Joined { room } => format!("joined {room}"),
        JsonLine::Left { room, unsent: 0 } => format!("left {room}"),
        JsonLine::Left { room, unsent } => {
            format!("left {room}; {unsent} posts that never reached a peer stay in your log")
        }
        JsonLine::CurrentRoom { room } => format!("now in {room}"),
        JsonLine::Rooms { rooms, current } => list(rooms, "no rooms joined", |r| {
            let mark = if current.as_ref().map(|c| c.as_str()) == Some(r.room.as_str()) {
                "*"
            } else {
                " "
            };
            format!("{mark} {} ({} peers, {} unsent)", r.room, r.peers, r.unsent)
        }),
        JsonLine::DmSent { to, id, text } => format!("[dm] → {}: {text} (sending {})", who(to), id.short()),
        JsonLine::DmReactionSent { target, id } => {
            format!("[dm] reacted to [{}] (sending {})", target.short(), id.short())
        }
        JsonLine::Peers { peers } => list(peers, "no peers connected", |p| {
            let paths: Vec<String> = p
                .connections
                .iter()
                .map(|c| {
                    let how = if c.relayed { "relayed" } else { "direct" };
                    format!("{how} {} {}", c.transport, c.addr)
                })
                .collect();
            let rooms = if p.rooms.is_empty() {
                String::new()
            } else {
                format!(" in {}", p.rooms.join(","))
            };
            format!("{}{rooms}: {}", who(&p.peer), paths.join("; "))
        }),
        JsonLine::Net { net } => {
            let mut lines = vec![format!("reachability: {}", serde_plain(&net.reachability))];
            let list_of = |v: &[backchannel::Multiaddr]| {
                if v.is_empty() {
                    "none".to_owned()
                } else {
                    v.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
                }
            };
            lines.push(format!("external addresses: {}", list_of(&net.external)));
            lines.push(format!("listening on: {}", list_of(&net.listening)));
            if net.relays.is_empty() {
                lines.push("relays: none".into());
            }
            for r in &net.relays {
                let state = if r.accepted { "reserved" } else { "reserving" };
                lines.push(format!("relay: {state} {}", r.addr));
            }
            let mode = if net.dht_server { "server" } else { "client" };
            lines.push(format!("DHT: {mode}, {} server(s) known", net.dht_peers));
            if net.bootstrap.is_empty() {
                lines.push("bootstrap: none (use --bootstrap MULTIADDR of a `backchannel serve` helper)".into());
            }
            for b in &net.bootstrap {
                let state = if b.connected { "connected" } else { "not connected" };
                lines.push(format!("bootstrap: {state} {}", b.addr));
            }
            lines.push(format!("remembered peers: {}", net.remembered));
            lines.join("\n")
        }
        JsonLine::Addresses { addrs } => addrs.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"),
        JsonLine::Requests { requests } => list(requests, "no requests", |r| {
            format!("{}: {} message(s), last: {}", who(&r.peer), r.messages, r.last)
        }),
        JsonLine::Contacts { contacts } => list(contacts, "no contacts yet: /accept a request, or /dm someone", |c| {
            who(&c.peer)
        }),
        JsonLine::GroupCreated { group, name } => {
            format!("created group {name} ({}); /g {name} TEXT to write", group.short())
        }
        JsonLine::Groups { groups } => list(groups, "no groups", |g| {
            let members: Vec<String> = g.members.iter().map(who).collect();
            format!("{} ({}): {}", g.name, g.id.short(), members.join(", "))
        }),
        JsonLine::Outbox { outbox } => list(outbox, "outbox empty: every DM has its receipt", |e| {
            let state = if e.in_flight {
                "sending".to_string()
            } else {
                format!("retry at {}", clock(e.next_attempt))
            };
            format!("{} to {}: {} attempts, {state}", e.id.short(), who(&e.to), e.attempts)
        }),
        JsonLine::Dialling { addr } => format!("dialling {addr}"),
        JsonLine::History(History::Hallway {
            room: r, post: Some(p), ..
        }) => format!("[{}] {}", room(r), post_line(p, names)),
        JsonLine::History(History::Hallway {
            room: r,
            from,
            id,
            text,
            time,
            post: None,
            ..
        }) => format!("[{}] {} [{}] {}: {text}", room(r), clock(*time), id.short(), who(from)),
        JsonLine::History(History::Group {
            group,
            from,
            text,
            time,
            ..
        }) => format!("[g {}] {} {}: {text}", names.group_name(group), clock(*time), who(from)),
        JsonLine::History(History::Dm {
            from,
            to,
            text,
            time,
            delivery,
            reaction,
            ..
        }) => {
            let text = reaction.as_ref().map_or_else(|| text.clone(), reacts);
            let state = match delivery {
                Delivery::Queued => " (queued)".to_string(),
                Delivery::Sent => " (sent)".to_string(),
                Delivery::Delivered => " ✓".to_string(),
                Delivery::Failed(why) => format!(" ✗ {why}"),
                Delivery::None => String::new(),
            };
            format!("[dm] {} {} → {}: {text}{state}", clock(*time), who(from), who(to))
        }
        JsonLine::Stats { stats: st } => {
            let rejected = |counts: Vec<(String, u64)>| {
                if counts.is_empty() {
                    "none".to_string()
                } else {
                    counts
                        .iter()
                        .map(|(k, v)| format!("{k} {v}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            };
            let peer = |k: &str| k.parse().map_or_else(|_| k.to_owned(), |p: PeerId| who(&p));
            let by_reason = st.rejected.iter().map(|(k, v)| (k.to_string(), *v)).collect();
            let by_peer = st.rejected_by_peer.iter().map(|(k, v)| (peer(k), *v)).collect();
            [
                format!(
                    "posts: {} sent, {} received; room operations received: {}",
                    st.posts_sent, st.hallway_received, st.room_ops_received
                ),
                format!(
                    "DMs: {} sent, {} delivered, {} failed, {} received; requests refused: {}",
                    st.dms_sent, st.dms_delivered, st.dms_failed, st.dms_received, st.requests_refused
                ),
                format!(
                    "history syncs: {} started, {} completed; messages {} received, {} sent; bytes {} in, {} out",
                    st.syncs_started,
                    st.syncs_completed,
                    st.synced_received,
                    st.synced_sent,
                    st.sync_bytes_in,
                    st.sync_bytes_out
                ),
                format!(
                    "duplicates: {}; dropped from blocked peers: {}; events dropped: {}",
                    st.duplicates, st.dropped_blocked, st.events_dropped
                ),
                format!("rejected: {}", rejected(by_reason)),
                format!("rejected by peer: {}", rejected(by_peer)),
            ]
            .join("\n")
        }
        JsonLine::Help { text } => text.clone(),
        JsonLine::Hosting { room, addrs, .. } => {
            let dial = addrs
                .first()
                .map(|a| format!("\n  they can reach you with --peer {a}"))
                .unwrap_or_default();
            format!("hosting {room}\n  others join with: /join {room}{dial}")
        }
        JsonLine::RoomDone { room: r, id, what } => format!("[{}] {what} ({})", room(r), id.short()),
        JsonLine::Who { participants, .. } => participants
            .iter()
            .map(|p| format!("{:<10} {}", role_word(p.role), who(&p.peer)))
            .collect::<Vec<_>>()
            .join("\n"),
        JsonLine::Rules { room: r, rules } => {
            let host = rules.host.as_ref().map_or_else(|| "none (an open room)".into(), who);
            let mut text = format!("{r}\n  host: {host}\n  hallway: {}", mode_word(rules.mode));
            for (peer, role) in &rules.roles {
                let peer = peer.parse().map_or_else(|_| peer.clone(), |p| who(&p));
                text += &format!("\n  {}: {peer}", role_word(*role));
            }
            for peer in &rules.removed {
                text += &format!("\n  removed: {}", who(peer));
            }
            text
        }
        JsonLine::Questions { questions, .. } => list(questions, "no questions", |q| post_line(q, names)),
        JsonLine::SyncStarted { room: r, peers } => format!("[{}] syncing history with {peers} peers", room(r)),
        JsonLine::Identity { peer } => format!("you are {peer}\ntype /help for commands"),
        JsonLine::IdentityCreated { path } => format!("created a new identity in {path}"),
        JsonLine::Error { message } => format!("error: {message}"),
        JsonLine::WebApp { url } => format!("web app: {url}"),
        JsonLine::Stopped => "stopped; the log is flushed".into(),
        // Scripts see every attempt, each rejection (people see the counts
        // in /stats) and the ids of their own posts.
        JsonLine::Sent { .. } | JsonLine::Rejected { .. } | JsonLine::Posted { .. } | JsonLine::GroupSent { .. } => {
            return None;
        }
        _ => return None,
    })
}

/// One line per item, or `empty` when there are none.
fn list<T>(items: &[T], empty: &str, line: impl FnMut(&T) -> String) -> String {
    if items.is_empty() {
        return empty.into();
    }
    items.iter().map(line).collect::<Vec<_>>().join("\n")
}

/// A role as a word ("moderator").
pub fn role_word(role: Role) -> &'static str {
    match role {
        Role::Listener => "listener",
        Role::Speaker => "speaker",
        Role::Moderator => "moderator",
        Role::Host => "host",
    }
}

/// A hallway mode as words.
pub fn mode_word(mode: ChatMode) -> &'static str {
    match mode {
        ChatMode::On => "on",
        ChatMode::Off => "off",
        ChatMode::ReadOnly => "read-only",
    }
}

/// A question state as a word.
pub fn state_word(state: QuestionState) -> &'static str {
    match state {
        QuestionState::Open => "open",
        QuestionState::Answered => "answered",
        QuestionState::Dismissed => "dismissed",
    }
}

/// A DM reaction in words.
fn reacts(r: &Reaction) -> String {
    if r.retract {
        format!("(takes back {} on [{}])", r.emoji, r.target.short())
    } else {
        format!("(reacts {} to [{}])", r.emoji, r.target.short())
    }
}

/// A room operation in words. Only the role, mode and state words are
/// lowercase: names and peer ids keep their case.
fn describe(op: &Op, names: &Names) -> String {
    match op {
        Op::SetRole { peer, role } => format!("made {} {}", names.who(peer), role_word(*role)),
        Op::Delete { target } => format!("deleted [{}]", target.short()),
        Op::Edit { target, text } => format!("edited [{}]: {text}", target.short()),
        Op::Remove { peer, restore: false } => format!("removed {}", names.who(peer)),
        Op::Remove { peer, restore: true } => format!("let {} back in", names.who(peer)),
        Op::Chat { mode } => format!("set the hallway {}", mode_word(*mode)),
        Op::Question { target, state } => format!("marked question [{}] {}", target.short(), state_word(*state)),
        Op::React {
            target,
            emoji,
            retract: true,
        } => format!("took back {emoji} on [{}]", target.short()),
        Op::React { target, emoji, .. } => format!("reacted {emoji} to [{}]", target.short()),
    }
}

/// One post of a room view as a line.
fn post_line(p: &RoomPost, names: &Names) -> String {
    let reply = p.reply_to.map(|r| format!(" ↪[{}]", r.short())).unwrap_or_default();
    let question = p.question.map(|q| format!(" ❓{}", state_word(q))).unwrap_or_default();
    let edited = if p.edited { " (edited)" } else { "" };
    let reactions: String = p.reactions.iter().map(|(e, n)| format!(" {e}{n}")).collect();
    format!(
        "{} [{}] {}{reply}{question}: {}{edited}{reactions}",
        clock(p.time_ms),
        p.id.short(),
        names.who(&p.author),
        p.text
    )
}

/// HH:MM:SS, local time (`TZ`, else the system's zone), of a time in ms
/// since the Unix epoch.
fn clock(ms: u64) -> String {
    use chrono::TimeZone as _;
    match chrono::Local.timestamp_millis_opt(ms.min(i64::MAX as u64) as i64) {
        chrono::LocalResult::Single(t) | chrono::LocalResult::Ambiguous(t, _) => t.format("%H:%M:%S").to_string(),
        chrono::LocalResult::None => "--:--:--".into(),
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A unit enum's serde name (`public`, `private`, ...).
fn serde_plain<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}
