//! The libp2p behaviour of a node and how its swarm is built.

use libp2p::allow_block_list::{self, BlockedPeers};
use libp2p::connection_limits;
use libp2p::kad::store::{MemoryStore, MemoryStoreConfig};
use libp2p::swarm::NetworkBehaviour;
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::{
    Swarm, SwarmBuilder, autonat, gossipsub, identify, kad, mdns, noise, ping, relay, request_response, tcp, yamux,
};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use super::codec::{BytesCodec, DM_CODEC, SYNC_CODEC};
use super::{Config, StartError};
use crate::identity::Identity;
use crate::protocol::{self, DHT_PROTOCOL, DM_PROTOCOL, IDENTIFY_PROTOCOL, MAX_RECORD_BYTES, SYNC_PROTOCOL};

/// Concurrent DM streams per connection: a window of in-flight DMs large
/// enough for bursts, small enough that a peer cannot pin much memory.
const MAX_DM_STREAMS: usize = 128;

/// Concurrent sync streams per connection: a few sessions' pages in flight.
/// Each may carry a page of up to 1 MiB, so this bounds what a peer can make
/// a node buffer.
const MAX_SYNC_STREAMS: usize = 16;

/// How long a dial (connect and handshake) may take.
const DIAL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// How long a sync request waits for its answer (a page of 1 MiB).
const SYNC_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);

#[derive(NetworkBehaviour)]
pub(crate) struct Behaviour {
    /// Connection caps: total, per peer, pending (`Config::connections`).
    pub(crate) limits: connection_limits::Behaviour,
    /// Peers whose connections are closed and refused.
    pub(crate) blocked: allow_block_list::Behaviour<BlockedPeers>,
    /// Gossipsub, counting what it drops unseen (`node::gossip`).
    pub(crate) gossipsub: super::gossip::Gossip,
    pub(crate) dm: request_response::Behaviour<BytesCodec>,
    /// History sync (`crate::sync`).
    pub(crate) sync: request_response::Behaviour<BytesCodec>,
    pub(crate) identify: identify::Behaviour,
    pub(crate) ping: ping::Behaviour,
    pub(crate) mdns: Toggle<mdns::tokio::Behaviour>,
    /// The Backchannel DHT: address records and room providers (reach.rs).
    pub(crate) kad: kad::Behaviour<MemoryStore>,
    /// Reservations on relays, and circuits through them.
    pub(crate) relay_client: relay::client::Behaviour,
    /// Relaying for others (helpers, and participants unless told not to).
    pub(crate) relay: Toggle<relay::Behaviour>,
    /// Hole punching over relayed connections (one per pair of peers).
    pub(crate) dcutr: super::hole_punch::HolePunch,
    /// Asks others to dial our addresses back (reachability).
    pub(crate) autonat: autonat::v2::client::Behaviour,
    /// Dials others' addresses back for them.
    pub(crate) autonat_server: Toggle<autonat::v2::server::Behaviour>,
}

/// How long a DHT record or provider entry lives unless republished.
/// Nodes republish every ten minutes (reach.rs), so an entry outlives two
/// missed rounds and a departed member disappears within half an hour.
const DHT_RECORD_TTL: std::time::Duration = std::time::Duration::from_secs(30 * 60);

/// How often provider entries are republished by kad itself.
const DHT_REPUBLISH: std::time::Duration = std::time::Duration::from_secs(10 * 60);

/// Relay limits of a helper (`backchannel serve`): sized for chat, not for
/// bulk data. A circuit carries a room's gossip and DMs for half an hour or
/// 8 MiB, whichever comes first (then the connection is re-established
/// through the relay, unless hole punching made it direct meanwhile).
fn helper_relay_config() -> relay::Config {
    relay::Config {
        max_reservations: 512,
        max_reservations_per_peer: 2,
        reservation_duration: std::time::Duration::from_secs(3600),
        max_circuits: 256,
        max_circuits_per_peer: 16,
        max_circuit_duration: std::time::Duration::from_secs(30 * 60),
        max_circuit_bytes: 8 << 20,
        ..relay::Config::default()
    }
}

/// Relay limits of a participant that is publicly reachable: it helps a few
/// room-mates at a small cost.
fn participant_relay_config() -> relay::Config {
    relay::Config {
        max_reservations: 16,
        max_reservations_per_peer: 1,
        reservation_duration: std::time::Duration::from_secs(3600),
        max_circuits: 16,
        max_circuits_per_peer: 4,
        max_circuit_duration: std::time::Duration::from_secs(10 * 60),
        max_circuit_bytes: 1 << 20,
        ..relay::Config::default()
    }
}

