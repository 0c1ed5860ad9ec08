//! Reach: how a node finds peers it has no address for, and is found.
//!
//! Plain state with time passed in, driven by the event loop
//! (`event_loop/net.rs`), which carries out what it decides on the swarm.
//! The parts (docs/ARCHITECTURE.md, "Reach"):
//!
//! - an [`AddressBook`] of peers' last known addresses, kept in the log so
//!   a contact is reachable again after a restart without any helper;
//! - address records: each node publishes a signed libp2p peer record of
//!   its addresses (direct and relayed) in the DHT under
//!   [`protocol::peer_key`]; [`open_record`] is the one check every record
//!   passes, whether a DHT server is asked to store it or a lookup found it;
//! - room discovery: members of a room are DHT providers of
//!   [`protocol::room_key`]; [`Reach::rooms_to_search`] says when to look
//!   for more of them;
//! - relays: a node without a confirmed direct address reserves a slot on
//!   up to [`MAX_RELAYS`] publicly reachable helpers ([`Reach::relay_wanted`]);
//! - the paths of each connection (direct or relayed, and over which
//!   transport), for `/peers`.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use libp2p::core::{PeerRecord, SignedEnvelope};
use libp2p::multiaddr::Protocol;
use libp2p::swarm::ConnectionId;
use libp2p::{Multiaddr, PeerId};

use crate::id::Room;
use crate::protocol::{self, MAX_RECORD_ADDRS, MAX_RECORD_BYTES};

/// Relay reservations a private node holds at once: one spare, so that
/// losing a helper does not make the node unreachable until it notices.
pub(crate) const MAX_RELAYS: usize = 2;

/// Peers whose addresses are remembered at most (the least recently seen
/// are forgotten first).
pub(crate) const MAX_BOOK_PEERS: usize = 1024;

/// Addresses remembered per peer at most (the most recent first).
pub(crate) const MAX_BOOK_ADDRS: usize = 8;

/// A peer is looked up in the DHT at most this often.
pub(crate) const LOOKUP_INTERVAL_MS: u64 = 10_000;

/// Lookups in flight at most.
pub(crate) const MAX_LOOKUPS: usize = 32;

/// How often a room with no connected member looks for members.
pub(crate) const LONELY_SEARCH_MS: u64 = 5_000;

/// How often a room with members looks for more (members that joined
/// through another helper, or a split that healed).
pub(crate) const ROOM_SEARCH_MS: u64 = 300_000;

/// The address record is republished at least this often (its DHT TTL is
/// three times as long), and at most every [`PUBLISH_MIN_GAP_MS`].
pub(crate) const REPUBLISH_MS: u64 = 600_000;

/// Changes of address within this gap are published together.
pub(crate) const PUBLISH_MIN_GAP_MS: u64 = 2_000;

/// New members a room search dials at most.
pub(crate) const MAX_DIALS_PER_SEARCH: usize = 8;

/// How long a node waits for a room member with the smaller peer id to dial
/// it before dialling itself (see [`Reach::member_dial_waits`]).
pub(crate) const MEMBER_DIAL_WAIT_MS: u64 = 2_000;

/// How many such waits are kept at once.
pub(crate) const MAX_MEMBER_WAITS: usize = 64;

/// Hole-punching attempts per peer while connected (dial-backs and
/// retries), after the first.
pub(crate) const MAX_PUNCH_ATTEMPTS: u32 = 4;

/// The wait before another hole punch after a failed one, times the
/// attempts so far.
pub(crate) const PUNCH_RETRY_MS: u64 = 2_000;

/// How soon after our relay reservation is accepted lonely rooms are
/// searched again: long enough for a member that started with us to have
/// announced its own relayed address.
pub(crate) const SEARCH_AFTER_RESERVATION_MS: u64 = 500;

/// Remembered addresses per peer, the most recently learned first.
#[derive(Debug, Clone, Default)]
pub(crate) struct AddressBook {
    peers: HashMap<PeerId, Known>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Known {
    /// Most recent first, at most [`MAX_BOOK_ADDRS`], without `/p2p/` suffix
    /// for the peer itself.
    pub(crate) addrs: Vec<Multiaddr>,
    /// When they were last learned or confirmed (ms since the epoch).
    pub(crate) seen_ms: u64,
}

impl AddressBook {
    /// Restores a remembered entry (at start, from the log).
    pub(crate) fn restore(&mut self, peer: PeerId, known: Known) {
        self.peers.insert(peer, known);
        self.evict();
    }

    /// Learns addresses of `peer`; returns the entry to persist if it changed.
    pub(crate) fn learn(&mut self, peer: PeerId, addrs: &[Multiaddr], now_ms: u64) -> Option<Known> {
        let entry = self.peers.entry(peer).or_insert_with(|| Known {
            addrs: Vec::new(),
            seen_ms: now_ms,
        });
        let before = entry.addrs.clone();
        for addr in addrs.iter().rev() {
            let Some(addr) = strip_peer(addr, &peer) else {
                continue;
            };
            entry.addrs.retain(|a| *a != addr);
            entry.addrs.insert(0, addr);
        }
        entry.addrs.truncate(MAX_BOOK_ADDRS);
        // The time moves only when something changed or an hour passed, so
        // that the log is not rewritten on every identify round.
        let stale = now_ms.saturating_sub(entry.seen_ms) > 3_600_000;
        let changed = entry.addrs != before || stale;
        if changed {
            entry.seen_ms = now_ms;
        }
        let out = changed.then(|| entry.clone()).filter(|k| !k.addrs.is_empty());
        if entry.addrs.is_empty() {
            self.peers.remove(&peer);
        }
        self.evict();
        out
    }

    /// The remembered addresses of `peer`.
    pub(crate) fn get(&self, peer: &PeerId) -> &[Multiaddr] {
        self.peers.get(peer).map_or(&[], |k| k.addrs.as_slice())
    }

    pub(crate) fn len(&self) -> usize {
        self.peers.len()
    }

