//! Backchannel's integration tests: real nodes on loopback exchanging real
//! signed messages through real libp2p, with real sled logs in temporary
//! directories. Every wait waits for an event, with a time limit.

mod api;
mod at_rest;
mod bad_input;
mod blocking;
mod browser;
mod cli;
mod crash;
mod disk_failure;
mod dm;
mod drops;
mod errors;
mod everyday;
mod groups;
mod hallway;
mod history;
mod hostile;
mod layering;
mod mesh;
#[cfg(target_os = "linux")]
mod netns;
mod never_panic;
mod outbox;
mod protocol_doc;
mod reach;
mod readme;
mod requests;
mod restart;
mod room_state;
mod rooms;
mod signatures;
mod store_model;
mod streams;
mod support;
#[cfg(unix)]
mod terminal;
mod vectors;