pub(crate) fn build_swarm(
    config: &Config,
    identity: &Identity,
    oversize: Arc<AtomicU64>,
) -> Result<Swarm<Behaviour>, StartError> {
    let swarm = SwarmBuilder::with_existing_identity(identity.keypair().clone())
        .with_tokio()
        .with_tcp(tcp::Config::default(), noise::Config::new, yamux::Config::default)
        .map_err(|e| StartError::Network(e.into()))?
        .with_quic()
        .with_relay_client(noise::Config::new, yamux::Config::default)
        .map_err(|e| StartError::Network(e.into()))?
        .with_behaviour(|key, relay_client| {
            let mut gossipsub = gossipsub::Behaviour::new(
                protocol::gossipsub_authenticity(config.gossip_auth, key),
                protocol::gossipsub_config(config.gossip_auth),
            )?;
            let thresholds = protocol::peer_score_thresholds();
            let graylist = thresholds.graylist_threshold;
            gossipsub.with_peer_score(protocol::peer_score_params(), thresholds)?;
            let gossipsub = super::gossip::Gossip::new(gossipsub, graylist);
            let sync = request_response::Behaviour::with_codec(
                SYNC_CODEC.counting(oversize.clone()),
                [(SYNC_PROTOCOL, request_response::ProtocolSupport::Full)],
                request_response::Config::default()
                    .with_request_timeout(SYNC_TIMEOUT)
                    .with_max_concurrent_streams(MAX_SYNC_STREAMS),
            );
            let dm = request_response::Behaviour::with_codec(
                DM_CODEC.counting(oversize.clone()),
                [(DM_PROTOCOL, request_response::ProtocolSupport::Full)],
                request_response::Config::default()
                    .with_request_timeout(config.dm_timeout)
                    .with_max_concurrent_streams(MAX_DM_STREAMS),
            );
            let identify = identify::Behaviour::new(
                identify::Config::new(IDENTIFY_PROTOCOL.into(), key.public()).with_push_listen_addr_updates(true),
            );
            let local = key.public().to_peer_id();
            let mut dht = kad::Config::new(DHT_PROTOCOL);
            dht.set_record_filtering(kad::StoreInserts::FilterBoth)
                .set_record_ttl(Some(DHT_RECORD_TTL))
                .set_provider_record_ttl(Some(DHT_RECORD_TTL))
                .set_provider_publication_interval(Some(DHT_REPUBLISH))
                // Address records are republished by their owner (reach.rs).
                .set_publication_interval(None)
                .set_query_timeout(std::time::Duration::from_secs(20));
            let store = MemoryStore::with_config(
                local,
                MemoryStoreConfig {
                    max_records: 4096,
                    max_value_bytes: MAX_RECORD_BYTES,
                    max_providers_per_key: 20,
                    max_provided_keys: 256,
                },
            );
            let mut kad = kad::Behaviour::with_config(local, store, dht);
            // The mode is the node's decision (reach.rs `serves_dht`), not
            // kad's: kad would count a relayed address as reachable.
            kad.set_mode(Some(if config.helper {
                kad::Mode::Server
            } else {
                kad::Mode::Client
            }));
            let relay = config.help_others.then(|| {
                let cfg = if config.helper {
                    helper_relay_config()
                } else {
                    participant_relay_config()
                };
                let mut relay = relay::Behaviour::new(local, cfg);
                // Whether to offer relaying is the node's decision
                // (`Reach::relays_for_others`): relay would count a relayed
                // address of its own as reachable.
                relay.set_status(Some(if config.helper {
                    relay::Status::Enable
                } else {
                    relay::Status::Disable
                }));
                relay
            });
            let mdns = if config.mdns {
                Some(mdns::tokio::Behaviour::new(
                    mdns::Config::default(),
                    key.public().to_peer_id(),
                )?)
            } else {
                None
            };
            let c = &config.connections;
            let limits = connection_limits::ConnectionLimits::default()
                .with_max_established(Some(c.established))
                .with_max_established_incoming(Some(c.established_incoming))
                .with_max_established_per_peer(Some(c.per_peer))
                .with_max_pending_incoming(Some(c.pending_incoming))
                .with_max_pending_outgoing(Some(c.pending_outgoing));
            Ok(Behaviour {
                limits: connection_limits::Behaviour::new(limits),
                blocked: Default::default(),
                gossipsub,
                dm,
                sync,
                identify,
                ping: ping::Behaviour::default(),
                mdns: mdns.into(),
                kad,
                relay_client,
                relay: relay.into(),
                dcutr: super::hole_punch::HolePunch::new(local),
                autonat: autonat::v2::client::Behaviour::default(),
                // Switched on by the event loop while the node serves the DHT
                // (`EventLoop::update_dht_mode`): a private node that answered
                // dial-back requests would dial its room-mates' relayed
                // addresses through the relay, and each new relayed connection
                // starts another hole punch on the ports of the one under way.
                autonat_server: (config.help_others && config.helper)
                    .then(autonat::v2::server::Behaviour::default)
                    .into(),
            })
        })
        .map_err(|e| StartError::Network(e.into()))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(config.idle_connection_timeout))
        // A dial gives up after 5 s (libp2p's default is 10 s). A handshake
        // takes well under a second on any working path, and a home router
        // drops unsolicited packets silently: an AutoNAT server's dial-back
        // must fail before the server's own 10 s request timeout, or the
        // test never concludes that the node is private.
        .with_connection_timeout(DIAL_TIMEOUT)
        .build();
    Ok(swarm)
}
