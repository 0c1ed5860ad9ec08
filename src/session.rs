//! `backchannel run` and `backchannel history`: what a person sees in the
//! terminal, or one JSON object per line with `--json`.

use std::collections::HashMap;

use std::path::Path;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use anyhow::{Context, bail};
use backchannel::command::{self, Command, HELP};
use backchannel::{
    Body, Delivery, Direction, Event, GroupEdit, HistoryQuery, Identity, IdentityError, LoggedMessage, Node, PeerId,
    Room, Store,
};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::cli::{Cli, HistoryArgs, RunArgs};

/// Lines typed ahead of the node; the reader thread waits when it is full.
const STDIN_CAPACITY: usize = 64;

/// Messages shown by `/history`.
const HISTORY_LIMIT: usize = 50;

/// Where output goes: readable lines, or JSON lines for scripts.
#[derive(Clone)]
struct Out {
    json: bool,
    names: Arc<Mutex<Names>>,
}

/// Nicknames seen on messages, to show authors and to resolve `/dm NICK`.
#[derive(Default)]
struct Names {
    by_peer: HashMap<PeerId, String>,
    by_nick: HashMap<String, PeerId>,
    /// Local petnames of contacts: they win over the names people give themselves.
    petnames: HashMap<PeerId, String>,
}

impl Out {
    fn new(json: bool) -> Self {
        Self {
            json,
            names: Arc::default(),
        }
    }

    fn emit(&self, human: impl FnOnce() -> String, value: impl FnOnce() -> Value) {
        if self.json {
            outln!("{}", value());
        } else {
            outln!("{}", human());
        }
    }

    fn error(&self, message: &str) {
        if self.json {
            outln!("{}", json!({"type": "error", "message": message}));
        } else {
            outln!("error: {message}");
        }
    }

    fn learn(&self, peer: PeerId, nick: Option<&str>) {
        if let Some(nick) = nick {
            let mut names = self.names.lock().expect("names lock");
            names.by_peer.insert(peer, nick.to_owned());
            names.by_nick.insert(nick.to_owned(), peer);
        }
    }

    /// "nick (…abc123)" or "…abc123".
    fn who(&self, peer: &PeerId) -> String {
        let short = short(peer);
        let names = self.names.lock().expect("names lock");
        match names
            .petnames
            .get(peer)
            .filter(|n| !n.is_empty())
            .or(names.by_peer.get(peer))
        {
            Some(nick) => format!("{nick} ({short})"),
            None => short,
        }
    }

    /// A peer id, a petname, or a nickname seen on a message.
    fn resolve(&self, name: &str) -> Option<PeerId> {
        if let Ok(peer) = name.parse() {
            return Some(peer);
        }
        let names = self.names.lock().expect("names lock");
        names
            .petnames
            .iter()
            .find(|(_, n)| n.as_str() == name)
            .map(|(p, _)| *p)
            .or_else(|| names.by_nick.get(name).copied())
    }

    fn set_petnames(&self, contacts: Vec<(PeerId, String)>) {
        self.names.lock().expect("names lock").petnames = contacts.into_iter().collect();
    }

