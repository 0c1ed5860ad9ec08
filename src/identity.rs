//! The participant's identity: one ed25519 key that is both the libp2p
//! identity (so an author *is* a [`PeerId`]) and the message-signing key.
//!
//! The key lives in `<data dir>/identity.key` as the libp2p protobuf encoding
//! of the keypair, mode 0600 inside a 0700 directory. A missing, corrupt or
//! unreadable key file is an error; nothing here ever replaces a key file.
//! In an encrypted data directory the same encoding is sealed with the
//! directory's data key ([`Identity::load_sealed`], [`Identity::save_sealed`]).

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use ed25519_dalek::{SigningKey, VerifyingKey};
use libp2p::PeerId;
use libp2p::identity::Keypair;
use zeroize::Zeroizing;

use crate::seal::DataKey;

/// What a sealed key file is bound to: it opens only as an identity key.
const SEALED_CONTEXT: &[u8] = b"backchannel/identity.key\0";

/// The name of the key file inside the data directory.
pub const KEY_FILE: &str = "identity.key";

/// A participant's signing identity.
#[derive(Clone)]
pub struct Identity {
    keypair: Keypair,
    signing: SigningKey,
    peer_id: PeerId,
}

/// Why an identity could not be created or loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// There is no key file; `backchannel init` creates one.
    #[error("no identity at {}: run `backchannel init` to create one", .0.display())]
    Missing(PathBuf),
    /// The data directory cannot be created, or made private (0700).
    #[error(
        "cannot use {} as the data directory (it must be a directory this user can create, \
         write and make private); choose another with --data-dir",
        path.display()
    )]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The key file exists but does not hold an ed25519 keypair.
    #[error("identity file {} is corrupt ({reason}); it was left untouched", path.display())]
    Corrupt {
        /// The key file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The key file is readable or writable by other users.
    #[error("identity file {} has mode {mode:o}; it must be private (chmod 600)", path.display())]
    Insecure {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// Reading or writing the key file failed. (The cause is the source,
    /// not part of this text: `{:#}` prints it once.)
    #[error("cannot read or write the identity file {}", path.display())]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

impl Identity {
    /// The key file's name inside a data directory.
    pub const KEY_FILE: &'static str = KEY_FILE;

    /// Creates a new random identity (not saved anywhere).
    pub fn generate() -> Self {
        Self::from_keypair(Keypair::generate_ed25519()).expect("a fresh ed25519 keypair is valid")
    }

    /// Builds an identity from a 32-byte ed25519 secret key. Tests and
    /// benchmarks use it for reproducible identities.
    pub fn from_secret(secret: [u8; 32]) -> Self {
        let keypair = Keypair::ed25519_from_bytes(secret).expect("32 bytes are a valid ed25519 secret");
        Self::from_keypair(keypair).expect("an ed25519 keypair")
    }

    fn from_keypair(keypair: Keypair) -> Result<Self, String> {
        let ed = keypair
            .clone()
            .try_into_ed25519()
            .map_err(|_| "not an ed25519 key".to_string())?;
        let signing = SigningKey::from_keypair_bytes(&ed.to_bytes()).map_err(|e| e.to_string())?;
        let peer_id = keypair.public().to_peer_id();
        Ok(Self {
            keypair,
            signing,
            peer_id,
        })
    }

    /// Loads the identity in `dir`, or creates and saves a new one if there is
    /// no key file. Returns the identity and whether it was created.
    pub fn init(dir: &Path) -> Result<(Self, bool), IdentityError> {
        match Self::load(dir) {
            Ok(identity) => Ok((identity, false)),
            Err(IdentityError::Missing(_)) => {
                let identity = Self::generate();
                identity.save(dir)?;
                Ok((identity, true))
            }
            Err(e) => Err(e),
        }
    }

    /// Loads the identity saved in `dir`.
    pub fn load(dir: &Path) -> Result<Self, IdentityError> {
        Self::load_keyed(dir, None)
    }

    /// Loads the identity sealed with `key` in `dir` (an encrypted data
    /// directory's `sealed/`). A key file that does not open with `key` is
    /// [`IdentityError::Corrupt`] and is left alone.
    pub fn load_sealed(dir: &Path, key: &DataKey) -> Result<Self, IdentityError> {
        Self::load_keyed(dir, Some(key))
    }

    fn load_keyed(dir: &Path, key: Option<&DataKey>) -> Result<Self, IdentityError> {
        let path = dir.join(KEY_FILE);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(IdentityError::Missing(path)),
            // The data directory is a file, or lies under one.
            Err(source) if source.kind() == io::ErrorKind::NotADirectory => {
                return Err(IdentityError::DataDir {
                    path: dir.to_path_buf(),
                    source,
                });
            }
            Err(source) => return Err(IdentityError::Io { path, source }),
        };
        check_private(&path)?;
        let bytes = Zeroizing::new(bytes);
        let bytes = match key {
            Some(key) => Zeroizing::new(key.open(SEALED_CONTEXT, &bytes).ok_or_else(|| IdentityError::Corrupt {
                path: path.clone(),
                reason: "it does not open with this directory's key".into(),
            })?),
            None => bytes,
        };
        let keypair = Keypair::from_protobuf_encoding(&bytes).map_err(|e| IdentityError::Corrupt {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        Self::from_keypair(keypair).map_err(|reason| IdentityError::Corrupt { path, reason })
    }

    /// Saves the identity to `dir` (created 0700 if missing) as a new 0600 key
    /// file. Fails if a key file already exists: a key is never replaced.
    pub fn save(&self, dir: &Path) -> Result<(), IdentityError> {
        self.save_keyed(dir, None)
    }

    /// [`Identity::save`], sealed with `key`.
    pub fn save_sealed(&self, dir: &Path, key: &DataKey) -> Result<(), IdentityError> {
        self.save_keyed(dir, Some(key))
    }

    fn save_keyed(&self, dir: &Path, key: Option<&DataKey>) -> Result<(), IdentityError> {
        let io_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| IdentityError::Io { path, source }
        };
        create_private_dir(dir).map_err(|source| IdentityError::DataDir {
            path: dir.to_path_buf(),
            source,
        })?;
        let path = dir.join(KEY_FILE);
        let tmp = dir.join(format!("{KEY_FILE}.tmp"));
        let encoded = Zeroizing::new(self.keypair.to_protobuf_encoding().expect("ed25519 keys encode"));
        let encoded = match key {
            Some(key) => Zeroizing::new(key.seal(SEALED_CONTEXT, &encoded)),
            None => encoded,
        };
        let _ = fs::remove_file(&tmp);
        {
            let mut file = crate::seal::private_file(&tmp).map_err(io_err(&tmp))?;
            file.write_all(&encoded).map_err(io_err(&tmp))?;
            file.sync_all().map_err(io_err(&tmp))?;
        }
        // A hard link fails if the target exists, so a key is never replaced,
        // and the key file appears complete or not at all.
        let linked = fs::hard_link(&tmp, &path).map_err(io_err(&path));
        let _ = fs::remove_file(&tmp);
        linked?;
        if let Ok(d) = fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }

    /// This participant's peer id (also its author id on every message).
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// The ed25519 public key that verifies this participant's messages.
    pub fn verifying_key(&self) -> VerifyingKey {
        self.signing.verifying_key()
    }

    pub(crate) fn signing_key(&self) -> &SigningKey {
        &self.signing
    }

    pub(crate) fn keypair(&self) -> &Keypair {
        &self.keypair
    }
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("peer_id", &self.peer_id)
            .finish_non_exhaustive()
    }
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    if dir.is_dir() {
        // Tighten a directory we are about to put a key into.
        let mode = fs::metadata(dir)?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
        }
        return Ok(());
    }
    fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> io::Result<()> {
    fs::create_dir_all(dir)
}

#[cfg(unix)]
fn check_private(path: &Path) -> Result<(), IdentityError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = fs::metadata(path)
        .map_err(|source| IdentityError::Io {
            path: path.to_path_buf(),
            source,
        })?
        .permissions()
        .mode()
        & 0o777;
    if mode & 0o077 != 0 {
        return Err(IdentityError::Insecure {
            path: path.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_: &Path) -> Result<(), IdentityError> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_creates_then_keeps() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let (a, created) = Identity::init(&data).unwrap();
        assert!(created);
        let (b, created) = Identity::init(&data).unwrap();
        assert!(!created);
        assert_eq!(a.peer_id(), b.peer_id());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&data.join(KEY_FILE)), 0o600);
            assert_eq!(mode(&data), 0o700);
        }
    }

    #[test]
    fn missing_corrupt_and_insecure_are_errors_and_never_replaced() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(Identity::load(dir.path()), Err(IdentityError::Missing(_))));

        let path = dir.path().join(KEY_FILE);
        fs::write(&path, b"not a key").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        }
        assert!(matches!(Identity::load(dir.path()), Err(IdentityError::Corrupt { .. })));
        assert!(matches!(Identity::init(dir.path()), Err(IdentityError::Corrupt { .. })));
        assert!(Identity::generate().save(dir.path()).is_err());
        assert_eq!(fs::read(&path).unwrap(), b"not a key", "the corrupt file is untouched");

        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let other = tempfile::tempdir().unwrap();
            Identity::generate().save(other.path()).unwrap();
            let key = other.path().join(KEY_FILE);
            fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).unwrap();
            assert!(matches!(
                Identity::load(other.path()),
                Err(IdentityError::Insecure { .. })
            ));
        }
    }

    #[test]
    fn secret_gives_a_stable_peer_id_matching_the_signing_key() {
        let a = Identity::from_secret([7; 32]);
        let b = Identity::from_secret([7; 32]);
        assert_eq!(a.peer_id(), b.peer_id());
        assert_eq!(crate::id::peer_id_of(&a.verifying_key()), a.peer_id());
    }

    #[test]
    fn a_peer_id_and_its_key_convert_both_ways() {
        let mut secret = [0u8; 32];
        for (i, b) in secret.iter_mut().enumerate() {
            *b = i as u8;
        }
        let a = Identity::from_secret(secret);
        assert_eq!(crate::id::key_of(&a.peer_id()), Some(a.verifying_key().to_bytes()));
        assert_eq!(crate::id::peer_id_of(&a.verifying_key()), a.peer_id());
    }
}
