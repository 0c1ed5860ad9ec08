//! Encryption at rest: the data key that seals the log's values and the
//! identity key, and the key file that keeps the data key wrapped by a
//! passphrase.
//!
//! A data directory that is encrypted has one random 256-bit **data key**.
//! Every value the log stores and the identity key file are sealed with it
//! (XChaCha20-Poly1305, a random 192-bit nonce per value, associated data
//! naming what the value is, so that a value moved to another place does not
//! open). The data key itself is kept only in the **key file**, wrapped by a
//! key derived from the passphrase with argon2id; changing the passphrase
//! rewraps one key and touches nothing else. What stays visible, and why
//! encryption is chosen at `init`: docs/SECURITY.md, "Data at rest".
//!
//! This module is a leaf: it knows nothing of the log or the node. The
//! directory layout and the conversion of a plaintext directory are in
//! [`crate::data_dir`].

use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use zeroize::Zeroizing;

/// The environment variable a service can give its passphrase in, instead
/// of a prompt. Anyone who can read the process's environment (the same
/// user, root, a unit file) can read it: docs/SECURITY.md.
pub const PASSPHRASE_VAR: &str = "BACKCHANNEL_PASSPHRASE";

/// Bytes of a sealed value beyond its plaintext: the nonce and the tag.
pub const OVERHEAD: usize = NONCE_BYTES + TAG_BYTES;

const NONCE_BYTES: usize = 24;
const TAG_BYTES: usize = 16;
const KEY_BYTES: usize = 32;
const SALT_BYTES: usize = 16;

/// The first bytes of a key file: what it is, and its format's version.
const KEY_FILE_MAGIC: &[u8; 8] = b"bcseal01";
/// Magic, three u32 parameters and the salt: the part of the key file that
/// the wrapped key is bound to (its associated data).
const KEY_FILE_HEADER: usize = KEY_FILE_MAGIC.len() + 12 + SALT_BYTES;
/// The whole key file: header, nonce, wrapped key and tag.
const KEY_FILE_BYTES: usize = KEY_FILE_HEADER + NONCE_BYTES + KEY_BYTES + TAG_BYTES;

/// The argon2id parameters that turn a passphrase into the key that wraps
/// the data key. They are written in the key file, so a directory keeps the
/// parameters it was made with and stronger defaults apply to new ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KdfParams {
    /// Memory, in KiB.
    pub memory_kib: u32,
    /// Passes over the memory.
    pub iterations: u32,
    /// Lanes (argon2's parallelism; computed on one thread here).
    pub lanes: u32,
}

impl Default for KdfParams {
    /// 64 MiB, 3 passes, 1 lane: RFC 9106's second recommended choice (for
    /// memory-limited settings), so each guess costs an attacker 64 MiB and
    /// three passes. Measured at 0.34 s on this project's 2-core machine
    /// while other builds ran (`kdf_cost`, docs/PERFORMANCE.md, "Data at
    /// rest"): paid once when a node starts, never per message. 128 MiB
    /// took 0.87 s, too long for every `history` or `id`.
    fn default() -> Self {
        Self {
            memory_kib: 64 * 1024,
            iterations: 3,
            lanes: 1,
        }
    }
}

impl KdfParams {
    /// Parameters far too cheap for a real passphrase: for the mesh lab and
    /// tests, whose passphrases are not secrets, so that starting fifty
    /// encrypted nodes does not take fifty unlocks' time.
    pub fn insecure_fast() -> Self {
        Self {
            memory_kib: 8,
            iterations: 1,
            lanes: 1,
        }
    }

    /// The largest parameters a key file may ask for: a key file is input,
    /// and one asking for terabytes must be refused, not obeyed (1 GiB, 64
    /// passes, 16 lanes is far beyond any sane choice).
    fn within_bounds(&self) -> bool {
        self.memory_kib <= 1024 * 1024 && self.iterations <= 64 && self.lanes <= 16
    }

    fn argon2(&self) -> Result<argon2::Argon2<'static>, String> {
        if !self.within_bounds() {
            return Err(format!("argon2 parameters out of bounds: {self:?}"));
        }
        let params = argon2::Params::new(self.memory_kib, self.iterations, self.lanes, Some(KEY_BYTES))
            .map_err(|e| format!("argon2 parameters {self:?}: {e}"))?;
        Ok(argon2::Argon2::new(
            argon2::Algorithm::Argon2id,
            argon2::Version::V0x13,
            params,
        ))
    }
}

