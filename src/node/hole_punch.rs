//! One hole punch per pair of peers at a time.
//!
//! rust-libp2p's DCUtR punches a hole for every relayed connection. Two
//! members alone in a room find each other in the DHT at the same moment,
//! and both dial (kad itself dials providers it finds, to ask them too), so
//! two relayed connections open and DCUtR runs on each: four simultaneous
//! dials between the same two ports. A TCP simultaneous open then pairs a
//! dial of one hole punch with a dial of the other, both sides act as the
//! initiator of the security handshake, it fails ("Handshake failed: input
//! error"), and the NATs keep the dead connection's state for minutes, so
//! every retry fails too. In the NAT lab this left a third of the pairs
//! relayed.
//!
//! [`HolePunch`] wraps DCUtR and gives it only relayed connections dialled
//! by the peer with the smaller id; both sides apply the same rule to the
//! same connection, so they agree without a message. Other relayed
//! connections get no hole-punching handler (the peer's attempt on them
//! fails at once and is not counted). When the only relayed connection
//! between two peers was dialled by the larger id, the event loop dials one
//! back (`EventLoop::dial_back_for_hole_punch`).

use std::task::{Context, Poll};

use either::Either;
use libp2p::core::transport::PortUse;
use libp2p::core::{Endpoint, Multiaddr};
use libp2p::swarm::{
    ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, THandler, THandlerInEvent, THandlerOutEvent, ToSwarm,
    dummy,
};
use libp2p::{PeerId, dcutr};

use super::reach::is_relayed;

/// Whether DCUtR runs on a relayed connection dialled by `dialer` between
/// `local` and `remote`: only if the dialer has the smaller id.
pub(crate) fn punches_on(local: &PeerId, remote: &PeerId, dialled_by_local: bool) -> bool {
    if dialled_by_local {
        local < remote
    } else {
        remote < local
    }
}

/// DCUtR, on the relayed connections [`punches_on`] picks.
pub(crate) struct HolePunch {
    local: PeerId,
    inner: dcutr::Behaviour,
}

impl HolePunch {
    pub(crate) fn new(local: PeerId) -> Self {
        Self {
            local,
            inner: dcutr::Behaviour::new(local),
        }
    }
}

impl NetworkBehaviour for HolePunch {
    type ConnectionHandler = Either<THandler<dcutr::Behaviour>, dummy::ConnectionHandler>;
    type ToSwarm = dcutr::Event;

    fn handle_pending_inbound_connection(
        &mut self,
        id: ConnectionId,
        local_addr: &Multiaddr,
        remote_addr: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        self.inner
            .handle_pending_inbound_connection(id, local_addr, remote_addr)
    }

    fn handle_established_inbound_connection(
        &mut self,
        id: ConnectionId,
        peer: PeerId,
        local_addr: &Multiaddr,
        remote_addr: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        if is_relayed(local_addr) && !punches_on(&self.local, &peer, false) {
            return Ok(Either::Right(dummy::ConnectionHandler));
        }
        self.inner
            .handle_established_inbound_connection(id, peer, local_addr, remote_addr)
            .map(Either::Left)
    }

    fn handle_pending_outbound_connection(
        &mut self,
        id: ConnectionId,
        peer: Option<PeerId>,
        addresses: &[Multiaddr],
        effective_role: Endpoint,
    ) -> Result<Vec<Multiaddr>, ConnectionDenied> {
        self.inner
            .handle_pending_outbound_connection(id, peer, addresses, effective_role)
    }

    fn handle_established_outbound_connection(
        &mut self,
        id: ConnectionId,
        peer: PeerId,
        addr: &Multiaddr,
        role_override: Endpoint,
        port_use: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        if is_relayed(addr) && !punches_on(&self.local, &peer, true) {
            return Ok(Either::Right(dummy::ConnectionHandler));
        }
        self.inner
            .handle_established_outbound_connection(id, peer, addr, role_override, port_use)
            .map(Either::Left)
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        self.inner.on_swarm_event(event);
    }

    fn on_connection_handler_event(&mut self, peer: PeerId, id: ConnectionId, event: THandlerOutEvent<Self>) {
        match event {
            Either::Left(event) => self.inner.on_connection_handler_event(peer, id, event),
            Either::Right(never) => match never {},
        }
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        self.inner.poll(cx).map(|event| event.map_in(Either::Left))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_sides_pick_the_same_connection_of_two() {
        let (a, b) = (PeerId::random(), PeerId::random());
        let (small, large) = if a < b { (a, b) } else { (b, a) };
        // The connection dialled by the smaller id: both sides punch on it.
        assert!(punches_on(&small, &large, true));
        assert!(punches_on(&large, &small, false));
        // The one dialled by the larger id: neither does.
        assert!(!punches_on(&large, &small, true));
        assert!(!punches_on(&small, &large, false));
    }
}
