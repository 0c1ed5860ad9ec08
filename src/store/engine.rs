//! The storage engine under the log: an ordered map of byte keys to byte
//! values that can be flushed to durable storage. [`Store`](super::Store)
//! keeps all of the log's index logic (key layout, dedupe, ordering) and
//! needs only these few operations, so the product's engine (sled) and a
//! test engine that fails on demand ([`MemoryEngine`]) run the same log code.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard};

use super::StoreError;

/// An engine's entries in key order, from a [`Engine::range`] scan. Either
/// end can be read first, so a log read can take the newest `n` entries
/// without reading the rest.
pub type Entries<'a> = Box<dyn DoubleEndedIterator<Item = Result<(Vec<u8>, Vec<u8>), StoreError>> + 'a>;

/// The operations the log needs from its storage engine. Writes are visible
/// to reads at once; they are durable only after [`Engine::flush`] returns
/// `Ok`.
pub trait Engine: Send + Sync + 'static {
    /// The value under `key`.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
    /// Whether `key` has a value.
    fn contains(&self, key: &[u8]) -> Result<bool, StoreError>;
    /// Sets `key` to `value`.
    fn insert(&self, key: &[u8], value: &[u8]) -> Result<(), StoreError>;
    /// Removes `key` (nothing if it has no value).
    fn remove(&self, key: &[u8]) -> Result<(), StoreError>;
    /// The entries with keys between `start` and `end`, in key order.
    fn range(&self, start: Bound<&[u8]>, end: Bound<&[u8]>) -> Entries<'_>;
    /// A number never returned before by this engine, across restarts: the
    /// log's sequence numbers.
    fn next_id(&self) -> Result<u64, StoreError>;
    /// Makes every write so far durable (blocking).
    fn flush(&self) -> Result<(), StoreError>;
}

/// The product's engine: one tree of a sled database.
pub(super) struct SledEngine {
    pub(super) db: sled::Db,
    pub(super) tree: sled::Tree,
}

impl Engine for SledEngine {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.tree.get(key)?.map(|v| v.to_vec()))
    }

    fn contains(&self, key: &[u8]) -> Result<bool, StoreError> {
        Ok(self.tree.contains_key(key)?)
    }

    fn insert(&self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.tree.insert(key, value)?;
        Ok(())
    }

    fn remove(&self, key: &[u8]) -> Result<(), StoreError> {
        self.tree.remove(key)?;
        Ok(())
    }

    fn range(&self, start: Bound<&[u8]>, end: Bound<&[u8]>) -> Entries<'_> {
        let range = (start.map(<[u8]>::to_vec), end.map(<[u8]>::to_vec));
        Box::new(self.tree.range::<Vec<u8>, _>(range).map(|entry| {
            let (k, v) = entry?;
            Ok((k.to_vec(), v.to_vec()))
        }))
    }

    fn next_id(&self) -> Result<u64, StoreError> {
        Ok(self.db.generate_id()?)
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        Ok(())
    }
}

/// When a [`MemoryEngine`] makes an operation fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Faults {
    /// Never: the engine works.
    #[default]
    None,
    /// The next `n` operations fail, then the engine works again.
    Next(u32),
    /// Every operation fails until the faults are changed.
    Always,
}

impl Faults {
    /// Whether this operation fails, using up one of `Next`'s failures.
    fn strike(&mut self) -> bool {
        match self {
            Faults::None => false,
            Faults::Always => true,
            Faults::Next(n) => {
                *n -= 1;
                if *n == 0 {
                    *self = Faults::None;
                }
                true
            }
        }
    }
}

/// An engine in memory for tests, which fails writes or flushes on demand,
/// as a full or failing disk would.
///
/// It keeps what was written and, apart, what the last successful flush
/// made durable: a failed flush leaves the writes in memory (as sled does),
/// and [`MemoryEngine::after_crash`] shows what a restart after a power cut
/// would find. Clones share the same data and faults.
#[derive(Clone, Default)]
pub struct MemoryEngine {
    state: Arc<Mutex<MemoryState>>,
}

#[derive(Default)]
struct MemoryState {
    /// Every write so far: what reads see.
    live: BTreeMap<Vec<u8>, Vec<u8>>,
    /// The writes up to the last successful flush.
    durable: BTreeMap<Vec<u8>, Vec<u8>>,
    /// The last id returned by `next_id`.
    last_id: u64,
    writes: Faults,
    flushes: Faults,
    failed_writes: u64,
    failed_flushes: u64,
    flushed: u64,
}

impl MemoryEngine {
    /// An empty engine that works.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes inserts and removes fail as `faults` says (reads never fail).
    pub fn fail_writes(&self, faults: Faults) {
        self.lock().writes = faults;
    }

    /// Makes flushes fail as `faults` says.
    pub fn fail_flushes(&self, faults: Faults) {
        self.lock().flushes = faults;
    }

