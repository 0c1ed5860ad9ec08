//! `backchannel init` and `backchannel id`.

use std::process::ExitCode;

use anyhow::bail;
use backchannel::data_dir;
use backchannel::seal::{KdfParams, PASSPHRASE_VAR};
use backchannel::{Identity, IdentityError};

use super::Cli;
use super::args::InitArgs;
use super::unlock;

/// `backchannel init`: a new directory is encrypted whenever a passphrase
/// can be had (typed in a terminal, or in the environment), unless
/// `--plaintext`; a script without one gets a plaintext directory and is
/// told so, so that an unattended setup never waits for a person.
pub fn init(cli: &Cli, args: &InitArgs) -> anyhow::Result<ExitCode> {
    let dir = cli.data_dir()?;
    if data_dir::is_encrypted(&dir) {
        let key = unlock::unlock(&dir)?;
        let identity = unlock::identity(&dir, key.as_ref())?;
        outln!("kept the existing encrypted identity in {}", dir.display());
        outln!("{}", identity.peer_id());
        return Ok(ExitCode::SUCCESS);
    }
    // A log without its key: a new key would not be the author of that log.
    if dir.join("log").exists() && !dir.join("identity.key").exists() {
        bail!(
            "{} has a log but no identity key: put its identity.key back (from a backup), \
             or use another --data-dir; a new key would not be the author of this log",
            dir.display()
        );
    }
    match Identity::load(&dir) {
        Ok(identity) => {
            eprintln!(
                "note: {} is not encrypted; `backchannel encrypt` encrypts it",
                dir.display()
            );
            outln!("kept the existing identity in {}", dir.display());
            outln!("{}", identity.peer_id());
            return Ok(ExitCode::SUCCESS);
        }
        Err(IdentityError::Missing(_)) => {}
        Err(e) => return Err(e.into()),
    }
    let passphrase = match args.plaintext {
        true => None,
        false => unlock::new_passphrase(&dir)?,
    };
    let identity = match passphrase {
        Some(passphrase) => {
            let identity = Identity::generate();
            data_dir::create(&dir, &identity, &passphrase, KdfParams::default())?;
            outln!("created a new encrypted identity in {}", dir.display());
            identity
        }
        None => {
            let (identity, _) = Identity::init(&dir)?;
            if !args.plaintext {
                eprintln!(
                    "note: {} is not encrypted: there was no passphrase ({PASSPHRASE_VAR} unset, no terminal); \
                     `backchannel encrypt` encrypts it later",
                    dir.display()
                );
            }
            outln!("created a new identity in {}", dir.display());
            identity
        }
    };
    outln!("{}", identity.peer_id());
    Ok(ExitCode::SUCCESS)
}

/// `backchannel id`
pub fn id(cli: &Cli) -> anyhow::Result<ExitCode> {
    let dir = cli.data_dir()?;
    let key = unlock::unlock(&dir)?;
    outln!("{}", unlock::identity(&dir, key.as_ref())?.peer_id());
    Ok(ExitCode::SUCCESS)
}
