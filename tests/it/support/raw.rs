//! A bare libp2p peer that speaks Backchannel's wire (gossipsub topics and the
//! DM protocol) without validating anything: it publishes whatever bytes a
//! test gives it and records whatever reaches it.

use std::io;
use std::time::Duration;

use backchannel::protocol::{self, DM_PROTOCOL, MAX_ENVELOPE_BYTES, SYNC_PROTOCOL};
use backchannel::{Multiaddr, PeerId};
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, StreamExt};
use libp2p::gossipsub::{self, IdentTopic, TopicHash};
use libp2p::request_response::{self, OutboundRequestId, ProtocolSupport};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{StreamProtocol, SwarmBuilder, identity, noise, tcp, yamux};
use tokio::sync::{mpsc, oneshot};

#[derive(NetworkBehaviour)]
struct RawBehaviour {
    gossipsub: gossipsub::Behaviour,
    dm: request_response::Behaviour<RawCodec>,
    sync: request_response::Behaviour<RawCodec>,
}

/// What the raw peer saw.
#[derive(Debug, Clone)]
#[allow(dead_code)] // fields are read by Debug output on failures
pub enum RawEvent {
    Connected(PeerId),
    Subscribed(PeerId, TopicHash),
    Message(TopicHash, Vec<u8>),
    /// A DM request this peer received (and answered with `answer`).
    Request(Vec<u8>),
}

enum Cmd {
    Dial(Multiaddr),
    Subscribe(String),
    Publish(String, Vec<u8>, oneshot::Sender<Result<(), String>>),
    Dm(PeerId, Vec<u8>, oneshot::Sender<Result<Vec<u8>, String>>),
    Sync(PeerId, Vec<u8>, oneshot::Sender<Result<Vec<u8>, String>>),
}

pub struct RawPeer {
    pub peer_id: PeerId,
    pub key: ed25519_dalek::SigningKey,
    /// What the peer answers to every DM request it receives.
    pub answer: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    cmds: mpsc::Sender<Cmd>,
    pub events: mpsc::UnboundedReceiver<RawEvent>,
}

impl RawPeer {
    /// Starts a raw peer on loopback. `max_transmit` lets an attacker send
    /// more than Backchannel accepts.
    pub async fn start(max_transmit: usize) -> RawPeer {
        Self::start_with(max_transmit, false, None).await
    }

    /// Starts a raw peer that also takes history-sync requests and answers
    /// each with `answer`, whatever it asked.
    pub async fn start_answering_sync(max_transmit: usize, answer: Vec<u8>) -> RawPeer {
        Self::start_with(max_transmit, false, Some(answer)).await
    }

    /// Starts a raw peer whose gossipsub signs what it publishes (with a
    /// seqno and source: js-libp2p's default `StrictSign`), as another
    /// implementation that missed "StrictNoSign" in docs/PROTOCOL.md would.
    pub async fn start_signed(max_transmit: usize) -> RawPeer {
        Self::start_with(max_transmit, true, None).await
    }

