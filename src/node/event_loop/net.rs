//! Reach, carried out: the DHT, relays, hole punching and AutoNAT events,
//! and the periodic work of being findable. What to do is decided in
//! `node::reach`; this file does it on the swarm.

use libp2p::core::{ConnectedPoint, PeerRecord};
use libp2p::kad::store::RecordStore;
use libp2p::kad::{self, GetProvidersOk, GetRecordOk, QueryId, QueryResult, Quorum, Record, RecordKey};
use libp2p::swarm::ConnectionId;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::{Multiaddr, PeerId, autonat, dcutr, identify, relay};

use super::{EventLoop, PendingDm};
use crate::id::{RejectReason, Room};
use crate::node::reach::{self, decode_known, encode_known, is_relayed, open_record, transport_of};
use crate::node::{BootstrapPeer, Connection, NetInfo, RelaySlot};
use crate::protocol::{self, DHT_PROTOCOL, RELAY_HOP_PROTOCOL};
use crate::store::now_ms;

/// The store setting that remembers the last bootstrap addresses.
pub(super) const BOOTSTRAP_SETTING: &str = "bootstrap";

/// What a DHT query the node started is for.
pub(super) enum Query {
    /// Looking up a peer's address record.
    Peer { peer: PeerId, found: bool },
    /// Looking for a room's members.
    Room,
}

impl EventLoop {
    /// Restores remembered addresses and the bootstrap list (at start).
    pub(super) fn restore_reach(&mut self, bootstrap: &[Multiaddr]) -> Result<(), crate::node::StartError> {
        for (peer, bytes) in self.store.addresses()? {
            if let Some(known) = decode_known(&bytes) {
                for addr in &known.addrs {
                    self.swarm.add_peer_address(peer, addr.clone());
                }
                self.reach.book.restore(peer, known);
            }
        }
        let bootstrap: Vec<Multiaddr> = if bootstrap.is_empty() {
            self.store
                .setting(BOOTSTRAP_SETTING)?
                .map(|v| {
                    String::from_utf8_lossy(&v)
                        .lines()
                        .filter_map(|l| l.parse().ok())
                        .collect()
                })
                .unwrap_or_default()
        } else {
            let text: Vec<String> = bootstrap.iter().map(ToString::to_string).collect();
            self.store.set_setting(BOOTSTRAP_SETTING, text.join("\n").as_bytes())?;
            bootstrap.to_vec()
        };
        for addr in bootstrap {
            let Some(libp2p::multiaddr::Protocol::P2p(peer)) = addr.iter().last() else {
                return Err(crate::node::StartError::BootstrapWithoutId(addr));
            };
            self.swarm.add_peer_address(peer, addr.clone());
            self.swarm.behaviour_mut().kad.add_address(&peer, addr.clone());
            self.helpers.push(addr.clone());
            self.bootstrap.push((peer, addr, None));
        }
        Ok(())
    }

    // ---- events --------------------------------------------------------------

    pub(super) fn handle_identify(&mut self, peer: PeerId, info: identify::Info) {
        tracing::debug!(%peer, protocols = ?info.protocols, addrs = ?info.listen_addrs, "identified");
        let now = now_ms();
        for addr in &info.listen_addrs {
            self.swarm.add_peer_address(peer, addr.clone());
        }
        self.learn(peer, &info.listen_addrs, now);
        let serves_dht = info.protocols.contains(&DHT_PROTOCOL);
        if serves_dht {
            for addr in info.listen_addrs.iter().filter(|a| !is_relayed(a)) {
                self.swarm.behaviour_mut().kad.add_address(&peer, addr.clone());
            }
            self.reach.dht_server_found(peer);
        }
        let relays = info.protocols.iter().any(|p| p.as_ref() == RELAY_HOP_PROTOCOL);
        let dialled = self.reach.dialled(&peer).cloned();
        if let Some(circuit) = self.reach.relay_wanted(peer, relays, serves_dht, dialled.as_ref()) {
            match self.swarm.listen_on(circuit.clone()) {
                Ok(_) => {
                    tracing::info!(relay = %peer, "reserving a relay slot: {circuit}");
                    self.reach.relay_requested(peer, circuit);
                }
                Err(e) => tracing::debug!(relay = %peer, "cannot reserve a relay slot: {e}"),
            }
        }
        self.dial_back_for_hole_punch(peer, &info.listen_addrs);
        self.send_queued_for(&peer);
        self.reach_tick();
    }

