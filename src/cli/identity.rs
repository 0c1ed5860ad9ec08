//! `backchannel init` and `backchannel id`.

use std::process::ExitCode;

use anyhow::bail;
use backchannel::Identity;

use super::Cli;

/// `backchannel init`
pub fn init(cli: &Cli) -> anyhow::Result<ExitCode> {
    let dir = cli.data_dir()?;
    // A log without its key: a new key would not be the author of that log.
    if dir.join("log").exists() && !dir.join("identity.key").exists() {
        bail!(
            "{} has a log but no identity key: put its identity.key back (from a backup), \
             or use another --data-dir; a new key would not be the author of this log",
            dir.display()
        );
    }
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