    async fn start_with(max_transmit: usize, signed: bool, sync_answer: Option<Vec<u8>>) -> RawPeer {
        let sync_support = if sync_answer.is_some() {
            ProtocolSupport::Full
        } else {
            ProtocolSupport::Outbound
        };
        let keypair = identity::Keypair::generate_ed25519();
        let ed = keypair.clone().try_into_ed25519().expect("ed25519");
        let key = ed25519_dalek::SigningKey::from_keypair_bytes(&ed.to_bytes()).expect("keypair bytes");
        let peer_id = keypair.public().to_peer_id();
        let mut swarm = SwarmBuilder::with_existing_identity(keypair)
            .with_tokio()
            .with_tcp(tcp::Config::default(), noise::Config::new, yamux::Config::default)
            .expect("tcp")
            .with_behaviour(|key| {
                let (authenticity, mode) = if signed {
                    (
                        gossipsub::MessageAuthenticity::Signed(key.clone()),
                        gossipsub::ValidationMode::Strict,
                    )
                } else {
                    (
                        gossipsub::MessageAuthenticity::Anonymous,
                        gossipsub::ValidationMode::Anonymous,
                    )
                };
                let config = gossipsub::ConfigBuilder::default()
                    .validation_mode(mode)
                    .message_id_fn(protocol::gossip_message_id)
                    .max_transmit_size(max_transmit)
                    .build()
                    .expect("config");
                RawBehaviour {
                    gossipsub: gossipsub::Behaviour::new(authenticity, config).expect("gossipsub"),
                    dm: request_response::Behaviour::with_codec(
                        RawCodec,
                        [(DM_PROTOCOL, ProtocolSupport::Full)],
                        request_response::Config::default().with_request_timeout(Duration::from_secs(10)),
                    ),
                    sync: request_response::Behaviour::with_codec(
                        RawCodec,
                        [(SYNC_PROTOCOL, sync_support)],
                        request_response::Config::default().with_request_timeout(Duration::from_secs(10)),
                    ),
                }
            })
            .expect("behaviour")
            .build();
        swarm
            .listen_on("/ip4/127.0.0.1/tcp/0".parse().expect("addr"))
            .expect("listen");
        let (cmd_tx, mut cmd_rx) = mpsc::channel::<Cmd>(64);
        let answer: std::sync::Arc<std::sync::Mutex<Vec<u8>>> = Default::default();
        let answer_for_task = answer.clone();
        let (ev_tx, ev_rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut pending: std::collections::HashMap<OutboundRequestId, oneshot::Sender<Result<Vec<u8>, String>>> =
                Default::default();
            loop {
                tokio::select! {
                    cmd = cmd_rx.recv() => match cmd {
                        None => break,
                        Some(Cmd::Dial(addr)) => { let _ = swarm.dial(addr); }
                        Some(Cmd::Subscribe(t)) => { let _ = swarm.behaviour_mut().gossipsub.subscribe(&IdentTopic::new(t)); }
                        Some(Cmd::Publish(t, data, reply)) => {
                            let r = swarm.behaviour_mut().gossipsub.publish(IdentTopic::new(t), data);
                            let _ = reply.send(r.map(|_| ()).map_err(|e| e.to_string()));
                        }
                        Some(Cmd::Dm(peer, data, reply)) => {
                            let id = swarm.behaviour_mut().dm.send_request(&peer, data);
                            pending.insert(id, reply);
                        }
                        Some(Cmd::Sync(peer, data, reply)) => {
                            let id = swarm.behaviour_mut().sync.send_request(&peer, data);
                            pending.insert(id, reply);
                        }
                    },
                    event = swarm.select_next_some() => match event {
                        SwarmEvent::ConnectionEstablished { peer_id, .. } => { let _ = ev_tx.send(RawEvent::Connected(peer_id)); }
                        SwarmEvent::Behaviour(RawBehaviourEvent::Gossipsub(gossipsub::Event::Subscribed { peer_id, topic })) => {
                            let _ = ev_tx.send(RawEvent::Subscribed(peer_id, topic));
                        }
                        SwarmEvent::Behaviour(RawBehaviourEvent::Gossipsub(gossipsub::Event::Message { message, .. })) => {
                            let _ = ev_tx.send(RawEvent::Message(message.topic, message.data));
                        }
                        SwarmEvent::Behaviour(RawBehaviourEvent::Dm(request_response::Event::Message {
                            message: request_response::Message::Response { request_id, response }, ..
                        })) => {
                            if let Some(reply) = pending.remove(&request_id) { let _ = reply.send(Ok(response)); }
                        }
                        SwarmEvent::Behaviour(RawBehaviourEvent::Dm(request_response::Event::Message {
                            message: request_response::Message::Request { request, channel, .. }, ..
                        })) => {
                            // Answer whatever the test put in `answer`.
                            let bytes = answer_for_task.lock().expect("answer").clone();
                            let _ = swarm.behaviour_mut().dm.send_response(channel, bytes);
                            let _ = ev_tx.send(RawEvent::Request(request));
                        }
                        SwarmEvent::Behaviour(RawBehaviourEvent::Dm(request_response::Event::OutboundFailure { request_id, error, .. }))
                        | SwarmEvent::Behaviour(RawBehaviourEvent::Sync(request_response::Event::OutboundFailure { request_id, error, .. })) => {
                            if let Some(reply) = pending.remove(&request_id) { let _ = reply.send(Err(error.to_string())); }
                        }
                        SwarmEvent::Behaviour(RawBehaviourEvent::Sync(request_response::Event::Message {
                            message: request_response::Message::Response { request_id, response }, ..
                        })) => {
                            if let Some(reply) = pending.remove(&request_id) { let _ = reply.send(Ok(response)); }
                        }
                        SwarmEvent::Behaviour(RawBehaviourEvent::Sync(request_response::Event::Message {
                            message: request_response::Message::Request { channel, .. }, ..
                        })) => {
                            if let Some(answer) = &sync_answer {
                                let _ = swarm.behaviour_mut().sync.send_response(channel, answer.clone());
                            }
                        }
                        _ => {}
                    },
                }
            }
        });
        RawPeer {
            peer_id,
            key,
            answer,
            cmds: cmd_tx,
            events: ev_rx,
        }
    }

    pub fn public_key(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }

    /// Dials a node and waits for the connection.
    pub async fn connect(&mut self, addr: &Multiaddr, peer: PeerId) {
        self.cmds.send(Cmd::Dial(addr.clone())).await.expect("raw peer running");
        self.wait(|e| matches!(e, RawEvent::Connected(p) if *p == peer)).await;
    }

    /// Subscribes to a room's topic and waits until `peer` is known there.
    pub async fn join(&mut self, room: &str, peer: PeerId) {
        let topic = format!("{}{room}", protocol::TOPIC_PREFIX);
        self.cmds
            .send(Cmd::Subscribe(topic.clone()))
            .await
            .expect("raw peer running");
        let hash = IdentTopic::new(topic).hash();
        self.wait(|e| matches!(e, RawEvent::Subscribed(p, t) if *p == peer && *t == hash))
            .await;
    }

    pub async fn publish(&self, room: &str, data: Vec<u8>) {
        let (tx, rx) = oneshot::channel();
        let topic = format!("{}{room}", protocol::TOPIC_PREFIX);
        self.cmds
            .send(Cmd::Publish(topic, data, tx))
            .await
            .expect("raw peer running");
        rx.await.expect("reply").expect("published");
    }

    /// Publishes, and says whether gossipsub took it (a flood fills queues).
    pub async fn try_publish(&self, room: &str, data: Vec<u8>) -> Result<(), String> {
        let (tx, rx) = oneshot::channel();
        let topic = format!("{}{room}", protocol::TOPIC_PREFIX);
        self.cmds
            .send(Cmd::Publish(topic, data, tx))
            .await
            .expect("raw peer running");
        rx.await.expect("reply")
    }

    /// Subscribes to a room's topic without waiting for anyone.
    pub async fn subscribe_only(&self, room: &str) {
        let topic = format!("{}{room}", protocol::TOPIC_PREFIX);
        self.cmds.send(Cmd::Subscribe(topic)).await.expect("raw peer running");
    }

    pub async fn dm(&self, peer: PeerId, data: Vec<u8>) -> Result<Vec<u8>, String> {
        let (tx, rx) = oneshot::channel();
        self.cmds.send(Cmd::Dm(peer, data, tx)).await.expect("raw peer running");
        rx.await.expect("reply")
    }

    /// Sends a raw history-sync request and returns the raw response.
    pub async fn sync(&self, peer: PeerId, data: Vec<u8>) -> Result<Vec<u8>, String> {
        let (tx, rx) = oneshot::channel();
        self.cmds
            .send(Cmd::Sync(peer, data, tx))
            .await
            .expect("raw peer running");
        rx.await.expect("reply")
    }

    /// Waits (with the tests' time limit) for an event matching `f`.
    pub async fn wait(&mut self, mut f: impl FnMut(&RawEvent) -> bool) -> RawEvent {
        tokio::time::timeout(super::T, async {
            loop {
                let e = self.events.recv().await.expect("raw peer running");
                if f(&e) {
                    return e;
                }
            }
        })
        .await
        .expect("raw peer event in time")
    }
}