    /// Opens another relayed connection to `peer` after a failed hole punch
    /// (see `Reach::punch_retries_due`).
    fn dial_relayed_again(&mut self, peer: PeerId) {
        let relayed: Vec<Multiaddr> = self
            .reach
            .book
            .get(&peer)
            .iter()
            .filter(|a| is_relayed(a))
            .cloned()
            .collect();
        if !relayed.is_empty() {
            self.dial_for_hole_punch(peer, relayed, "trying the hole punch again");
        }
    }

    /// Dials `peer` at `addrs` although a connection to it exists: the new
    /// (relayed) connection is the one a hole punch runs on.
    fn dial_for_hole_punch(&mut self, peer: PeerId, addrs: Vec<Multiaddr>, why: &str) {
        tracing::debug!(%peer, ?addrs, "{why}");
        let opts = DialOpts::peer_id(peer)
            .addresses(addrs)
            .condition(PeerCondition::Always)
            .build();
        if let Err(e) = self.swarm.dial(opts) {
            tracing::debug!(%peer, "{why}: {e}");
        }
    }

    /// Dials `peer` through a relay when the only relayed connections to it
    /// are ones DCUtR does not run on (see hole_punch.rs), so that one
    /// hole punch starts. A peer without a relayed address is public: it is
    /// dialled directly.
    fn dial_back_for_hole_punch(&mut self, peer: PeerId, listen: &[Multiaddr]) {
        if !self.reach.dial_back_wanted(&self.local, &peer) {
            return;
        }
        let relayed: Vec<Multiaddr> = listen.iter().filter(|a| is_relayed(a)).cloned().collect();
        let addrs = if relayed.is_empty() { listen.to_vec() } else { relayed };
        self.dial_for_hole_punch(peer, addrs, "dialling back for a hole punch");
    }

    pub(super) fn handle_kad(&mut self, event: kad::Event) {
        match event {
            kad::Event::InboundRequest { request } => self.handle_dht_request(request),
            kad::Event::OutboundQueryProgressed { id, result, step, .. } => {
                self.handle_query(id, result, step.last);
            }
            kad::Event::RoutingUpdated { peer, .. } => {
                self.reach.dht_server_found(peer);
            }
            _ => {}
        }
    }

    /// A request to store something in our part of the DHT: only a peer's
    /// own signed address record (the newest), and provider entries (room
    /// keys are opaque to servers; kad's store bounds them).
    fn handle_dht_request(&mut self, request: kad::InboundRequest) {
        match request {
            kad::InboundRequest::PutRecord {
                source,
                record: Some(record),
                ..
            } => {
                let opened = match open_record(record.key.as_ref(), &record.value) {
                    Ok(opened) => opened,
                    Err(why) => {
                        tracing::debug!(%source, "refused a DHT record: {why}");
                        self.reject(source, RejectReason::BadRecord);
                        return;
                    }
                };
                let store = self.swarm.behaviour_mut().kad.store_mut();
                let newer_kept = store
                    .get(&record.key)
                    .and_then(|old| open_record(old.key.as_ref(), &old.value).ok())
                    .is_some_and(|old| old.seq > opened.seq);
                if !newer_kept && let Err(e) = store.put(record) {
                    tracing::debug!("DHT store full: {e}");
                }
            }
            kad::InboundRequest::AddProvider {
                record: Some(mut provider),
                ..
            } => {
                // A member that announced itself before it knew any address
                // of its own (a relay slot not reserved yet) would be left
                // out of answers: kad only returns entries with addresses.
                // What this node knows of it fills in (see
                // `Reach::provider_addresses` for what, and what not).
                if provider.addresses.is_empty() {
                    provider.addresses = self.reach.provider_addresses(&provider.provider, &self.local);
                }
                if let Err(e) = self.swarm.behaviour_mut().kad.store_mut().add_provider(provider) {
                    tracing::debug!("DHT provider store full: {e}");
                }
            }
            _ => {}
        }
    }