    fn evict(&mut self) {
        while self.peers.len() > MAX_BOOK_PEERS {
            let oldest = self.peers.iter().min_by_key(|(p, k)| (k.seen_ms, **p)).map(|(p, _)| *p);
            match oldest {
                Some(p) => self.peers.remove(&p),
                None => break,
            };
        }
    }
}

/// `addr` without a trailing `/p2p/<peer>`; `None` if it names another
/// peer at its end or is not dialable at all (an unspecified IP).
pub(crate) fn strip_peer(addr: &Multiaddr, peer: &PeerId) -> Option<Multiaddr> {
    let mut addr = addr.clone();
    if let Some(Protocol::P2p(p)) = addr.iter().last() {
        if p != *peer {
            return None;
        }
        addr.pop();
    }
    let unspecified = addr.iter().any(|p| match p {
        Protocol::Ip4(ip) => ip.is_unspecified(),
        Protocol::Ip6(ip) => ip.is_unspecified(),
        _ => false,
    });
    (!unspecified && !addr.is_empty()).then_some(addr)
}

/// Whether an address goes through a relay.
pub(crate) fn is_relayed(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| matches!(p, Protocol::P2pCircuit))
}

/// The transport an address uses, as `/peers` names it.
pub(crate) fn transport_of(addr: &Multiaddr) -> &'static str {
    // A relayed address names the transport to the relay; what the
    // connection itself runs over is the circuit.
    let mut transport = "other";
    for p in addr.iter() {
        match p {
            Protocol::P2pCircuit => return "relay",
            Protocol::QuicV1 => transport = "quic",
            Protocol::Tcp(_) if transport == "other" => transport = "tcp",
            Protocol::Memory(_) => transport = "memory",
            _ => {}
        }
    }
    transport
}

/// Why a DHT record was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum RecordError {
    #[error("record larger than {MAX_RECORD_BYTES} bytes")]
    TooLarge,
    #[error("not a signed peer record: {0}")]
    Malformed(String),
    #[error("record key is not the key of the peer that signed it")]
    WrongKey,
    #[error("more than {MAX_RECORD_ADDRS} addresses")]
    TooManyAddresses,
}

/// A verified address record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AddressRecord {
    pub(crate) peer: PeerId,
    pub(crate) seq: u64,
    pub(crate) addrs: Vec<Multiaddr>,
}

/// Checks a DHT record found under `key`: a libp2p signed peer record
/// (standard envelope, payload type `/libp2p/routing-state-record`) signed
/// by the peer whose [`protocol::peer_key`] is `key`, within the size bounds.
pub(crate) fn open_record(key: &[u8], value: &[u8]) -> Result<AddressRecord, RecordError> {
    if value.len() > MAX_RECORD_BYTES {
        return Err(RecordError::TooLarge);
    }
    let envelope = SignedEnvelope::from_protobuf_encoding(value).map_err(|e| RecordError::Malformed(e.to_string()))?;
    let record =
        PeerRecord::from_signed_envelope_interop(envelope).map_err(|e| RecordError::Malformed(e.to_string()))?;
    if protocol::peer_key(&record.peer_id()).as_slice() != key {
        return Err(RecordError::WrongKey);
    }
    if record.addresses().len() > MAX_RECORD_ADDRS {
        return Err(RecordError::TooManyAddresses);
    }
    Ok(AddressRecord {
        peer: record.peer_id(),
        seq: record.seq(),
        addrs: record.addresses().to_vec(),
    })
}

/// What the node knows about its own reachability (`/net`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reachability {
    /// Another node dialled one of this node's addresses back (AutoNAT).
    Public,
    /// Dial-backs failed and none succeeded: behind a NAT or a firewall.
    Private,
    /// Not tested yet.
    Unknown,
}

/// One connection to a peer, as `/peers` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Path {
    pub(crate) id: ConnectionId,
    pub(crate) addr: Multiaddr,
    pub(crate) outbound: bool,
    /// Through a relay (an inbound relayed connection's remote address is
    /// only `/p2p/<peer>`: the circuit is on our side).
    pub(crate) relayed: bool,
}

/// A relay this node reserved (or is reserving) a slot on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Relay {
    /// The circuit address listened on (`…/p2p/<relay>/p2p-circuit`).
    pub(crate) addr: Multiaddr,
    /// The relay accepted the reservation.
    pub(crate) accepted: bool,
}

/// Hole punching with one peer (see hole_punch.rs).
#[derive(Debug, Clone, Default)]
struct Punching {
    /// Inbound relayed connections from the peer already answered with a
    /// dial back.
    answered: BTreeSet<ConnectionId>,
    /// Dial-backs and retries made so far.
    attempts: u32,
    /// When to try again after a failed hole punch.
    retry_at_ms: Option<u64>,
}

/// When a joined room last searched for members.
#[derive(Debug, Clone, Default)]
struct RoomSearch {
    next_ms: u64,
    provided: bool,
}

/// Everything the node decides about reach.
#[derive(Debug, Default)]
pub(crate) struct Reach {
    pub(crate) book: AddressBook,
    /// Confirmed external addresses (AutoNAT, relay reservations).
    external: BTreeSet<Multiaddr>,
    autonat_ok: u32,
    autonat_failed: u32,
    pub(crate) relays: HashMap<PeerId, Relay>,
    /// When each peer was last looked up (bounded by pruning old entries).
    looked_up: HashMap<PeerId, u64>,
    in_flight: usize,
    rooms: HashMap<Room, RoomSearch>,
    publish_dirty: bool,
    last_publish_ms: Option<u64>,
    paths: HashMap<PeerId, Vec<Path>>,
    /// Peers known to serve the DHT (kad protocol in identify).
    pub(crate) dht_servers: BTreeSet<PeerId>,
    /// Peers holding a relay slot on this node (bounded by the relay's own
    /// reservation limit).
    reserved_here: BTreeSet<PeerId>,
    /// Room members found in the DHT that this node leaves to dial it first,
    /// with when it dials them itself if they have not.
    deferred: BTreeMap<PeerId, u64>,
    /// Hole punching per peer we are connected to (dial-backs and retries),
    /// forgotten when the last connection to it closes.
    punching: HashMap<PeerId, Punching>,
}

impl Reach {
    // ---- reachability ----------------------------------------------------

