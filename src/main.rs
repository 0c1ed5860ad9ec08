//! The `backchannel` command: a thin layer over the library's API.

/// Prints a line on stdout. A closed stdout (a reader that went away) is not
/// a reason to panic: the node keeps running and its log keeps the messages.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

mod cli;
mod mesh;
mod session;

use std::process::ExitCode;

use clap::Parser;
use cli::{Cli, Cmd};

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("BACKCHANNEL_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match run(&cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: &Cli) -> anyhow::Result<ExitCode> {
    match &cli.command {
        Cmd::Init => session::init(cli),
        Cmd::Id => session::id(cli),
        Cmd::History(args) => session::history(cli, args),
        Cmd::Mesh(args) => {
            let runtime = tokio::runtime::Runtime::new()?;
            let code = runtime.block_on(mesh::run(args));
            runtime.shutdown_background();
            code
        }
        Cmd::Run(args) => {
            let runtime = tokio::runtime::Runtime::new()?;
            let code = runtime.block_on(session::run(cli, args));
            // Do not wait for blocking tasks (a final flush already ran).
            runtime.shutdown_background();
            code
        }
    }
}