    fn handle_query(&mut self, id: QueryId, result: QueryResult, last: bool) {
        match result {
            QueryResult::GetRecord(Ok(GetRecordOk::FoundRecord(found))) => {
                let Some(Query::Peer { peer, found: seen }) = self.queries.get_mut(&id) else {
                    return;
                };
                let peer = *peer;
                match open_record(found.record.key.as_ref(), &found.record.value) {
                    Ok(record) if record.peer == peer => {
                        tracing::debug!(%peer, addrs = ?record.addrs, "address record found");
                        *seen = true;
                        self.found_addresses(peer, record.addrs);
                    }
                    other => {
                        tracing::debug!(%peer, ?other, "a record that is not the peer's");
                        if let Some(from) = found.peer {
                            self.reject(from, RejectReason::BadRecord);
                        }
                    }
                }
            }
            QueryResult::GetProviders(Ok(GetProvidersOk::FoundProviders { providers, .. })) => {
                tracing::debug!(?providers, "room members found");
                let mut dialled = 0;
                for member in providers {
                    if dialled >= reach::MAX_DIALS_PER_SEARCH {
                        break;
                    }
                    if self.reach_member(member) {
                        dialled += 1;
                    }
                }
            }
            QueryResult::PutRecord(Err(e)) => tracing::debug!("address record not stored: {e}"),
            QueryResult::PutRecord(Ok(_)) => tracing::debug!("address record published"),
            QueryResult::StartProviding(Ok(_)) => tracing::debug!("room membership announced"),
            QueryResult::GetRecord(Err(e)) => tracing::debug!("lookup failed: {e}"),
            QueryResult::GetProviders(Err(e)) => tracing::debug!("room search failed: {e}"),
            QueryResult::StartProviding(Err(e)) => tracing::debug!("room announcement not stored: {e}"),
            _ => {}
        }
        if last && let Some(Query::Peer { peer, found }) = self.queries.remove(&id) {
            self.reach.lookup_done();
            self.lookup_finished(peer, found);
        }
    }

    pub(super) fn handle_relay_client(&mut self, event: relay::client::Event) {
        match event {
            relay::client::Event::ReservationReqAccepted {
                relay_peer_id, renewal, ..
            } => {
                if !renewal {
                    tracing::info!(relay = %relay_peer_id, "relay reservation accepted");
                }
                self.reach.relay_accepted(&relay_peer_id, now_ms());
                self.reach_tick();
            }
            relay::client::Event::OutboundCircuitEstablished { relay_peer_id, .. } => {
                tracing::debug!(relay = %relay_peer_id, "relayed connection out");
            }
            relay::client::Event::InboundCircuitEstablished { src_peer_id, .. } => {
                tracing::debug!(from = %src_peer_id, "relayed connection in");
            }
        }
    }

    /// Events of the relay this node runs for others: only who holds a slot
    /// matters here (for the addresses stored with their room entries).
    pub(super) fn handle_relay_server(&mut self, event: relay::Event) {
        match event {
            relay::Event::ReservationReqAccepted { src_peer_id, .. } => {
                self.reach.reservation_here(src_peer_id, true);
            }
            relay::Event::ReservationClosed { src_peer_id } | relay::Event::ReservationTimedOut { src_peer_id } => {
                self.reach.reservation_here(src_peer_id, false);
            }
            _ => {}
        }
    }