    pub(crate) fn external_confirmed(&mut self, addr: Multiaddr) {
        if self.external.insert(addr) {
            self.publish_dirty = true;
        }
    }

    pub(crate) fn external_expired(&mut self, addr: &Multiaddr) {
        if self.external.remove(addr) {
            self.publish_dirty = true;
        }
    }

    pub(crate) fn external(&self) -> impl Iterator<Item = &Multiaddr> {
        self.external.iter()
    }

    /// A node is public once it has a confirmed address that is not relayed.
    pub(crate) fn is_public(&self) -> bool {
        self.external.iter().any(|a| !is_relayed(a))
    }

    /// A dial-back test of `addr` ended. A test of a relayed address says
    /// nothing about this node's own reachability and is not counted.
    pub(crate) fn autonat_result(&mut self, addr: &Multiaddr, ok: bool) {
        if is_relayed(addr) {
            return;
        }
        if ok {
            self.autonat_ok += 1;
        } else {
            self.autonat_failed += 1;
        }
    }

    pub(crate) fn reachability(&self) -> Reachability {
        if self.is_public() {
            Reachability::Public
        } else if self.autonat_failed > 0 {
            Reachability::Private
        } else {
            Reachability::Unknown
        }
    }

    /// Whether this node serves the DHT: helpers always; others once they
    /// are known to be dialable directly. A private node that answered DHT
    /// queries would be put in routing tables nobody can reach it through.
    pub(crate) fn serves_dht(&self, helper: bool) -> bool {
        helper || self.is_public()
    }

    // ---- relays ----------------------------------------------------------

    /// The circuit address to reserve a slot on `peer` with, if this node
    /// wants one there: it is not public, it holds fewer than [`MAX_RELAYS`],
    /// and `peer` relays and serves the DHT (so it is publicly reachable)
    /// and was dialled at `dialled` (a direct address of ours to it).
    pub(crate) fn relay_wanted(
        &self,
        peer: PeerId,
        relays: bool,
        serves_dht: bool,
        dialled: Option<&Multiaddr>,
    ) -> Option<Multiaddr> {
        if self.is_public() || self.relays.len() >= MAX_RELAYS || self.relays.contains_key(&peer) {
            return None;
        }
        if !relays || !serves_dht {
            return None;
        }
        let addr = strip_peer(dialled?, &peer)?;
        if is_relayed(&addr) {
            return None;
        }
        Some(addr.with(Protocol::P2p(peer)).with(Protocol::P2pCircuit))
    }

    pub(crate) fn relay_requested(&mut self, peer: PeerId, addr: Multiaddr) {
        self.relays.insert(peer, Relay { addr, accepted: false });
    }

    /// A relay accepted our reservation: others can reach us through it
    /// from now on. The record and the room announcements go out again at
    /// once (not after [`PUBLISH_MIN_GAP_MS`]) and lonely rooms are searched
    /// again after [`SEARCH_AFTER_RESERVATION_MS`], because the members found
    /// before may only now be reachable (their own reservation lands at about
    /// the same time as ours).
    pub(crate) fn relay_accepted(&mut self, peer: &PeerId, now_ms: u64) {
        let first = self
            .relays
            .get_mut(peer)
            .is_some_and(|r| !std::mem::replace(&mut r.accepted, true));
        self.publish_dirty = true;
        if first {
            self.last_publish_ms = None;
            for search in self.rooms.values_mut() {
                search.next_ms = search.next_ms.min(now_ms + SEARCH_AFTER_RESERVATION_MS);
            }
        }
    }

    /// A peer reserved (`true`) or lost (`false`) a relay slot on this node.
    pub(crate) fn reservation_here(&mut self, peer: PeerId, held: bool) {
        if held {
            self.reserved_here.insert(peer);
        } else {
            self.reserved_here.remove(&peer);
        }
    }

    /// The addresses this DHT server stores for a room member that announced
    /// itself without any (it did not know one yet): a circuit through this
    /// node if the member holds a relay slot here, then the listen addresses
    /// it told us in identify. Never the address its connection came from:
    /// for a member behind a NAT that is the NAT's mapping, which answers no
    /// one, and a dial to it left pending collides with the hole punch that
    /// DCUtR makes on the same ports a moment later (seen in the NAT lab as
    /// "Handshake failed: input error" and then three timed-out attempts).
    pub(crate) fn provider_addresses(&self, provider: &PeerId, local: &PeerId) -> Vec<Multiaddr> {
        let mut out: Vec<Multiaddr> = Vec::new();
        if self.reserved_here.contains(provider) {
            for ext in self.external.iter().filter(|a| !is_relayed(a)) {
                let bare = strip_peer(ext, local).unwrap_or_else(|| ext.clone());
                out.push(bare.with(Protocol::P2p(*local)).with(Protocol::P2pCircuit));
            }
        }
        out.extend(self.book.get(provider).iter().cloned());
        out.truncate(MAX_RECORD_ADDRS);
        out
    }

    /// The reservation on `peer` is gone (its listener closed).
    pub(crate) fn relay_lost(&mut self, addr: &Multiaddr) -> Option<PeerId> {
        let peer = self.relays.iter().find(|(_, r)| r.addr == *addr).map(|(p, _)| *p)?;
        self.relays.remove(&peer);
        self.publish_dirty = true;
        Some(peer)
    }

    // ---- address records -------------------------------------------------

    /// The addresses this node publishes: its confirmed external addresses
    /// (direct first, then relayed), then its listen addresses, at most
    /// [`MAX_RECORD_ADDRS`]. Listen addresses are included because on a LAN
    /// or loopback they are how others reach it before anything is confirmed.
    pub(crate) fn record_addresses(&self, listen: &[Multiaddr], local: &PeerId) -> Vec<Multiaddr> {
        let mut out: Vec<Multiaddr> = Vec::new();
        let direct = self.external.iter().filter(|a| !is_relayed(a));
        let relayed = self.external.iter().filter(|a| is_relayed(a));
        let relays = self.relays.values().filter(|r| r.accepted).map(|r| &r.addr);
        for addr in direct.chain(relayed).chain(relays).chain(listen.iter()) {
            let Some(a) = strip_peer(addr, local) else { continue };
            if !out.contains(&a) {
                out.push(a);
            }
        }
        out.truncate(MAX_RECORD_ADDRS);
        out
    }

