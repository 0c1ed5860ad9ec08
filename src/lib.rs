//! Backchannel: a peer-to-peer text backchannel for live audio rooms.
//!
//! Every participant runs a node. Each audio room has a **hallway**, a
//! room-wide chat carried by a gossipsub topic; private **backchannel**
//! messages (DMs) travel over a direct request-response stream and are
//! acknowledged by a receipt signed by their recipient. Every message is
//! signed by its author with the same ed25519 key that is its libp2p
//! identity, verified by every receiver before it is stored, forwarded or
//! shown, and kept in a durable local log (sled).
//!
//! # Example
//!
//! ```no_run
//! use backchannel::{Config, Event, Identity, Node, Room};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = std::path::PathBuf::from("/tmp/alice");
//! let (identity, _created) = Identity::init(&dir)?;
//! let Node { handle, mut events } = Node::start(Config::new(&dir), identity).await?;
//!
//! // A room's own handle: its operations, and (`subscribe`) its own stream.
//! let lobby = handle.join(&Room::new("lobby")?).await?;
//! lobby.post("hello, hallway").await?;
//!
//! // Everything else (and the rooms nobody subscribed to) comes here.
//! while let Some(event) = events.recv().await {
//!     match event {
//!         Event::Hallway { from, post, .. } => println!("{from}: {}", post.text),
//!         Event::Dm { from, dm, .. } => println!("DM from {from}: {}", dm.text),
//!         _ => {}
//!     }
//! }
//! handle.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! # Layout
//!
//! Everything an application needs is re-exported at the crate root (the
//! `pub use` block below): the node ([`Node`], [`Handle`], [`Config`],
//! [`Event`], [`Stats`], the read models, and the errors: [`NodeError`] and
//! one enum per operation family such as [`PostError`]), the identity,
//! the message vocabulary, room rules and the log. The modules behind them
//! are private:
//!
//! - `identity`: the key file; one key for libp2p and for signing.
//! - `id`: the vocabulary: message ids, room ids, rejection reasons.
//! - `message`: the message bodies, as plain data; `envelope`: signed
//!   envelopes: signing, verification, opening.
//! - `wire`: the generated protobuf types and every conversion between them
//!   and the domain types.
//! - `room`, `group`, `sync`: the rules of rooms and groups and history sync,
//!   as plain state.
//! - `store`: the log: its index logic over a storage engine (sled, or in
//!   memory and failing on demand for tests); knows nothing of the network.
//! - `node`: the [`Handle`] and the event loop that owns the swarm.
//!
//! A few subsystems are public namespaces of their own, each with its own
//! document:
//!
//! - [`protocol`]: the wire constants (topics, protocol ids, limits, gossipsub
//!   settings) specified in docs/PROTOCOL.md.
//! - [`seal`] and [`data_dir`]: encryption at rest: the data key, the
//!   passphrase-wrapped key file, plaintext or encrypted data directories and
//!   the crash-safe conversion of one to the other (docs/SECURITY.md).
//! - [`json_line`]: [`JsonLine`], the lines of `backchannel run --json`, and
//!   the rows they carry (docs/JSON.md).
//! - [`api`]: the local HTTP and WebSocket API and the web app it serves
//!   (docs/API.md).
//! - [`command`]: the typed `/commands` a person types into `run` (the
//!   terminal front end's grammar; fuzzed).
//! - `lab` (feature `lab`, on by default): the mesh lab that runs many nodes
//!   in one process or in network namespaces, for tests, benchmarks and
//!   `backchannel mesh`. An application embedding the library turns default
//!   features off and compiles neither the lab nor the command-line
//!   front end's dependencies (feature `cli`).

pub mod api;
pub mod command;
pub mod data_dir;
mod envelope;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod group;
mod id;
mod identity;
pub mod json_line;
#[cfg(feature = "lab")]
pub mod lab;
mod message;
mod node;
pub mod protocol;
#[cfg(any(test, feature = "lab"))]
mod rng;
mod room;
pub mod seal;
mod store;
mod sync;
mod wire;

pub use self::{
    envelope::Signed,
    group::{GroupChange, GroupId, GroupMessage, GroupOp},
    id::{InvalidRoom, MessageId, RejectReason, Room, UnknownReason, key_of, peer_id_of},
    identity::{Identity, IdentityError},
    json_line::JsonLine,
    message::{Body, Delivery, DirectMessage, Direction, HallwayPost, Receipt},
    node::{
        BootstrapPeer, Config, Connection, ConnectionCaps, DialFailure, DmError, DmFailure, Event, GroupEdit,
        GroupError, GroupInfo, Handle, HistoryQuery, JoinError, Limits, LogRooms, LogView, NetInfo, Node, NodeError,
        OutboxEntry, Participant, PeerInfo, PostError, PostOptions, Rate, Reachability, RelaySlot, Request,
        RetryPolicy, RoomFootprint, RoomHandle, RoomInfo, RoomOpError, RoomPost, RoomRules, StartError, Stats,
        UnknownFailure,
    },
    protocol::GossipAuth,
    room::{ChatMode, QuestionState, Reaction, Role, RoomAction, RoomOp, RoomState},
    store::{Engine, Entries, Faults, Inserted, LoggedMessage, MemoryEngine, OutboxItem, Store, StoreError},
};
pub use libp2p::{Multiaddr, PeerId, multiaddr};