    fn event(&self, event: &Event) {
        match event {
            Event::Listening { addr } => self.emit(
                || format!("listening on {addr}"),
                || json!({"type": "listening", "addr": addr.to_string()}),
            ),
            Event::PeerConnected { peer } => self.emit(
                || format!("* connected to {}", self.who(peer)),
                || json!({"type": "peer_connected", "peer": peer.to_string()}),
            ),
            Event::PeerDisconnected { peer } => self.emit(
                || format!("* disconnected from {}", self.who(peer)),
                || json!({"type": "peer_disconnected", "peer": peer.to_string()}),
            ),
            Event::RoomPeerJoined { room, peer } => self.emit(
                || format!("[{room}] * {} is here", self.who(peer)),
                || json!({"type": "room_peer_joined", "room": room.as_str(), "peer": peer.to_string()}),
            ),
            Event::RoomPeerLeft { room, peer } => self.emit(
                || format!("[{room}] * {} left", self.who(peer)),
                || json!({"type": "room_peer_left", "room": room.as_str(), "peer": peer.to_string()}),
            ),
            Event::PostSent { room, id } => self.emit(
                || format!("[{room}] * queued post {} sent", id.short()),
                || json!({"type": "post_sent", "room": room.as_str(), "id": id.to_string()}),
            ),
            Event::Hallway { id, from, post } => {
                self.learn(*from, post.nick.as_deref());
                self.emit(
                    || {
                        format!(
                            "[{}] {} {}: {}",
                            post.room,
                            clock(post.time_ms),
                            self.who(from),
                            post.text
                        )
                    },
                    || {
                        json!({"type": "hallway", "room": post.room.as_str(), "from": from.to_string(),
                        "nick": post.nick, "id": id.to_string(), "text": post.text, "time": post.time_ms})
                    },
                )
            }
            Event::Dm { id, from, dm, request } => {
                self.learn(*from, dm.nick.as_deref());
                self.emit(
                    || {
                        let inbox = if *request { "request" } else { "dm" };
                        let hint = if *request {
                            "  (/accept, /decline or /block them)"
                        } else {
                            ""
                        };
                        format!(
                            "[{inbox}] {} {} → you: {}{hint}",
                            clock(dm.time_ms),
                            self.who(from),
                            dm.text
                        )
                    },
                    || {
                        json!({"type": "dm", "from": from.to_string(), "to": dm.recipient.to_string(),
                        "nick": dm.nick, "id": id.to_string(), "text": dm.text, "time": dm.time_ms,
                        "request": request})
                    },
                )
            }
            Event::DmQueued {
                id,
                to,
                retry_at_ms,
                reason,
            } => self.emit(
                || {
                    let wait = retry_at_ms.saturating_sub(now_ms()) / 1000;
                    format!(
                        "[dm] … {} to {} queued ({reason}); retrying in {wait}s or when they appear",
                        id.short(),
                        self.who(to)
                    )
                },
                || {
                    json!({"type": "queued", "id": id.to_string(), "to": to.to_string(),
                    "retry_at": retry_at_ms, "reason": reason})
                },
            ),
            // Only scripts see every attempt; people see queued/delivered.
            Event::DmSent { id, to, attempt } if self.json => {
                outln!(
                    "{}",
                    json!({"type": "sent", "id": id.to_string(), "to": to.to_string(), "attempt": attempt})
                );
            }
            Event::GroupChanged {
                group,
                name,
                moderator,
                members,
            } => self.emit(
                || {
                    let names: Vec<String> = members.iter().map(|m| self.who(m)).collect();
                    format!(
                        "[group {name}] members: {} (moderator {})",
                        names.join(", "),
                        self.who(moderator)
                    )
                },
                || {
                    let members: Vec<String> = members.iter().map(ToString::to_string).collect();
                    json!({"type": "group", "group": group.to_string(), "name": name,
                    "moderator": moderator.to_string(), "members": members})
                },
            ),
            Event::GroupWarning { group, name, blocked } => self.emit(
                || {
                    let names: Vec<String> = blocked.iter().map(|m| self.who(m)).collect();
                    format!(
                        "[group {name}] warning: you were added to a group with people you blocked: {}",
                        names.join(", ")
                    )
                },
                || {
                    let blocked: Vec<String> = blocked.iter().map(ToString::to_string).collect();
                    json!({"type": "group_warning", "group": group.to_string(), "name": name, "blocked": blocked})
                },
            ),
            Event::GroupMessage {
                group,
                id,
                from,
                message,
            } => {
                self.learn(*from, message.nick.as_deref());
                self.emit(
                    || {
                        format!(
                            "[g {}] {} {}: {}",
                            group.short(),
                            clock(message.time_ms),
                            self.who(from),
                            message.text
                        )
                    },
                    || {
                        json!({"type": "group_message", "group": group.to_string(), "from": from.to_string(),
                        "nick": message.nick, "id": id.to_string(), "text": message.text, "time": message.time_ms,
                        "lamport": message.lamport})
                    },
                )
            }
            Event::GroupDelivered {
                group,
                id,
                delivered,
                of,
            } => self.emit(
                || {
                    format!(
                        "[g {}] ✓ {} delivered to {delivered} of {of}",
                        group.short(),
                        id.short()
                    )
                },
                || {
                    json!({"type": "group_delivered", "group": group.to_string(), "id": id.to_string(),
                    "delivered": delivered, "of": of})
                },
            ),
            Event::ContactChanged { peer, petname } => {
                if !petname.is_empty() {
                    self.names
                        .lock()
                        .expect("names lock")
                        .petnames
                        .insert(*peer, petname.clone());
                }
                self.emit(
                    || format!("{} is a contact", self.who(peer)),
                    || json!({"type": "contact", "peer": peer.to_string(), "petname": petname}),
                )
            }
            Event::RequestDeclined { peer, deleted } => self.emit(
                || format!("declined {}: {deleted} message(s) deleted", self.who(peer)),
                || json!({"type": "declined", "peer": peer.to_string(), "deleted": deleted}),
            ),
            Event::RequestsSetting { accept } => self.emit(
                || {
                    if *accept {
                        "message requests from non-contacts are accepted".into()
                    } else {
                        "message requests from non-contacts are refused (senders are told)".into()
                    }
                },
                || json!({"type": "requests_setting", "accept": accept}),
            ),
            Event::BlockChanged { peer, blocked } => self.emit(
                || format!("{} {}", if *blocked { "blocked" } else { "unblocked" }, self.who(peer)),
                || json!({"type": if *blocked { "blocked" } else { "unblocked" }, "peer": peer.to_string()}),
            ),
            Event::Delivered { id, to } => self.emit(
                || format!("[dm] ✓ {} delivered to {}", id.short(), self.who(to)),
                || json!({"type": "delivered", "id": id.to_string(), "to": to.to_string()}),
            ),
            Event::DmFailed { id, to, reason } => self.emit(
                || format!("[dm] ✗ {} to {} failed: {reason}", id.short(), self.who(to)),
                || json!({"type": "dm_failed", "id": id.to_string(), "to": to.to_string(), "reason": reason}),
            ),
            // Rejections are counted (/stats); only scripts see each one.
            Event::Rejected { from, reason } if self.json => {
                outln!(
                    "{}",
                    json!({"type": "rejected", "from": from.to_string(), "reason": reason.as_str()})
                );
            }
            _ => {}
        }
    }

