//! Lines for people. What each line says here is what the terminal has
//! always shown; README.md and the tests compare it.

use backchannel::json_line::{History, Op};
use backchannel::node::RoomPost;
use backchannel::{Delivery, JsonLine, PeerId};

use super::super::names::Names;

/// The text that shows `line`, or None for a line meant only for scripts
/// (every attempt to send a DM, each rejected input, the ids of one's own
/// posts).
pub fn line(line: &JsonLine, names: &Names) -> Option<String> {
    let who = |peer: &PeerId| names.who(peer);
    Some(match line {
        JsonLine::Listening { addr } => format!("listening on {addr}"),
        JsonLine::PeerConnected { peer } => format!("* connected to {}", who(peer)),
        JsonLine::PeerDisconnected { peer } => format!("* disconnected from {}", who(peer)),
        JsonLine::RoomPeerJoined { room, peer } => format!("[{room}] * {} is here", who(peer)),
        JsonLine::RoomPeerLeft { room, peer } => format!("[{room}] * {} left", who(peer)),
        JsonLine::PostSent { room, id } => format!("[{room}] * queued post {} sent", id.short()),
        JsonLine::Hallway {
            room,
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
                "[{room}] {} [{}] {}{reply}{kind}: {text}{ping}",
                clock(*time),
                id.short(),
                who(from),
            )
        }
        JsonLine::RoomOp { room, from, op, .. } => format!("[{room}] * {} {}", who(from), describe(op, names)),
        JsonLine::Presence {
            room, peer, present, ..
        } => {
            let verb = if *present { "is in the room" } else { "is gone" };
            format!("[{room}] · {} {verb}", who(peer))
        }
        JsonLine::Synced {
            room,
            peer,
            received,
            sent,
        } => format!(
            "[{room}] * history sync with {}: {received} new, {sent} sent",
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
            let text = match reaction {
                Some(r) if r.retract => format!("(takes back {} on [{}])", r.emoji, r.target.short()),
                Some(r) => format!("(reacts {} to [{}])", r.emoji, r.target.short()),
                None => text.clone(),
            };
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
        } => format!("[g {}] {} {}: {text}", group.short(), clock(*time), who(from)),
        JsonLine::GroupDelivered {
            group,
            id,
            delivered,
            of,
        } => format!(
            "[g {}] ✓ {} delivered to {delivered} of {of}",
            group.short(),
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
            format!("{} {}", who(&p.peer), p.rooms.join(","))
        }),
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
            room, post: Some(p), ..
        }) => format!("[{room}] {}", post_line(p, names)),
        JsonLine::History(History::Hallway {
            room,
            from,
            text,
            time,
            post: None,
            ..
        }) => format!("[{room}] {} {}: {text}", clock(*time), who(from)),
        JsonLine::History(History::Group {
            group,
            from,
            text,
            time,
            ..
        }) => format!("[g {}] {} {}: {text}", group.short(), clock(*time), who(from)),
        JsonLine::History(History::Dm {
            from,
            to,
            text,
            time,
            delivery,
            ..
        }) => {
            let state = match delivery {
                Delivery::Queued => " (queued)".to_string(),
                Delivery::Sent => " (sent)".to_string(),
                Delivery::Delivered => " ✓".to_string(),
                Delivery::Failed(why) => format!(" ✗ {why}"),
                Delivery::None => String::new(),
            };
            format!("[dm] {} {} → {}: {text}{state}", clock(*time), who(from), who(to))
        }
        JsonLine::Stats { stats } => serde_json::to_string_pretty(stats).unwrap_or_default(),
        JsonLine::Help { text } => text.clone(),
        JsonLine::Hosting { room, addrs, .. } => {
            let dial = addrs
                .first()
                .map(|a| format!("\n  they can reach you with --peer {a}"))
                .unwrap_or_default();
            format!("hosting {room}\n  others join with: /join {room}{dial}")
        }
        JsonLine::RoomDone { room, id, what } => format!("[{room}] {what} ({})", id.short()),
        JsonLine::Who { participants, .. } => participants
            .iter()
            .map(|p| {
                let me = if p.me { " (you)" } else { "" };
                format!("{:<10} {}{me}", format!("{:?}", p.role).to_lowercase(), who(&p.peer))
            })
            .collect::<Vec<_>>()
            .join("\n"),
        JsonLine::Rules { rules, .. } => serde_json::to_string_pretty(rules).unwrap_or_default(),
        JsonLine::Questions { questions, .. } => list(questions, "no questions", |q| post_line(q, names)),
        JsonLine::SyncStarted { room, peers } => format!("[{room}] syncing history with {peers} peers"),
        JsonLine::Identity { peer } => format!("you are {peer}\ntype /help for commands"),
        JsonLine::IdentityCreated { path } => format!("created a new identity in {path}"),
        JsonLine::Error { message } => format!("error: {message}"),
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

/// A room operation in words.
fn describe(op: &Op, names: &Names) -> String {
    match op {
        Op::SetRole { peer, role } => format!("made {} {role:?}", names.who(peer)).to_lowercase(),
        Op::Delete { target } => format!("deleted [{}]", target.short()),
        Op::Edit { target, text } => format!("edited [{}]: {text}", target.short()),
        Op::Remove { peer, restore: false } => format!("removed {}", names.who(peer)),
        Op::Remove { peer, restore: true } => format!("let {} back in", names.who(peer)),
        Op::Chat { mode } => format!("set the hallway {mode:?}").to_lowercase(),
        Op::Question { target, state } => format!("marked question [{}] {state:?}", target.short()).to_lowercase(),
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
    let question = match p.question {
        Some(state) => format!(" ❓{state:?}").to_lowercase(),
        None => String::new(),
    };
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

/// HH:MM:SS (UTC) of a time in ms since the Unix epoch.
fn clock(ms: u64) -> String {
    let s = ms / 1000;
    format!("{:02}:{:02}:{:02}", (s / 3600) % 24, (s / 60) % 60, s % 60)
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
