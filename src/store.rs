//! The durable local log (sled). It knows nothing of the network.
//!
//! Layout (one sled database, `<data dir>/log`, one tree `log`, keys by prefix):
//! - `m` + message id (32 bytes) → `LogRecord` (proto/store.proto): the
//!   envelope as signed, direction, local sequence number, delivery state.
//! - `r` + room id + `0x00` + room clock (u64 BE) + message id → message id:
//!   a room's posts and operations in the room's order (the same on every node).
//! - `c` + peer id bytes + sequence (u64 BE) → message id.
//! - `o` + message id + recipient peer id bytes → `OutboxRecord`: a sent DM
//!   (or group message, per member) waiting for its receipt.
//! - `b` + peer id bytes → empty: a blocked peer.
//! - `p` + group id + sequence (u64 BE) → op id: a group's signed ops, replayed at start.
//! - `q` + group id + Lamport (u64 BE) + message id → message id: a group's
//!   messages in display order (Lamport clock, then id), the same on every member.
//! - `k` + peer id bytes → petname (UTF-8, may be empty): a contact.
//! - `s` + setting name → value: node settings (`requests`: 1 accept, 0 refuse).
//!
//! A message's index entry is written before the message itself. Writes reach
//! disk on [`Store::flush`]; the node calls it (batched, see `node::commit`)
//! before it reports a send done, sends a receipt or shows a DM.
//!
//! The keys and records above are this module's; the map that holds them is
//! an [`Engine`]: sled in the product ([`Store::open`]), or a
//! [`MemoryEngine`] that fails writes or flushes on demand in tests
//! ([`Store::with_engine`]). In an encrypted data directory every value is
//! sealed with the directory's data key on its way to the engine
//! ([`Store::open_sealed`], `sealed.rs`); the keys above stay readable.

mod engine;
mod sealed;

pub use engine::{Engine, Entries, Faults, MemoryEngine};

use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use libp2p::PeerId;

use crate::envelope::Signed;
use crate::id::{MessageId, Room};
use crate::message::Body;
use crate::seal::{DataKey, SealError};
use crate::wire::{LogRecord, OutboxRecord};
use sealed::SealedEngine;

/// sled's page cache. The log is append-mostly and read rarely, so a small
/// cache keeps an idle node's memory low (sled's default is 1 GiB).
const CACHE_BYTES: u64 = 4 * 1024 * 1024;

pub use crate::message::{Delivery, Direction};

/// A message read back from the log.
#[derive(Debug, Clone)]
pub struct LoggedMessage {
    /// The verified message.
    pub message: Signed,
    /// Sent or received.
    pub direction: Direction,
    /// Delivery state (for sent DMs).
    pub delivery: Delivery,
    /// Local clock when logged, ms since the Unix epoch.
    pub logged_ms: u64,
    /// Local sequence number: the order of the log.
    pub seq: u64,
}

/// What [`Store::insert`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inserted {
    /// A new message, logged with this sequence number.
    New(u64),
    /// The id was already in the log; nothing changed.
    Duplicate,
}

