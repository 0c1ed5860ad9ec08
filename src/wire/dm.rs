//! The reply to a DM-protocol request: [`DmReply`] to and from the protobuf
//! `DmReply`.

use prost::Message as _;

use super::pb;
use super::pb::dm_reply::Outcome;
use crate::message::{DmReply, Refusal};

impl DmReply {
    /// Decodes a reply; None if the bytes are not a `DmReply` or carry no
    /// outcome. A refusal code this version does not know is kept as
    /// [`Refusal::Unknown`].
    pub(crate) fn decode(bytes: &[u8]) -> Option<Self> {
        Some(match pb::DmReply::decode(bytes).ok()?.outcome? {
            Outcome::Receipt(receipt) => DmReply::Receipt(receipt),
            Outcome::Refused(code) => DmReply::Refused(match pb::Refusal::try_from(code) {
                Ok(known) => known.into(),
                Err(_) => Refusal::Unknown(code),
            }),
        })
    }

    /// The reply's bytes.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let outcome = match self {
            DmReply::Receipt(receipt) => Outcome::Receipt(receipt.clone()),
            DmReply::Refused(refusal) => Outcome::Refused(refusal.code()),
        };
        pb::DmReply { outcome: Some(outcome) }.encode_to_vec()
    }
}

impl Refusal {
    /// The refusal's name in the protocol (`REFUSAL_WRONG_RECIPIENT`...), or
    /// "unknown" for a code this version does not know.
    pub(crate) fn wire_name(self) -> &'static str {
        pb::Refusal::try_from(self.code()).map_or("unknown", |r| r.as_str_name())
    }

    fn code(self) -> i32 {
        let known = match self {
            Refusal::Unknown(code) => return code,
            Refusal::Unspecified => pb::Refusal::Unspecified,
            Refusal::Invalid => pb::Refusal::Invalid,
            Refusal::WrongRecipient => pb::Refusal::WrongRecipient,
            Refusal::WrongKind => pb::Refusal::WrongKind,
            Refusal::Storage => pb::Refusal::Storage,
            Refusal::NotAccepted => pb::Refusal::NotAccepted,
            Refusal::UnknownGroup => pb::Refusal::UnknownGroup,
            Refusal::NotMember => pb::Refusal::NotMember,
            Refusal::Busy => pb::Refusal::Busy,
        };
        known as i32
    }
}

impl From<pb::Refusal> for Refusal {
    fn from(refusal: pb::Refusal) -> Self {
        match refusal {
            pb::Refusal::Unspecified => Refusal::Unspecified,
            pb::Refusal::Invalid => Refusal::Invalid,
            pb::Refusal::WrongRecipient => Refusal::WrongRecipient,
            pb::Refusal::WrongKind => Refusal::WrongKind,
            pb::Refusal::Storage => Refusal::Storage,
            pb::Refusal::NotAccepted => Refusal::NotAccepted,
            pb::Refusal::UnknownGroup => Refusal::UnknownGroup,
            pb::Refusal::NotMember => Refusal::NotMember,
            pb::Refusal::Busy => Refusal::Busy,
        }
    }
}
