//! The data directory, plaintext or encrypted, and the conversion of a
//! plaintext one.
//!
//! A plaintext directory holds `identity.key` and `log/`. An encrypted one
//! holds them inside `sealed/`, with `sealed/data.key` (the data key wrapped
//! by the passphrase, [`crate::seal`]); the identity key file is sealed and
//! every value of the log is ([`Store::open_sealed`]). Other files (the
//! local API's token and address) stay beside them, as before.
//!
//! **The switch is one rename.** `sealed/` appears complete or not at all:
//! it is built as `sealed.tmp/`, every file in it synced, checked by reading
//! it back, then renamed to `sealed/` and the directory synced. So a crash at
//! any point of a conversion leaves either the old plaintext state (and
//! maybe a `sealed.tmp/` that [`tidy`] removes) or the new encrypted one
//! (and maybe the old plaintext files, which [`tidy`] removes: they are a
//! copy of what `sealed/` holds). Whether a directory is encrypted is
//! decided by `sealed/` alone, never by a mix.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use libp2p::PeerId;

use crate::identity::{Identity, IdentityError, KEY_FILE as IDENTITY_FILE};
use crate::seal::{self, DataKey, KdfParams, Passphrase, SealError};
use crate::store::{Store, StoreError};

/// The subdirectory of an encrypted data directory that holds its key
/// file, sealed identity and sealed log.
pub const SEALED_DIR: &str = "sealed";
/// Where a conversion builds `sealed/` before the switch.
const STAGING_DIR: &str = "sealed.tmp";
/// The key file inside `sealed/`: the data key, wrapped by the passphrase.
pub const KEY_FILE: &str = "data.key";
/// The log's directory (inside `sealed/` when encrypted).
pub const LOG_DIR: &str = "log";

/// Why a data directory could not be unlocked, created or converted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DataDirError {
    /// The passphrase, key file or a sealed value.
    #[error(transparent)]
    Seal(#[from] SealError),
    /// The identity key file.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// The log.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A node is running on this directory (it holds the log's lock).
    #[error("the node using {} is running and holds its log: stop it first", .0.display())]
    InUse(PathBuf),
    /// The directory is encrypted already.
    #[error("{} is already encrypted", .0.display())]
    AlreadyEncrypted(PathBuf),
    /// The directory already holds a plaintext identity or log: it is
    /// converted, not created.
    #[error("{} holds a plaintext identity or log: `backchannel encrypt` converts it", .0.display())]
    HasPlaintext(PathBuf),
    /// The directory is not encrypted (changing a passphrase it has not got).
    #[error("{} is not encrypted: `backchannel encrypt` encrypts it", .0.display())]
    NotEncrypted(PathBuf),
    /// The encrypted copy did not read back equal to the log: nothing was
    /// switched, the plaintext directory is as it was.
    #[error("the encrypted copy of {} did not read back equal; nothing was changed", .0.display())]
    CopyMismatch(PathBuf),
    /// Creating, syncing, renaming or removing a file or directory failed.
    #[error("cannot change {}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

/// The steps of a conversion, reported as each one ends (the CLI prints
/// them; a crash test stops the process right after one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The key file and the sealed identity are written in `sealed.tmp/`.
    Staged,
    /// The log is copied, sealed, into `sealed.tmp/` and flushed.
    Copied,
    /// The copy read back equal to the log.
    Verified,
    /// `sealed.tmp/` became `sealed/`: the directory is encrypted.
    Switched,
    /// The plaintext identity and log are removed.
    Cleaned,
}

impl Step {
    /// The step's name, as the CLI prints it.
    pub fn name(self) -> &'static str {
        match self {
            Step::Staged => "staged",
            Step::Copied => "copied",
            Step::Verified => "verified",
            Step::Switched => "switched",
            Step::Cleaned => "cleaned",
        }
    }
}

/// What [`encrypt`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Converted {
    /// The identity, unchanged.
    pub peer_id: PeerId,
    /// Entries of the log copied (messages, indexes, settings).
    pub entries: u64,
}

/// Whether `dir` is an encrypted data directory.
pub fn is_encrypted(dir: &Path) -> bool {
    dir.join(SEALED_DIR).is_dir()
}