    pub(super) fn handle_dcutr(&mut self, event: dcutr::Event) {
        match event.result {
            Ok(_) => {
                self.stats.hole_punches += 1;
                tracing::info!(peer = %event.remote_peer_id, "hole punched: the connection is direct");
            }
            Err(e) => {
                self.stats.hole_punch_failures += 1;
                self.reach.hole_punch_failed(event.remote_peer_id, now_ms());
                tracing::info!(peer = %event.remote_peer_id, "hole punching failed, staying relayed: {e}");
            }
        }
    }

    pub(super) fn handle_autonat(&mut self, event: autonat::v2::client::Event) {
        self.reach.autonat_result(&event.tested_addr, event.result.is_ok());
        tracing::debug!(addr = %event.tested_addr, ok = event.result.is_ok(), "reachability test");
    }

    pub(super) fn handle_connected(&mut self, peer: PeerId, id: ConnectionId, endpoint: &ConnectedPoint) {
        self.stats.connections_established += 1;
        let (addr, outbound, relayed) = match endpoint {
            ConnectedPoint::Dialer { address, .. } => (address.clone(), true, is_relayed(address)),
            ConnectedPoint::Listener {
                send_back_addr,
                local_addr,
            } => (send_back_addr.clone(), false, is_relayed(local_addr)),
        };
        if outbound && !relayed {
            self.learn(peer, std::slice::from_ref(&addr), now_ms());
        }
        self.reach.connected(peer, id, addr, outbound, relayed);
    }

    pub(super) fn handle_disconnected(&mut self, peer: &PeerId, id: ConnectionId) {
        self.reach.disconnected(peer, id);
    }

    pub(super) fn external_changed(&mut self, addr: Multiaddr, confirmed: bool) {
        if confirmed {
            tracing::info!("reachable at {addr}");
            self.reach.external_confirmed(addr);
        } else {
            self.reach.external_expired(&addr);
        }
        self.update_dht_mode();
    }

    /// An address the operator says is reachable: confirmed without a test.
    /// (The swarm tells behaviours, but reports no event for it.)
    pub(super) fn declare_external(&mut self, addr: Multiaddr) {
        self.swarm.add_external_address(addr.clone());
        self.external_changed(addr, true);
    }

    pub(super) fn listener_closed(&mut self, addresses: &[Multiaddr]) {
        for addr in addresses {
            let bare = reach::strip_peer(addr, &self.local).unwrap_or_else(|| addr.clone());
            if let Some(relay) = self.reach.relay_lost(&bare).or_else(|| self.reach.relay_lost(addr)) {
                tracing::info!(%relay, "relay reservation lost");
            }
        }
    }

    /// Serves the DHT, and relays and answers reachability tests for others
    /// (if it helps at all), exactly while the node is a helper or reachable
    /// directly.
    fn update_dht_mode(&mut self) {
        let serve = self.reach.serves_dht(self.helper);
        if serve != self.dht_serving {
            self.dht_serving = serve;
            let mode = if serve { kad::Mode::Server } else { kad::Mode::Client };
            self.swarm.behaviour_mut().kad.set_mode(Some(mode));
            let status = if serve {
                relay::Status::Enable
            } else {
                relay::Status::Disable
            };
            if let Some(relay) = self.swarm.behaviour_mut().relay.as_mut() {
                relay.set_status(Some(status));
            }
            if self.help_others {
                // Connections made from now on get the server's handler (or
                // none); connections already open keep what they had.
                self.swarm.behaviour_mut().autonat_server = serve.then(autonat::v2::server::Behaviour::default).into();
            }
            tracing::info!(?mode, "DHT mode");
        }
    }

    // ---- routing ---------------------------------------------------------------

    /// Remembers addresses of `peer` (and keeps them in the log).
    fn learn(&mut self, peer: PeerId, addrs: &[Multiaddr], now: u64) {
        if peer == self.local {
            return;
        }
        if let Some(known) = self.reach.book.learn(peer, addrs, now) {
            if let Err(e) = self.store.set_addresses(&peer, &encode_known(&known)) {
                tracing::warn!("cannot remember addresses: {e}");
            }
            self.unflushed = true;
        }
    }