/// Why sealing, unsealing or the key file failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SealError {
    /// The passphrase does not unwrap the data key. Nothing was changed.
    #[error("wrong passphrase for {}: nothing was changed", .0.display())]
    WrongPassphrase(PathBuf),
    /// An empty passphrase protects nothing.
    #[error("the passphrase is empty")]
    EmptyPassphrase,
    /// The data directory is encrypted and no passphrase was given.
    #[error(
        "{} is encrypted: type its passphrase in a terminal, or give it in {PASSPHRASE_VAR}",
        .0.display()
    )]
    NoPassphrase(PathBuf),
    /// The key file is not one (truncated, another format, out-of-bounds
    /// parameters).
    #[error("key file {} is corrupt ({reason}); it was left untouched", path.display())]
    Corrupt {
        /// The key file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A sealed value does not open with this directory's data key: it was
    /// altered, moved from another place, or is from another directory.
    #[error("{what} does not open with this directory's key: it was altered or is from elsewhere")]
    Tampered {
        /// What was being opened.
        what: String,
    },
    /// Reading or writing a file failed.
    #[error("cannot read or write {}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

/// A passphrase, wiped from memory when dropped.
pub struct Passphrase(Zeroizing<String>);

impl Passphrase {
    /// A passphrase; an empty one is refused. A trailing newline (from a
    /// file or a prompt) is not part of it.
    pub fn new(text: impl Into<String>) -> Result<Self, SealError> {
        let mut text = Zeroizing::new(text.into());
        while text.ends_with(['\n', '\r']) {
            text.pop();
        }
        if text.is_empty() {
            return Err(SealError::EmptyPassphrase);
        }
        Ok(Self(text))
    }

    /// The passphrase in [`PASSPHRASE_VAR`], if it is set.
    pub fn from_env() -> Option<Result<Self, SealError>> {
        std::env::var(PASSPHRASE_VAR).ok().map(Self::new)
    }

    fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Passphrase(..)")
    }
}

/// The key that seals a data directory's contents. Cheap to clone (the
/// cipher is shared); its key bytes are wiped when the last clone drops, and
/// never printed.
#[derive(Clone)]
pub struct DataKey {
    cipher: Arc<XChaCha20Poly1305>,
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataKey(..)")
    }
}

impl DataKey {
    /// A new random data key.
    pub fn generate() -> Self {
        let mut bytes = Zeroizing::new([0u8; KEY_BYTES]);
        getrandom::fill(bytes.as_mut()).expect("the OS random number generator works");
        Self::from_bytes(&bytes)
    }

    fn from_bytes(bytes: &[u8; KEY_BYTES]) -> Self {
        Self {
            cipher: Arc::new(XChaCha20Poly1305::new(bytes.into())),
        }
    }

    /// Seals `plain`, bound to `context` (what the value is and where it
    /// lives): a random nonce, then the ciphertext and its tag.
    pub fn seal(&self, context: &[u8], plain: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_BYTES];
        getrandom::fill(&mut nonce).expect("the OS random number generator works");
        let sealed = self
            .cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plain,
                    aad: context,
                },
            )
            .expect("XChaCha20-Poly1305 seals any message shorter than 256 GiB");
        let mut out = Vec::with_capacity(NONCE_BYTES + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    /// Opens what [`DataKey::seal`] made with the same `context`; `None` if
    /// it was altered, sealed for another context or with another key.
    pub fn open(&self, context: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
        if sealed.len() < OVERHEAD {
            return None;
        }
        let (nonce, body) = sealed.split_at(NONCE_BYTES);
        self.cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: body,
                    aad: context,
                },
            )
            .ok()
    }
}

/// Makes a key file for a new data key under `passphrase`: returns the data
/// key and the file's bytes (which the caller writes to the data
/// directory).
pub fn new_key_file(passphrase: &Passphrase, params: KdfParams) -> Result<(DataKey, Vec<u8>), SealError> {
    let mut data_key = Zeroizing::new([0u8; KEY_BYTES]);
    getrandom::fill(data_key.as_mut()).expect("the OS random number generator works");
    let bytes = wrap(&data_key, passphrase, params)?;
    Ok((DataKey::from_bytes(&data_key), bytes))
}

