//! The libp2p behaviour of a node and how its swarm is built.

use libp2p::allow_block_list::{self, BlockedPeers};
use libp2p::connection_limits;
use libp2p::swarm::NetworkBehaviour;
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::{Swarm, SwarmBuilder, gossipsub, identify, mdns, noise, ping, request_response, tcp, yamux};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use super::codec::{BytesCodec, DM_CODEC, SYNC_CODEC};
use super::{Config, NodeError};
use crate::identity::Identity;
use crate::protocol::{self, DM_PROTOCOL, IDENTIFY_PROTOCOL, SYNC_PROTOCOL};

/// Concurrent DM streams per connection: a window of in-flight DMs large
/// enough for bursts, small enough that a peer cannot pin much memory.
const MAX_DM_STREAMS: usize = 128;

/// Concurrent sync streams per connection: a few sessions' pages in flight.
/// Each may carry a page of up to 1 MiB, so this bounds what a peer can make
/// a node buffer.
const MAX_SYNC_STREAMS: usize = 16;

/// How long a sync request waits for its answer (a page of 1 MiB).
const SYNC_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);

#[derive(NetworkBehaviour)]
pub(crate) struct Behaviour {
    /// Connection caps: total, per peer, pending (`Config::connections`).
    pub(crate) limits: connection_limits::Behaviour,
    /// Peers whose connections are closed and refused.
    pub(crate) blocked: allow_block_list::Behaviour<BlockedPeers>,
    pub(crate) gossipsub: gossipsub::Behaviour,
    pub(crate) dm: request_response::Behaviour<BytesCodec>,
    /// History sync (`crate::sync`).
    pub(crate) sync: request_response::Behaviour<BytesCodec>,
    pub(crate) identify: identify::Behaviour,
    pub(crate) ping: ping::Behaviour,
    pub(crate) mdns: Toggle<mdns::tokio::Behaviour>,
}

pub(crate) fn build_swarm(
    config: &Config,
    identity: &Identity,
    oversize: Arc<AtomicU64>,
) -> Result<Swarm<Behaviour>, NodeError> {
    let net = |e: &dyn std::fmt::Display| NodeError::Network(e.to_string());
    let swarm = SwarmBuilder::with_existing_identity(identity.keypair().clone())
        .with_tokio()
        .with_tcp(tcp::Config::default(), noise::Config::new, yamux::Config::default)
        .map_err(|e| net(&e))?
        .with_behaviour(|key| {
            let mut gossipsub = gossipsub::Behaviour::new(
                protocol::gossipsub_authenticity(config.gossip_auth, key),
                protocol::gossipsub_config(config.gossip_auth),
            )?;
            gossipsub.with_peer_score(protocol::peer_score_params(), protocol::peer_score_thresholds())?;
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
            let identify = identify::Behaviour::new(identify::Config::new(IDENTIFY_PROTOCOL.into(), key.public()));
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
            })
        })
        .map_err(|e| net(&e))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(config.idle_connection_timeout))
        .build();
    Ok(swarm)
}
