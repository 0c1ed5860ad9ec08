//! The `backchannel` command: a thin layer over the library's API. The
//! commands live in `cli/` (see its module docs for the layout).

/// Prints a line on stdout. A closed stdout (a reader that went away) is not
/// a reason to panic: the node keeps running and its log keeps the messages.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

mod cli;

use std::process::ExitCode;

use clap::Parser;
use cli::Cli;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("BACKCHANNEL_LOG")
                // Kademlia warns "Failed to trigger bootstrap: No known peers"
                // whenever a node starts alone: noise to a user, so only its
                // errors show unless BACKCHANNEL_LOG asks for more.
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,libp2p_kad=error")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli::dispatch(&cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
