//! Why an attempt failed, typed so a caller can branch on it, with a text
//! in plain words that reads back: [`DmFailure`] (a DM, as
//! [`crate::Event::DmQueued`] and [`crate::Event::DmFailed`] report it) and
//! [`DialFailure`] (a dial, as [`crate::Event::DialFailed`] and
//! [`crate::NodeError::Dial`] report it).

use std::fmt;
use std::str::FromStr;

use libp2p::swarm::DialError;
use libp2p::{Multiaddr, PeerId};

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

/// Why a dial failed: libp2p's [`DialError`] reduced to what a caller can
/// act on. Its text (`Display`) is what the `dial_failed` `--json` line and
/// the CLI say, and [`FromStr`] reads it back; a text that is none of the
/// fixed ones reads as [`DialFailure::Other`], which is how libp2p's own
/// words for a rarer failure travel.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DialFailure {
    /// The address is this node's own.
    OwnAddress,
    /// No address is known for the peer.
    NoAddress,
    /// Another node answered at the address.
    WrongPeer {
        /// The node that answered.
        answered: PeerId,
    },
    /// One of this node's connection limits ([`crate::ConnectionCaps`])
    /// refused it.
    ConnectionLimit,
    /// The peer is blocked ([`crate::Handle::block_peer`]).
    Blocked,
    /// This node cannot dial that kind of address (it dials TCP, QUIC and
    /// relay circuits).
    UnsupportedAddress,
    /// The host answered that nothing listens at the address.
    Refused,
    /// No answer within the dial timeout.
    Timeout,
    /// The network has no route to the address.
    Unreachable,
    /// Another failure (a handshake, a protocol negotiation), in libp2p's
    /// words.
    Other(String),
}

const OWN_ADDRESS: &str = "that is this node's own address";
const NO_ADDRESS: &str = "no address is known for it";
const WRONG_PEER: (&str, &str) = ("another node (", ") answers at that address");
const CONNECTION_LIMIT: &str = "a connection limit of this node refused it";
const BLOCKED: &str = "the peer is blocked";
const UNSUPPORTED_ADDRESS: &str = "this node cannot dial that kind of address";
const DIAL_REFUSED: &str = "connection refused: nothing listens there";
const DIAL_TIMEOUT: &str = "no answer in time";
const DIAL_UNREACHABLE: &str = "no route to that address";

impl DialFailure {
    /// Why `error` failed, and the address it names if it names one; `None`
    /// for a dial given up on purpose (already connected or dialling, or
    /// aborted), which is not a failure to report. When several addresses
    /// were tried, the first one's failure is the one reported.
    pub(crate) fn of(error: &DialError) -> Option<(Option<Multiaddr>, DialFailure)> {
        use libp2p::core::transport::TransportError;
        Some(match error {
            DialError::DialPeerConditionFalse(_) | DialError::Aborted => return None,
            DialError::LocalPeerId { address } => (Some(address.clone()), DialFailure::OwnAddress),
            DialError::NoAddresses => (None, DialFailure::NoAddress),
            DialError::WrongPeerId { obtained, address } => {
                (Some(address.clone()), DialFailure::WrongPeer { answered: *obtained })
            }
            DialError::Denied { cause } => {
                let failure = if cause.downcast_ref::<libp2p::connection_limits::Exceeded>().is_some() {
                    DialFailure::ConnectionLimit
                } else if cause.downcast_ref::<libp2p::allow_block_list::Blocked>().is_some() {
                    DialFailure::Blocked
                } else {
                    DialFailure::Other(chain(cause).last().unwrap_or(cause).to_string())
                };
                (None, failure)
            }
            DialError::Transport(errors) => {
                let (addr, e) = errors.first()?;
                let failure = match e {
                    TransportError::MultiaddrNotSupported(_) => DialFailure::UnsupportedAddress,
                    TransportError::Other(e) => Self::of_io(e),
                };
                (Some(addr.clone()), failure)
            }
        })
    }

