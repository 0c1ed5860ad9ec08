//! [`DmFailure`]: why an attempt to deliver a DM failed, as
//! [`crate::Event::DmQueued`] and [`crate::Event::DmFailed`] report it.

use std::fmt;
use std::str::FromStr;

/// Why a DM (or a group message to one member) was not delivered. Queued
/// attempts are retried ([`crate::Event::DmQueued`]); the others end the DM
/// ([`crate::Event::DmFailed`]). Its text (`Display`) is what `--json` lines
/// and the log carry, and [`FromStr`] reads it back.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DmFailure {
    /// Not connected, no known address answered, and the DHT has no record
    /// of the peer.
    NoRoute,
    /// A connection could not be made, or closed before the reply.
    Unreachable,
    /// No reply within `Config::dm_timeout`.
    Timeout,
    /// The peer does not speak the DM protocol.
    UnsupportedProtocol,
    /// The stream failed (a reply over the size limit, a reset).
    Stream,
    /// The recipient is over its rate limit for this sender (retried).
    Busy,
    /// The recipient does not know the group yet (retried).
    UnknownGroup,
    /// The recipient could not store the message (retried).
    RecipientStorage,
    /// A valid receipt saying the recipient takes no message requests.
    NotAccepted,
    /// The recipient refused it for good, with this refusal's wire name
    /// (docs/PROTOCOL.md: `REFUSAL_INVALID`, ... or `unknown` for a code
    /// newer than this node).
    Refused {
        /// The refusal's wire name.
        refusal: String,
    },
    /// The reply is not a DM reply.
    MalformedReply,
    /// The reply is not a valid receipt for this DM by its recipient.
    InvalidReceipt,
    /// The outbox gave up after its retry window; `last` is why the last
    /// attempt failed, if one did.
    Expired {
        /// The last attempt's failure.
        last: Option<Box<DmFailure>>,
    },
}

const NO_ROUTE: &str =
    "no route to the peer: not connected, no known address answered, and the DHT has no record of it";
const UNREACHABLE: &str = "the recipient could not be reached";
const TIMEOUT: &str = "no reply in time";
const UNSUPPORTED: &str = "the recipient does not speak the DM protocol";
const STREAM: &str = "the stream failed";
const BUSY: &str = "the recipient is busy";
const UNKNOWN_GROUP: &str = "the recipient does not know the group yet";
const STORAGE: &str = "the recipient could not store it";
const NOT_ACCEPTED: &str = "not accepted: the recipient takes no message requests";
const REFUSED: &str = "refused by recipient: ";
const MALFORMED: &str = "malformed reply";
const INVALID_RECEIPT: &str = "invalid receipt";
const EXPIRED: &str = "expired";

impl DmFailure {
    /// Whether the outbox tries again after this failure.
    pub fn is_retried(&self) -> bool {
        !matches!(
            self,
            DmFailure::NotAccepted
                | DmFailure::Refused { .. }
                | DmFailure::MalformedReply
                | DmFailure::InvalidReceipt
                | DmFailure::Expired { .. }
        )
    }
}

impl fmt::Display for DmFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            DmFailure::NoRoute => NO_ROUTE,
            DmFailure::Unreachable => UNREACHABLE,
            DmFailure::Timeout => TIMEOUT,
            DmFailure::UnsupportedProtocol => UNSUPPORTED,
            DmFailure::Stream => STREAM,
            DmFailure::Busy => BUSY,
            DmFailure::UnknownGroup => UNKNOWN_GROUP,
            DmFailure::RecipientStorage => STORAGE,
            DmFailure::NotAccepted => NOT_ACCEPTED,
            DmFailure::Refused { refusal } => return write!(f, "{REFUSED}{refusal}"),
            DmFailure::MalformedReply => MALFORMED,
            DmFailure::InvalidReceipt => INVALID_RECEIPT,
            DmFailure::Expired { last: None } => EXPIRED,
            DmFailure::Expired { last: Some(last) } => return write!(f, "{EXPIRED} ({last})"),
        };
        f.write_str(text)
    }
}

impl std::error::Error for DmFailure {}

/// Text that is not a [`DmFailure`]'s.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a DM failure: {0:?}")]
pub struct UnknownFailure(pub String);

impl FromStr for DmFailure {
    type Err = UnknownFailure;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let simple = [
            (NO_ROUTE, DmFailure::NoRoute),
            (UNREACHABLE, DmFailure::Unreachable),
            (TIMEOUT, DmFailure::Timeout),
            (UNSUPPORTED, DmFailure::UnsupportedProtocol),
            (STREAM, DmFailure::Stream),
            (BUSY, DmFailure::Busy),
            (UNKNOWN_GROUP, DmFailure::UnknownGroup),
            (STORAGE, DmFailure::RecipientStorage),
            (NOT_ACCEPTED, DmFailure::NotAccepted),
            (MALFORMED, DmFailure::MalformedReply),
            (INVALID_RECEIPT, DmFailure::InvalidReceipt),
            (EXPIRED, DmFailure::Expired { last: None }),
        ];
        if let Some((_, failure)) = simple.into_iter().find(|(t, _)| *t == text) {
            return Ok(failure);
        }
        if let Some(refusal) = text.strip_prefix(REFUSED) {
            return Ok(DmFailure::Refused {
                refusal: refusal.to_owned(),
            });
        }
        if let Some(inner) = text
            .strip_prefix(EXPIRED)
            .and_then(|rest| rest.strip_prefix(" ("))
            .and_then(|rest| rest.strip_suffix(')'))
        {
            let last = inner.parse().map_err(|_| UnknownFailure(text.to_owned()))?;
            return Ok(DmFailure::Expired {
                last: Some(Box::new(last)),
            });
        }
        Err(UnknownFailure(text.to_owned()))
    }
}

impl serde::Serialize for DmFailure {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for DmFailure {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_failure_reads_back_from_its_text() {
        let all = [
            DmFailure::NoRoute,
            DmFailure::Unreachable,
            DmFailure::Timeout,
            DmFailure::UnsupportedProtocol,
            DmFailure::Stream,
            DmFailure::Busy,
            DmFailure::UnknownGroup,
            DmFailure::RecipientStorage,
            DmFailure::NotAccepted,
            DmFailure::Refused {
                refusal: "REFUSAL_INVALID".into(),
            },
            DmFailure::MalformedReply,
            DmFailure::InvalidReceipt,
            DmFailure::Expired { last: None },
            DmFailure::Expired {
                last: Some(Box::new(DmFailure::Timeout)),
            },
            DmFailure::Expired {
                last: Some(Box::new(DmFailure::Refused {
                    refusal: "odd (name)".into(),
                })),
            },
        ];
        for failure in all {
            let text = failure.to_string();
            assert_eq!(text.parse::<DmFailure>(), Ok(failure.clone()), "{text}");
            let json = serde_json::to_string(&failure).expect("serialises");
            assert_eq!(serde_json::from_str::<DmFailure>(&json).expect("reads back"), failure);
        }
        assert!("the dog ate it".parse::<DmFailure>().is_err());
        assert!("expired (the dog ate it)".parse::<DmFailure>().is_err());
    }
}