    fn logged(&self, m: &LoggedMessage) {
        let id = m.message.id();
        let from = m.message.author();
        let direction = match m.direction {
            Direction::Sent => "sent",
            Direction::Received => "received",
        };
        match m.message.body() {
            Body::Hallway(post) => self.emit(
                || {
                    format!(
                        "[{}] {} {}: {}",
                        post.room,
                        clock(post.time_ms),
                        self.who(&from),
                        post.text
                    )
                },
                || {
                    json!({"type": "history", "kind": "hallway", "room": post.room.as_str(),
                    "from": from.to_string(), "nick": post.nick, "id": id.to_string(), "text": post.text,
                    "time": post.time_ms, "direction": direction})
                },
            ),
            Body::Group(g) => self.emit(
                || {
                    format!(
                        "[g {}] {} {}: {}",
                        g.group.short(),
                        clock(g.time_ms),
                        self.who(&from),
                        g.text
                    )
                },
                || {
                    json!({"type": "history", "kind": "group", "group": g.group.to_string(), "from": from.to_string(),
                    "nick": g.nick, "id": id.to_string(), "text": g.text, "time": g.time_ms, "lamport": g.lamport,
                    "direction": direction})
                },
            ),
            Body::Direct(dm) => {
                let state = match &m.delivery {
                    Delivery::Queued => " (queued)".to_string(),
                    Delivery::Sent => " (sent)".to_string(),
                    Delivery::Delivered => " ✓".to_string(),
                    Delivery::Failed(why) => format!(" ✗ {why}"),
                    _ => String::new(),
                };
                self.emit(
                    || {
                        format!(
                            "[dm] {} {} → {}: {}{state}",
                            clock(dm.time_ms),
                            self.who(&from),
                            self.who(&dm.recipient),
                            dm.text
                        )
                    },
                    || {
                        json!({"type": "history", "kind": "dm", "from": from.to_string(),
                        "to": dm.recipient.to_string(), "nick": dm.nick, "id": id.to_string(), "text": dm.text,
                        "time": dm.time_ms, "direction": direction, "delivery": m.delivery})
                    },
                )
            }
            _ => {}
        }
    }
}