/// Reads to the end of the stream, like Backchannel's codec but with a
/// larger limit, so an attacker can send oversize requests.
#[derive(Clone, Copy, Default)]
struct RawCodec;

const RAW_LIMIT: usize = 16 * MAX_ENVELOPE_BYTES;

impl request_response::Codec for RawCodec {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = Vec<u8>;

    async fn read_request<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<Vec<u8>> {
        read(io).await
    }
    async fn read_response<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<Vec<u8>> {
        read(io).await
    }
    async fn write_request<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: Vec<u8>,
    ) -> io::Result<()> {
        io.write_all(&req).await?;
        io.close().await
    }
    async fn write_response<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: Vec<u8>,
    ) -> io::Result<()> {
        io.write_all(&res).await?;
        io.close().await
    }
}

async fn read<T: AsyncRead + Unpin + Send>(io: &mut T) -> io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    io.take(RAW_LIMIT as u64).read_to_end(&mut buf).await?;
    Ok(buf)
}

/// A peer that opens DM streams to a node and holds each one open after
/// the first byte of its request, until released: what an attacker who
/// wants to pin a node's DM streams does. It records every held stream the
/// node closes or resets before the release. (request_response cannot be
/// used for it: its codec may not read while it writes a request.)
pub struct HoldingPeer {
    pub peer_id: PeerId,
    cmds: mpsc::Sender<HoldCmd>,
    release: tokio::sync::watch::Sender<bool>,
    refused_tx: mpsc::UnboundedSender<()>,
    refused: mpsc::UnboundedReceiver<()>,
}