    /// Ends every fault: writes and flushes work again.
    pub fn heal(&self) {
        let mut state = self.lock();
        state.writes = Faults::None;
        state.flushes = Faults::None;
    }

    /// Writes that failed because of a fault.
    pub fn failed_writes(&self) -> u64 {
        self.lock().failed_writes
    }

    /// Flushes that failed because of a fault.
    pub fn failed_flushes(&self) -> u64 {
        self.lock().failed_flushes
    }

    /// Flushes that succeeded.
    pub fn flushes(&self) -> u64 {
        self.lock().flushed
    }

    /// A new engine holding only what this one made durable: what a restart
    /// after a crash would find. Ids keep growing from this engine's last,
    /// as sled's do.
    pub fn after_crash(&self) -> MemoryEngine {
        let state = self.lock();
        MemoryEngine {
            state: Arc::new(Mutex::new(MemoryState {
                live: state.durable.clone(),
                durable: state.durable.clone(),
                last_id: state.last_id,
                ..MemoryState::default()
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, MemoryState> {
        // A test that panicked while holding the lock has failed already;
        // the data is still consistent (every update is one statement).
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self, apply: impl FnOnce(&mut BTreeMap<Vec<u8>, Vec<u8>>)) -> Result<(), StoreError> {
        let mut state = self.lock();
        if state.writes.strike() {
            state.failed_writes += 1;
            return Err(StoreError::Engine("injected write failure".into()));
        }
        apply(&mut state.live);
        Ok(())
    }
}

impl Engine for MemoryEngine {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.lock().live.get(key).cloned())
    }

    fn contains(&self, key: &[u8]) -> Result<bool, StoreError> {
        Ok(self.lock().live.contains_key(key))
    }

    fn insert(&self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.write(|live| {
            live.insert(key.to_vec(), value.to_vec());
        })
    }

    fn remove(&self, key: &[u8]) -> Result<(), StoreError> {
        self.write(|live| {
            live.remove(key);
        })
    }

    fn range(&self, start: Bound<&[u8]>, end: Bound<&[u8]>) -> Entries<'_> {
        // BTreeMap::range panics on an inverted range; an empty one is the
        // answer the log wants.
        if let (Bound::Included(s) | Bound::Excluded(s), Bound::Included(e) | Bound::Excluded(e)) = (start, end)
            && (s > e || (s == e && !matches!((start, end), (Bound::Included(_), Bound::Included(_)))))
        {
            return Box::new(std::iter::empty());
        }
        // A copy, so that the lock is not held while the log reads on: this
        // engine is for tests, where logs are small.
        let entries: Vec<_> = self
            .lock()
            .live
            .range::<[u8], _>((start, end))
            .map(|(k, v)| Ok((k.clone(), v.clone())))
            .collect();
        Box::new(entries.into_iter())
    }

    fn next_id(&self) -> Result<u64, StoreError> {
        let mut state = self.lock();
        let id = state.last_id;
        state.last_id += 1;
        Ok(id)
    }

    fn flush(&self) -> Result<(), StoreError> {
        let mut state = self.lock();
        if state.flushes.strike() {
            state.failed_flushes += 1;
            return Err(StoreError::Engine("injected flush failure".into()));
        }
        state.durable = state.live.clone();
        state.flushed += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_flush_keeps_writes_in_memory_but_not_durable() {
        let engine = MemoryEngine::new();
        engine.insert(b"a", b"1").unwrap();
        engine.flush().unwrap();
        engine.fail_flushes(Faults::Next(1));
        engine.insert(b"b", b"2").unwrap();
        assert!(engine.flush().is_err());
        assert!(engine.contains(b"b").unwrap(), "the write stays readable");
        assert!(!engine.after_crash().contains(b"b").unwrap(), "but is not durable");
        engine.flush().unwrap();
        assert!(
            engine.after_crash().contains(b"b").unwrap(),
            "the next flush persists it"
        );
        assert_eq!((engine.failed_flushes(), engine.flushes()), (1, 2));
    }

    #[test]
    fn write_faults_count_down_or_last() {
        let engine = MemoryEngine::new();
        engine.fail_writes(Faults::Next(2));
        assert!(engine.insert(b"a", b"1").is_err());
        assert!(engine.remove(b"a").is_err());
        engine.insert(b"a", b"1").unwrap();
        engine.fail_writes(Faults::Always);
        for _ in 0..3 {
            assert!(engine.insert(b"b", b"1").is_err());
        }
        engine.heal();
        engine.insert(b"b", b"1").unwrap();
        assert_eq!(engine.failed_writes(), 5);
        let keys: Vec<Vec<u8>> = engine
            .range(Bound::Unbounded, Bound::Unbounded)
            .rev()
            .map(|e| e.unwrap().0)
            .collect();
        assert_eq!(keys, [b"b".to_vec(), b"a".to_vec()]);
    }
}