/// The last 6 characters of a peer id: enough to tell people apart.
fn short(peer: &PeerId) -> String {
    let s = peer.to_string();
    format!("…{}", &s[s.len().saturating_sub(6)..])
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// HH:MM:SS (UTC) of a time in ms since the Unix epoch.
fn clock(ms: u64) -> String {
    let s = ms / 1000;
    format!("{:02}:{:02}:{:02}", (s / 3600) % 24, (s / 60) % 60, s % 60)
}

/// `backchannel init`
pub fn init(cli: &Cli) -> anyhow::Result<ExitCode> {
    let dir = cli.data_dir()?;
    let (identity, created) = Identity::init(&dir)?;
    if created {
        outln!("created a new identity in {}", dir.display());
    } else {
        outln!("kept the existing identity in {}", dir.display());
    }
    outln!("{}", identity.peer_id());
    Ok(ExitCode::SUCCESS)
}

/// `backchannel id`
pub fn id(cli: &Cli) -> anyhow::Result<ExitCode> {
    outln!("{}", Identity::load(&cli.data_dir()?)?.peer_id());
    Ok(ExitCode::SUCCESS)
}

/// Loads the identity for `run`. A data directory that has never been used
/// gets a new identity (announced); one that has a log but no key is an
/// error, because a new key would not be the author of that log.
fn identity_for_run(dir: &Path, out: &Out) -> anyhow::Result<Identity> {
    match Identity::load(dir) {
        Ok(identity) => Ok(identity),
        Err(IdentityError::Missing(path)) if !dir.join("log").exists() => {
            let (identity, _) = Identity::init(dir)?;
            out.emit(
                || format!("created a new identity in {}", path.display()),
                || json!({"type": "identity_created", "path": path.display().to_string()}),
            );
            Ok(identity)
        }
        Err(e) => Err(e.into()),
    }
}

/// `backchannel run`
pub async fn run(cli: &Cli, args: &RunArgs) -> anyhow::Result<ExitCode> {
    let out = Out::new(args.json);
    let dir = cli.data_dir()?;
    let identity = identity_for_run(&dir, &out)?;
    let config = args.config(dir)?;
    let mut current = config.rooms.first().cloned();
    let joined = config.rooms.clone();
    let Node { handle, mut events } = Node::start(config, identity).await.context("starting the node")?;
    let me = handle.peer_id();
    out.set_petnames(handle.contacts().await?);
    out.emit(
        || format!("you are {me}\ntype /help for commands"),
        || json!({"type": "identity", "peer": me.to_string()}),
    );
    for room in &joined {
        out.emit(
            || format!("joined {room}"),
            || json!({"type": "joined", "room": room.as_str()}),
        );
    }

    let printer = {
        let out = out.clone();
        tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                out.event(&event);
            }
        })
    };

    // A plain thread reads stdin: a blocking read must not hold up shutdown.
    let (lines_tx, mut lines) = mpsc::channel::<String>(STDIN_CAPACITY);
    std::thread::spawn(move || {
        for line in std::io::stdin().lines() {
            let Ok(line) = line else { break };
            if lines_tx.blocking_send(line).is_err() {
                break;
            }
        }
    });

    let mut sigterm = terminate_signal()?;
    let mut stdin_open = true;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = sigterm.recv() => break,
            line = lines.recv(), if stdin_open => match line {
                // End of input: keep running in the background until a signal.
                None => stdin_open = false,
                Some(line) => match command::parse(&line) {
                    Ok(None) => {}
                    Ok(Some(Command::Quit)) => break,
                    Ok(Some(cmd)) => {
                        if let Err(e) = execute(&handle, &out, &mut current, cmd).await {
                            out.error(&format!("{e:#}"));
                        }
                    }
                    Err(e) => out.error(&e.to_string()),
                },
            },
        }
    }
    handle.shutdown().await;
    printer.abort();
    out.emit(|| "stopped; the log is flushed".into(), || json!({"type": "stopped"}));
    Ok(ExitCode::SUCCESS)
}