/// A storage failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// sled failed (the product's engine).
    #[error("local log: {0}")]
    Sled(#[from] sled::Error),
    /// Another engine failed (a test engine's injected failure).
    #[error("local log: {0}")]
    Engine(String),
    /// A sealed value did not open: the log was altered, or is another
    /// directory's.
    #[error("local log: {0}")]
    Seal(#[from] SealError),
    /// The log is encrypted and was opened without its key.
    #[error("the log at {} is encrypted: it needs the data directory's passphrase", .0.display())]
    Encrypted(PathBuf),
    /// The log is plaintext and was opened as an encrypted one.
    #[error("the log at {} is not encrypted", .0.display())]
    NotEncrypted(PathBuf),
}

impl StoreError {
    /// Whether another handle (this process or another) holds the log open.
    pub fn is_locked(&self) -> bool {
        matches!(self, StoreError::Sled(e) if e.to_string().contains("could not acquire lock"))
    }
}

/// The local message log.
#[derive(Clone)]
pub struct Store {
    log: Arc<dyn Engine>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

const MESSAGE: u8 = b'm';
const ROOM: u8 = b'r';
const CONVERSATION: u8 = b'c';
const OUTBOX: u8 = b'o';
const BLOCKED: u8 = b'b';
const CONTACT: u8 = b'k';
const GROUP_OP: u8 = b'p';
const GROUP_MESSAGE: u8 = b'q';
const SETTING: u8 = b's';
const ADDRESSES: u8 = b'a';

/// A sent DM waiting for its receipt, as kept in the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxItem {
    /// The DM.
    pub id: MessageId,
    /// Its recipient.
    pub to: PeerId,
    /// Attempts made.
    pub attempts: u32,
    /// Next attempt due (ms since the Unix epoch).
    pub next_ms: u64,
    /// Expiry (ms since the Unix epoch).
    pub expires_ms: u64,
}

impl Store {
    /// Opens (or creates) the log at `path`. Only one process may have it
    /// open: a second open fails with a lock error.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let engine = open_sled(path)?;
        // Read as plaintext, sealed values would look like corrupt records
        // and be skipped; new plaintext ones would mix into a sealed log.
        if engine.db.contains_key(sealed::MARKER)? {
            return Err(StoreError::Encrypted(path.to_path_buf()));
        }
        Ok(Self::with_engine(engine))
    }

    /// Opens (or creates) an encrypted log at `path`: every value is sealed
    /// with `key`, bound to its key. A log sealed with another key fails
    /// with [`StoreError::Seal`] before anything is read or written, and a
    /// plaintext log with [`StoreError::NotEncrypted`].
    pub fn open_sealed(path: &Path, key: &DataKey) -> Result<Self, StoreError> {
        let inner = open_sled(path)?;
        let id_base = match inner.db.get(sealed::MARKER)? {
            Some(marker) => {
                let base = key
                    .open(sealed::MARKER_CONTEXT, &marker)
                    .and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
                    .ok_or_else(|| SealError::Tampered {
                        what: format!("the log at {}", path.display()),
                    })?;
                u64::from_be_bytes(base)
            }
            None if inner.tree.is_empty() => {
                inner
                    .db
                    .insert(sealed::MARKER, key.seal(sealed::MARKER_CONTEXT, &0u64.to_be_bytes()))?;
                0
            }
            None => return Err(StoreError::NotEncrypted(path.to_path_buf())),
        };
        Ok(Self::with_engine(SealedEngine {
            inner,
            key: key.clone(),
            id_base,
        }))
    }

    /// Writes a sealed copy of this (plaintext) log to a new log at `to`,
    /// flushed, and returns how many entries it copied. Sequence numbers
    /// of the copy continue after this log's. Used by the conversion of a
    /// data directory (`data_dir::encrypt`), which opens the copy again to
    /// check it before switching to it.
    pub fn copy_sealed(&self, to: &Path, key: &DataKey) -> Result<u64, StoreError> {
        let inner = open_sled(to)?;
        if inner.db.contains_key(sealed::MARKER)? || !inner.tree.is_empty() {
            return Err(StoreError::Engine(format!("{} is not empty", to.display())));
        }
        // An id this log has never handed out, and every later one.
        let id_base = self.log.next_id()?;
        inner
            .db
            .insert(sealed::MARKER, key.seal(sealed::MARKER_CONTEXT, &id_base.to_be_bytes()))?;
        let copy = SealedEngine {
            inner,
            key: key.clone(),
            id_base,
        };
        let mut n = 0;
        for entry in self.log.range(Bound::Unbounded, Bound::Unbounded) {
            let (k, v) = entry?;
            copy.insert(&k, &v)?;
            n += 1;
        }
        copy.flush()?;
        Ok(n)
    }

    /// Every entry of the log, key and value, in key order: what a
    /// conversion compares, old against new.
    pub fn entries(&self) -> impl Iterator<Item = Result<(Vec<u8>, Vec<u8>), StoreError>> + '_ {
        self.log.range(Bound::Unbounded, Bound::Unbounded)
    }

    /// A log on the given engine, e.g. a [`MemoryEngine`] a test keeps a
    /// clone of to make it fail.
    pub fn with_engine(engine: impl Engine) -> Self {
        Self { log: Arc::new(engine) }
    }

    /// An empty log in memory (a [`MemoryEngine`] that never fails).
    pub fn in_memory() -> Self {
        Self::with_engine(MemoryEngine::new())
    }

    /// [`Store::open`], waiting up to `patience` for a log that was just
    /// closed in this process: sled's background threads release the file
    /// lock a moment after the last handle drops.
    pub fn open_waiting(path: &Path, patience: std::time::Duration) -> Result<Self, StoreError> {
        Self::open_keyed_waiting(path, None, patience)
    }

    /// [`Store::open_waiting`] for a log that is encrypted with `key`, or
    /// plaintext when `key` is None.
    pub fn open_keyed_waiting(
        path: &Path,
        key: Option<&DataKey>,
        patience: std::time::Duration,
    ) -> Result<Self, StoreError> {
        let deadline = std::time::Instant::now() + patience;
        loop {
            let opened = match key {
                Some(key) => Self::open_sealed(path, key),
                None => Self::open(path),
            };
            match opened {
                Err(e) if e.is_locked() && std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                other => return other,
            }
        }
    }

    /// Logs a message unless its id is already logged. `local` is the peer id
    /// of this node: it decides which conversation a DM belongs to.
    pub fn insert(&self, message: &Signed, direction: Direction, local: &PeerId) -> Result<Inserted, StoreError> {
        let id = message.id();
        let key = message_key(&id);
        if self.log.contains(&key)? {
            return Ok(Inserted::Duplicate);
        }
        let seq = self.log.next_id()?;
        let delivery = match (direction, message.body()) {
            (Direction::Sent, Body::Direct(_)) => Delivery::Queued,
            _ => Delivery::None,
        };
        let record = LogRecord {
            envelope: message.envelope().to_vec(),
            direction,
            logged_ms: now_ms(),
            delivery,
            receipt: Vec::new(),
            seq,
        }
        .encode();
        let index = match message.body() {
            Body::Hallway(post) => room_key(&post.room, post.clock, &id),
            Body::RoomOp(op) => room_key(&op.room, op.clock, &id),
            Body::Presence(_) => peer_key(&message.author(), seq),
            Body::Direct(dm) => {
                let peer = if dm.recipient == *local {
                    message.author()
                } else {
                    dm.recipient
                };
                peer_key(&peer, seq)
            }
            Body::Receipt(_) => peer_key(&message.author(), seq),
            Body::GroupOp(op) => {
                let mut key = vec![GROUP_OP];
                key.extend_from_slice(op.group.as_bytes());
                key.extend_from_slice(&seq.to_be_bytes());
                key
            }
            Body::Group(m) => {
                let mut key = vec![GROUP_MESSAGE];
                key.extend_from_slice(m.group.as_bytes());
                key.extend_from_slice(&m.lamport.to_be_bytes());
                key.extend_from_slice(id.as_bytes());
                key
            }
        };
        // Two plain inserts, index first: a crash between them leaves an index
        // entry without its message, which reads skip; a later insert of the
        // same message repairs it (an index keyed by sequence number gets a
        // second entry, and reads show only the one whose number is the
        // message's). (An atomic sled batch costs a log write
        // and sync_file_range per call, ~2x the CPU of the whole delivery
        // path; docs/PERFORMANCE.md.) The event loop is the only writer, so
        // the duplicate check above still holds.
        self.log.insert(&index, id.as_bytes())?;
        self.log.insert(&key, &record)?;
        Ok(Inserted::New(seq))
    }

    /// Records the delivery state of a sent DM, and the receipt that proves
    /// delivery. Returns false if the id is not in the log.
    pub fn set_delivery(
        &self,
        id: &MessageId,
        delivery: &Delivery,
        receipt: Option<&[u8]>,
    ) -> Result<bool, StoreError> {
        self.update(&message_key(id), |old| {
            let mut record = LogRecord::decode(old)?;
            record.delivery = delivery.clone();
            if let Some(receipt) = receipt {
                record.receipt = receipt.to_vec();
            }
            Some(record.encode())
        })
    }

    /// Attaches the receipt this node sent for a received DM, so that a
    /// retried DM is answered with the same receipt.
    pub fn set_receipt(&self, id: &MessageId, receipt: &[u8]) -> Result<(), StoreError> {
        self.update(&message_key(id), |old| {
            let mut record = LogRecord::decode(old)?;
            record.receipt = receipt.to_vec();
            Some(record.encode())
        })?;
        Ok(())
    }

    /// The receipt stored with a message, if any.
    pub fn receipt(&self, id: &MessageId) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .log
            .get(&message_key(id))?
            .and_then(|raw| LogRecord::decode(raw.as_slice()))
            .map(|r| r.receipt)
            .filter(|r| !r.is_empty()))
    }

    /// Whether a message id is in the log.
    pub fn contains(&self, id: &MessageId) -> Result<bool, StoreError> {
        self.log.contains(&message_key(id))
    }

    /// One message by id.
    pub fn get(&self, id: &MessageId) -> Result<Option<LoggedMessage>, StoreError> {
        Ok(self.log.get(&message_key(id))?.and_then(|raw| decode_record(&raw)))
    }

    /// The last `limit` messages of a room (posts and room operations) in
    /// the room's order (clock, then id), oldest first.
    pub fn room(&self, room: &Room, limit: usize) -> Result<Vec<LoggedMessage>, StoreError> {
        let prefix = room_prefix(room);
        let mut out = Vec::new();
        for entry in self.scan_prefix(&prefix).rev() {
            if out.len() >= limit {
                break;
            }
            let (key, _) = entry?;
            let Some((_, id)) = room_entry(&prefix, &key) else {
                continue;
            };
            if let Some(m) = self.get(&id)? {
                out.push(m);
            }
        }
        out.reverse();
        Ok(out)
    }

    /// Visits the (clock, id) of a room's messages before `before` (all of
    /// them when None), newest first, while `visit` returns true. Reads
    /// lazily: a page of a long room costs the page.
    pub fn room_keys_back(
        &self,
        room: &Room,
        before: Option<(u64, MessageId)>,
        mut visit: impl FnMut(u64, MessageId) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        let prefix = room_prefix(room);
        let entries = match before {
            Some((clock, id)) => self
                .log
                .range(Bound::Included(&prefix), Bound::Excluded(&room_key(room, clock, &id))),
            None => self.scan_prefix(&prefix),
        };
        for entry in entries.rev() {
            let (key, _) = entry?;
            if let Some((clock, id)) = room_entry(&prefix, &key)
                && !visit(clock, id)?
            {
                break;
            }
        }
        Ok(())
    }

    /// The (clock, id) of a room's last `limit` messages with a clock of at
    /// least `min_clock`, in room order: the set the history sync reconciles.
    pub fn room_keys(&self, room: &Room, min_clock: u64, limit: usize) -> Result<Vec<(u64, MessageId)>, StoreError> {
        let prefix = room_prefix(room);
        let mut start = prefix.clone();
        start.extend_from_slice(&min_clock.to_be_bytes());
        let mut end = prefix.clone();
        end.extend_from_slice(&[0xff; 41]);
        let mut out = Vec::new();
        for entry in self.log.range(Bound::Included(&start), Bound::Excluded(&end)).rev() {
            if out.len() >= limit {
                break;
            }
            let (key, _) = entry?;
            if let Some(k) = room_entry(&prefix, &key) {
                out.push(k);
            }
        }
        out.reverse();
        Ok(out)
    }

    /// The envelope of a logged message, as signed.
    pub fn envelope(&self, id: &MessageId) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .log
            .get(&message_key(id))?
            .and_then(|raw| LogRecord::decode(raw.as_slice()))
            .map(|r| r.envelope))
    }

    /// Drops a deleted room post from the log: its record (and so its text)
    /// and its room index entry. The delete operation stays, so the post is
    /// refused if it comes again.
    pub fn forget(&self, room: &Room, clock: u64, id: &MessageId) -> Result<(), StoreError> {
        self.log.remove(&room_key(room, clock, id))?;
        self.log.remove(&message_key(id))?;
        Ok(())
    }

    /// The last `limit` direct messages exchanged with `peer`, oldest first.
    pub fn conversation(&self, peer: &PeerId, limit: usize) -> Result<Vec<LoggedMessage>, StoreError> {
        let mut prefix = vec![CONVERSATION];
        prefix.extend_from_slice(&peer.to_bytes());
        self.read_index(&prefix, limit)
    }

    /// The last `limit` messages of a group, in display order.
    pub fn group(&self, group: &crate::group::GroupId, limit: usize) -> Result<Vec<LoggedMessage>, StoreError> {
        let mut prefix = vec![GROUP_MESSAGE];
        prefix.extend_from_slice(group.as_bytes());
        let mut out = Vec::new();
        for entry in self.scan_prefix(&prefix).rev() {
            if out.len() >= limit {
                break;
            }
            let (_, id) = entry?;
            let Ok(id) = <[u8; 32]>::try_from(id.as_ref()) else {
                continue;
            };
            if let Some(m) = self.get(&MessageId::from_bytes(id))? {
                out.push(m);
            }
        }
        out.reverse();
        Ok(out)
    }

    /// The highest Lamport clock of a group's logged messages.
    pub fn group_lamport(&self, group: &crate::group::GroupId) -> Result<Option<u64>, StoreError> {
        let mut prefix = vec![GROUP_MESSAGE];
        prefix.extend_from_slice(group.as_bytes());
        let Some(last) = self.scan_prefix(&prefix).next_back() else {
            return Ok(None);
        };
        let (key, _) = last?;
        Ok(key
            .get(33..41)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map(u64::from_be_bytes))
    }

    /// Every group op in the log, in log order per group (for replay).
    pub fn group_ops(&self) -> Result<Vec<Signed>, StoreError> {
        let mut out = Vec::new();
        for entry in self.scan_prefix(&[GROUP_OP]) {
            let (_, id) = entry?;
            let Ok(id) = <[u8; 32]>::try_from(id.as_ref()) else {
                continue;
            };
            if let Some(m) = self.get(&MessageId::from_bytes(id))? {
                out.push(m.message);
            }
        }
        Ok(out)
    }

    /// The rooms that have messages in the log.
    pub fn rooms(&self) -> Result<Vec<Room>, StoreError> {
        let mut out: Vec<Room> = Vec::new();
        for entry in self.scan_prefix(&[ROOM]) {
            let (key, _) = entry?;
            let key = &key[1..];
            let Some(end) = key.iter().position(|b| *b == 0) else {
                continue;
            };
            let Ok(name) = std::str::from_utf8(&key[..end]) else {
                continue;
            };
            if out.last().map(Room::as_str) != Some(name)
                && let Ok(room) = Room::new(name)
            {
                out.push(room);
            }
        }
        Ok(out)
    }

    /// The peers this node has exchanged direct messages with.
    pub fn conversations(&self) -> Result<Vec<PeerId>, StoreError> {
        let mut out: Vec<PeerId> = Vec::new();
        for entry in self.scan_prefix(&[CONVERSATION]) {
            let (key, _) = entry?;
            let key = &key[1..];
            if key.len() < 8 {
                continue;
            }
            if let Ok(peer) = PeerId::from_bytes(&key[..key.len() - 8])
                && out.last() != Some(&peer)
            {
                out.push(peer);
            }
        }
        Ok(out)
    }

    /// Records (or updates) a DM in the outbox.
    pub fn outbox_put(&self, item: &OutboxItem) -> Result<(), StoreError> {
        let record = OutboxRecord {
            to: item.to,
            attempts: item.attempts,
            next_ms: item.next_ms,
            expires_ms: item.expires_ms,
        };
        self.log.insert(&outbox_key(&item.id, &item.to), &record.encode())
    }

    /// Removes a DM (for one recipient) from the outbox.
    pub fn outbox_remove(&self, id: &MessageId, to: &PeerId) -> Result<(), StoreError> {
        self.log.remove(&outbox_key(id, to))
    }

    /// Every DM in the outbox (skipping unreadable entries).
    pub fn outbox(&self) -> Result<Vec<OutboxItem>, StoreError> {
        let mut out = Vec::new();
        for entry in self.scan_prefix(&[OUTBOX]) {
            let (key, value) = entry?;
            let (Some(Ok(id)), Some(record)) = (
                key.get(1..33).map(<[u8; 32]>::try_from),
                OutboxRecord::decode(value.as_slice()),
            ) else {
                continue;
            };
            out.push(OutboxItem {
                id: MessageId::from_bytes(id),
                to: record.to,
                attempts: record.attempts,
                next_ms: record.next_ms,
                expires_ms: record.expires_ms,
            });
        }
        Ok(out)
    }

    /// Blocks or unblocks a peer (kept across restarts).
    pub fn set_blocked(&self, peer: &PeerId, blocked: bool) -> Result<(), StoreError> {
        let mut key = vec![BLOCKED];
        key.extend_from_slice(&peer.to_bytes());
        if blocked {
            self.log.insert(&key, &[])
        } else {
            self.log.remove(&key)
        }
    }

    /// The blocked peers.
    pub fn blocked(&self) -> Result<Vec<PeerId>, StoreError> {
        let mut out = Vec::new();
        for entry in self.scan_prefix(&[BLOCKED]) {
            if let Ok(peer) = PeerId::from_bytes(&entry?.0[1..]) {
                out.push(peer);
            }
        }
        Ok(out)
    }

    /// Adds or renames a contact (`nick`: the local petname, may be empty).
    pub fn set_contact(&self, peer: &PeerId, nick: &str) -> Result<(), StoreError> {
        let mut key = vec![CONTACT];
        key.extend_from_slice(&peer.to_bytes());
        self.log.insert(&key, nick.as_bytes())
    }

    /// Removes a contact.
    pub fn remove_contact(&self, peer: &PeerId) -> Result<(), StoreError> {
        let mut key = vec![CONTACT];
        key.extend_from_slice(&peer.to_bytes());
        self.log.remove(&key)
    }

    /// The contacts and their petnames.
    pub fn contacts(&self) -> Result<Vec<(PeerId, String)>, StoreError> {
        let mut out = Vec::new();
        for entry in self.scan_prefix(&[CONTACT]) {
            let (key, value) = entry?;
            if let Ok(peer) = PeerId::from_bytes(&key[1..]) {
                out.push((peer, String::from_utf8_lossy(&value).into_owned()));
            }
        }
        Ok(out)
    }

    /// Deletes every message of the conversation with `peer` (a declined
    /// request). Returns how many were deleted.
    pub fn delete_conversation(&self, peer: &PeerId) -> Result<usize, StoreError> {
        let mut prefix = vec![CONVERSATION];
        prefix.extend_from_slice(&peer.to_bytes());
        let mut n = 0;
        for entry in self.scan_prefix(&prefix) {
            let (key, id) = entry?;
            // The message first: a crash leaves an index entry that reads skip.
            if let Ok(id) = <[u8; 32]>::try_from(id.as_slice()) {
                self.log.remove(&message_key(&MessageId::from_bytes(id)))?;
            }
            self.log.remove(&key)?;
            n += 1;
        }
        Ok(n)
    }

    /// Remembers a peer's last known addresses (an opaque record the node
    /// encodes; see `node::reach`).
    pub fn set_addresses(&self, peer: &PeerId, record: &[u8]) -> Result<(), StoreError> {
        let mut key = vec![ADDRESSES];
        key.extend_from_slice(&peer.to_bytes());
        self.log.insert(&key, record)
    }

    /// Forgets a peer's addresses.
    pub fn remove_addresses(&self, peer: &PeerId) -> Result<(), StoreError> {
        let mut key = vec![ADDRESSES];
        key.extend_from_slice(&peer.to_bytes());
        self.log.remove(&key)
    }

    /// Every remembered address record, by peer.
    pub fn addresses(&self) -> Result<Vec<(PeerId, Vec<u8>)>, StoreError> {
        let mut out = Vec::new();
        for entry in self.scan_prefix(&[ADDRESSES]) {
            let (key, value) = entry?;
            if let Ok(peer) = PeerId::from_bytes(&key[1..]) {
                out.push((peer, value));
            }
        }
        Ok(out)
    }

    /// A setting, if set.
    pub fn setting(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let mut key = vec![SETTING];
        key.extend_from_slice(name.as_bytes());
        self.log.get(&key)
    }

    /// Sets a setting.
    pub fn set_setting(&self, name: &str, value: &[u8]) -> Result<(), StoreError> {
        let mut key = vec![SETTING];
        key.extend_from_slice(name.as_bytes());
        self.log.insert(&key, value)
    }

    /// Writes everything logged so far to disk (blocking).
    pub fn flush(&self) -> Result<(), StoreError> {
        self.log.flush()
    }

    /// Sets a key to what `change` makes of its value, or removes it if
    /// `change` gives nothing (an unreadable record). Returns false if the
    /// key has no value. Not atomic: the event loop is the only writer.
    fn update(&self, key: &[u8], change: impl FnOnce(&[u8]) -> Option<Vec<u8>>) -> Result<bool, StoreError> {
        let Some(old) = self.log.get(key)? else {
            return Ok(false);
        };
        match change(&old) {
            Some(new) => self.log.insert(key, &new)?,
            None => self.log.remove(key)?,
        }
        Ok(true)
    }

    /// The entries whose keys start with `prefix`, in key order.
    fn scan_prefix(&self, prefix: &[u8]) -> Entries<'_> {
        match prefix_end(prefix) {
            Some(end) => self.log.range(Bound::Included(prefix), Bound::Excluded(&end)),
            None => self.log.range(Bound::Included(prefix), Bound::Unbounded),
        }
    }

    fn read_index(&self, prefix: &[u8], limit: usize) -> Result<Vec<LoggedMessage>, StoreError> {
        let mut out = Vec::new();
        for entry in self.scan_prefix(prefix).rev() {
            if out.len() >= limit {
                break;
            }
            let (key, id) = entry?;
            if key.len() != prefix.len() + 8 {
                continue; // another room whose name extends this one
            }
            let id: [u8; 32] = id.as_slice().try_into().unwrap_or([0; 32]);
            // An entry whose sequence number is not its message's is left by
            // a crash between the two inserts of `insert`: the message was
            // inserted again later under a new sequence number, with its own
            // entry. Only the message's own entry shows it (else it would be
            // shown twice).
            let key_seq = key[prefix.len()..].try_into().map(u64::from_be_bytes).ok();
            if let Some(raw) = self.log.get(&message_key(&MessageId::from_bytes(id)))?
                && let Some(m) = decode_record(&raw)
                && key_seq == Some(m.seq)
            {
                out.push(m);
            }
        }
        out.reverse();
        Ok(out)
    }
}

