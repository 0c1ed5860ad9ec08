//! Passphrases and encrypted data directories, for every command that opens
//! one: `init` (encrypted by default when a passphrase can be had),
//! `encrypt`, `passphrase`, and the unlocking that `run`, `serve`,
//! `history` and `id` do first (docs/SECURITY.md, "Data at rest").

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, bail};
use backchannel::data_dir::{self, Step};
use backchannel::seal::{DataKey, KdfParams, PASSPHRASE_VAR, Passphrase, SealError};
use backchannel::{Identity, IdentityError, Store, StoreError};

use super::Cli;

/// Set to a conversion step's name (`staged`, `copied`, `verified`,
/// `switched`), `encrypt` aborts the process right after that step, as a
/// crash there would: the seam the crash tests use (tests/it/at_rest.rs).
/// Aborting only ever stops a conversion that is safe to stop anywhere.
const ABORT_VAR: &str = "BACKCHANNEL_ABORT_AFTER";

/// The data key of `dir` if it is encrypted (asking for its passphrase),
/// None if it is plaintext. A wrong passphrase is an error and changes no
/// file; after a right one, what an interrupted conversion left is tidied.
pub fn unlock(dir: &Path) -> anyhow::Result<Option<DataKey>> {
    if !data_dir::is_encrypted(dir) {
        data_dir::tidy(dir)?;
        return Ok(None);
    }
    let passphrase = passphrase(dir, "passphrase")?;
    let key = data_dir::unlock(dir, &passphrase)?;
    data_dir::tidy(dir)?;
    Ok(Some(key))
}

/// The identity of `dir`, sealed or not as `key` says.
pub fn identity(dir: &Path, key: Option<&DataKey>) -> Result<Identity, IdentityError> {
    data_dir::load_identity(dir, key)
}

/// Opens the log of `dir` (unlocked with `key` if it is encrypted).
pub fn open_log(dir: &Path, key: Option<&DataKey>) -> Result<Store, StoreError> {
    let path = data_dir::contents(dir, key.is_some()).join(data_dir::LOG_DIR);
    match key {
        Some(key) => Store::open_sealed(&path, key),
        None => Store::open(&path),
    }
}

/// Whether `dir` has a log (plaintext or sealed).
pub fn has_log(dir: &Path) -> bool {
    data_dir::contents(dir, data_dir::is_encrypted(dir))
        .join(data_dir::LOG_DIR)
        .exists()
}

/// A new passphrase for `dir`: from [`PASSPHRASE_VAR`], else typed twice in
/// a terminal; None when there is neither (a script or a service without
/// the variable).
pub fn new_passphrase(dir: &Path) -> anyhow::Result<Option<Passphrase>> {
    if let Some(from_env) = Passphrase::from_env() {
        return Ok(Some(from_env?));
    }
    if !std::io::stdin().is_terminal() {
        return Ok(None);
    }
    let first = prompt(&format!("new passphrase for {}: ", dir.display()))?;
    let again = prompt("the same passphrase again: ")?;
    if *first != *again {
        bail!("the two passphrases differ; nothing was changed");
    }
    Ok(Some(Passphrase::new(first.to_string())?))
}

/// The passphrase of the encrypted `dir`: from [`PASSPHRASE_VAR`], else
/// typed in a terminal.
fn passphrase(dir: &Path, what: &str) -> anyhow::Result<Passphrase> {
    if let Some(from_env) = Passphrase::from_env() {
        return Ok(from_env?);
    }
    if !std::io::stdin().is_terminal() {
        return Err(SealError::NoPassphrase(dir.to_path_buf()).into());
    }
    Ok(Passphrase::new(
        prompt(&format!("{what} for {}: ", dir.display()))?.to_string(),
    )?)
}

/// `backchannel encrypt`: converts a plaintext data directory.
pub fn encrypt(cli: &Cli) -> anyhow::Result<ExitCode> {
    let dir = cli.data_dir()?;
    if data_dir::is_encrypted(&dir) {
        bail!("{} is already encrypted", dir.display());
    }
    data_dir::tidy(&dir)?;
    let passphrase = new_passphrase(&dir)?.with_context(|| {
        format!(
            "encrypting {}: type a passphrase in a terminal, or give it in {PASSPHRASE_VAR}",
            dir.display()
        )
    })?;
    let abort_after = std::env::var(ABORT_VAR).ok();
    let done = data_dir::encrypt(&dir, &passphrase, KdfParams::default(), |step: Step| {
        eprintln!("encrypt: {}", step.name());
        if abort_after.as_deref() == Some(step.name()) {
            std::process::abort();
        }
    })?;
    outln!(
        "encrypted {}: {} log entries, identity {}",
        dir.display(),
        done.entries,
        done.peer_id
    );
    Ok(ExitCode::SUCCESS)
}

/// `backchannel passphrase`: changes the passphrase of an encrypted data
/// directory (the data key is rewrapped; nothing else changes).
pub fn change(cli: &Cli) -> anyhow::Result<ExitCode> {
    let dir = cli.data_dir()?;
    if !data_dir::is_encrypted(&dir) {
        bail!("{} is not encrypted: `backchannel encrypt` encrypts it", dir.display());
    }
    if !std::io::stdin().is_terminal() {
        bail!("changing a passphrase needs a terminal to type the old and the new one in");
    }
    let old = Passphrase::new(prompt(&format!("current passphrase for {}: ", dir.display()))?.to_string())?;
    let new = new_passphrase(&dir)?.context("no new passphrase")?;
    data_dir::change_passphrase(&dir, &old, &new, KdfParams::default())?;
    outln!("changed the passphrase of {}", dir.display());
    Ok(ExitCode::SUCCESS)
}

/// Reads a line from the terminal without echoing it.
fn prompt(text: &str) -> anyhow::Result<zeroize::Zeroizing<String>> {
    let mut stderr = std::io::stderr().lock();
    let _ = write!(stderr, "{text}");
    let _ = stderr.flush();
    let _echo = EchoOff::new();
    let mut line = zeroize::Zeroizing::new(String::new());
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading the passphrase")?;
    let _ = writeln!(stderr);
    while line.ends_with(['\n', '\r']) {
        line.pop();
    }
    Ok(line)
}

/// Turns the terminal's echo off while a passphrase is typed, and back on
/// when dropped.
struct EchoOff {
    #[cfg(target_os = "linux")]
    saved: Option<rustix::termios::Termios>,
}

impl EchoOff {
    fn new() -> Self {
        #[cfg(target_os = "linux")]
        {
            use rustix::termios::{LocalModes, OptionalActions, tcgetattr, tcsetattr};
            let saved = tcgetattr(std::io::stdin()).ok();
            if let Some(saved) = &saved {
                let mut quiet = saved.clone();
                quiet.local_modes.remove(LocalModes::ECHO);
                let _ = tcsetattr(std::io::stdin(), OptionalActions::Now, &quiet);
            }
            Self { saved }
        }
        #[cfg(not(target_os = "linux"))]
        Self {}
    }
}

impl Drop for EchoOff {
    fn drop(&mut self) {
        #[cfg(target_os = "linux")]
        if let Some(saved) = &self.saved {
            let _ = rustix::termios::tcsetattr(std::io::stdin(), rustix::termios::OptionalActions::Now, saved);
        }
    }
}