#[cfg(unix)]
fn terminate_signal() -> anyhow::Result<tokio::signal::unix::Signal> {
    use tokio::signal::unix::{SignalKind, signal};
    signal(SignalKind::terminate()).context("installing the SIGTERM handler")
}

async fn execute(
    handle: &backchannel::Handle,
    out: &Out,
    current: &mut Option<Room>,
    cmd: Command,
) -> anyhow::Result<()> {
    match cmd {
        Command::Say(text) => {
            let Some(room) = current.clone() else {
                bail!("you are in no room: /join ROOM first")
            };
            let id = handle.post(&room, &text).await?;
            if out.json {
                outln!(
                    "{}",
                    json!({"type": "posted", "room": room.as_str(), "id": id.to_string()})
                );
            }
        }
        Command::Join(room) => {
            handle.join(&room).await?;
            out.emit(
                || format!("joined {room}"),
                || json!({"type": "joined", "room": room.as_str()}),
            );
            *current = Some(room);
        }
        Command::Leave(room) => {
            let Some(room) = room.or_else(|| current.clone()) else {
                bail!("you are in no room")
            };
            let unsent = handle.leave(&room).await?;
            out.emit(
                || match unsent {
                    0 => format!("left {room}"),
                    n => format!("left {room}; {n} posts that never reached a peer stay in your log"),
                },
                || json!({"type": "left", "room": room.as_str(), "unsent": unsent}),
            );
            if current.as_ref() == Some(&room) {
                *current = handle
                    .rooms()
                    .await?
                    .first()
                    .and_then(|r| Room::new(r.room.as_str()).ok());
            }
        }
        Command::Switch(room) => {
            if !handle.rooms().await?.iter().any(|r| r.room == room.as_str()) {
                bail!("not in room {room}: /join it first");
            }
            out.emit(
                || format!("now in {room}"),
                || json!({"type": "current_room", "room": room.as_str()}),
            );
            *current = Some(room);
        }
        Command::Rooms => {
            let rooms = handle.rooms().await?;
            out.emit(
                || {
                    if rooms.is_empty() {
                        return "no rooms joined".into();
                    }
                    let mark = |r: &str| {
                        if current.as_ref().map(Room::as_str) == Some(r) {
                            "*"
                        } else {
                            " "
                        }
                    };
                    rooms
                        .iter()
                        .map(|r| format!("{} {} ({} peers, {} unsent)", mark(&r.room), r.room, r.peers, r.unsent))
                        .collect::<Vec<_>>()
                        .join("\n")
                },
                || json!({"type": "rooms", "rooms": rooms, "current": current.as_ref().map(Room::as_str)}),
            );
        }
        Command::Dm { peer, text } => {
            let Some(to) = out.resolve(&peer) else {
                bail!("unknown peer {peer:?}: use a peer id or a nickname seen in a room")
            };
            let id = handle.send_dm(to, &text).await?;
            out.emit(
                || format!("[dm] → {}: {text} (sending {})", out.who(&to), id.short()),
                || json!({"type": "dm_sent", "to": to.to_string(), "id": id.to_string(), "text": text}),
            );
        }
        Command::Peers => {
            let peers = handle.peers().await?;
            out.emit(
                || {
                    if peers.is_empty() {
                        return "no peers connected".into();
                    }
                    peers
                        .iter()
                        .map(|p| format!("{} {}", out.who(&p.peer), p.rooms.join(",")))
                        .collect::<Vec<_>>()
                        .join("\n")
                },
                || json!({"type": "peers", "peers": peers}),
            );
        }
        Command::Addrs => {
            let addrs: Vec<String> = handle.listen_addrs().await?.iter().map(ToString::to_string).collect();
            out.emit(|| addrs.join("\n"), || json!({"type": "addresses", "addrs": addrs}));
        }
        Command::Requests(None) => {
            let requests = handle.requests().await?;
            out.emit(
                || {
                    if requests.is_empty() {
                        return "no requests".into();
                    }
                    requests
                        .iter()
                        .map(|r| format!("{}: {} message(s), last: {}", out.who(&r.peer), r.messages, r.last))
                        .collect::<Vec<_>>()
                        .join("\n")
                },
                || json!({"type": "requests", "requests": requests}),
            );
        }
        Command::Requests(Some(on)) => {
            handle.accept_requests(on).await?;
        }
        Command::Accept(peer, nick) => {
            let Some(who) = out.resolve(&peer) else {
                bail!("unknown peer {peer:?}")
            };
            // The node's ContactChanged event says it.
            handle.set_contact(who, nick.as_deref().unwrap_or("")).await?;
            out.set_petnames(handle.contacts().await?);
        }
        Command::Nick(peer, name) => {
            let Some(who) = out.resolve(&peer) else {
                bail!("unknown peer {peer:?}")
            };
            handle.set_contact(who, &name).await?;
            out.set_petnames(handle.contacts().await?);
        }
        Command::Decline(peer) => {
            let Some(who) = out.resolve(&peer) else {
                bail!("unknown peer {peer:?}")
            };
            handle.decline(who).await?;
        }
        Command::Contacts => {
            let contacts = handle.contacts().await?;
            out.set_petnames(contacts.clone());
            out.emit(
                || {
                    if contacts.is_empty() {
                        return "no contacts yet: /accept a request, or /dm someone".into();
                    }
                    contacts.iter().map(|(p, _)| out.who(p)).collect::<Vec<_>>().join("\n")
                },
                || {
                    let list: Vec<Value> = contacts
                        .iter()
                        .map(|(p, n)| json!({"peer": p.to_string(), "nick": n}))
                        .collect();
                    json!({"type": "contacts", "contacts": list})
                },
            );
        }
        Command::GroupNew(name, peers) => {
            let members = peers
                .iter()
                .map(|p| out.resolve(p).with_context(|| format!("unknown peer {p:?}")))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let group = handle.group_create(&name, members).await?;
            out.emit(
                || format!("created group {name} ({}); /g {name} TEXT to write", group.short()),
                || json!({"type": "group_created", "group": group.to_string(), "name": name}),
            );
        }
        Command::GroupMember { group, peer, add } => {
            let group = find_group(handle, &group).await?;
            let Some(who) = out.resolve(&peer) else {
                bail!("unknown peer {peer:?}")
            };
            let edit = if add {
                GroupEdit::Add(who)
            } else {
                GroupEdit::Remove(who)
            };
            handle.group_edit(group, edit).await?;
        }
        Command::GroupRename(group, new) => {
            let group = find_group(handle, &group).await?;
            handle.group_edit(group, GroupEdit::Rename(new)).await?;
        }
        Command::GroupLeave(group) => {
            let group = find_group(handle, &group).await?;
            handle.group_edit(group, GroupEdit::Leave).await?;
        }
        Command::Groups => {
            let groups = handle.groups().await?;
            out.emit(
                || {
                    if groups.is_empty() {
                        return "no groups".into();
                    }
                    groups
                        .iter()
                        .map(|g| {
                            let members: Vec<String> = g.members.iter().map(|m| out.who(m)).collect();
                            format!("{} ({}): {}", g.name, g.id.short(), members.join(", "))
                        })
                        .collect::<Vec<_>>()
                        .join("\n")
                },
                || json!({"type": "groups", "groups": groups}),
            );
        }
        Command::GroupSay(group, text) => {
            let group = find_group(handle, &group).await?;
            let id = handle.group_send(group, &text).await?;
            if out.json {
                outln!(
                    "{}",
                    json!({"type": "group_sent", "group": group.to_string(), "id": id.to_string()})
                );
            }
        }
        Command::Outbox => {
            let entries = handle.outbox().await?;
            let rows: Vec<serde_json::Value> = entries
                .iter()
                .map(|e| {
                    json!({"id": e.id.to_string(), "to": e.to.to_string(), "attempts": e.attempts,
                    "next_attempt": e.next_ms, "expires": e.expires_ms, "in_flight": e.in_flight})
                })
                .collect();
            out.emit(
                || {
                    if entries.is_empty() {
                        return "outbox empty: every DM has its receipt".into();
                    }
                    entries
                        .iter()
                        .map(|e| {
                            let state = if e.in_flight {
                                "sending".to_string()
                            } else {
                                format!("retry at {}", clock(e.next_ms))
                            };
                            format!(
                                "{} to {}: {} attempts, {state}",
                                e.id.short(),
                                out.who(&e.to),
                                e.attempts
                            )
                        })
                        .collect::<Vec<_>>()
                        .join("\n")
                },
                || json!({"type": "outbox", "outbox": rows}),
            );
        }
        Command::Dial(addr) => {
            let addr: backchannel::Multiaddr = addr.parse().with_context(|| format!("{addr:?} is not a multiaddr"))?;
            handle.dial(addr.clone()).await?;
            out.emit(
                || format!("dialling {addr}"),
                || json!({"type": "dialling", "addr": addr.to_string()}),
            );
        }
        Command::Block(ref peer) | Command::Unblock(ref peer) => {
            let block = matches!(cmd, Command::Block(_));
            let Some(who) = out.resolve(peer) else {
                bail!("unknown peer {peer:?}")
            };
            if block {
                handle.block_peer(who).await?;
            } else {
                handle.unblock_peer(who).await?;
            }
        }
        Command::History(target) => {
            let query = match target {
                None => HistoryQuery::Room(current.clone().context("you are in no room: /history ROOM|PEER")?),
                Some(t) => match out.resolve(&t) {
                    Some(peer) => HistoryQuery::Peer(peer),
                    None => match find_group(handle, &t).await {
                        Ok(group) => HistoryQuery::Group(group),
                        Err(_) => HistoryQuery::Room(Room::new(t)?),
                    },
                },
            };
            for m in handle.history(query, HISTORY_LIMIT).await? {
                out.logged(&m);
            }
        }
        Command::Stats => {
            let stats = handle.stats().await?;
            out.emit(
                || serde_json::to_string_pretty(&stats).unwrap_or_default(),
                || json!({"type": "stats", "stats": stats}),
            );
        }
        Command::Help => out.emit(|| HELP.into(), || json!({"type": "help", "text": HELP})),
        Command::Quit => {}
    }
    Ok(())
}

