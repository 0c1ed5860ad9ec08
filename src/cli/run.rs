//! `backchannel run`: a node in this terminal. One task prints the node's
//! events; this one reads `/commands` from stdin and runs them until `/quit`,
//! Ctrl-C or SIGTERM.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use anyhow::{Context, bail};
use backchannel::api::{Api, ApiConfig};
use backchannel::command::{self, Command};
use backchannel::data_dir;
use backchannel::multiaddr::Protocol;
use backchannel::seal::{DataKey, KdfParams, Passphrase};
use backchannel::{Handle, HistoryQuery, Identity, IdentityError, JsonLine, Multiaddr, Node, PeerId, Room};
use tokio::sync::mpsc;

use super::args::{Cli, RunArgs, ServeArgs};
use super::commands::{self, Session};
use super::editor;
use super::render::Out;

/// Lines typed ahead of the node; the reader thread waits when it is full.
const STDIN_CAPACITY: usize = 64;

/// `backchannel run`
pub async fn run(cli: &Cli, args: &RunArgs) -> anyhow::Result<ExitCode> {
    let mut out = Out::new(args.json, args.verbose);
    let dir = cli.data_dir()?;
    let mut config = args.config(dir.clone())?;
    ensure_ports_free(&config.listen)?;
    let (identity, key) = identity_for_run(&dir, &out)?;
    config.data_key = key;
    out.set_me(identity.peer_id(), args.name.as_deref());
    let first = config.rooms.first().cloned();
    let nick = config.nick.clone();
    let api_dir = config.data_dir.clone();
    let Node { handle, mut events } = Node::start(config, identity).await.context("starting the node")?;
    // The local API runs with every node, so that `backchannel history` can
    // ask it while it holds the log; --ui only prints the web app's URL.
    let api = match start_api(&handle, api_dir, nick, args.ui_port).await {
        Ok(api) => Some(api),
        Err(e) if args.ui || args.ui_port.is_some() => {
            // The node is running: stop it cleanly before saying why.
            handle.shutdown().await;
            return Err(e);
        }
        Err(e) => {
            out.error(&format!(
                "{e:#}: `backchannel history` cannot read this node's log while it runs"
            ));
            None
        }
    };
    learn_names(&handle, &out).await?;
    out.emit(&JsonLine::Identity { peer: handle.peer_id() });
    // The rooms of --room, and those remembered from the last run.
    let joined: Vec<Room> = handle
        .rooms()
        .await?
        .iter()
        .filter_map(|r| Room::new(r.room.as_str()).ok())
        .collect();
    let current = first.or_else(|| joined.first().cloned());
    for room in joined {
        out.emit(&JsonLine::Joined { room });
    }
    if let Some(api) = api.as_ref().filter(|_| args.ui) {
        out.emit(&JsonLine::WebApp { url: api.login_url()? });
    }
    let api = api.map(std::sync::Arc::new);

    let printer = {
        let out = out.clone();
        let api = api.clone();
        tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                if let Some(api) = &api {
                    api.publish_event(&event);
                }
                out.event(&event);
            }
        })
    };

    // A plain thread reads stdin (or runs the line editor in a terminal): a
    // blocking read must not hold up shutdown.
    let (lines_tx, mut lines) = mpsc::channel::<String>(STDIN_CAPACITY);
    let prompt = Arc::new(Mutex::new(prompt_for(&out, current.as_ref())));
    // The editor reads the next line once the last one was handled, so that
    // its prompt shows the room a /join or /room just made current.
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<()>();
    let _terminal = if editor::wanted(args.json) {
        let terminal = editor::TerminalGuard::save();
        let (names, known) = out.for_editor();
        out.set_sink(editor::start(names, known, prompt.clone(), lines_tx, ready_rx)?);
        Some(terminal)
    } else {
        std::thread::spawn(move || {
            for line in std::io::stdin().lines() {
                let Ok(line) = line else { break };
                if lines_tx.blocking_send(line).is_err() {
                    break;
                }
            }
        });
        None
    };

    let mut session = Session { handle, out, current };
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
                        if let Err(e) = commands::execute(&mut session, cmd).await {
                            session.out.error(&format!("{e:#}"));
                        }
                    }
                    Err(e) => session.out.error(&e.to_string()),
                },
            },
        }
        *prompt.lock().expect("prompt lock") = prompt_for(&session.out, session.current.as_ref());
        let _ = ready_tx.send(());
    }
    if let Some(api) = &api {
        api.shutdown().await;
    }
    session.handle.shutdown().await;
    printer.abort();
    session.out.emit(&JsonLine::Stopped);
    Ok(ExitCode::SUCCESS)
}

/// `backchannel serve`: a helper for others, until Ctrl-C or SIGTERM. It
/// prints its addresses (give one to participants as `--bootstrap`) and
/// what happens to it; it reads no commands.
pub async fn serve(cli: &Cli, args: &ServeArgs) -> anyhow::Result<ExitCode> {
    let out = Out::new(args.json, false);
    let dir = cli.data_dir()?;
    let mut config = args.config(dir.clone())?;
    ensure_ports_free(&config.listen)?;
    let (identity, key) = identity_for_run(&dir, &out)?;
    config.data_key = key;
    let Node { handle, mut events } = Node::start(config, identity).await.context("starting the helper")?;
    out.emit(&JsonLine::Identity { peer: handle.peer_id() });
    let printer = {
        let out = out.clone();
        tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                out.event(&event);
            }
        })
    };
    let mut sigterm = terminate_signal()?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = sigterm.recv() => {}
    }
    handle.shutdown().await;
    printer.abort();
    out.emit(&JsonLine::Stopped);
    Ok(ExitCode::SUCCESS)
}

