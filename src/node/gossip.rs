//! Gossipsub, and a count of what it drops before the application sees it.
//!
//! libp2p-gossipsub drops two kinds of traffic on its own, with no event:
//! messages its decoder finds invalid (under `ValidationMode::Anonymous`, a
//! message with a gossipsub signature, seqno or source: js-libp2p's default
//! `StrictSign`), everything a graylisted peer sends, and messages on topics
//! this node has not joined. [`Gossip`] wraps
//! the behaviour and looks at what each connection hands it, before
//! gossipsub does, so that every such drop is counted by reason and by peer
//! (`Stats::rejected`, `Stats::rejected_by_peer`). It changes nothing of
//! what gossipsub decides: every event goes on to gossipsub unchanged, and
//! the graylist test is gossipsub's own (the peer's score below the
//! threshold, read at the same moment).

use std::collections::{BTreeMap, HashMap};
use std::ops::{Deref, DerefMut};
use std::task::{Context, Poll};

use libp2p::core::Endpoint;
use libp2p::core::transport::PortUse;
use libp2p::gossipsub::{self, ValidationError};
use libp2p::swarm::{
    ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, THandler, THandlerInEvent, THandlerOutEvent, ToSwarm,
};
use libp2p::{Multiaddr, PeerId};

use crate::id::RejectReason;

/// (peer, reason) pairs counted between two collections by the event loop
/// (every tick, and on `Handle::stats`) at most: a flood from many
/// identities cannot grow the map; beyond it, drops are counted by reason
/// only.
const MAX_PENDING: usize = 1024;

/// What a connection hands gossipsub. The type lives in a private module
/// of libp2p-gossipsub but is public, so its variants can be matched
/// through this alias.
type HandlerEvent = THandlerOutEvent<gossipsub::Behaviour>;

/// Gossipsub, counting what it drops unseen. Dereferences to the
/// gossipsub behaviour, so the event loop uses it as before.
pub(crate) struct Gossip {
    inner: gossipsub::Behaviour,
    /// The score below which gossipsub ignores a peer.
    graylist: f64,
    /// Drops by peer and reason since the last [`Gossip::take_dropped`].
    by_peer: HashMap<(PeerId, RejectReason), u64>,
    /// Drops by reason alone, when `by_peer` was full.
    unattributed: BTreeMap<RejectReason, u64>,
}

/// Drops counted since the last collection.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Dropped {
    /// By the peer that sent them.
    pub(crate) by_peer: Vec<(PeerId, RejectReason, u64)>,
    /// When too many peers sent some to keep each.
    pub(crate) unattributed: Vec<(RejectReason, u64)>,
}

impl Gossip {
    /// Wraps `inner`, whose peer scoring graylists below `graylist`.
    pub(crate) fn new(inner: gossipsub::Behaviour, graylist: f64) -> Self {
        Self {
            inner,
            graylist,
            by_peer: HashMap::new(),
            unattributed: BTreeMap::new(),
        }
    }

    /// Takes the drops counted since the last call.
    pub(crate) fn take_dropped(&mut self) -> Dropped {
        let mut by_peer: Vec<(PeerId, RejectReason, u64)> = self
            .by_peer
            .drain()
            .map(|((peer, reason), n)| (peer, reason, n))
            .collect();
        by_peer.sort();
        Dropped {
            by_peer,
            unattributed: std::mem::take(&mut self.unattributed).into_iter().collect(),
        }
    }

    fn count(&mut self, peer: PeerId, reason: RejectReason, n: usize) {
        if n == 0 {
            return;
        }
        let key = (peer, reason);
        if self.by_peer.contains_key(&key) || self.by_peer.len() < MAX_PENDING {
            *self.by_peer.entry(key).or_default() += n as u64;
        } else {
            *self.unattributed.entry(reason).or_default() += n as u64;
        }
    }

    /// Counts what gossipsub is about to drop of `event` from `peer`.
    fn inspect(&mut self, peer: PeerId, event: &HandlerEvent) {
        let HandlerEvent::Message { rpc, invalid_messages } = event else {
            return;
        };
        let graylisted = self.inner.peer_score(&peer).is_some_and(|score| score < self.graylist);
        if graylisted {
            // Gossipsub ignores the whole RPC but its subscriptions. Each
            // message, valid or not, counts; control messages do not (a
            // pruned peer's routine gossip is not an input to reject).
            let messages = rpc.messages.len() + invalid_messages.len();
            self.count(peer, RejectReason::Graylisted, messages);
            return;
        }
        for (_, error) in invalid_messages {
            self.count(peer, reason_of(error), 1);
        }
        // Gossipsub hands the application only messages on topics it is
        // subscribed to; the others are dropped after its duplicate check.
        let subscribed: Vec<&gossipsub::TopicHash> = self.inner.topics().collect();
        let elsewhere = rpc.messages.iter().filter(|m| !subscribed.contains(&&m.topic)).count();
        self.count(peer, RejectReason::NotJoined, elsewhere);
    }
}

/// The reason a message gossipsub's decoder found invalid is counted under.
fn reason_of(error: &ValidationError) -> RejectReason {
    match error {
        ValidationError::SignaturePresent
        | ValidationError::SequenceNumberPresent
        | ValidationError::MessageSourcePresent => RejectReason::GossipSigned,
        ValidationError::MessageSizeTooLargeForTopic => RejectReason::Oversize,
        _ => RejectReason::Malformed,
    }
}

impl Deref for Gossip {
    type Target = gossipsub::Behaviour;

    fn deref(&self) -> &Self::Target {
        &self.inner
    }
}

impl DerefMut for Gossip {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.inner
    }
}

impl NetworkBehaviour for Gossip {
    type ConnectionHandler = THandler<gossipsub::Behaviour>;
    type ToSwarm = gossipsub::Event;

    fn handle_pending_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        local_addr: &Multiaddr,
        remote_addr: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        self.inner
            .handle_pending_inbound_connection(connection_id, local_addr, remote_addr)
    }

    fn handle_established_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        peer: PeerId,
        local_addr: &Multiaddr,
        remote_addr: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.inner
            .handle_established_inbound_connection(connection_id, peer, local_addr, remote_addr)
    }

    fn handle_pending_outbound_connection(
        &mut self,
        connection_id: ConnectionId,
        maybe_peer: Option<PeerId>,
        addresses: &[Multiaddr],
        effective_role: Endpoint,
    ) -> Result<Vec<Multiaddr>, ConnectionDenied> {
        self.inner
            .handle_pending_outbound_connection(connection_id, maybe_peer, addresses, effective_role)
    }

    fn handle_established_outbound_connection(
        &mut self,
        connection_id: ConnectionId,
        peer: PeerId,
        addr: &Multiaddr,
        role_override: Endpoint,
        port_use: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.inner
            .handle_established_outbound_connection(connection_id, peer, addr, role_override, port_use)
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        self.inner.on_swarm_event(event);
    }

    fn on_connection_handler_event(
        &mut self,
        peer: PeerId,
        connection_id: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        self.inspect(peer, &event);
        self.inner.on_connection_handler_event(peer, connection_id, event);
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        self.inner.poll(cx)
    }
}
