//! The request-response codec of the DM and sync protocols: raw bytes as the
//! request and the response, each read to the end of the stream with a hard
//! size limit per protocol. DM: one encoded envelope, answered by a
//! `DmReply`; sync: a `SyncRequest` answered by a `SyncResponse`. Decoding
//! into domain types happens after (for envelopes, in `Signed::open` once the
//! signature is checked over these exact bytes).

use std::io;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::StreamProtocol;
use libp2p::request_response;

use crate::protocol::{MAX_ENVELOPE_BYTES, MAX_REPLY_BYTES};
use crate::sync::MAX_SYNC_MESSAGE_BYTES;

/// Raw bytes with a size limit enforced on both read and write.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BytesCodec {
    request_max: usize,
    response_max: usize,
}

/// The DM protocol's limits: an envelope, and a reply with a receipt.
pub(crate) const DM_CODEC: BytesCodec = BytesCodec {
    request_max: MAX_ENVELOPE_BYTES,
    response_max: MAX_REPLY_BYTES,
};

/// The sync protocol's limits: a page of envelopes and its framing.
pub(crate) const SYNC_CODEC: BytesCodec = BytesCodec {
    request_max: MAX_SYNC_MESSAGE_BYTES,
    response_max: MAX_SYNC_MESSAGE_BYTES,
};

impl request_response::Codec for BytesCodec {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = Vec<u8>;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_limited(io, self.request_max).await
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_limited(io, self.response_max).await
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

async fn read_limited<T: AsyncRead + Unpin + Send>(io: &mut T, max: usize) -> io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    io.take(max as u64 + 1).read_to_end(&mut buf).await?;
    if buf.len() > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("message larger than {max} bytes"),
        ));
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
        assert!(codec.read_response(&p, &mut Cursor::new(reply)).await.is_err());
    }
}
