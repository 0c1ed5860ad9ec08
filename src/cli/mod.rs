//! The binary's commands, split by concern:
//!
//! - `args`: the clap types, and the one place they become library types;
//! - `identity`: `init` and `id`;
//! - `unlock`: passphrases, unlocking an encrypted data directory,
//!   `encrypt` and `passphrase`;
//! - `run`: `backchannel run`, the loop that reads `/commands` and prints events;
//! - `editor`: the line editor `run` uses in a terminal (prompt, history, tab);
//! - `commands/`: one file per family of `/commands`; `commands::execute`
//!   only delegates;
//! - `render/`: how a [`backchannel::JsonLine`] is shown, as text for people
//!   (`human`) or as itself for scripts (`json`);
//! - `names`: the nicknames and petnames that turn peer ids into names and back;
//! - `history`: `backchannel history`, a node's log as `/history` shows it;
//! - `ask`: how `history` asks a running node (its local API);
//! - `mesh`: `backchannel mesh`.

mod args;
mod ask;
mod commands;
mod editor;
mod history;
mod identity;
mod mesh;
mod names;
mod render;
mod run;
mod unlock;

use std::process::ExitCode;

pub use args::{Cli, Cmd};

/// Runs the subcommand the command line names.
pub fn dispatch(cli: &Cli) -> anyhow::Result<ExitCode> {
    match &cli.command {
        Cmd::Init(args) => identity::init(cli, args),
        Cmd::Encrypt => unlock::encrypt(cli),
        Cmd::Passphrase => unlock::change(cli),
        Cmd::Id => identity::id(cli),
        Cmd::History(args) => history::run(cli, args),
        Cmd::Mesh(args) => {
            let runtime = tokio::runtime::Runtime::new()?;
            let code = runtime.block_on(mesh::run(args));
            runtime.shutdown_background();
            code
        }
        Cmd::Serve(args) => {
            let runtime = tokio::runtime::Runtime::new()?;
            let code = runtime.block_on(run::serve(cli, args));
            runtime.shutdown_background();
            code
        }
        Cmd::Run(args) => {
            let runtime = tokio::runtime::Runtime::new()?;
            let code = runtime.block_on(run::run(cli, args));
            // Do not wait for blocking tasks (a final flush already ran).
            runtime.shutdown_background();
            code
        }
    }
}