    /// Addresses changed: publish soon.
    pub(crate) fn addresses_changed(&mut self) {
        self.publish_dirty = true;
    }

    /// Whether to publish the address record now. Needs a DHT server to
    /// publish to; waits [`PUBLISH_MIN_GAP_MS`] between publications.
    pub(crate) fn publish_due(&mut self, now_ms: u64) -> bool {
        if self.dht_servers.is_empty() {
            return false;
        }
        let due = match self.last_publish_ms {
            None => true,
            Some(last) => {
                let gap = now_ms.saturating_sub(last);
                (self.publish_dirty && gap >= PUBLISH_MIN_GAP_MS) || gap >= REPUBLISH_MS
            }
        };
        if due {
            self.publish_dirty = false;
            self.last_publish_ms = Some(now_ms);
            // Room announcements carry the addresses of their time too.
            for search in self.rooms.values_mut() {
                search.provided = false;
            }
        }
        due
    }

    /// A DHT server appeared: the record and the rooms' provider entries go
    /// out again (the first ones may have found no server).
    pub(crate) fn dht_server_found(&mut self, peer: PeerId) -> bool {
        let first = self.dht_servers.is_empty();
        let new = self.dht_servers.insert(peer);
        if new && first {
            self.publish_dirty = true;
            self.last_publish_ms = None;
            for search in self.rooms.values_mut() {
                search.provided = false;
                search.next_ms = 0;
            }
        }
        new
    }

    // ---- lookups ---------------------------------------------------------

    /// Whether `peer` may be looked up now (once per [`LOOKUP_INTERVAL_MS`],
    /// [`MAX_LOOKUPS`] at once, and only with a DHT server to ask). Marks it.
    pub(crate) fn may_look_up(&mut self, peer: PeerId, now_ms: u64) -> bool {
        if self.dht_servers.is_empty() || self.in_flight >= MAX_LOOKUPS {
            return false;
        }
        if self
            .looked_up
            .get(&peer)
            .is_some_and(|t| now_ms.saturating_sub(*t) < LOOKUP_INTERVAL_MS)
        {
            return false;
        }
        if self.looked_up.len() >= MAX_BOOK_PEERS {
            self.looked_up
                .retain(|_, t| now_ms.saturating_sub(*t) < LOOKUP_INTERVAL_MS);
        }
        self.looked_up.insert(peer, now_ms);
        self.in_flight += 1;
        true
    }

    pub(crate) fn lookup_done(&mut self) {
        self.in_flight = self.in_flight.saturating_sub(1);
    }

    // ---- rooms -----------------------------------------------------------

    pub(crate) fn room_joined(&mut self, room: Room) {
        self.rooms.insert(room, RoomSearch::default());
    }

    pub(crate) fn room_left(&mut self, room: &Room) {
        self.rooms.remove(room);
    }

    /// Whether a search for `room` is kept (`Handle::room_footprint`).
    pub(crate) fn has_room(&self, room: &Room) -> bool {
        self.rooms.contains_key(room)
    }

    /// Rooms to announce ourselves in (start providing their key): joined
    /// rooms not yet announced, once a DHT server is known.
    pub(crate) fn rooms_to_provide(&mut self) -> Vec<Room> {
        if self.dht_servers.is_empty() {
            return Vec::new();
        }
        let mut out = Vec::new();
        for (room, search) in &mut self.rooms {
            if !search.provided {
                search.provided = true;
                out.push(room.clone());
            }
        }
        out.sort();
        out
    }

    /// Rooms to search for members now: every [`LONELY_SEARCH_MS`] while
    /// no member is connected, every [`ROOM_SEARCH_MS`] otherwise.
    pub(crate) fn rooms_to_search(&mut self, now_ms: u64, members: impl Fn(&Room) -> usize) -> Vec<Room> {
        if self.dht_servers.is_empty() {
            return Vec::new();
        }
        let mut out = Vec::new();
        for (room, search) in &mut self.rooms {
            if now_ms >= search.next_ms {
                let gap = if members(room) == 0 {
                    LONELY_SEARCH_MS
                } else {
                    ROOM_SEARCH_MS
                };
                search.next_ms = now_ms + gap;
                out.push(room.clone());
            }
        }
        out.sort();
        out
    }

    /// Whether to wait before dialling a room member just found in the DHT.
    /// Members alone in a room search for each other at the same moment, and
    /// if both dial, two relayed connections open and DCUtR starts a hole
    /// punch on each: four simultaneous dials between the same two ports,
    /// where a TCP simultaneous open pairs two initiators and every attempt
    /// fails (seen in the NAT lab). So the member with the smaller peer id
    /// dials at once and the other waits [`MEMBER_DIAL_WAIT_MS`] (it dials
    /// then if nothing came: the other may not be searching).
    pub(crate) fn member_dial_waits(&mut self, local: &PeerId, member: PeerId, now_ms: u64) -> bool {
        if local < &member {
            return false;
        }
        if let Some(due) = self.deferred.get(&member) {
            return now_ms < *due;
        }
        if self.deferred.len() >= MAX_MEMBER_WAITS {
            return false;
        }
        self.deferred.insert(member, now_ms + MEMBER_DIAL_WAIT_MS);
        true
    }

    /// Members whose wait is over (each returned once).
    pub(crate) fn member_dials_due(&mut self, now_ms: u64) -> Vec<PeerId> {
        let due: Vec<PeerId> = self
            .deferred
            .iter()
            .filter(|(_, t)| now_ms >= **t)
            .map(|(p, _)| *p)
            .collect();
        for peer in &due {
            self.deferred.remove(peer);
        }
        due
    }

    // ---- connections -----------------------------------------------------

    pub(crate) fn connected(&mut self, peer: PeerId, id: ConnectionId, addr: Multiaddr, outbound: bool, relayed: bool) {
        self.paths.entry(peer).or_default().push(Path {
            id,
            addr,
            outbound,
            relayed,
        });
    }

