//! `backchannel run` and `backchannel history`: what a person sees in the
//! terminal, or one JSON object per line with `--json`.

use std::collections::HashMap;

use std::path::Path;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use anyhow::{Context, bail};
use backchannel::command::{self, Command, HELP};
use backchannel::node::{PostOptions, RoomPost};
use backchannel::room::{Reaction, RoomAction};
use backchannel::{
    Body, Delivery, Direction, Event, GroupEdit, HistoryQuery, Identity, IdentityError, LoggedMessage, MessageId, Node,
    PeerId, Room, Store,
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
    /// This node (to highlight mentions of it).
    me: Option<PeerId>,
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
            me: None,
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
                let mentioned = self.me.is_some_and(|me| post.mentions.contains(&me));
                self.emit(
                    || {
                        let reply = post.reply_to.map(|r| format!(" ↪[{}]", r.short())).unwrap_or_default();
                        let kind = if post.question { " ❓" } else { "" };
                        let ping = if mentioned { "  ← mentions you" } else { "" };
                        format!(
                            "[{}] {} [{}] {}{reply}{kind}: {}{ping}",
                            post.room,
                            clock(post.time_ms),
                            id.short(),
                            self.who(from),
                            post.text
                        )
                    },
                    || {
                        json!({"type": "hallway", "room": post.room.as_str(), "from": from.to_string(),
                        "nick": post.nick, "id": id.to_string(), "text": post.text, "time": post.time_ms,
                        "clock": post.clock, "reply_to": post.reply_to.map(|r| r.to_string()),
                        "mentions": post.mentions.iter().map(ToString::to_string).collect::<Vec<_>>(),
                        "mentions_me": mentioned, "question": post.question})
                    },
                )
            }
            Event::RoomOp { room, id, from, action } => self.emit(
                || format!("[{room}] * {} {}", self.who(from), describe(action, |p| self.who(p))),
                || {
                    json!({"type": "room_op", "room": room.as_str(), "id": id.to_string(), "from": from.to_string(),
                    "op": action_json(action)})
                },
            ),
            Event::Presence {
                room,
                peer,
                nick,
                present,
            } => {
                self.learn(*peer, nick.as_deref());
                self.emit(
                    || {
                        let verb = if *present { "is in the room" } else { "is gone" };
                        format!("[{room}] · {} {verb}", self.who(peer))
                    },
                    || {
                        json!({"type": "presence", "room": room.as_str(), "peer": peer.to_string(), "nick": nick,
                        "present": present})
                    },
                )
            }
            Event::Synced {
                room,
                peer,
                received,
                sent,
            } => self.emit(
                || {
                    format!(
                        "[{room}] * history sync with {}: {received} new, {sent} sent",
                        self.who(peer)
                    )
                },
                || {
                    json!({"type": "synced", "room": room.as_str(), "peer": peer.to_string(), "received": received,
                    "sent": sent})
                },
            ),
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
                        let text = match &dm.reaction {
                            Some(r) if r.retract => format!("(takes back {} on [{}])", r.emoji, r.target.short()),
                            Some(r) => format!("(reacts {} to [{}])", r.emoji, r.target.short()),
                            None => dm.text.clone(),
                        };
                        format!(
                            "[{inbox}] {} [{}] {} → you: {text}{hint}",
                            clock(dm.time_ms),
                            id.short(),
                            self.who(from),
                        )
                    },
                    || {
                        json!({"type": "dm", "from": from.to_string(), "to": dm.recipient.to_string(),
                        "nick": dm.nick, "id": id.to_string(), "text": dm.text, "time": dm.time_ms,
                        "request": request, "reaction": dm.reaction.as_ref().map(|r| json!({
                            "target": r.target.to_string(), "emoji": r.emoji, "retract": r.retract}))})
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

/// A room operation in words.
fn describe(action: &RoomAction, who: impl Fn(&PeerId) -> String) -> String {
    match action {
        RoomAction::SetRole { peer, role } => format!("made {} {role:?}", who(peer)).to_lowercase(),
        RoomAction::Delete(id) => format!("deleted [{}]", id.short()),
        RoomAction::Edit { target, text } => format!("edited [{}]: {text}", target.short()),
        RoomAction::Remove { peer, restore: false } => format!("removed {}", who(peer)),
        RoomAction::Remove { peer, restore: true } => format!("let {} back in", who(peer)),
        RoomAction::Chat(mode) => format!("set the hallway {mode:?}").to_lowercase(),
        RoomAction::Question { target, state } => {
            format!("marked question [{}] {state:?}", target.short()).to_lowercase()
        }
        RoomAction::React(r) if r.retract => format!("took back {} on [{}]", r.emoji, r.target.short()),
        RoomAction::React(r) => format!("reacted {} to [{}]", r.emoji, r.target.short()),
    }
}

fn action_json(action: &RoomAction) -> Value {
    match action {
        RoomAction::SetRole { peer, role } => json!({"kind": "set_role", "peer": peer.to_string(), "role": role}),
        RoomAction::Delete(id) => json!({"kind": "delete", "target": id.to_string()}),
        RoomAction::Edit { target, text } => json!({"kind": "edit", "target": target.to_string(), "text": text}),
        RoomAction::Remove { peer, restore } => {
            json!({"kind": "remove", "peer": peer.to_string(), "restore": restore})
        }
        RoomAction::Chat(mode) => json!({"kind": "chat", "mode": mode}),
        RoomAction::Question { target, state } => {
            json!({"kind": "question", "target": target.to_string(), "state": state})
        }
        RoomAction::React(r) => {
            json!({"kind": "react", "target": r.target.to_string(), "emoji": r.emoji, "retract": r.retract})
        }
    }
}

/// One post of a room view as a line.
fn post_line(out: &Out, p: &RoomPost) -> String {
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
        out.who(&p.author),
        p.text
    )
}