    /// What a transport's error says, looking through the layers that wrap
    /// it (the swarm's timeout, the upgrades) for an IO error of a known
    /// kind.
    fn of_io(error: &std::io::Error) -> DialFailure {
        use libp2p::core::transport::timeout::TransportTimeoutError;
        use std::io::ErrorKind;
        // The innermost error says what went wrong; the outer ones only wrap it.
        let innermost = chain(error)
            .last()
            .map_or_else(|| error.to_string(), ToString::to_string);
        // The swarm's dial timeout wraps a transport type too nested to name
        // (see `io_cause`), so it is known by its fixed text.
        let timeout = TransportTimeoutError::<std::io::Error>::Timeout.to_string();
        if innermost == timeout {
            return DialFailure::Timeout;
        }
        match io_cause(error).map(|e| e.kind()) {
            Some(ErrorKind::ConnectionRefused) => DialFailure::Refused,
            Some(ErrorKind::TimedOut) => DialFailure::Timeout,
            Some(ErrorKind::NetworkUnreachable | ErrorKind::HostUnreachable | ErrorKind::AddrNotAvailable) => {
                DialFailure::Unreachable
            }
            _ => DialFailure::Other(innermost),
        }
    }
}

/// The IO error that says what went wrong, out of the layers that carry it
/// with kind `Other` (the swarm's boxed transports, its timeout), so that its
/// kind (`ConnectionRefused`, `AddrInUse`, ...) is the one a caller sees;
/// `None` when no layer has a kind of its own.
///
/// The swarm's transports are joined by `either::Either`, whose `source`
/// skips the error it carries, so an operating system's error below one is
/// out of reach of a downcast. Its text is std's own, "<message> (os error
/// N)", and N gives back the same error.
pub(crate) fn io_cause(e: &(dyn std::error::Error + 'static)) -> Option<std::io::Error> {
    let reached = chain(e)
        .filter_map(|e| e.downcast_ref::<std::io::Error>())
        .filter(|io| io.kind() != std::io::ErrorKind::Other)
        .last();
    if let Some(io) = reached {
        return Some(match io.raw_os_error() {
            Some(code) => std::io::Error::from_raw_os_error(code),
            None => std::io::Error::new(io.kind(), io.to_string()),
        });
    }
    let text = chain(e).last()?.to_string();
    let code = text.strip_suffix(')')?.rsplit_once(" (os error ")?.1.parse().ok()?;
    Some(std::io::Error::from_raw_os_error(code))
}

/// The errors of `e`'s chain, `e` first. An IO error's `source` skips the
/// error it carries (it returns that error's source), so the carried one is
/// taken instead.
pub(crate) fn chain<'a>(
    e: &'a (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    std::iter::successors(Some(e), |e| {
        match e.downcast_ref::<std::io::Error>().and_then(std::io::Error::get_ref) {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => e.source(),
        }
    })
}

impl fmt::Display for DialFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            DialFailure::OwnAddress => OWN_ADDRESS,
            DialFailure::NoAddress => NO_ADDRESS,
            DialFailure::WrongPeer { answered } => return write!(f, "{}{answered}{}", WRONG_PEER.0, WRONG_PEER.1),
            DialFailure::ConnectionLimit => CONNECTION_LIMIT,
            DialFailure::Blocked => BLOCKED,
            DialFailure::UnsupportedAddress => UNSUPPORTED_ADDRESS,
            DialFailure::Refused => DIAL_REFUSED,
            DialFailure::Timeout => DIAL_TIMEOUT,
            DialFailure::Unreachable => DIAL_UNREACHABLE,
            DialFailure::Other(text) => text,
        };
        f.write_str(text)
    }
}

impl std::error::Error for DialFailure {}

impl FromStr for DialFailure {
    type Err = std::convert::Infallible;

    /// Never fails: a text that is none of the fixed ones is
    /// [`DialFailure::Other`].
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if let Some((_, failure)) = FIXED_DIAL_FAILURES.iter().find(|(t, _)| *t == text) {
            return Ok(failure.clone());
        }
        let answered = text
            .strip_prefix(WRONG_PEER.0)
            .and_then(|rest| rest.strip_suffix(WRONG_PEER.1))
            .and_then(|peer| peer.parse().ok());
        Ok(match answered {
            Some(answered) => DialFailure::WrongPeer { answered },
            None => DialFailure::Other(text.to_owned()),
        })
    }
}