/// sled with the log's settings, and its one tree.
fn open_sled(path: &Path) -> Result<engine::SledEngine, StoreError> {
    let db = sled::Config::new()
        .path(path)
        .cache_capacity(CACHE_BYTES)
        // The node flushes explicitly; the background flush is a backstop.
        .flush_every_ms(Some(1000))
        .open()?;
    let tree = db.open_tree("log")?;
    Ok(engine::SledEngine { db, tree })
}

/// The first key after every key that starts with `prefix`, if there is one.
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

fn message_key(id: &MessageId) -> [u8; 33] {
    let mut key = [MESSAGE; 33];
    key[1..].copy_from_slice(id.as_bytes());
    key
}

fn outbox_key(id: &MessageId, to: &PeerId) -> Vec<u8> {
    let mut key = vec![OUTBOX];
    key.extend_from_slice(id.as_bytes());
    key.extend_from_slice(&to.to_bytes());
    key
}

fn room_prefix(room: &Room) -> Vec<u8> {
    let mut key = vec![ROOM];
    key.extend_from_slice(room.as_str().as_bytes());
    key.push(0);
    key
}

fn room_key(room: &Room, clock: u64, id: &MessageId) -> Vec<u8> {
    let mut key = room_prefix(room);
    key.extend_from_slice(&clock.to_be_bytes());
    key.extend_from_slice(id.as_bytes());
    key
}

