//! `backchannel run`: a node in this terminal. One task prints the node's
//! events; this one reads `/commands` from stdin and runs them until `/quit`,
//! Ctrl-C or SIGTERM.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use backchannel::api::{Api, ApiConfig};
use backchannel::command::{self, Command};
use backchannel::{Handle, Identity, IdentityError, JsonLine, Node};
use tokio::sync::mpsc;

use super::args::{Cli, RunArgs, ServeArgs};
use super::commands::{self, Session};
use super::render::Out;

/// Lines typed ahead of the node; the reader thread waits when it is full.
const STDIN_CAPACITY: usize = 64;

/// `backchannel run`
pub async fn run(cli: &Cli, args: &RunArgs) -> anyhow::Result<ExitCode> {
    let mut out = Out::new(args.json);
    let dir = cli.data_dir()?;
    let identity = identity_for_run(&dir, &out)?;
    out.me = Some(identity.peer_id());
    let config = args.config(dir)?;
    let current = config.rooms.first().cloned();
    let joined = config.rooms.clone();
    let nick = config.nick.clone();
    let api_dir = config.data_dir.clone();
    let Node { handle, mut events } = Node::start(config, identity).await.context("starting the node")?;
    let api = match args.ui {
        true => match start_api(&handle, api_dir, nick, args.ui_port).await {
            Ok(api) => Some(api),
            Err(e) => {
                // The node is running: stop it cleanly before saying why.
                handle.shutdown().await;
                return Err(e);
            }
        },
        false => None,
    };
    out.set_petnames(handle.contacts().await?);
    out.emit(&JsonLine::Identity { peer: handle.peer_id() });
    for room in joined {
        out.emit(&JsonLine::Joined { room });
    }
    if let Some(api) = &api {
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
    let out = Out::new(args.json);
    let dir = cli.data_dir()?;
    let identity = identity_for_run(&dir, &out)?;
    let config = args.config(dir)?;
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

/// Starts the local API and web app on the node's runtime.
async fn start_api(handle: &Handle, dir: PathBuf, nick: Option<String>, port: Option<u16>) -> anyhow::Result<Api> {
    let mut config = ApiConfig::new(dir);
    config.nick = nick;
    config.port = port.unwrap_or(0);
    Api::start(handle.clone(), config).await.context("starting the web app")
}

/// Loads the identity for `run`. A data directory that has never been used
/// gets a new identity (announced); one that has a log but no key is an
/// error, because a new key would not be the author of that log.
fn identity_for_run(dir: &Path, out: &Out) -> anyhow::Result<Identity> {
    match Identity::load(dir) {
        Ok(identity) => Ok(identity),
        Err(IdentityError::Missing(path)) if !dir.join("log").exists() => {
            let (identity, _) = Identity::init(dir)?;
            out.emit(&JsonLine::IdentityCreated {
                path: path.display().to_string(),
            });
            Ok(identity)
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(unix)]
fn terminate_signal() -> anyhow::Result<tokio::signal::unix::Signal> {
    use tokio::signal::unix::{SignalKind, signal};
    signal(SignalKind::terminate()).context("installing the SIGTERM handler")
}