/// The key file's bytes for `data_key` under a (new) passphrase: the same
/// data key, so nothing it sealed changes.
fn wrap(data_key: &[u8; KEY_BYTES], passphrase: &Passphrase, params: KdfParams) -> Result<Vec<u8>, SealError> {
    let mut salt = [0u8; SALT_BYTES];
    getrandom::fill(&mut salt).expect("the OS random number generator works");
    let mut out = Vec::with_capacity(KEY_FILE_BYTES);
    out.extend_from_slice(KEY_FILE_MAGIC);
    out.extend_from_slice(&params.memory_kib.to_be_bytes());
    out.extend_from_slice(&params.iterations.to_be_bytes());
    out.extend_from_slice(&params.lanes.to_be_bytes());
    out.extend_from_slice(&salt);
    let wrapping = derive(passphrase, &salt, params).map_err(|reason| SealError::Corrupt {
        path: PathBuf::new(),
        reason,
    })?;
    let sealed = wrapping.seal(&out, data_key.as_slice());
    out.extend_from_slice(&sealed);
    debug_assert_eq!(out.len(), KEY_FILE_BYTES);
    Ok(out)
}

/// Unwraps the data key from a key file's bytes. A wrong passphrase and a
/// damaged file are told apart only as far as the format allows: a file of
/// the right shape that does not open is [`SealError::WrongPassphrase`].
pub fn unwrap_key_file(path: &Path, bytes: &[u8], passphrase: &Passphrase) -> Result<DataKey, SealError> {
    let key = unwrap_bytes(path, bytes, passphrase)?;
    Ok(DataKey::from_bytes(&key))
}

fn unwrap_bytes(path: &Path, bytes: &[u8], passphrase: &Passphrase) -> Result<Zeroizing<[u8; KEY_BYTES]>, SealError> {
    let corrupt = |reason: &str| SealError::Corrupt {
        path: path.to_path_buf(),
        reason: reason.into(),
    };
    if bytes.len() != KEY_FILE_BYTES || !bytes.starts_with(KEY_FILE_MAGIC) {
        return Err(corrupt("not a Backchannel key file"));
    }
    let u32_at = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
    let m = KEY_FILE_MAGIC.len();
    let params = KdfParams {
        memory_kib: u32_at(m),
        iterations: u32_at(m + 4),
        lanes: u32_at(m + 8),
    };
    let (header, sealed) = bytes.split_at(KEY_FILE_HEADER);
    let salt = &header[m + 12..];
    let wrapping = derive(passphrase, salt, params).map_err(|reason| corrupt(&reason))?;
    let plain = Zeroizing::new(
        wrapping
            .open(header, sealed)
            .ok_or_else(|| SealError::WrongPassphrase(path.to_path_buf()))?,
    );
    let mut key = Zeroizing::new([0u8; KEY_BYTES]);
    key.copy_from_slice(&plain);
    Ok(key)
}

/// The key file's bytes with the same data key under a new passphrase.
pub fn rewrap_key_file(
    path: &Path,
    bytes: &[u8],
    old: &Passphrase,
    new: &Passphrase,
    params: KdfParams,
) -> Result<Vec<u8>, SealError> {
    let key = unwrap_bytes(path, bytes, old)?;
    wrap(&key, new, params)
}

/// The key argon2id derives from a passphrase and salt, as a [`DataKey`]
/// that seals one thing: the data key.
fn derive(passphrase: &Passphrase, salt: &[u8], params: KdfParams) -> Result<DataKey, String> {
    let mut out = Zeroizing::new([0u8; KEY_BYTES]);
    params
        .argon2()?
        .hash_password_into(passphrase.as_bytes(), salt, out.as_mut())
        .map_err(|e| format!("argon2: {e}"))?;
    Ok(DataKey::from_bytes(&out))
}

/// Writes `bytes` to `path` as a new private file (0600), synced, replacing
/// nothing: it fails if the file exists.
pub fn write_private_file(path: &Path, bytes: &[u8]) -> Result<(), SealError> {
    let io_err = |source| SealError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = private_file(path).map_err(io_err)?;
    file.write_all(bytes).map_err(io_err)?;
    file.sync_all().map_err(io_err)
}

