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
//! let lobby = Room::new("lobby")?;
//! handle.join(&lobby).await?;
//! handle.post(&lobby, "hello, hallway").await?;
//!
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
//! - [`identity`]: the key file; one key for libp2p and for signing.
//! - [`seal`]: encryption at rest: the data key, the passphrase-wrapped key
//!   file; [`data_dir`]: plaintext or encrypted directories, and the
//!   crash-safe conversion of one to the other.
//! - [`protocol`]: the wire constants (topics, protocol ids, limits, gossipsub
//!   settings) specified in docs/PROTOCOL.md.
//! - [`id`]: the vocabulary: message ids, room ids, rejection reasons.
//! - [`message`]: the message bodies, as plain data.
//! - [`envelope`]: signed envelopes: signing, verification, opening.
//! - `wire`: the generated protobuf types and every conversion between them
//!   and the domain types (private).
//! - [`room`], [`group`], [`sync`]: the rules of rooms and groups and history
//!   sync, as plain state.
//! - [`store`]: the log: its index logic over a storage `Engine` (sled, or in
//!   memory and failing on demand for tests); knows nothing of the network.
//! - [`node`]: the [`Handle`] and the event loop that owns the swarm.
//! - [`json_line`]: [`JsonLine`], the lines of `backchannel run --json`
//!   (docs/JSON.md).
//! - [`api`]: the local HTTP and WebSocket API and the web app it serves
//!   (docs/API.md).
//! - `cli` and `command` (binary side): argument parsing and the typed
//!   `/commands` of an interactive session.

pub mod api;
pub mod command;
pub mod data_dir;
pub mod envelope;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod group;
pub mod id;
pub mod identity;
pub mod json_line;
pub mod lab;
pub mod message;
pub mod node;
pub mod protocol;
mod rng;
pub mod room;
pub mod seal;
pub mod store;
pub mod sync;
mod wire;

pub use envelope::Signed;
pub use group::GroupId;
pub use id::{MessageId, RejectReason, Room};
pub use identity::{Identity, IdentityError};
pub use json_line::JsonLine;
pub use libp2p::{Multiaddr, PeerId, multiaddr};
pub use message::{Body, DirectMessage, HallwayPost, Receipt};
pub use node::{
    BootstrapPeer, Config, Connection, Event, GroupEdit, GroupInfo, Handle, HistoryQuery, NetInfo, Node, NodeError,
    PeerInfo, Reachability, RelaySlot, Request, RoomInfo, Stats,
};
pub use protocol::GossipAuth;
pub use store::{Delivery, Direction, LoggedMessage, Store, StoreError};
