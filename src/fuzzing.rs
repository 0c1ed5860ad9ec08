//! Crate-private parts of the DM protocol, exposed only to the fuzz targets in
//! `fuzz/` (feature `fuzzing`). Not an API: it may change at any time.

pub use crate::node::codec::{BytesCodec, DM_CODEC, ReplyVerdict, judge_reply};
pub use crate::sync::{MAX_TRANSFER_IDS, Reconciler, respond};