/// Replaces `path` with `bytes` atomically: a synced temporary file renamed
/// over it, then the directory synced, so a crash leaves the old file or
/// the new one.
pub fn replace_private_file(path: &Path, bytes: &[u8]) -> Result<(), SealError> {
    let tmp = path.with_extension("tmp");
    let _ = fs::remove_file(&tmp);
    write_private_file(&tmp, bytes)?;
    fs::rename(&tmp, path).map_err(|source| SealError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    if let Some(dir) = path.parent() {
        sync_dir(dir);
    }
    Ok(())
}

/// Syncs a directory's entries (a rename or a new file in it). Best effort:
/// some platforms cannot open a directory for syncing.
pub(crate) fn sync_dir(dir: &Path) {
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Creates `path` (it must not exist) readable by its owner only.
#[cfg(unix)]
pub(crate) fn private_file(path: &Path) -> io::Result<fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

#[cfg(not(unix))]
pub(crate) fn private_file(path: &Path) -> io::Result<fs::File> {
    fs::OpenOptions::new().write(true).create_new(true).open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pass(s: &str) -> Passphrase {
        Passphrase::new(s).unwrap()
    }

    #[test]
    fn a_value_opens_only_with_its_key_and_context() {
        let key = DataKey::generate();
        let sealed = key.seal(b"m1", b"hello");
        assert_eq!(sealed.len(), 5 + OVERHEAD);
        assert_eq!(key.open(b"m1", &sealed).as_deref(), Some(&b"hello"[..]));
        assert_eq!(key.open(b"m2", &sealed), None, "moved to another key");
        assert_eq!(
            DataKey::generate().open(b"m1", &sealed),
            None,
            "another directory's key"
        );
        let mut flipped = sealed.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert_eq!(key.open(b"m1", &flipped), None);
        assert_eq!(key.open(b"m1", &sealed[..OVERHEAD - 1]), None, "too short");
        assert_ne!(key.seal(b"m1", b"hello"), sealed, "a fresh nonce each time");
    }

    #[test]
    fn the_key_file_unwraps_with_its_passphrase_only_and_rewraps() {
        let fast = KdfParams::insecure_fast();
        let path = Path::new("data.key");
        let (key, file) = new_key_file(&pass("correct horse"), fast).unwrap();
        let sealed = key.seal(b"x", b"secret");
        let again = unwrap_key_file(path, &file, &pass("correct horse\n")).unwrap();
        assert_eq!(again.open(b"x", &sealed).as_deref(), Some(&b"secret"[..]));
        assert!(matches!(
            unwrap_key_file(path, &file, &pass("wrong")),
            Err(SealError::WrongPassphrase(_))
        ));
        let rewrapped = rewrap_key_file(path, &file, &pass("correct horse"), &pass("new one"), fast).unwrap();
        let moved = unwrap_key_file(path, &rewrapped, &pass("new one")).unwrap();
        assert_eq!(
            moved.open(b"x", &sealed).as_deref(),
            Some(&b"secret"[..]),
            "same data key"
        );
        assert!(unwrap_key_file(path, &rewrapped, &pass("correct horse")).is_err());
    }

    #[test]
    fn a_damaged_or_hostile_key_file_is_an_error() {
        let path = Path::new("data.key");
        let (_, file) = new_key_file(&pass("p"), KdfParams::insecure_fast()).unwrap();
        for bad in [&b""[..], &file[..file.len() - 1], b"bcseal01"] {
            assert!(matches!(
                unwrap_key_file(path, bad, &pass("p")),
                Err(SealError::Corrupt { .. })
            ));
        }
        // A key file asking for 4 TiB of memory is refused, not obeyed.
        let mut greedy = file.clone();
        greedy[8..12].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(
            unwrap_key_file(path, &greedy, &pass("p")),
            Err(SealError::Corrupt { .. })
        ));
        // Changed parameters (bound as associated data) do not open.
        let mut changed = file.clone();
        changed[15] ^= 1;
        assert!(unwrap_key_file(path, &changed, &pass("p")).is_err());
        assert!(matches!(Passphrase::new("\n"), Err(SealError::EmptyPassphrase)));
    }

    /// The unlock cost of candidate parameters on this machine, printed:
    /// how the default was chosen (docs/PERFORMANCE.md, "Data at rest").
    /// `cargo nextest run --run-ignored only -E 'test(kdf_cost)' --no-capture`
    #[test]
    #[ignore = "a measurement, not a check"]
    fn kdf_cost() {
        let pass = pass("a passphrase of ordinary length");
        for (memory_mib, iterations) in [(19, 2), (46, 1), (64, 3), (128, 3), (256, 2)] {
            let params = KdfParams {
                memory_kib: memory_mib * 1024,
                iterations,
                lanes: 1,
            };
            let mut times = Vec::new();
            for _ in 0..3 {
                let start = std::time::Instant::now();
                derive(&pass, &[0; SALT_BYTES], params).unwrap();
                times.push(start.elapsed().as_secs_f64() * 1000.0);
            }
            times.sort_by(f64::total_cmp);
            println!(
                "argon2id m={memory_mib} MiB t={iterations} p=1: median {:.0} ms",
                times[1]
            );
        }
    }
}