/// Where the identity key file and the log live: `dir` itself, or its
/// `sealed/` when `encrypted`.
pub fn contents(dir: &Path, encrypted: bool) -> PathBuf {
    match encrypted {
        true => dir.join(SEALED_DIR),
        false => dir.to_path_buf(),
    }
}

/// Unwraps the data key of the encrypted directory `dir`. Reads one file
/// and changes nothing, whether the passphrase is right or not.
pub fn unlock(dir: &Path, passphrase: &Passphrase) -> Result<DataKey, DataDirError> {
    let path = dir.join(SEALED_DIR).join(KEY_FILE);
    let bytes = fs::read(&path).map_err(|source| SealError::Io {
        path: path.clone(),
        source,
    })?;
    Ok(seal::unwrap_key_file(&path, &bytes, passphrase)?)
}

/// The identity of `dir`, sealed or not as `key` says.
pub fn load_identity(dir: &Path, key: Option<&DataKey>) -> Result<Identity, IdentityError> {
    match key {
        Some(key) => Identity::load_sealed(&dir.join(SEALED_DIR), key),
        None => Identity::load(dir),
    }
}

/// Finishes what an interrupted conversion left: with `sealed/` in place,
/// the plaintext identity and log beside it are a copy of what it holds and
/// are removed; without it, a half-built `sealed.tmp/` is. Call it after
/// [`unlock`] succeeded (or on a plaintext directory), so that a wrong
/// passphrase changes nothing.
pub fn tidy(dir: &Path) -> Result<(), DataDirError> {
    if is_encrypted(dir) {
        remove_plaintext(dir)?;
    }
    remove_all(&dir.join(STAGING_DIR))
}

/// Makes `dir` (new, or holding nothing but other files such as the API's)
/// an encrypted data directory holding `identity`. The log is created
/// sealed when a node first opens it.
pub fn create(
    dir: &Path,
    identity: &Identity,
    passphrase: &Passphrase,
    params: KdfParams,
) -> Result<DataKey, DataDirError> {
    if is_encrypted(dir) {
        return Err(DataDirError::AlreadyEncrypted(dir.to_path_buf()));
    }
    if dir.join(IDENTITY_FILE).exists() || dir.join(LOG_DIR).exists() {
        return Err(DataDirError::HasPlaintext(dir.to_path_buf()));
    }
    let staging = fresh_staging(dir)?;
    let key = stage(&staging, identity, passphrase, params)?;
    switch(dir, &staging)?;
    Ok(key)
}

/// Converts the plaintext data directory `dir` to an encrypted one under
/// `passphrase`, keeping its identity and every entry of its log;
/// `on_step` hears each [`Step`] as it ends. A node must not be running on
/// it (its log's lock is taken for the whole conversion). A crash at any
/// point leaves the old state or the new one (module docs).
pub fn encrypt(
    dir: &Path,
    passphrase: &Passphrase,
    params: KdfParams,
    mut on_step: impl FnMut(Step),
) -> Result<Converted, DataDirError> {
    if is_encrypted(dir) {
        return Err(DataDirError::AlreadyEncrypted(dir.to_path_buf()));
    }
    let identity = Identity::load(dir)?;
    let old_log = dir.join(LOG_DIR);
    let store = match old_log.exists() {
        true => Some(Store::open(&old_log).map_err(|e| match e.is_locked() {
            true => DataDirError::InUse(dir.to_path_buf()),
            false => e.into(),
        })?),
        false => None,
    };
    let staging = fresh_staging(dir)?;
    let key = stage(&staging, &identity, passphrase, params)?;
    on_step(Step::Staged);
    let mut entries = 0;
    if let Some(store) = &store {
        let new_log = staging.join(LOG_DIR);
        entries = store.copy_sealed(&new_log, &key)?;
        on_step(Step::Copied);
        // Read back with the key, in order, equal to the original: only a
        // copy known good replaces the log.
        let copy = Store::open_keyed_waiting(&new_log, Some(&key), std::time::Duration::from_secs(5))?;
        let mut old = store.entries();
        let mut new = copy.entries();
        loop {
            match (old.next().transpose()?, new.next().transpose()?) {
                (None, None) => break,
                (a, b) if a == b => {}
                _ => return Err(DataDirError::CopyMismatch(dir.to_path_buf())),
            }
        }
        sync_tree(&new_log)?;
        on_step(Step::Verified);
    }
    switch(dir, &staging)?;
    on_step(Step::Switched);
    drop(store);
    remove_plaintext(dir)?;
    on_step(Step::Cleaned);
    Ok(Converted {
        peer_id: identity.peer_id(),
        entries,
    })
}

