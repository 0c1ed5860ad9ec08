//! The DM protocol's stream codec (`DM_CODEC`, what libp2p's request-response
//! calls on every DM stream) against a peer that sends any bytes in any
//! chunking, with pending polls and a connection reset in between. Checks
//! that a read returns exactly the bytes sent when they fit the limit and an
//! error when they do not or the stream failed, whatever the chunking; that
//! it never takes more than the limit plus one byte from the stream (bounded
//! memory against an endless stream); and that a write sends exactly the
//! bytes and closes the stream, or refuses oversize bytes without writing
//! anything.

#![no_main]

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use arbitrary::Arbitrary;
use backchannel::fuzzing::DM_CODEC;
use backchannel::protocol::{DM_PROTOCOL, MAX_ENVELOPE_BYTES, MAX_REPLY_BYTES};
use futures::executor::block_on;
use futures::{AsyncRead, AsyncWrite};
use libfuzzer_sys::fuzz_target;
use libp2p::request_response::Codec;

#[derive(Arbitrary, Debug)]
struct Input {
    /// Request (envelope limit) or response (reply limit).
    request: bool,
    /// The bytes the peer sends, repeated up to `len` bytes.
    bytes: Vec<u8>,
    /// How much the peer sends in total, modulo twice the limit plus 2.
    len: u16,
    /// The peer never closes its side: it sends `bytes` forever.
    endless: bool,
    /// How the stream hands the bytes over, one step per poll (cycled).
    steps: Vec<Step>,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Step {
    /// Up to this many bytes (at least one).
    Chunk(u16),
    /// Not ready yet (wakes itself).
    Pending,
    /// The connection fails (futures' `AsyncRead` may not return
    /// `Interrupted`, so a failure is any other error).
    Reset,
}

/// A stream that hands over `data` as `steps` say.
struct Peer<'a> {
    data: &'a [u8],
    endless: bool,
    pos: usize,
    steps: &'a [Step],
    step: usize,
    written: Vec<u8>,
    closed: bool,
    failed: bool,
    pending: bool,
}

impl Peer<'_> {
    fn next_step(&mut self) -> Step {
        if self.steps.is_empty() {
            return Step::Chunk(u16::MAX);
        }
        let s = self.steps[self.step % self.steps.len()];
        self.step += 1;
        // Never pending twice in a row, so that every stream makes progress.
        let s = match s {
            Step::Pending if self.pending => Step::Chunk(u16::MAX),
            s => s,
        };
        self.pending = matches!(s, Step::Pending);
        s
    }
}

impl AsyncRead for Peer<'_> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        match self.next_step() {
            Step::Pending => {
                cx.waker().wake_by_ref();
                Poll::Pending
            }
            Step::Reset => {
                self.failed = true;
                Poll::Ready(Err(io::ErrorKind::ConnectionReset.into()))
            }
            Step::Chunk(n) => {
                let n = (n as usize).max(1).min(buf.len());
                let mut done = 0;
                while done < n && !self.data.is_empty() && (self.endless || self.pos < self.data.len()) {
                    let from = &self.data[self.pos % self.data.len()..];
                    let from = if self.endless {
                        from
                    } else {
                        &from[..from.len().min(self.data.len() - self.pos)]
                    };
                    let k = from.len().min(n - done);
                    buf[done..done + k].copy_from_slice(&from[..k]);
                    self.pos += k;
                    done += k;
                }
                Poll::Ready(Ok(done))
            }
        }
    }
}

impl AsyncWrite for Peer<'_> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        assert!(!self.closed, "write after close");
        match self.next_step() {
            Step::Pending => {
                cx.waker().wake_by_ref();
                Poll::Pending
            }
            Step::Reset => {
                self.failed = true;
                Poll::Ready(Err(io::ErrorKind::ConnectionReset.into()))
            }
            Step::Chunk(n) => {
                let n = (n as usize).max(1).min(buf.len());
                self.written.extend_from_slice(&buf[..n]);
                Poll::Ready(Ok(n))
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_close(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.closed = true;
        Poll::Ready(Ok(()))
    }
}

fuzz_target!(|input: Input| {
    let max = if input.request {
        MAX_ENVELOPE_BYTES
    } else {
        MAX_REPLY_BYTES
    };
    let len = if input.bytes.is_empty() {
        0
    } else {
        input.len as usize % (2 * max + 2)
    };
    let sent: Vec<u8> = input.bytes.iter().copied().cycle().take(len).collect();
    let endless = input.endless && !input.bytes.is_empty();
    let peer = |data| Peer {
        data,
        endless,
        pos: 0,
        steps: &input.steps,
        step: 0,
        written: Vec::new(),
        closed: false,
        failed: false,
        pending: false,
    };

    // Reading what the peer sends.
    let (mut from, stream) = if endless {
        (peer(&input.bytes), None)
    } else {
        (peer(&sent), Some(&sent))
    };
    let got = block_on(async {
        if input.request {
            { DM_CODEC }.read_request(&DM_PROTOCOL, &mut from).await
        } else {
            { DM_CODEC }.read_response(&DM_PROTOCOL, &mut from).await
        }
    });
    assert!(from.pos <= max + 1, "read {} bytes for a {max}-byte limit", from.pos);
    match (got, stream) {
        (Ok(_), _) if from.failed => panic!("a read that failed returned bytes"),
        (Err(_), _) if from.failed => {}
        (Ok(got), Some(sent)) => assert!(sent.len() <= max && &got == sent, "read other bytes than sent"),
        (Err(e), Some(sent)) => assert!(sent.len() > max, "a {}-byte message refused: {e}", sent.len()),
        (Ok(got), None) => panic!("an endless stream read as {} bytes", got.len()),
        (Err(_), None) => {}
    }

    // Writing the same bytes.
    let mut to = peer(&[]);
    let wrote = block_on(async {
        if input.request {
            { DM_CODEC }.write_request(&DM_PROTOCOL, &mut to, sent.clone()).await
        } else {
            { DM_CODEC }.write_response(&DM_PROTOCOL, &mut to, sent.clone()).await
        }
    });
    match wrote {
        Ok(()) => assert!(!to.failed && sent.len() <= max && to.written == sent && to.closed),
        Err(_) if to.failed => assert!(sent.starts_with(&to.written) && !to.closed),
        Err(e) => assert!(sent.len() > max && to.written.is_empty(), "write failed: {e}"),
    }
});