/// A group by name (or id, or id prefix) among the node's groups.
async fn find_group(handle: &backchannel::Handle, name: &str) -> anyhow::Result<backchannel::GroupId> {
    let groups = handle.groups().await?;
    let found: Vec<_> = groups
        .iter()
        .filter(|g| g.name == name || g.id.to_string().starts_with(name))
        .collect();
    match found.as_slice() {
        [one] => Ok(one.id),
        [] => bail!("no group {name:?}: /groups lists them"),
        _ => bail!("{name:?} names {} groups: use the id shown by /groups", found.len()),
    }
}

/// `backchannel history`
pub fn history(cli: &Cli, args: &HistoryArgs) -> anyhow::Result<ExitCode> {
    let out = Out::new(args.json);
    let dir = cli.data_dir()?;
    let path = dir.join("log");
    if !path.exists() {
        bail!("no log in {}: this node has never run", dir.display());
    }
    let store = Store::open(&path).with_context(|| {
        format!(
            "opening the log in {} (is a node using this data directory running?)",
            dir.display()
        )
    })?;
    if let Some(room) = &args.room {
        let room = Room::new(room.as_str())?;
        for m in store.room(&room, args.limit)? {
            out.logged(&m);
        }
    } else if let Some(peer) = &args.peer {
        let peer: PeerId = peer
            .parse()
            .with_context(|| format!("--peer {peer:?} is not a peer id"))?;
        for m in store.conversation(&peer, args.limit)? {
            out.logged(&m);
        }
    } else {
        for room in store.rooms()? {
            for m in store.room(&room, args.limit)? {
                out.logged(&m);
            }
        }
        for peer in store.conversations()? {
            for m in store.conversation(&peer, args.limit)? {
                out.logged(&m);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