    pub(crate) fn disconnected(&mut self, peer: &PeerId, id: ConnectionId) {
        if let Some(paths) = self.paths.get_mut(peer) {
            paths.retain(|p| p.id != id);
            if paths.is_empty() {
                self.paths.remove(peer);
                self.punching.remove(peer);
            }
        }
    }

    /// Whether to dial `peer` once more, through a relay, so that a hole
    /// punch can start: DCUtR runs only on relayed connections dialled by the
    /// smaller id (`hole_punch::punches_on`), so when the larger one dials
    /// in, the smaller (this node) dials back, once per such connection and
    /// at most [`MAX_PUNCH_ATTEMPTS`] times while connected; never while a
    /// direct connection exists.
    pub(crate) fn dial_back_wanted(&mut self, local: &PeerId, peer: &PeerId) -> bool {
        if local >= peer {
            return false;
        }
        let paths = self.paths.get(peer).map(Vec::as_slice).unwrap_or_default();
        if paths.is_empty() || paths.iter().any(|p| !p.relayed) {
            return false;
        }
        let punching = self.punching.entry(*peer).or_default();
        let unanswered: Vec<ConnectionId> = paths
            .iter()
            .filter(|p| !p.outbound && !punching.answered.contains(&p.id))
            .map(|p| p.id)
            .collect();
        if unanswered.is_empty() || punching.attempts >= MAX_PUNCH_ATTEMPTS {
            return false;
        }
        punching.answered.extend(unanswered);
        punching.attempts += 1;
        true
    }

    /// A hole punch with `peer` failed (DCUtR reports it to one side or to
    /// both): try again after [`PUNCH_RETRY_MS`] times the attempts so far,
    /// up to [`MAX_PUNCH_ATTEMPTS`]. A failure at the first exchange (a side
    /// that knew no address of its own yet) or a NAT that dropped the first
    /// packets usually passes the next time.
    pub(crate) fn hole_punch_failed(&mut self, peer: PeerId, now_ms: u64) {
        if !self.paths.contains_key(&peer) {
            return;
        }
        let punching = self.punching.entry(peer).or_default();
        if punching.attempts < MAX_PUNCH_ATTEMPTS && punching.retry_at_ms.is_none() {
            punching.attempts += 1;
            punching.retry_at_ms = Some(now_ms + PUNCH_RETRY_MS * u64::from(punching.attempts));
        }
    }

    /// Peers to open a new relayed connection to now, for another hole
    /// punch: those whose retry is due and that are still only relayed.
    /// (The smaller id's new connection gets DCUtR itself; the larger id's
    /// makes the smaller dial back.)
    pub(crate) fn punch_retries_due(&mut self, now_ms: u64) -> Vec<PeerId> {
        let mut due = Vec::new();
        for (peer, punching) in &mut self.punching {
            if punching.retry_at_ms.is_some_and(|t| now_ms >= t) {
                punching.retry_at_ms = None;
                let paths = self.paths.get(peer).map(Vec::as_slice).unwrap_or_default();
                if !paths.is_empty() && paths.iter().all(|p| p.relayed) {
                    due.push(*peer);
                }
            }
        }
        due.sort();
        due
    }

    pub(crate) fn paths(&self, peer: &PeerId) -> &[Path] {
        self.paths.get(peer).map_or(&[], Vec::as_slice)
    }

    /// The direct address we dialled `peer` at, if any connection is ours.
    pub(crate) fn dialled(&self, peer: &PeerId) -> Option<&Multiaddr> {
        self.paths(peer)
            .iter()
            .find(|p| p.outbound && !p.relayed)
            .map(|p| &p.addr)
    }
}

/// A remembered entry as the log keeps it: `seen_ms` (8 bytes, little
/// endian), then each address as a 2-byte little-endian length and its bytes.
pub(crate) fn encode_known(known: &Known) -> Vec<u8> {
    let mut out = known.seen_ms.to_le_bytes().to_vec();
    for addr in &known.addrs {
        let bytes = addr.to_vec();
        out.extend_from_slice(&(bytes.len() as u16).to_le_bytes());
        out.extend_from_slice(&bytes);
    }
    out
}

/// Reads what [`encode_known`] wrote; `None` if it is not that.
pub(crate) fn decode_known(bytes: &[u8]) -> Option<Known> {
    let seen_ms = u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?);
    let mut rest = &bytes[8..];
    let mut addrs = Vec::new();
    while !rest.is_empty() {
        let len = u16::from_le_bytes(rest.get(..2)?.try_into().ok()?) as usize;
        let addr = Multiaddr::try_from(rest.get(2..2 + len)?.to_vec()).ok()?;
        addrs.push(addr);
        rest = &rest[2 + len..];
        if addrs.len() > MAX_BOOK_ADDRS {
            return None;
        }
    }
    Some(Known { addrs, seen_ms })
}

#[cfg(test)]
mod tests {
    use super::*;
    use libp2p::identity::Keypair;

    fn addr(s: &str) -> Multiaddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_book_keeps_the_newest_addresses_first_and_bounded() {
        let peer = PeerId::random();
        let mut book = AddressBook::default();
        let first: Vec<Multiaddr> = (0..10).map(|i| addr(&format!("/ip4/10.0.0.{i}/tcp/1"))).collect();
        assert!(book.learn(peer, &first, 1).is_some());
        assert_eq!(book.get(&peer).len(), MAX_BOOK_ADDRS);
        assert_eq!(book.get(&peer)[0], first[0]);
        // Learning the same again changes nothing, so nothing is persisted.
        assert!(book.learn(peer, &first[..2], 2).is_none());
        let newer = addr("/ip4/10.0.1.1/tcp/1");
        let known = book.learn(peer, std::slice::from_ref(&newer), 3).unwrap();
        assert_eq!(known.addrs[0], newer);
        assert_eq!(known.seen_ms, 3);
    }

    #[test]
    fn the_book_refuses_addresses_of_other_peers_and_unspecified_ones() {
        let (peer, other) = (PeerId::random(), PeerId::random());
        let mut book = AddressBook::default();
        let wrong = addr("/ip4/10.0.0.1/tcp/1").with(Protocol::P2p(other));
        let unspecified = addr("/ip4/0.0.0.0/tcp/1");
        assert!(book.learn(peer, &[wrong, unspecified], 1).is_none());
        assert!(book.get(&peer).is_empty());
        let own = addr("/ip4/10.0.0.1/tcp/1").with(Protocol::P2p(peer));
        book.learn(peer, &[own], 1);
        assert_eq!(book.get(&peer), &[addr("/ip4/10.0.0.1/tcp/1")]);
    }