type StreamReply = oneshot::Sender<Result<libp2p::Stream, String>>;

enum HoldCmd {
    Dial(Multiaddr, oneshot::Sender<()>),
    Open(PeerId, StreamReply),
}

impl HoldingPeer {
    pub async fn start() -> HoldingPeer {
        let (release, _) = tokio::sync::watch::channel(false);
        let (refused_tx, refused) = mpsc::unbounded_channel();
        let keypair = identity::Keypair::generate_ed25519();
        let peer_id = keypair.public().to_peer_id();
        let mut swarm = SwarmBuilder::with_existing_identity(keypair)
            .with_tokio()
            .with_tcp(tcp::Config::default(), noise::Config::new, yamux::Config::default)
            .expect("tcp")
            .with_behaviour(|_| Opener::default())
            .expect("behaviour")
            .build();
        let (cmds, mut cmd_rx) = mpsc::channel::<HoldCmd>(64);
        tokio::spawn(async move {
            let mut dialing: Option<oneshot::Sender<()>> = None;
            loop {
                tokio::select! {
                    cmd = cmd_rx.recv() => match cmd {
                        None => break,
                        Some(HoldCmd::Dial(addr, done)) => {
                            let _ = swarm.dial(addr);
                            dialing = Some(done);
                        }
                        Some(HoldCmd::Open(peer, reply)) => swarm.behaviour_mut().queued.push_back((peer, reply)),
                    },
                    event = swarm.select_next_some() => {
                        if let SwarmEvent::ConnectionEstablished { .. } = event
                            && let Some(done) = dialing.take()
                        {
                            let _ = done.send(());
                        }
                    }
                }
            }
        });
        HoldingPeer {
            peer_id,
            cmds,
            release,
            refused_tx,
            refused,
        }
    }

    /// Dials a node and waits for the connection.
    pub async fn connect(&self, addr: &Multiaddr) {
        let (done, connected) = oneshot::channel();
        self.cmds
            .send(HoldCmd::Dial(addr.clone(), done))
            .await
            .expect("holding peer running");
        tokio::time::timeout(super::T, connected)
            .await
            .expect("connected in time")
            .expect("holding peer running");
    }

    /// Sends `request` to `peer` as a DM on a stream of its own: its first
    /// byte now, the rest once [`HoldingPeer::release`]d. Gives the answer,
    /// or why the request failed.
    pub async fn request(&self, peer: PeerId, request: Vec<u8>) -> oneshot::Receiver<Result<Vec<u8>, String>> {
        let (opened, stream) = oneshot::channel();
        self.cmds
            .send(HoldCmd::Open(peer, opened))
            .await
            .expect("holding peer running");
        let (reply, answer) = oneshot::channel();
        let mut release = self.release.subscribe();
        let refused = self.refused_tx.clone();
        tokio::spawn(async move {
            let (first, rest) = request.split_at(request.len().min(1));
            // Until the release, the node writes nothing (the request is not
            // complete), so a stream that fails to open, to take the first
            // byte or that ends is one the node closed or reset.
            let held = async {
                let mut stream = stream.await.map_err(|_| "the holding peer stopped".to_owned())??;
                stream.write_all(first).await.map_err(|e| e.to_string())?;
                stream.flush().await.map_err(|e| e.to_string())?;
                let mut byte = [0u8; 1];
                tokio::select! {
                    read = stream.read(&mut byte) => Err(format!("the node ended a held stream: {read:?}")),
                    released = release.wait_for(|go| *go) => match released {
                        Ok(_) => Ok(stream),
                        Err(_) => Err("the holding peer stopped".to_owned()),
                    },
                }
            };
            let mut stream = match held.await {
                Ok(stream) => stream,
                Err(e) => {
                    let _ = refused.send(());
                    let _ = reply.send(Err(e));
                    return;
                }
            };
            let finish = async {
                stream.write_all(rest).await?;
                stream.close().await?;
                read(&mut stream).await
            };
            let _ = reply.send(finish.await.map_err(|e| e.to_string()));
        });
        answer
    }

    /// Waits (with the tests' time limit) for a held stream the node
    /// closed or reset.
    pub async fn refused(&mut self) {
        tokio::time::timeout(super::T, self.refused.recv())
            .await
            .expect("a stream refused in time")
            .expect("holding peer running");
    }

    /// How many held streams the node closed or reset that were not yet
    /// waited for.
    pub fn refused_now(&mut self) -> usize {
        std::iter::from_fn(|| self.refused.try_recv().ok()).count()
    }

