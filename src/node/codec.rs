//! The request-response codec of the DM and sync protocols: raw bytes as the
//! request and the response, each read to the end of the stream with a hard
//! size limit per protocol. DM: one encoded envelope, answered by a
//! `DmReply`; sync: a `SyncRequest` answered by a `SyncResponse`. Decoding
//! into domain types happens after, in `crate::wire` (for envelopes, through
//! `Signed::open` once the signature is checked over these exact bytes);
//! [`judge_reply`] decides what a reply means for the DM it answers.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::DmFailure;
use crate::envelope::Signed;
use crate::id::MessageId;
use crate::message::{Body, DmReply, Refusal};
use crate::protocol::{MAX_ENVELOPE_BYTES, MAX_REPLY_BYTES, MAX_SYNC_MESSAGE_BYTES};
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::request_response;
use libp2p::{PeerId, StreamProtocol};

/// Raw bytes with a size limit enforced on both read and write.
// `pub` (in a crate-private module) only so that the `fuzzing` feature can
// re-export it.
#[derive(Debug, Clone)]
pub struct BytesCodec {
    request_max: usize,
    response_max: usize,
    /// Counts inbound requests cut for exceeding the limit, by reason only
    /// (`Stats::rejected["oversize"]`): the codec does not know the peer,
    /// and request_response 0.30 reports no event at all for a request
    /// whose reading failed (its behaviour has not registered the request
    /// yet, so it only logs it), so the peer never reaches the event loop.
    /// An oversize *response* is not counted here: it fails the outbound
    /// request with [`Oversize`], and `OutboundFailure` names the peer, so
    /// the event loop counts it against that peer ([`oversize_response`]).
    oversize: Option<Arc<AtomicU64>>,
}

impl BytesCodec {
    /// The same limits, counting oversize streams into `counter`.
    pub(crate) fn counting(mut self, counter: Arc<AtomicU64>) -> Self {
        self.oversize = Some(counter);
        self
    }
}

/// The DM protocol's limits: an envelope, and a reply with a receipt.
pub const DM_CODEC: BytesCodec = BytesCodec {
    request_max: MAX_ENVELOPE_BYTES,
    response_max: MAX_REPLY_BYTES,
    oversize: None,
};

/// The sync protocol's limits: a page of envelopes and its framing.
pub(crate) const SYNC_CODEC: BytesCodec = BytesCodec {
    request_max: MAX_SYNC_MESSAGE_BYTES,
    response_max: MAX_SYNC_MESSAGE_BYTES,
    oversize: None,
};

/// Why a read failed when the stream was longer than its limit: carried
/// inside the `io::Error` the codec returns, so that the event loop can tell
/// an oversize response from other IO failures.
#[derive(Debug)]
pub(crate) struct Oversize {
    max: usize,
}

impl std::fmt::Display for Oversize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "message larger than {} bytes", self.max)
    }
}

impl std::error::Error for Oversize {}

/// Whether an outbound request failed because the peer's response was over
/// the codec's limit (then the peer sent it, and is counted for it).
pub(crate) fn oversize_response(error: &request_response::OutboundFailure) -> bool {
    matches!(error, request_response::OutboundFailure::Io(e)
        if e.get_ref().is_some_and(|inner| inner.is::<Oversize>()))
}

/// What a reply to a DM means for that DM. Plain code with no IO, so that
/// every reply a peer can send is testable (and fuzzed) without a network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplyVerdict {
    /// A valid receipt from the recipient naming the DM: delivered, with
    /// these receipt bytes as the proof to keep.
    Delivered(Vec<u8>),
    /// A valid receipt saying the recipient takes no message requests.
    NotAccepted,
    /// A refusal worth another attempt.
    Retry(DmFailure),
    /// A refusal for good (the refusal's name).
    Refused(&'static str),
    /// Not a `DmReply`.
    Malformed,
    /// A receipt that is not a valid receipt for this DM by its recipient.
    BadReceipt,
}

/// Judges the reply to the DM `id` sent by `local` to `to`.
pub fn judge_reply(reply: &[u8], id: MessageId, to: PeerId, local: PeerId) -> ReplyVerdict {
    let receipt = match DmReply::decode(reply) {
        Some(DmReply::Receipt(bytes)) => bytes,
        // The group's state op may still be on its way: try again.
        Some(DmReply::Refused(Refusal::UnknownGroup)) => {
            return ReplyVerdict::Retry(DmFailure::UnknownGroup);
        }
        // A rate limit at the recipient: later.
        Some(DmReply::Refused(Refusal::Busy)) => return ReplyVerdict::Retry(DmFailure::Busy),
        // A disk error at the recipient is worth another try.
        Some(DmReply::Refused(Refusal::Storage)) => {
            return ReplyVerdict::Retry(DmFailure::RecipientStorage);
        }
        Some(DmReply::Refused(refusal)) => return ReplyVerdict::Refused(refusal.wire_name()),
        None => return ReplyVerdict::Malformed,
    };
    match Signed::open(&receipt) {
        Ok(signed) => match signed.body() {
            Body::Receipt(r) if signed.author() == to && r.message_id == id && r.author == local => {
                if r.accepted {
                    ReplyVerdict::Delivered(receipt)
                } else {
                    ReplyVerdict::NotAccepted
                }
            }
            _ => ReplyVerdict::BadReceipt,
        },
        Err(_) => ReplyVerdict::BadReceipt,
    }
}