    #[test]
    fn the_book_forgets_the_least_recently_seen_peer_beyond_its_bound() {
        let mut book = AddressBook::default();
        let peers: Vec<PeerId> = (0..=MAX_BOOK_PEERS).map(|_| PeerId::random()).collect();
        for (i, p) in peers.iter().enumerate() {
            book.learn(*p, &[addr("/ip4/10.0.0.1/tcp/1")], 1000 + i as u64);
        }
        assert_eq!(book.len(), MAX_BOOK_PEERS);
        assert!(book.get(&peers[0]).is_empty(), "the oldest went");
        assert!(!book.get(&peers[MAX_BOOK_PEERS]).is_empty());
    }

    #[test]
    fn remembered_entries_round_trip_and_garbage_is_refused() {
        let known = Known {
            addrs: vec![addr("/ip4/1.2.3.4/tcp/5"), addr("/ip4/1.2.3.4/udp/5/quic-v1")],
            seen_ms: 42,
        };
        assert_eq!(decode_known(&encode_known(&known)), Some(known));
        assert_eq!(decode_known(&[1, 2, 3]), None);
        let mut bad = encode_known(&Known {
            addrs: vec![addr("/ip4/1.2.3.4/tcp/5")],
            seen_ms: 1,
        });
        bad.truncate(bad.len() - 1);
        assert_eq!(decode_known(&bad), None);
    }

    fn record(key: &Keypair, addrs: Vec<Multiaddr>) -> Vec<u8> {
        PeerRecord::new_interop(key, addrs)
            .unwrap()
            .to_signed_envelope()
            .into_protobuf_encoding()
    }

    #[test]
    fn an_address_record_is_accepted_only_under_its_signers_key() {
        let key = Keypair::generate_ed25519();
        let peer = key.public().to_peer_id();
        let value = record(&key, vec![addr("/ip4/198.18.0.5/tcp/4001")]);
        let opened = open_record(&protocol::peer_key(&peer), &value).unwrap();
        assert_eq!(opened.peer, peer);
        assert_eq!(opened.addrs, vec![addr("/ip4/198.18.0.5/tcp/4001")]);
        // Someone else's record under this peer's key: refused.
        let mallory = Keypair::generate_ed25519();
        let forged = record(&mallory, vec![addr("/ip4/6.6.6.6/tcp/1")]);
        assert_eq!(
            open_record(&protocol::peer_key(&peer), &forged),
            Err(RecordError::WrongKey)
        );
        // A flipped byte breaks the signature.
        let mut flipped = value.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert!(matches!(
            open_record(&protocol::peer_key(&peer), &flipped),
            Err(RecordError::Malformed(_))
        ));
        assert_eq!(
            open_record(&protocol::peer_key(&peer), &vec![0; MAX_RECORD_BYTES + 1]),
            Err(RecordError::TooLarge)
        );
        let many: Vec<Multiaddr> = (0..=MAX_RECORD_ADDRS)
            .map(|i| addr(&format!("/ip4/10.0.0.{i}/tcp/1")))
            .collect();
        assert_eq!(
            open_record(&protocol::peer_key(&peer), &record(&key, many)),
            Err(RecordError::TooManyAddresses)
        );
    }

    #[test]
    fn a_private_node_reserves_on_at_most_two_public_relays_it_dialled() {
        let mut reach = Reach::default();
        let (a, b, c) = (PeerId::random(), PeerId::random(), PeerId::random());
        let dialled = addr("/ip4/198.18.0.1/tcp/4001");
        assert_eq!(
            reach.relay_wanted(a, true, false, Some(&dialled)),
            None,
            "not a DHT server"
        );
        assert_eq!(reach.relay_wanted(a, false, true, Some(&dialled)), None, "not a relay");
        assert_eq!(reach.relay_wanted(a, true, true, None), None, "never dialled directly");
        let circuit = reach.relay_wanted(a, true, true, Some(&dialled)).unwrap();
        assert_eq!(
            circuit,
            dialled.clone().with(Protocol::P2p(a)).with(Protocol::P2pCircuit)
        );
        reach.relay_requested(a, circuit.clone());
        assert_eq!(reach.relay_wanted(a, true, true, Some(&dialled)), None, "already");
        let cb = reach.relay_wanted(b, true, true, Some(&dialled)).unwrap();
        reach.relay_requested(b, cb);
        assert_eq!(reach.relay_wanted(c, true, true, Some(&dialled)), None, "two is enough");
        assert_eq!(reach.relay_lost(&circuit), Some(a));
        assert!(reach.relay_wanted(c, true, true, Some(&dialled)).is_some());
        // A public node needs no relay.
        reach.external_confirmed(addr("/ip4/198.18.0.9/tcp/1"));
        assert_eq!(reach.reachability(), Reachability::Public);
        assert_eq!(reach.relay_wanted(c, true, true, Some(&dialled)), None);
    }

    #[test]
    fn reachability_is_public_only_through_a_direct_address() {
        let mut reach = Reach::default();
        assert_eq!(reach.reachability(), Reachability::Unknown);
        let relay = PeerId::random();
        let circuit = addr("/ip4/198.18.0.1/tcp/1")
            .with(Protocol::P2p(relay))
            .with(Protocol::P2pCircuit);
        reach.autonat_result(&circuit, false);
        assert_eq!(
            reach.reachability(),
            Reachability::Unknown,
            "a relayed address says nothing"
        );
        reach.autonat_result(&addr("/ip4/198.18.3.1/tcp/4001"), false);
        assert_eq!(reach.reachability(), Reachability::Private);
        reach.external_confirmed(circuit);
        assert_eq!(reach.reachability(), Reachability::Private);
        assert!(!reach.serves_dht(false));
        assert!(reach.serves_dht(true));
        reach.external_confirmed(addr("/ip4/198.18.0.2/tcp/1"));
        assert!(reach.serves_dht(false));
    }

