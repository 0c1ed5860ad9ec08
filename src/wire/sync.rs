//! History sync's requests and responses: [`SyncRequest`] and
//! [`SyncResponse`] to and from their protobuf messages. A request is
//! checked here (its room id, that it has a kind, the fetch bound and every
//! id); the negentropy messages and envelopes it carries are checked by
//! `crate::sync` and `crate::envelope`.

use prost::Message as _;

use super::body::id_of_bytes;
use super::pb;
use super::pb::sync_request::Kind as Q;
use super::pb::sync_response::Kind as R;
use crate::id::{RejectReason, Room};
use crate::protocol::MAX_FETCH_IDS;
use crate::sync::{SyncQuery, SyncRefusal, SyncRequest, SyncResponse};

/// A sync request that does not decode or is invalid: what to count, and
/// its room when the room id was valid (a node that is not in that room
/// answers `NOT_IN_ROOM` and counts nothing, as for a valid request).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BadSyncRequest {
    /// The request's room, if its id was valid.
    pub(crate) room: Option<Room>,
    /// Why the request is refused.
    pub(crate) reason: RejectReason,
}

impl SyncRequest {
    /// Decodes and checks a peer's request.
    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, BadSyncRequest> {
        let bad = |room: Option<&Room>, reason| BadSyncRequest {
            room: room.cloned(),
            reason,
        };
        let request = pb::SyncRequest::decode(bytes).map_err(|_| bad(None, RejectReason::Malformed))?;
        let room = Room::new(request.room).map_err(|_| bad(None, RejectReason::InvalidField))?;
        let query = match request.kind {
            Some(Q::Reconcile(message)) => SyncQuery::Reconcile(message),
            Some(Q::Fetch(list)) => {
                if list.ids.len() > MAX_FETCH_IDS {
                    return Err(bad(Some(&room), RejectReason::Oversize));
                }
                let ids = list.ids.iter().map(|id| id_of_bytes(id)).collect::<Result<_, _>>();
                SyncQuery::Fetch(ids.map_err(|reason| bad(Some(&room), reason))?)
            }
            Some(Q::Push(list)) => SyncQuery::Push(list.envelopes),
            None => return Err(bad(Some(&room), RejectReason::UnknownKind)),
        };
        Ok(SyncRequest { room, query })
    }

    /// The request's bytes.
    pub(crate) fn encode(self) -> Vec<u8> {
        let kind = match self.query {
            SyncQuery::Reconcile(message) => Q::Reconcile(message),
            SyncQuery::Fetch(ids) => Q::Fetch(pb::IdList {
                ids: ids.iter().map(|id| id.as_bytes().to_vec()).collect(),
            }),
            SyncQuery::Push(envelopes) => Q::Push(pb::EnvelopeList { envelopes }),
        };
        pb::SyncRequest {
            room: self.room.as_str().to_owned(),
            kind: Some(kind),
        }
        .encode_to_vec()
    }
}

impl SyncResponse {
    /// Decodes a peer's response; None if it does not decode or has no kind.
    /// A refusal code this version does not know is kept as
    /// [`SyncRefusal::Unknown`].
    pub(crate) fn decode(bytes: &[u8]) -> Option<Self> {
        let response = pb::SyncResponse::decode(bytes).ok()?;
        let present = response.present;
        Some(match response.kind? {
            R::Reconcile(message) => SyncResponse::Reconcile { message, present },
            R::Page(list) => SyncResponse::Page(list.envelopes),
            R::Refused(code) => SyncResponse::Refused(match pb::SyncRefusal::try_from(code) {
                Ok(pb::SyncRefusal::Unspecified) => SyncRefusal::Unspecified,
                Ok(pb::SyncRefusal::NotInRoom) => SyncRefusal::NotInRoom,
                Ok(pb::SyncRefusal::Invalid) => SyncRefusal::Invalid,
                Ok(pb::SyncRefusal::Busy) => SyncRefusal::Busy,
                Err(_) => SyncRefusal::Unknown(code),
            }),
            R::Pushed(new) => SyncResponse::Pushed(new),
        })
    }

    /// The response's bytes.
    pub(crate) fn encode(self) -> Vec<u8> {
        let mut present = 0;
        let kind = match self {
            SyncResponse::Reconcile { message, present: n } => {
                present = n;
                R::Reconcile(message)
            }
            SyncResponse::Page(envelopes) => R::Page(pb::EnvelopeList { envelopes }),
            SyncResponse::Refused(refusal) => R::Refused(refusal.code()),
            SyncResponse::Pushed(new) => R::Pushed(new),
        };
        pb::SyncResponse {
            kind: Some(kind),
            present,
        }
        .encode_to_vec()
    }
}

impl SyncRefusal {
    /// The refusal's code on the wire.
    pub(crate) fn code(self) -> i32 {
        let known = match self {
            SyncRefusal::Unknown(code) => return code,
            SyncRefusal::Unspecified => pb::SyncRefusal::Unspecified,
            SyncRefusal::NotInRoom => pb::SyncRefusal::NotInRoom,
            SyncRefusal::Invalid => pb::SyncRefusal::Invalid,
            SyncRefusal::Busy => pb::SyncRefusal::Busy,
        };
        known as i32
    }
}
