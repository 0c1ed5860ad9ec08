//! The participant node: a cheap-to-clone [`Handle`] driving one event-loop
//! task that owns the libp2p `Swarm`, the local log and all network state.
//!
//! ```text
//!  app / CLI ──Handle (Call + oneshot reply)──▶ EventLoop ──▶ Swarm (gossipsub, dm, identify, ping, mdns)
//!       ▲                                              │
//!       └────────────── Events (bounded mpsc) ◀────────┴──▶ Store (sled) via GroupCommit
//! ```
//!
//! The public face is split by concern: [`Config`] (config.rs), [`Node`] and
//! [`Handle`] (handle.rs), [`Event`] (event.rs), the errors (error.rs:
//! [`StartError`], one enum per operation family such as [`PostError`], and
//! [`NodeError`] for the rest), [`DialFailure`] and [`DmFailure`] (failure.rs),
//! [`Stats`] (stats.rs) and the read models a handle answers with (view.rs).
//! Everything else here is the event loop and the plain state it drives.

mod behaviour;
pub(crate) mod codec;
mod commit;
mod config;
mod dm;
mod error;
mod event;
mod event_loop;
pub(crate) mod failure;
mod gossip;
mod handle;
mod hole_punch;
pub(crate) mod limits;
mod log_view;
pub(crate) mod outbox;
mod presence;
mod reach;
mod recover;
mod rooms;
#[cfg(test)]
mod sim;
mod stamps;
mod stats;
mod view;

pub use config::{Config, ConnectionCaps};
pub use error::{DmError, GroupError, JoinError, NodeError, PostError, RoomOpError, StartError};
pub use event::Event;
pub use failure::{DialFailure, DmFailure, UnknownFailure};
pub use handle::{Handle, Node, RoomHandle};
pub use limits::{Limits, Rate};
pub use log_view::{LogRooms, LogView};
pub use outbox::{OutboxEntry, RetryPolicy};
pub use reach::Reachability;
pub use stats::Stats;
pub use view::{
    BootstrapPeer, Connection, GroupEdit, GroupInfo, HistoryQuery, NetInfo, Participant, PeerInfo, PostOptions,
    RelaySlot, Request, RoomFootprint, RoomInfo, RoomPost, RoomRules,
};