/// The dial failures without data, with their fixed texts: what
/// [`DialFailure`]'s `FromStr` reads back.
pub(crate) const FIXED_DIAL_FAILURES: [(&str, DialFailure); 8] = [
    (OWN_ADDRESS, DialFailure::OwnAddress),
    (NO_ADDRESS, DialFailure::NoAddress),
    (CONNECTION_LIMIT, DialFailure::ConnectionLimit),
    (BLOCKED, DialFailure::Blocked),
    (UNSUPPORTED_ADDRESS, DialFailure::UnsupportedAddress),
    (DIAL_REFUSED, DialFailure::Refused),
    (DIAL_TIMEOUT, DialFailure::Timeout),
    (DIAL_UNREACHABLE, DialFailure::Unreachable),
];

impl serde::Serialize for DialFailure {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        crate::id::as_text::serialize(self, s)
    }
}

impl<'de> serde::Deserialize<'de> for DialFailure {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        crate::id::as_text::deserialize(d)
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

    #[test]
    fn every_dial_failure_reads_back_from_its_text() {
        let all = FIXED_DIAL_FAILURES.into_iter().map(|(_, f)| f).chain([
            DialFailure::WrongPeer {
                answered: PeerId::random(),
            },
            DialFailure::Other("Handshake failed: input error".into()),
            // Looks like a wrong peer, but names no peer id.
            DialFailure::Other("another node (nobody) answers at that address".into()),
        ]);
        for failure in all {
            let text = failure.to_string();
            assert_eq!(text.parse::<DialFailure>(), Ok(failure.clone()), "{text}");
            let json = serde_json::to_string(&failure).expect("serialises");
            assert_eq!(serde_json::from_str::<DialFailure>(&json).expect("reads back"), failure);
        }
    }

    #[test]
    fn a_refused_connection_is_found_under_the_layers_that_wrap_it() {
        use libp2p::core::transport::TransportError;
        use libp2p::core::transport::timeout::TransportTimeoutError;
        use std::io::{Error, ErrorKind};
        let addr: Multiaddr = "/ip4/127.0.0.1/tcp/1".parse().expect("addr");
        // How the swarm's boxed transport wraps the TCP transport's error.
        let wrapped = |inner: Error| {
            let timeout_layer = TransportTimeoutError::Other(Error::other(inner));
            DialError::Transport(vec![(addr.clone(), TransportError::Other(Error::other(timeout_layer)))])
        };
        let refused = wrapped(Error::from(ErrorKind::ConnectionRefused));
        assert_eq!(
            DialFailure::of(&refused),
            Some((Some(addr.clone()), DialFailure::Refused))
        );
        let timeout = DialError::Transport(vec![(
            addr.clone(),
            TransportError::Other(Error::other(TransportTimeoutError::<Error>::Timeout)),
        )]);
        assert_eq!(
            DialFailure::of(&timeout),
            Some((Some(addr.clone()), DialFailure::Timeout))
        );
        // As the swarm has it: the OS error under the `Either` that joins
        // its transports, where no downcast reaches (111 is Linux's
        // ECONNREFUSED).
        #[cfg(target_os = "linux")]
        {
            let joined = either::Either::<Error, Error>::Right(Error::from_raw_os_error(111));
            let hidden = DialError::Transport(vec![(
                addr.clone(),
                TransportError::Other(Error::other(TransportTimeoutError::Other(joined))),
            )]);
            assert_eq!(
                DialFailure::of(&hidden),
                Some((Some(addr.clone()), DialFailure::Refused))
            );
        }
        let odd = wrapped(Error::other("Handshake failed"));
        assert_eq!(
            DialFailure::of(&odd),
            Some((Some(addr.clone()), DialFailure::Other("Handshake failed".into())))
        );
        assert_eq!(DialFailure::of(&DialError::Aborted), None);
    }
}