/// Starts the local API and web app on the node's runtime (the web app's
/// URL is printed only with --ui).
async fn start_api(handle: &Handle, dir: PathBuf, nick: Option<String>, port: Option<u16>) -> anyhow::Result<Api> {
    let mut config = ApiConfig::new(dir);
    config.nick = nick;
    config.port = port.unwrap_or(0);
    Api::start(handle.clone(), config).await.context("starting the web app")
}

/// The editor's prompt: the current room, where plain text goes.
fn prompt_for(out: &Out, current: Option<&Room>) -> String {
    match current {
        Some(room) => format!("[{}] ", out.names().room(room)),
        None => "> ".into(),
    }
}

/// What the log knows of names, so that people keep theirs across a
/// restart: contacts' petnames, the nicknames on the latest messages of each
/// conversation and joined room, group names. DMs still in the outbox are
/// from an earlier run: their lines show as they come.
async fn learn_names(handle: &Handle, out: &Out) -> anyhow::Result<()> {
    /// Messages read per conversation or room: the latest name is enough.
    const RECENT: usize = 200;
    let contacts = handle.contacts().await?;
    let mut peers: Vec<PeerId> = contacts.iter().map(|(p, _)| *p).collect();
    peers.extend(handle.requests().await?.into_iter().map(|r| r.peer));
    for peer in peers {
        for m in handle.history(HistoryQuery::Peer(peer), RECENT).await? {
            out.names().learn_logged(&m);
        }
    }
    for info in handle.rooms().await? {
        let Ok(room) = Room::new(info.room.as_str()) else {
            continue;
        };
        for post in handle.room_view(&room, RECENT).await? {
            out.names().nick(post.author, post.nick.as_deref());
        }
    }
    out.set_petnames(contacts);
    out.set_groups(&handle.groups().await?);
    out.announce(handle.outbox().await?.iter().map(|e| e.id));
    Ok(())
}

/// Loads the identity for `run` and `serve`, unlocking an encrypted data
/// directory first (its data key is the second value). A data directory
/// that has never been used gets a new identity (announced), encrypted if
/// BACKCHANNEL_PASSPHRASE is set (a node never prompts for a new
/// passphrase: `init` does); one that has a log but no key is an error,
/// because a new key would not be the author of that log.
fn identity_for_run(dir: &Path, out: &Out) -> anyhow::Result<(Identity, Option<DataKey>)> {
    let key = super::unlock::unlock(dir)?;
    if key.is_some() {
        return Ok((super::unlock::identity(dir, key.as_ref())?, key));
    }
    match Identity::load(dir) {
        Ok(identity) => Ok((identity, None)),
        Err(IdentityError::Missing(path)) if !dir.join("log").exists() => {
            let identity = Identity::generate();
            let (path, key) = match Passphrase::from_env() {
                Some(passphrase) => {
                    let key = data_dir::create(dir, &identity, &passphrase?, KdfParams::default())?;
                    (dir.join(data_dir::SEALED_DIR).join(Identity::KEY_FILE), Some(key))
                }
                None => {
                    identity.save(dir)?;
                    (path, None)
                }
            };
            out.emit(&JsonLine::IdentityCreated {
                path: path.display().to_string(),
            });
            Ok((identity, key))
        }
        Err(IdentityError::Missing(path)) => bail!(
            "{} has a log but no identity key ({}): the key that wrote that log is gone. \
             Put its identity.key back (from a backup), or use another --data-dir; \
             a new key would not be the author of this log",
            dir.display(),
            path.display()
        ),
        Err(e) => Err(e.into()),
    }
}

/// Fails if a `--listen` address names a TCP port another socket already
/// listens on. libp2p marks its listening sockets SO_REUSEPORT, so a second
/// node on a taken port would start without error and take part of the
/// first node's incoming connections. A plain bind (without SO_REUSEPORT)
/// fails on a taken port, so it tells; it is closed again at once. Port 0
/// (any free port) needs no check.
fn ensure_ports_free(listen: &[Multiaddr]) -> anyhow::Result<()> {
    for addr in listen {
        let mut ip = None;
        let mut port = None;
        for p in addr.iter() {
            match p {
                Protocol::Ip4(a) => ip = Some(std::net::IpAddr::V4(a)),
                Protocol::Ip6(a) => ip = Some(std::net::IpAddr::V6(a)),
                Protocol::Tcp(p) if p != 0 => port = Some(p),
                _ => {}
            }
        }
        let (Some(ip), Some(port)) = (ip, port) else { continue };
        if let Err(e) = std::net::TcpListener::bind((ip, port))
            && e.kind() == std::io::ErrorKind::AddrInUse
        {
            bail!(
                "--listen {addr}: port {port} is already in use (another node?); \
                 choose another port, or /tcp/0 for any free one"
            );
        }
    }
    Ok(())
}

#[cfg(unix)]
fn terminate_signal() -> anyhow::Result<tokio::signal::unix::Signal> {
    use tokio::signal::unix::{SignalKind, signal};
    signal(SignalKind::terminate()).context("installing the SIGTERM handler")
}