/// A post of `room` by its id or the first hex digits of it.
async fn find_post(handle: &backchannel::Handle, room: &Room, prefix: &str) -> anyhow::Result<MessageId> {
    let prefix = prefix
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    if prefix.is_empty() || !prefix.chars().all(|c| c.is_ascii_hexdigit()) {
        bail!("{prefix:?} is not a message id");
    }
    let view = handle.room_view(room, usize::MAX).await?;
    let found: Vec<MessageId> = view
        .iter()
        .map(|p| p.id)
        .filter(|id| id.to_string().starts_with(&prefix))
        .collect();
    match found.as_slice() {
        [one] => Ok(*one),
        [] => bail!("no post [{prefix}] in {room}"),
        _ => bail!("[{prefix}] names {} posts: give more digits", found.len()),
    }
}

/// A DM by id or id prefix, among the recent conversations with contacts
/// and requests.
async fn find_dm(handle: &backchannel::Handle, prefix: &str) -> anyhow::Result<MessageId> {
    let prefix = prefix
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    let mut peers: Vec<PeerId> = handle.contacts().await?.into_iter().map(|(p, _)| p).collect();
    peers.extend(handle.requests().await?.into_iter().map(|r| r.peer));
    let mut found = Vec::new();
    for peer in peers {
        for m in handle.history(HistoryQuery::Peer(peer), 200).await? {
            if matches!(m.message.body(), Body::Direct(_)) && m.message.id().to_string().starts_with(&prefix) {
                found.push(m.message.id());
            }
        }
    }
    found.sort();
    found.dedup();
    match found.as_slice() {
        [one] => Ok(*one),
        [] => bail!("no post or DM [{prefix}]"),
        _ => bail!("[{prefix}] names {} messages: give more digits", found.len()),
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
    let mut out = Out::new(args.json);
    let dir = cli.data_dir()?;
    let identity = identity_for_run(&dir, &out)?;
    out.me = Some(identity.peer_id());
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
            if let HistoryQuery::Room(room) = &query {
                // A room as it shows: edits, deletes, reactions, questions applied.
                for p in handle.room_view(room, HISTORY_LIMIT).await? {
                    out.emit(
                        || format!("[{room}] {}", post_line(out, &p)),
                        || {
                            json!({"type": "history", "kind": "hallway", "room": room.as_str(),
                            "from": p.author.to_string(), "nick": p.nick, "id": p.id.to_string(), "text": p.text,
                            "time": p.time_ms, "direction": if p.mine { "sent" } else { "received" },
                            "post": p})
                        },
                    );
                }
                return Ok(());
            }
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
        Command::Host(name) => {
            let room = handle.host(&name).await?;
            let addrs = handle.listen_addrs().await?;
            out.emit(
                || {
                    let dial = addrs
                        .first()
                        .map(|a| format!("\n  they can reach you with --peer {a}"))
                        .unwrap_or_default();
                    format!("hosting {room}\n  others join with: /join {room}{dial}")
                },
                || {
                    json!({"type": "hosting", "room": room.as_str(), "host": room.host().map(|h| h.to_string()),
                    "addrs": addrs.iter().map(ToString::to_string).collect::<Vec<_>>()})
                },
            );
            *current = Some(room);
        }
        Command::SetRole(peer, role) => {
            let room = in_room(current)?;
            let peer = resolve(out, &peer)?;
            let id = handle.room_op(&room, RoomAction::SetRole { peer, role }).await?;
            done(
                out,
                &room,
                id,
                &format!("{} is now {role:?}", out.who(&peer)).to_lowercase(),
            );
        }
        Command::Delete(target) => {
            let room = in_room(current)?;
            let target = find_post(handle, &room, &target).await?;
            let id = handle.room_op(&room, RoomAction::Delete(target)).await?;
            done(out, &room, id, &format!("deleted [{}]", target.short()));
        }
        Command::Edit(target, text) => {
            let room = in_room(current)?;
            let target = find_post(handle, &room, &target).await?;
            let id = handle.room_op(&room, RoomAction::Edit { target, text }).await?;
            done(out, &room, id, &format!("edited [{}]", target.short()));
        }
        Command::Remove(peer, restore) => {
            let room = in_room(current)?;
            let peer = resolve(out, &peer)?;
            let id = handle.room_op(&room, RoomAction::Remove { peer, restore }).await?;
            let what = if restore { "let back in" } else { "removed" };
            done(out, &room, id, &format!("{what} {}", out.who(&peer)));
        }
        Command::Chat(mode) => {
            let room = in_room(current)?;
            let id = handle.room_op(&room, RoomAction::Chat(mode)).await?;
            done(out, &room, id, &format!("hallway {mode:?}").to_lowercase());
        }
        Command::Who => {
            let room = in_room(current)?;
            let who = handle.who(&room).await?;
            out.emit(
                || {
                    who.iter()
                        .map(|p| {
                            let me = if p.me { " (you)" } else { "" };
                            format!(
                                "{:<10} {}{me}",
                                format!("{:?}", p.role).to_lowercase(),
                                out.who(&p.peer)
                            )
                        })
                        .collect::<Vec<_>>()
                        .join("\n")
                },
                || json!({"type": "who", "room": room.as_str(), "participants": who}),
            );
        }
        Command::Rules => {
            let room = in_room(current)?;
            let rules = handle.room_rules(&room).await?;
            out.emit(
                || serde_json::to_string_pretty(&rules).unwrap_or_default(),
                || json!({"type": "rules", "room": room.as_str(), "rules": rules}),
            );
        }
        Command::Reply(target, text) => {
            let room = in_room(current)?;
            let target = find_post(handle, &room, &target).await?;
            let options = PostOptions {
                reply_to: Some(target),
                ..PostOptions::default()
            };
            let id = handle.post_with(&room, &text, options).await?;
            done(out, &room, id, &format!("replied to [{}]", target.short()));
        }
        Command::Ask(text) => {
            let room = in_room(current)?;
            let options = PostOptions {
                question: true,
                ..PostOptions::default()
            };
            let id = handle.post_with(&room, &text, options).await?;
            done(out, &room, id, "asked the stage");
        }
        Command::React(target, emoji, add) => {
            let in_room_post = match current.clone() {
                Some(room) => find_post(handle, &room, &target).await.ok().map(|t| (room, t)),
                None => None,
            };
            match in_room_post {
                Some((room, target)) => {
                    let reaction = Reaction {
                        target,
                        emoji,
                        retract: !add,
                    };
                    let id = handle.room_op(&room, RoomAction::React(reaction)).await?;
                    done(out, &room, id, &format!("reacted to [{}]", target.short()));
                }
                None => {
                    let target = find_dm(handle, &target).await?;
                    let id = handle.react_dm(target, &emoji, !add).await?;
                    out.emit(
                        || format!("[dm] reacted to [{}] (sending {})", target.short(), id.short()),
                        || json!({"type": "dm_reaction_sent", "target": target.to_string(), "id": id.to_string()}),
                    );
                }
            }
        }
        Command::Questions => {
            let room = in_room(current)?;
            let questions = handle.questions(&room).await?;
            out.emit(
                || {
                    if questions.is_empty() {
                        return "no questions".into();
                    }
                    questions
                        .iter()
                        .map(|q| post_line(out, q))
                        .collect::<Vec<_>>()
                        .join("\n")
                },
                || json!({"type": "questions", "room": room.as_str(), "questions": questions}),
            );
        }
        Command::Mark(target, state) => {
            let room = in_room(current)?;
            let target = find_post(handle, &room, &target).await?;
            let id = handle.room_op(&room, RoomAction::Question { target, state }).await?;
            done(
                out,
                &room,
                id,
                &format!("question [{}] {state:?}", target.short()).to_lowercase(),
            );
        }
        Command::Sync => {
            let room = in_room(current)?;
            let started = handle.sync(&room).await?;
            out.emit(
                || format!("[{room}] syncing history with {started} peers"),
                || json!({"type": "sync_started", "room": room.as_str(), "peers": started}),
            );
        }
    }
    Ok(())
}

fn in_room(current: &Option<Room>) -> anyhow::Result<Room> {
    current.clone().context("you are in no room: /join ROOM first")
}

fn resolve(out: &Out, peer: &str) -> anyhow::Result<PeerId> {
    out.resolve(peer)
        .with_context(|| format!("unknown peer {peer:?}: use a peer id or a nickname seen in a room"))
}

/// Reports a room operation or post done.
fn done(out: &Out, room: &Room, id: MessageId, what: &str) {
    out.emit(
        || format!("[{room}] {what} ({})", id.short()),
        || json!({"type": "room_done", "room": room.as_str(), "id": id.to_string(), "what": what}),
    );
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
