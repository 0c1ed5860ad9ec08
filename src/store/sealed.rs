//! The log's values sealed with the data directory's [`DataKey`]: an
//! [`Engine`] over another engine that seals every value on the way in and
//! opens it on the way out. Keys stay as they are, so the log's order and
//! prefix scans work unchanged (what that leaves visible: docs/SECURITY.md,
//! "Data at rest").

use std::ops::Bound;

use super::{Engine, Entries, StoreError};
use crate::seal::{DataKey, SealError};

/// What a log value is bound to, besides its key: a value sealed for one
/// key does not open under another, so values cannot be swapped.
const VALUE_CONTEXT: &[u8] = b"backchannel/log-value\0";

/// The key, in sled's default tree, of the check that a log is sealed and
/// with which key; its value is the sealed first sequence number.
pub(super) const MARKER: &[u8] = b"backchannel/sealed";
/// What the marker's value is bound to.
pub(super) const MARKER_CONTEXT: &[u8] = b"backchannel/sealed-marker\0";

/// Seals the values of `inner`.
pub(super) struct SealedEngine<E> {
    pub(super) inner: E,
    pub(super) key: DataKey,
    /// Added to the inner engine's ids: a log converted from a plaintext one
    /// starts a fresh sled database, whose ids restart at 0, and its new
    /// sequence numbers must still come after every old one.
    pub(super) id_base: u64,
}

fn context(key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(VALUE_CONTEXT.len() + key.len());
    out.extend_from_slice(VALUE_CONTEXT);
    out.extend_from_slice(key);
    out
}

impl<E: Engine> SealedEngine<E> {
    fn open(&self, key: &[u8], sealed: &[u8]) -> Result<Vec<u8>, StoreError> {
        self.key.open(&context(key), sealed).ok_or_else(|| {
            StoreError::Seal(SealError::Tampered {
                what: format!("the log's value under key {}", hex::encode(key)),
            })
        })
    }
}

impl<E: Engine> Engine for SealedEngine<E> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        match self.inner.get(key)? {
            Some(sealed) => Ok(Some(self.open(key, &sealed)?)),
            None => Ok(None),
        }
    }

    fn contains(&self, key: &[u8]) -> Result<bool, StoreError> {
        self.inner.contains(key)
    }

    fn insert(&self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.inner.insert(key, &self.key.seal(&context(key), value))
    }

    fn remove(&self, key: &[u8]) -> Result<(), StoreError> {
        self.inner.remove(key)
    }

    fn range(&self, start: Bound<&[u8]>, end: Bound<&[u8]>) -> Entries<'_> {
        Box::new(self.inner.range(start, end).map(|entry| {
            let (key, sealed) = entry?;
            let value = self.open(&key, &sealed)?;
            Ok((key, value))
        }))
    }

    fn next_id(&self) -> Result<u64, StoreError> {
        Ok(self.id_base + self.inner.next_id()?)
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.inner.flush()
    }
}