impl request_response::Codec for BytesCodec {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = Vec<u8>;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_limited(io, self.request_max, self.oversize.as_deref()).await
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        // Counted by the event loop, which knows the peer.
        read_limited(io, self.response_max, None).await
    }

    async fn write_request<T>(&mut self, _: &StreamProtocol, io: &mut T, req: Vec<u8>) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_limited(io, &req, self.request_max).await
    }

    async fn write_response<T>(&mut self, _: &StreamProtocol, io: &mut T, res: Vec<u8>) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_limited(io, &res, self.response_max).await
    }
}

async fn read_limited<T: AsyncRead + Unpin + Send>(
    io: &mut T,
    max: usize,
    oversize: Option<&AtomicU64>,
) -> io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    io.take(max as u64 + 1).read_to_end(&mut buf).await?;
    if buf.len() > max {
        if let Some(counter) = oversize {
            counter.fetch_add(1, Ordering::Relaxed);
        }
        return Err(io::Error::new(io::ErrorKind::InvalidData, Oversize { max }));
    }
    Ok(buf)
}

async fn write_limited<T: AsyncWrite + Unpin + Send>(io: &mut T, bytes: &[u8], max: usize) -> io::Result<()> {
    if bytes.len() > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("message larger than {max} bytes"),
        ));
    }
    io.write_all(bytes).await?;
    io.close().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::io::Cursor;
    use request_response::Codec;

    #[tokio::test]
    async fn enforces_the_size_limit_on_read_and_write() {
        let mut codec = DM_CODEC;
        let p = crate::protocol::DM_PROTOCOL;
        let ok = vec![1u8; MAX_ENVELOPE_BYTES];
        let got = codec.read_request(&p, &mut Cursor::new(ok.clone())).await.unwrap();
        assert_eq!(got, ok);
        let big = vec![1u8; MAX_ENVELOPE_BYTES + 1];
        assert!(codec.read_request(&p, &mut Cursor::new(big.clone())).await.is_err());
        assert!(
            codec
                .write_request(&p, &mut Cursor::new(Vec::new()), big)
                .await
                .is_err()
        );
        let reply = vec![0u8; MAX_REPLY_BYTES + 1];
        let error = codec.read_response(&p, &mut Cursor::new(reply)).await.unwrap_err();
        assert!(oversize_response(&request_response::OutboundFailure::Io(error)));
        let other = io::Error::new(io::ErrorKind::InvalidData, "some other failure");
        assert!(!oversize_response(&request_response::OutboundFailure::Io(other)));
        assert!(!oversize_response(&request_response::OutboundFailure::Timeout));
    }

    #[tokio::test]
    async fn only_oversize_requests_are_counted_here() {
        let counter = Arc::new(AtomicU64::new(0));
        let mut codec = DM_CODEC.counting(counter.clone());
        let p = crate::protocol::DM_PROTOCOL;
        let big = vec![1u8; MAX_ENVELOPE_BYTES + 1];
        assert!(codec.read_request(&p, &mut Cursor::new(big)).await.is_err());
        assert_eq!(counter.load(Ordering::Relaxed), 1);
        // A response names its peer in the event loop; counted there.
        let reply = vec![0u8; MAX_REPLY_BYTES + 1];
        assert!(codec.read_response(&p, &mut Cursor::new(reply)).await.is_err());
        assert_eq!(counter.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn a_reply_delivers_only_with_the_recipients_receipt_for_that_dm() {
        use crate::identity::Identity;
        use crate::message::Receipt;
        let (alice, bob, mallory) = (
            Identity::from_secret([1; 32]),
            Identity::from_secret([2; 32]),
            Identity::from_secret([3; 32]),
        );
        let id = MessageId::from_bytes([7; 32]);
        let reply = |signer: &Identity, message_id, accepted| {
            let receipt = Body::Receipt(Receipt {
                message_id,
                author: alice.peer_id(),
                time_ms: 1,
                accepted,
            });
            let receipt = Signed::sign(signer, receipt).envelope().to_vec();
            (DmReply::Receipt(receipt.clone()).encode(), receipt)
        };
        let judge = |bytes: &[u8]| judge_reply(bytes, id, bob.peer_id(), alice.peer_id());
        let (good, receipt) = reply(&bob, id, true);
        assert_eq!(judge(&good), ReplyVerdict::Delivered(receipt));
        assert_eq!(judge(&reply(&bob, id, false).0), ReplyVerdict::NotAccepted);
        assert_eq!(judge(&reply(&mallory, id, true).0), ReplyVerdict::BadReceipt);
        let other = MessageId::from_bytes([8; 32]);
        assert_eq!(judge(&reply(&bob, other, true).0), ReplyVerdict::BadReceipt);
        assert_eq!(judge(&[0xff]), ReplyVerdict::Malformed);
        let refused = |refusal: Refusal| DmReply::Refused(refusal).encode();
        assert!(matches!(judge(&refused(Refusal::Storage)), ReplyVerdict::Retry(_)));
        assert_eq!(
            judge(&refused(Refusal::WrongRecipient)),
            ReplyVerdict::Refused("REFUSAL_WRONG_RECIPIENT")
        );
        assert_eq!(judge(&refused(Refusal::Unknown(-5))), ReplyVerdict::Refused("unknown"));
    }
}