    #[test]
    fn publication_waits_for_a_server_then_batches_changes() {
        let mut reach = Reach::default();
        reach.addresses_changed();
        assert!(!reach.publish_due(0), "no DHT server to publish to");
        reach.dht_server_found(PeerId::random());
        assert!(reach.publish_due(10));
        assert!(!reach.publish_due(11), "nothing changed");
        reach.addresses_changed();
        assert!(!reach.publish_due(10 + PUBLISH_MIN_GAP_MS - 1), "within the gap");
        assert!(reach.publish_due(10 + PUBLISH_MIN_GAP_MS));
        assert!(reach.publish_due(10 + PUBLISH_MIN_GAP_MS + REPUBLISH_MS), "republished");
    }

    #[test]
    fn a_publication_announces_the_rooms_again_with_the_new_addresses() {
        let mut reach = Reach::default();
        let room = Room::new("lobby").unwrap();
        reach.room_joined(room.clone());
        reach.dht_server_found(PeerId::random());
        assert_eq!(reach.rooms_to_provide(), vec![room.clone()]);
        assert!(reach.publish_due(0));
        assert_eq!(reach.rooms_to_provide(), vec![room]);
    }

    #[test]
    fn an_accepted_reservation_is_published_at_once_and_lonely_rooms_searched_soon() {
        let mut reach = Reach::default();
        let room = Room::new("lobby").unwrap();
        reach.room_joined(room.clone());
        reach.dht_server_found(PeerId::random());
        assert!(reach.publish_due(0));
        assert_eq!(reach.rooms_to_provide(), vec![room.clone()]);
        assert_eq!(reach.rooms_to_search(0, |_| 0), vec![room.clone()]);
        let relay = PeerId::random();
        reach.relay_requested(relay, addr("/ip4/198.18.0.1/tcp/1/p2p-circuit"));
        reach.relay_accepted(&relay, 100);
        assert!(reach.publish_due(100), "no gap after a reservation");
        assert_eq!(reach.rooms_to_provide(), vec![room.clone()], "announced again");
        assert!(
            reach
                .rooms_to_search(100 + SEARCH_AFTER_RESERVATION_MS - 1, |_| 0)
                .is_empty()
        );
        assert_eq!(
            reach.rooms_to_search(100 + SEARCH_AFTER_RESERVATION_MS, |_| 0),
            vec![room]
        );
        // A renewal changes nothing.
        reach.relay_accepted(&relay, 200);
        assert!(!reach.publish_due(200), "within the gap");
    }

    #[test]
    fn a_room_entry_is_filled_with_a_circuit_through_us_never_with_the_nat_mapping() {
        let mut reach = Reach::default();
        let (local, member) = (PeerId::random(), PeerId::random());
        let lan = addr("/ip4/10.0.1.2/tcp/4001");
        reach.book.learn(member, std::slice::from_ref(&lan), 0);
        // The connection came from the member's NAT mapping.
        reach.connected(
            member,
            ConnectionId::new_unchecked(1),
            addr("/ip4/198.18.2.1/tcp/4001"),
            false,
            false,
        );
        assert_eq!(reach.provider_addresses(&member, &local), vec![lan.clone()]);
        reach.external_confirmed(addr("/ip4/198.18.1.1/tcp/4001"));
        reach.reservation_here(member, true);
        let circuit = addr("/ip4/198.18.1.1/tcp/4001")
            .with(Protocol::P2p(local))
            .with(Protocol::P2pCircuit);
        assert_eq!(reach.provider_addresses(&member, &local), vec![circuit, lan.clone()]);
        reach.reservation_here(member, false);
        assert_eq!(reach.provider_addresses(&member, &local), vec![lan]);
    }

    #[test]
    fn of_two_members_found_at_once_only_the_smaller_id_dials_first() {
        let (a, b) = {
            let (x, y) = (PeerId::random(), PeerId::random());
            if x < y { (x, y) } else { (y, x) }
        };
        let mut at_a = Reach::default();
        assert!(!at_a.member_dial_waits(&a, b, 0), "the smaller id dials at once");
        let mut at_b = Reach::default();
        assert!(at_b.member_dial_waits(&b, a, 0), "the larger id waits");
        assert!(at_b.member_dial_waits(&b, a, MEMBER_DIAL_WAIT_MS - 1), "still waiting");
        assert!(at_b.member_dials_due(MEMBER_DIAL_WAIT_MS - 1).is_empty());
        assert_eq!(at_b.member_dials_due(MEMBER_DIAL_WAIT_MS), vec![a]);
        assert!(at_b.member_dials_due(MEMBER_DIAL_WAIT_MS).is_empty(), "once");
        // Bounded: beyond the bound nobody waits.
        let mut full = Reach::default();
        let top = PeerId::random();
        let mut waited = 0;
        for _ in 0..4 * MAX_MEMBER_WAITS {
            let other = PeerId::random();
            if other < top && full.member_dial_waits(&top, other, 0) {
                waited += 1;
            }
        }
        assert!(waited <= MAX_MEMBER_WAITS);
    }