    /// A lookup found `peer`'s addresses: dial them, and send what waits.
    fn found_addresses(&mut self, peer: PeerId, addrs: Vec<Multiaddr>) {
        self.stats.peer_lookups_found += 1;
        for addr in &addrs {
            self.swarm.add_peer_address(peer, addr.clone());
        }
        self.learn(peer, &addrs, now_ms());
        if !self.swarm.is_connected(&peer) {
            let opts = DialOpts::peer_id(peer)
                .addresses(addrs)
                .condition(PeerCondition::DisconnectedAndNotDialing)
                .build();
            if let Err(e) = self.swarm.dial(opts) {
                tracing::debug!(%peer, "dial after lookup: {e}");
            }
        }
    }

    /// A lookup ended: DMs that waited for it go out (found) or are queued.
    fn lookup_finished(&mut self, peer: PeerId, found: bool) {
        tracing::debug!(%peer, found, "lookup finished");
        let waiting = self.waiting_route.remove(&peer).unwrap_or_default();
        if found {
            self.send_queued_for(&peer);
            return;
        }
        for pending in waiting {
            let idle = self.outbox.get(&(pending.id, pending.to)).is_some_and(|e| !e.in_flight);
            if idle {
                self.attempt_failed(pending, crate::node::DmFailure::NoRoute);
            }
        }
    }

    /// Starts a DHT lookup of `peer`'s addresses, unless one ran lately.
    pub(super) fn look_up(&mut self, peer: PeerId) -> bool {
        if self
            .queries
            .values()
            .any(|q| matches!(q, Query::Peer { peer: p, .. } if *p == peer))
        {
            return true;
        }
        if peer == self.local || !self.reach.may_look_up(peer, now_ms()) {
            return false;
        }
        self.stats.peer_lookups += 1;
        tracing::debug!(%peer, "looking the peer up in the DHT");
        let key = RecordKey::new(&protocol::peer_key(&peer));
        let id = self.swarm.behaviour_mut().kad.get_record(key);
        self.queries.insert(id, Query::Peer { peer, found: false });
        true
    }

    /// A DM's dial failed: look its recipient up before queueing it.
    /// Returns false if no lookup can run (the caller queues it now).
    pub(super) fn route_dm(&mut self, pending: PendingDm) -> Result<(), PendingDm> {
        if self.swarm.is_connected(&pending.to) || !self.look_up(pending.to) {
            return Err(pending);
        }
        // The attempt is over (the outbox may start another when the peer is
        // found); what the user sees waits for the lookup.
        let key = (pending.id, pending.to);
        let _ = self.outbox.failed(&key, now_ms());
        self.waiting_route.entry(pending.to).or_default().push(pending);
        Ok(())
    }

    /// Connects to a room member found in the DHT (or leaves it to the
    /// member for a moment: `Reach::member_dial_waits`). Returns whether it
    /// started anything.
    fn reach_member(&mut self, member: PeerId) -> bool {
        if member == self.local || self.swarm.is_connected(&member) || self.blocked.contains(&member) {
            return false;
        }
        if self.reach.member_dial_waits(&self.local, member, now_ms()) {
            return true;
        }
        self.dial_member(member)
    }

    fn dial_member(&mut self, member: PeerId) -> bool {
        if self.swarm.is_connected(&member) || self.blocked.contains(&member) {
            return false;
        }
        let known = self.reach.book.get(&member).to_vec();
        if known.is_empty() {
            return self.look_up(member);
        }
        let opts = DialOpts::peer_id(member)
            .addresses(known)
            .extend_addresses_through_behaviour()
            .condition(PeerCondition::DisconnectedAndNotDialing)
            .build();
        if self.swarm.dial(opts).is_err() {
            return self.look_up(member);
        }
        // If the remembered addresses are stale the dial fails; a lookup
        // then finds the current ones.
        self.look_up(member);
        true
    }