    /// Lets every held request, and every one sent from now on, finish.
    pub fn release(&self) {
        self.release.send_replace(true);
    }
}

/// Opens DM streams on request: the behaviour hands each request to a
/// connection's [`OpenHandler`], which answers with the negotiated stream.
#[derive(Default)]
struct Opener {
    queued: std::collections::VecDeque<(PeerId, StreamReply)>,
}

impl NetworkBehaviour for Opener {
    type ConnectionHandler = OpenHandler;
    type ToSwarm = std::convert::Infallible;

    fn handle_established_inbound_connection(
        &mut self,
        _: libp2p::swarm::ConnectionId,
        _: PeerId,
        _: &Multiaddr,
        _: &Multiaddr,
    ) -> Result<OpenHandler, libp2p::swarm::ConnectionDenied> {
        Ok(OpenHandler::default())
    }

    fn handle_established_outbound_connection(
        &mut self,
        _: libp2p::swarm::ConnectionId,
        _: PeerId,
        _: &Multiaddr,
        _: libp2p::core::Endpoint,
        _: libp2p::core::transport::PortUse,
    ) -> Result<OpenHandler, libp2p::swarm::ConnectionDenied> {
        Ok(OpenHandler::default())
    }

    fn on_swarm_event(&mut self, _: libp2p::swarm::FromSwarm) {}

    fn on_connection_handler_event(
        &mut self,
        _: PeerId,
        _: libp2p::swarm::ConnectionId,
        event: std::convert::Infallible,
    ) {
        match event {}
    }

    fn poll(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<libp2p::swarm::ToSwarm<std::convert::Infallible, StreamReply>> {
        match self.queued.pop_front() {
            Some((peer_id, reply)) => std::task::Poll::Ready(libp2p::swarm::ToSwarm::NotifyHandler {
                peer_id,
                handler: libp2p::swarm::NotifyHandler::Any,
                event: reply,
            }),
            None => std::task::Poll::Pending,
        }
    }
}

#[derive(Default)]
struct OpenHandler {
    to_open: std::collections::VecDeque<StreamReply>,
    opening: std::collections::VecDeque<StreamReply>,
    waker: Option<std::task::Waker>,
}

impl libp2p::swarm::ConnectionHandler for OpenHandler {
    type FromBehaviour = StreamReply;
    type ToBehaviour = std::convert::Infallible;
    type InboundProtocol = libp2p::core::upgrade::DeniedUpgrade;
    type OutboundProtocol = libp2p::core::upgrade::ReadyUpgrade<StreamProtocol>;
    type InboundOpenInfo = ();
    type OutboundOpenInfo = ();

    fn listen_protocol(&self) -> libp2p::swarm::SubstreamProtocol<Self::InboundProtocol, ()> {
        libp2p::swarm::SubstreamProtocol::new(libp2p::core::upgrade::DeniedUpgrade, ())
    }

    fn connection_keep_alive(&self) -> bool {
        true
    }

    fn poll(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<libp2p::swarm::ConnectionHandlerEvent<Self::OutboundProtocol, (), Self::ToBehaviour>> {
        match self.to_open.pop_front() {
            Some(reply) => {
                self.opening.push_back(reply);
                std::task::Poll::Ready(libp2p::swarm::ConnectionHandlerEvent::OutboundSubstreamRequest {
                    protocol: libp2p::swarm::SubstreamProtocol::new(
                        libp2p::core::upgrade::ReadyUpgrade::new(DM_PROTOCOL),
                        (),
                    ),
                })
            }
            None => {
                self.waker = Some(cx.waker().clone());
                std::task::Poll::Pending
            }
        }
    }

    fn on_behaviour_event(&mut self, reply: StreamReply) {
        self.to_open.push_back(reply);
        if let Some(waker) = self.waker.take() {
            waker.wake();
        }
    }

    fn on_connection_event(
        &mut self,
        event: libp2p::swarm::handler::ConnectionEvent<Self::InboundProtocol, Self::OutboundProtocol>,
    ) {
        use libp2p::swarm::handler::{ConnectionEvent, DialUpgradeError, FullyNegotiatedOutbound};
        match event {
            ConnectionEvent::FullyNegotiatedOutbound(FullyNegotiatedOutbound { protocol, .. }) => {
                if let Some(reply) = self.opening.pop_front() {
                    let _ = reply.send(Ok(protocol));
                }
            }
            ConnectionEvent::DialUpgradeError(DialUpgradeError { error, .. }) => {
                if let Some(reply) = self.opening.pop_front() {
                    let _ = reply.send(Err(format!("opening a DM stream: {error}")));
                }
            }
            _ => {}
        }
    }
}