/// The (clock, id) of a room index key, if it is one of `prefix`'s room.
fn room_entry(prefix: &[u8], key: &[u8]) -> Option<(u64, MessageId)> {
    let rest = key.strip_prefix(prefix)?;
    if rest.len() != 40 {
        return None; // another room whose name extends this one
    }
    let clock = u64::from_be_bytes(rest[..8].try_into().ok()?);
    Some((clock, MessageId::from_bytes(rest[8..].try_into().ok()?)))
}

fn peer_key(peer: &PeerId, seq: u64) -> Vec<u8> {
    let mut key = vec![CONVERSATION];
    key.extend_from_slice(&peer.to_bytes());
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

fn decode_record(raw: &[u8]) -> Option<LoggedMessage> {
    let record = LogRecord::decode(raw)?;
    Some(LoggedMessage {
        message: Signed::open_trusted(&record.envelope).ok()?,
        direction: record.direction,
        delivery: record.delivery,
        logged_ms: record.logged_ms,
        seq: record.seq,
    })
}

/// Milliseconds since the Unix epoch on this machine's clock.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{DirectMessage, HallwayPost};
    use crate::{Body, Identity};

    /// A post whose room clock grows with each call, so rooms read back in
    /// the order posted.
    fn post(who: &Identity, room: &str, text: &str) -> Signed {
        static CLOCK: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let clock = CLOCK.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Signed::sign(
            who,
            Body::Hallway(HallwayPost {
                room: Room::new(room).unwrap(),
                text: text.into(),
                time_ms: 1,
                nick: None,
                clock,
                reply_to: None,
                mentions: Vec::new(),
                question: false,
                stamp: None,
            }),
        )
    }

    fn dm(from: &Identity, to: &Identity, text: &str) -> Signed {
        Signed::sign(
            from,
            Body::Direct(DirectMessage {
                recipient: to.peer_id(),
                text: text.into(),
                time_ms: 1,
                nick: None,
                reaction: None,
            }),
        )
    }

    fn texts(log: &[LoggedMessage]) -> Vec<String> {
        log.iter()
            .map(|m| match m.message.body() {
                Body::Hallway(p) => p.text.clone(),
                Body::Direct(d) => d.text.clone(),
                _ => String::new(),
            })
            .collect()
    }

    /// Regression: a DM whose index entry was written but not its record (a
    /// SIGKILL between the two inserts) and which then arrived again was
    /// shown twice in its conversation (tests/it/crash.rs saw 1001 of 1000).
    #[test]
    fn a_message_inserted_again_after_a_torn_insert_is_read_once() {
        let (me, bob) = (Identity::generate(), Identity::generate());
        let store = Store::in_memory();
        let m = dm(&bob, &me, "hello");
        store.insert(&m, Direction::Received, &me.peer_id()).unwrap();
        // The torn insert: the index entry stays, the record is gone.
        store.log.remove(&message_key(&m.id())).unwrap();
        assert!(store.conversation(&bob.peer_id(), 10).unwrap().is_empty());
        store.insert(&m, Direction::Received, &me.peer_id()).unwrap();
        assert_eq!(texts(&store.conversation(&bob.peer_id(), 10).unwrap()), vec!["hello"]);
    }

    #[test]
    fn logs_reads_back_in_order_dedupes_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let (me, bob, carol) = (Identity::generate(), Identity::generate(), Identity::generate());
        let m = me.peer_id();
        {
            let store = Store::open(&path).unwrap();
            let first = post(&bob, "a", "one");
            assert!(matches!(
                store.insert(&first, Direction::Received, &m).unwrap(),
                Inserted::New(_)
            ));
            assert_eq!(
                store.insert(&first, Direction::Received, &m).unwrap(),
                Inserted::Duplicate
            );
            store.insert(&post(&me, "a", "two"), Direction::Sent, &m).unwrap();
            store
                .insert(&post(&bob, "ab", "other room"), Direction::Received, &m)
                .unwrap();
            let out = dm(&me, &bob, "hi bob");
            store.insert(&out, Direction::Sent, &m).unwrap();
            store.insert(&dm(&bob, &me, "hi me"), Direction::Received, &m).unwrap();
            store
                .insert(&dm(&carol, &me, "carol here"), Direction::Received, &m)
                .unwrap();
            assert!(
                store
                    .set_delivery(&out.id(), &Delivery::Delivered, Some(b"receipt"))
                    .unwrap()
            );
            store.flush().unwrap();
        }
        let store = Store::open_waiting(&path, std::time::Duration::from_secs(5)).unwrap();
        let a = store.room(&Room::new("a").unwrap(), 10).unwrap();
        assert_eq!(texts(&a), ["one", "two"]);
        assert_eq!(a[1].direction, Direction::Sent);
        assert_eq!(
            texts(&store.room(&Room::new("a").unwrap(), 1).unwrap()),
            ["two"],
            "the latest"
        );
        assert_eq!(
            texts(&store.room(&Room::new("ab").unwrap(), 10).unwrap()),
            ["other room"]
        );
        let with_bob = store.conversation(&bob.peer_id(), 10).unwrap();
        assert_eq!(texts(&with_bob), ["hi bob", "hi me"]);
        assert_eq!(with_bob[0].delivery, Delivery::Delivered);
        assert_eq!(
            store.receipt(&with_bob[0].message.id()).unwrap().as_deref(),
            Some(&b"receipt"[..])
        );
        assert_eq!(store.rooms().unwrap().len(), 2);
        assert_eq!(store.conversations().unwrap().len(), 2);
    }

    #[test]
    fn a_second_open_of_the_same_log_fails() {
        let dir = tempfile::tempdir().unwrap();
        let _first = Store::open(&dir.path().join("log")).unwrap();
        assert!(Store::open(&dir.path().join("log")).is_err());
    }

    #[test]
    fn sealed_values_hide_their_text_and_open_only_where_they_were_put() {
        let (me, bob) = (Identity::generate(), Identity::generate());
        let raw = MemoryEngine::new();
        let key = DataKey::generate();
        let store = Store::with_engine(SealedEngine {
            inner: raw.clone(),
            key: key.clone(),
            id_base: 0,
        });
        let first = dm(&me, &bob, "the first secret");
        let second = dm(&me, &bob, "the second secret");
        store.insert(&first, Direction::Sent, &me.peer_id()).unwrap();
        store.insert(&second, Direction::Sent, &me.peer_id()).unwrap();
        let texts_on_disk = raw
            .range(Bound::Unbounded, Bound::Unbounded)
            .map(|e| e.unwrap().1)
            .filter(|v| v.windows(6).any(|w| w == b"secret"))
            .count();
        assert_eq!(texts_on_disk, 0);
        assert_eq!(
            texts(&store.conversation(&bob.peer_id(), 10).unwrap()),
            ["the first secret", "the second secret"]
        );

        // Swapping two records under their keys is found, not believed.
        let (k1, k2) = (message_key(&first.id()), message_key(&second.id()));
        let (v1, v2) = (raw.get(&k1).unwrap().unwrap(), raw.get(&k2).unwrap().unwrap());
        raw.insert(&k1, &v2).unwrap();
        raw.insert(&k2, &v1).unwrap();
        assert!(matches!(store.get(&first.id()), Err(StoreError::Seal(_))));
        // Another directory's key opens nothing.
        let other = Store::with_engine(SealedEngine {
            inner: raw.clone(),
            key: DataKey::generate(),
            id_base: 0,
        });
        assert!(other.conversation(&bob.peer_id(), 10).is_err());
    }

    #[test]
    fn sealed_and_plaintext_logs_are_never_mistaken_and_a_copy_goes_on_after_its_original() {
        let dir = tempfile::tempdir().unwrap();
        let (plain_path, sealed_path) = (dir.path().join("plain"), dir.path().join("sealed"));
        let (me, bob) = (Identity::generate(), Identity::generate());
        let key = DataKey::generate();
        {
            let plain = Store::open(&plain_path).unwrap();
            for text in ["one", "two", "three"] {
                plain
                    .insert(&dm(&me, &bob, text), Direction::Sent, &me.peer_id())
                    .unwrap();
            }
            assert_eq!(
                plain.copy_sealed(&sealed_path, &key).unwrap(),
                6,
                "three records, three indexes"
            );
        }
        let patience = std::time::Duration::from_secs(5);
        assert!(matches!(
            Store::open_keyed_waiting(&plain_path, Some(&key), patience),
            Err(StoreError::NotEncrypted(_))
        ));
        assert!(matches!(
            Store::open_keyed_waiting(&sealed_path, None, patience),
            Err(StoreError::Encrypted(_))
        ));
        assert!(matches!(
            Store::open_keyed_waiting(&sealed_path, Some(&DataKey::generate()), patience),
            Err(StoreError::Seal(_))
        ));
        let sealed = Store::open_keyed_waiting(&sealed_path, Some(&key), patience).unwrap();
        sealed
            .insert(&dm(&me, &bob, "four"), Direction::Sent, &me.peer_id())
            .unwrap();
        assert_eq!(
            texts(&sealed.conversation(&bob.peer_id(), 10).unwrap()),
            ["one", "two", "three", "four"]
        );
    }
}