    // ---- periodic ----------------------------------------------------------------

    /// Publishes the address record and room entries when due, and searches
    /// for members of rooms that need them.
    pub(super) fn reach_tick(&mut self) {
        let now = now_ms();
        self.update_dht_mode();
        for member in self.reach.member_dials_due(now) {
            self.dial_member(member);
        }
        for peer in self.reach.punch_retries_due(now) {
            self.dial_relayed_again(peer);
        }
        // The record first: publishing marks the rooms to be announced again
        // with the addresses of now.
        if self.reach.publish_due(now) {
            self.publish_record();
        }
        for room in self.reach.rooms_to_provide() {
            let key = RecordKey::new(&protocol::room_key(room.as_str()));
            if let Err(e) = self.swarm.behaviour_mut().kad.start_providing(key) {
                tracing::debug!(%room, "cannot announce room membership: {e}");
            }
        }
        let counts: std::collections::HashMap<Room, usize> = self
            .rooms
            .iter()
            .map(|(room, _)| (room.clone(), self.room_peers_of(room).len()))
            .collect();
        for room in self.reach.rooms_to_search(now, |r| counts.get(r).copied().unwrap_or(0)) {
            let key = RecordKey::new(&protocol::room_key(room.as_str()));
            tracing::debug!(%room, "searching the DHT for room members");
            let id = self.swarm.behaviour_mut().kad.get_providers(key);
            self.queries.insert(id, Query::Room);
        }
    }

    fn publish_record(&mut self) {
        let addrs = self.reach.record_addresses(&self.listen_addrs, &self.local);
        let record = match PeerRecord::new_interop(self.identity.keypair(), addrs) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!("cannot sign address record: {e}");
                return;
            }
        };
        let value = record.to_signed_envelope().into_protobuf_encoding();
        let key = RecordKey::new(&protocol::peer_key(&self.local));
        if let Err(e) = self
            .swarm
            .behaviour_mut()
            .kad
            .put_record(Record::new(key, value), Quorum::One)
        {
            tracing::debug!("cannot publish address record: {e}");
        }
    }

    pub(super) fn room_left_dht(&mut self, room: &Room) {
        self.reach.room_left(room);
        let key = RecordKey::new(&protocol::room_key(room.as_str()));
        self.swarm.behaviour_mut().kad.stop_providing(&key);
    }

    // ---- queries -----------------------------------------------------------------

    pub(super) fn net_info(&mut self) -> NetInfo {
        let kad = &mut self.swarm.behaviour_mut().kad;
        let dht_peers = kad.kbuckets().map(|b| b.num_entries()).sum();
        let bootstrap = self
            .helpers
            .iter()
            .map(|addr| {
                let connected = match addr.iter().last() {
                    Some(libp2p::multiaddr::Protocol::P2p(p)) => self.swarm.is_connected(&p),
                    _ => false,
                };
                BootstrapPeer {
                    addr: addr.clone(),
                    connected,
                }
            })
            .collect();
        let mut relays: Vec<RelaySlot> = self
            .reach
            .relays
            .values()
            .map(|r| RelaySlot {
                addr: r.addr.clone(),
                accepted: r.accepted,
            })
            .collect();
        relays.sort_by_key(|r| r.addr.to_string());
        NetInfo {
            reachability: self.reach.reachability(),
            external: self.reach.external().cloned().collect(),
            listening: self.listen_addrs.clone(),
            relays,
            dht_server: self.dht_serving,
            dht_peers,
            bootstrap,
            remembered: self.reach.book.len(),
        }
    }

    pub(super) fn connections_of(&self, peer: &PeerId) -> Vec<Connection> {
        self.reach
            .paths(peer)
            .iter()
            .map(|p| Connection {
                addr: p.addr.clone(),
                relayed: p.relayed,
                transport: if p.relayed {
                    "relay".to_owned()
                } else {
                    transport_of(&p.addr).to_owned()
                },
                outbound: p.outbound,
            })
            .collect()
    }
}