/// Changes the passphrase of the encrypted directory `dir`: the data key is
/// rewrapped and the key file replaced atomically; nothing else changes.
pub fn change_passphrase(
    dir: &Path,
    old: &Passphrase,
    new: &Passphrase,
    params: KdfParams,
) -> Result<(), DataDirError> {
    if !is_encrypted(dir) {
        return Err(DataDirError::NotEncrypted(dir.to_path_buf()));
    }
    let path = dir.join(SEALED_DIR).join(KEY_FILE);
    let bytes = fs::read(&path).map_err(|source| SealError::Io {
        path: path.clone(),
        source,
    })?;
    let rewrapped = seal::rewrap_key_file(&path, &bytes, old, new, params)?;
    seal::replace_private_file(&path, &rewrapped)?;
    Ok(())
}

/// An empty private `sealed.tmp/`, after removing what an earlier,
/// interrupted attempt left there.
fn fresh_staging(dir: &Path) -> Result<PathBuf, DataDirError> {
    let staging = dir.join(STAGING_DIR);
    remove_all(&staging)?;
    // The data directory itself is made private by the identity code when it
    // writes a key; a new one is made here the same way (0700).
    create_private_dir(dir).map_err(|source| IdentityError::DataDir {
        path: dir.to_path_buf(),
        source,
    })?;
    create_private_dir(&staging).map_err(|source| io_error(&staging, source))?;
    Ok(staging)
}

/// Writes the key file and the sealed identity into `staging`.
fn stage(
    staging: &Path,
    identity: &Identity,
    passphrase: &Passphrase,
    params: KdfParams,
) -> Result<DataKey, DataDirError> {
    let (key, file) = seal::new_key_file(passphrase, params)?;
    seal::write_private_file(&staging.join(KEY_FILE), &file)?;
    identity.save_sealed(staging, &key)?;
    Ok(key)
}

/// The commit point: `sealed.tmp/` becomes `sealed/` in one rename, made
/// durable by syncing the directory that holds both.
fn switch(dir: &Path, staging: &Path) -> Result<(), DataDirError> {
    seal::sync_dir(staging);
    let sealed = dir.join(SEALED_DIR);
    fs::rename(staging, &sealed).map_err(|source| io_error(&sealed, source))?;
    seal::sync_dir(dir);
    Ok(())
}

/// Removes the plaintext identity and log of a directory that `sealed/`
/// now speaks for. The files are unlinked, not overwritten: what the disk
/// keeps of freed blocks is out of reach here (docs/SECURITY.md).
fn remove_plaintext(dir: &Path) -> Result<(), DataDirError> {
    let key = dir.join(IDENTITY_FILE);
    match fs::remove_file(&key) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(io_error(&key, e)),
        _ => {}
    }
    remove_all(&dir.join(LOG_DIR))?;
    seal::sync_dir(dir);
    Ok(())
}

fn remove_all(path: &Path) -> Result<(), DataDirError> {
    match fs::remove_dir_all(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_error(path, e)),
        _ => Ok(()),
    }
}

/// Syncs every file and directory under `path` (sled syncs its files on
/// flush, but not the directory entries that name them).
fn sync_tree(path: &Path) -> Result<(), DataDirError> {
    for entry in fs::read_dir(path).map_err(|e| io_error(path, e))? {
        let entry = entry.map_err(|e| io_error(path, e))?;
        let p = entry.path();
        if p.is_dir() {
            sync_tree(&p)?;
        } else {
            fs::File::open(&p)
                .and_then(|f| f.sync_all())
                .map_err(|e| io_error(&p, e))?;
        }
    }
    seal::sync_dir(path);
    Ok(())
}

fn io_error(path: &Path, source: io::Error) -> DataDirError {
    DataDirError::Io {
        path: path.to_path_buf(),
        source,
    }
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.is_dir() {
        return Ok(());
    }
    fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> io::Result<()> {
    fs::create_dir_all(dir)
}