    #[test]
    fn the_smaller_id_dials_back_once_when_only_the_larger_one_dialled_a_relayed_connection() {
        let (a, b) = {
            let (x, y) = (PeerId::random(), PeerId::random());
            if x < y { (x, y) } else { (y, x) }
        };
        let circuit = addr("/ip4/198.18.1.1/tcp/4001/p2p-circuit");
        // At a (smaller): b dialled in through the relay.
        let mut at_a = Reach::default();
        assert!(!at_a.dial_back_wanted(&a, &b), "not connected");
        at_a.connected(b, ConnectionId::new_unchecked(1), circuit.clone(), false, true);
        assert!(at_a.dial_back_wanted(&a, &b));
        assert!(!at_a.dial_back_wanted(&a, &b), "once per connection");
        at_a.connected(b, ConnectionId::new_unchecked(2), circuit.clone(), true, true);
        assert!(!at_a.dial_back_wanted(&a, &b), "our own dial is no reason");
        at_a.connected(b, ConnectionId::new_unchecked(3), circuit.clone(), false, true);
        assert!(
            at_a.dial_back_wanted(&a, &b),
            "b dialled in again: b's hole punch failed"
        );
        for id in 1..=3 {
            at_a.disconnected(&b, ConnectionId::new_unchecked(id));
        }
        at_a.connected(b, ConnectionId::new_unchecked(4), circuit.clone(), false, true);
        assert!(at_a.dial_back_wanted(&a, &b), "again after a reconnect");
        for id in 5..5 + MAX_PUNCH_ATTEMPTS as usize {
            at_a.connected(b, ConnectionId::new_unchecked(id), circuit.clone(), false, true);
            at_a.dial_back_wanted(&a, &b);
        }
        at_a.connected(b, ConnectionId::new_unchecked(99), circuit.clone(), false, true);
        assert!(!at_a.dial_back_wanted(&a, &b), "bounded");
        // At b (larger): its own relayed connection needs nothing from it.
        let mut at_b = Reach::default();
        at_b.connected(a, ConnectionId::new_unchecked(1), circuit.clone(), true, true);
        assert!(!at_b.dial_back_wanted(&b, &a));
        // A direct connection needs no hole punch.
        let mut direct = Reach::default();
        direct.connected(b, ConnectionId::new_unchecked(1), circuit, false, true);
        direct.connected(
            b,
            ConnectionId::new_unchecked(2),
            addr("/ip4/198.18.2.2/tcp/1"),
            false,
            false,
        );
        assert!(!direct.dial_back_wanted(&a, &b));
    }

    #[test]
    fn a_failed_hole_punch_is_tried_again_later_a_bounded_number_of_times() {
        let mut reach = Reach::default();
        let peer = PeerId::random();
        let circuit = addr("/ip4/198.18.1.1/tcp/4001/p2p-circuit");
        reach.hole_punch_failed(peer, 0);
        assert!(reach.punch_retries_due(u64::MAX).is_empty(), "not connected");
        reach.connected(peer, ConnectionId::new_unchecked(1), circuit, true, true);
        reach.hole_punch_failed(peer, 0);
        reach.hole_punch_failed(peer, 0); // the other report of the same failure
        assert!(reach.punch_retries_due(PUNCH_RETRY_MS - 1).is_empty());
        assert_eq!(reach.punch_retries_due(PUNCH_RETRY_MS), vec![peer]);
        assert!(reach.punch_retries_due(PUNCH_RETRY_MS).is_empty(), "once");
        reach.hole_punch_failed(peer, 10_000);
        assert!(reach.punch_retries_due(10_000 + PUNCH_RETRY_MS).is_empty(), "backs off");
        assert_eq!(reach.punch_retries_due(10_000 + 2 * PUNCH_RETRY_MS), vec![peer]);
        for _ in 0..MAX_PUNCH_ATTEMPTS {
            reach.hole_punch_failed(peer, 20_000);
            reach.punch_retries_due(u64::MAX);
        }
        reach.hole_punch_failed(peer, 30_000);
        assert!(reach.punch_retries_due(u64::MAX).is_empty(), "bounded");
        // A direct connection ends it.
        let mut direct = Reach::default();
        direct.connected(
            peer,
            ConnectionId::new_unchecked(1),
            addr("/ip4/198.18.1.1/tcp/4001/p2p-circuit"),
            true,
            true,
        );
        direct.hole_punch_failed(peer, 0);
        direct.connected(
            peer,
            ConnectionId::new_unchecked(2),
            addr("/ip4/198.18.2.2/tcp/1"),
            true,
            false,
        );
        assert!(direct.punch_retries_due(u64::MAX).is_empty());
    }

    #[test]
    fn lookups_are_spaced_per_peer_and_bounded_in_flight() {
        let mut reach = Reach::default();
        let peer = PeerId::random();
        assert!(!reach.may_look_up(peer, 0), "no server to ask");
        reach.dht_server_found(PeerId::random());
        assert!(reach.may_look_up(peer, 0));
        reach.lookup_done();
        assert!(!reach.may_look_up(peer, LOOKUP_INTERVAL_MS - 1));
        assert!(reach.may_look_up(peer, LOOKUP_INTERVAL_MS));
        for _ in 0..MAX_LOOKUPS - 1 {
            assert!(reach.may_look_up(PeerId::random(), 0));
        }
        assert!(!reach.may_look_up(PeerId::random(), 0), "in flight bound");
    }

    #[test]
    fn rooms_search_often_while_alone_and_rarely_with_company() {
        let mut reach = Reach::default();
        let room = Room::new("lobby").unwrap();
        reach.room_joined(room.clone());
        assert!(reach.rooms_to_search(0, |_| 0).is_empty(), "no server yet");
        assert!(reach.rooms_to_provide().is_empty());
        reach.dht_server_found(PeerId::random());
        assert_eq!(reach.rooms_to_provide(), vec![room.clone()]);
        assert!(reach.rooms_to_provide().is_empty(), "once");
        assert_eq!(reach.rooms_to_search(0, |_| 0), vec![room.clone()]);
        assert!(reach.rooms_to_search(LONELY_SEARCH_MS - 1, |_| 0).is_empty());
        assert_eq!(reach.rooms_to_search(LONELY_SEARCH_MS, |_| 3), vec![room.clone()]);
        assert!(
            reach
                .rooms_to_search(LONELY_SEARCH_MS + ROOM_SEARCH_MS - 1, |_| 3)
                .is_empty()
        );
        reach.room_left(&room);
        assert!(reach.rooms_to_search(u64::MAX, |_| 0).is_empty());
    }

    #[test]
    fn transports_are_named_from_addresses() {
        assert_eq!(transport_of(&addr("/ip4/1.2.3.4/tcp/1")), "tcp");
        assert_eq!(transport_of(&addr("/ip4/1.2.3.4/udp/1/quic-v1")), "quic");
        let relay = PeerId::random();
        let circuit = addr("/ip4/1.2.3.4/tcp/1")
            .with(Protocol::P2p(relay))
            .with(Protocol::P2pCircuit);
        assert_eq!(transport_of(&circuit), "relay");
        assert!(is_relayed(&circuit));
    }
}
