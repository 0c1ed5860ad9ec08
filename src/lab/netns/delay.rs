//! Link delay without `sch_netem`: the kernels this project runs on (CI's
//! included) are built without the netem qdisc, so `tc netem` is not
//! available. Instead, iptables queues every packet crossing a public link
//! to user space (NFQUEUE) and a thread of the lab accepts each one `delay`
//! after it arrived. Loss needs no thread: an iptables `statistic` rule drops
//! packets at random (see `NatLab::netem`).
//!
//! The thread speaks the nfnetlink_queue protocol directly over a netlink
//! socket (a few fixed-layout messages), so the lab needs no C library.

use std::collections::VecDeque;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rustix::net::netlink::{NETFILTER, SocketAddrNetlink};
use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketType, sockopt};

use super::NetnsError;

/// The queue the lab's iptables rules send packets to. Queues are per
/// network namespace, and each namespace has one public link, so one number
/// serves every link.
pub(super) const QUEUE: u16 = 0;

/// How long the thread waits for packets before looking at its stop flag
/// again: the longest a dropped lab waits for it. Also the socket's receive
/// timeout while it is being configured.
const POLL: Duration = Duration::from_millis(50);

/// Packets the kernel holds for the thread; past this it drops them (a
/// 30 ms link at the lab's rates holds far fewer).
const QUEUE_MAXLEN: u32 = 8192;

/// The kernel's buffer for queued packet notices: enough for a full queue
/// of metadata-only notices (~100 bytes each).
const RECV_BUFFER: usize = 1 << 20;

// nfnetlink_queue, from <linux/netfilter/nfnetlink_queue.h> and
// <linux/netlink.h>.
const NLMSG_HDRLEN: usize = 16;
const NFGEN_HDRLEN: usize = 4;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const NLMSG_ERROR: u16 = 2;
const NFNL_SUBSYS_QUEUE: u16 = 3;
const NFQNL_MSG_PACKET: u16 = NFNL_SUBSYS_QUEUE << 8;
const NFQNL_MSG_VERDICT: u16 = (NFNL_SUBSYS_QUEUE << 8) | 1;
const NFQNL_MSG_CONFIG: u16 = (NFNL_SUBSYS_QUEUE << 8) | 2;
const NFQA_PACKET_HDR: u16 = 1;
const NFQA_VERDICT_HDR: u16 = 2;
const NFQA_CFG_CMD: u16 = 1;
const NFQA_CFG_PARAMS: u16 = 2;
const NFQA_CFG_QUEUE_MAXLEN: u16 = 3;
const NFQNL_CFG_CMD_BIND: u8 = 1;
const NFQNL_COPY_META: u8 = 1;
const NF_ACCEPT: u32 = 1;
const NLA_TYPE_MASK: u16 = 0x3fff;

/// A thread that delays the packets of one namespace's queue; stopped and
/// joined on drop.
#[derive(Debug)]
pub(super) struct Delayer {
    delay_us: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Delayer {
    /// Starts delaying the packets queued in `netns` by `delay`.
    pub(super) fn start(netns: &str, delay: Duration) -> Result<Delayer, NetnsError> {
        let file = std::fs::File::open(Path::new("/run/netns").join(netns))?;
        let delay_us = Arc::new(AtomicU64::new(micros(delay)));
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel(1);
        let (us, halt) = (delay_us.clone(), stop.clone());
        let name = netns.to_owned();
        let thread = std::thread::Builder::new()
            .name(format!("delay {netns}"))
            .spawn(move || {
                let socket = rustix::thread::move_into_link_name_space(
                    file.as_fd(),
                    Some(rustix::thread::LinkNameSpaceType::Network),
                )
                .map_err(std::io::Error::from)
                .and_then(|()| bind_queue());
                match socket {
                    Ok(socket) => {
                        let _ = ready_tx.send(Ok(()));
                        if let Err(e) = release_loop(&socket, &us, &halt) {
                            eprintln!("NAT lab: the delay of {name} stopped: {e}");
                        }
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                    }
                }
            })?;
        let ready = ready_rx
            .recv()
            .unwrap_or_else(|_| Err(std::io::Error::other("the delay thread ended before it was ready")));
        let delayer = Delayer {
            delay_us,
            stop,
            thread: Some(thread),
        };
        ready?;
        Ok(delayer)
    }

    /// Changes the delay of packets that arrive from now on.
    pub(super) fn set(&self, delay: Duration) {
        self.delay_us.store(micros(delay), Ordering::Relaxed);
    }
}

impl Drop for Delayer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// A netlink socket bound to the queue, copying packet metadata only.
fn bind_queue() -> std::io::Result<OwnedFd> {
    let socket = rustix::net::socket(AddressFamily::NETLINK, SocketType::RAW, Some(NETFILTER))?;
    rustix::net::bind(&socket, &SocketAddrNetlink::new(0, 0))?;
    sockopt::set_socket_recv_buffer_size(&socket, RECV_BUFFER)?;
    sockopt::set_socket_timeout(&socket, sockopt::Timeout::Recv, Some(POLL))?;
    let mut bind = message(NFQNL_MSG_CONFIG, NLM_F_REQUEST | NLM_F_ACK);
    attr(&mut bind, NFQA_CFG_CMD, &[NFQNL_CFG_CMD_BIND, 0, 0, 0]);
    request(&socket, bind)?;
    let mut params = message(NFQNL_MSG_CONFIG, NLM_F_REQUEST | NLM_F_ACK);
    // Copy range 0 with metadata mode: the packet's id is all the thread needs.
    attr(&mut params, NFQA_CFG_PARAMS, &[0, 0, 0, 0, NFQNL_COPY_META]);
    attr(&mut params, NFQA_CFG_QUEUE_MAXLEN, &QUEUE_MAXLEN.to_be_bytes());
    request(&socket, params)?;
    Ok(socket)
}

/// Receives packet notices and accepts each packet once its delay is over,
/// in arrival order, until `stop` is set.
fn release_loop(socket: &OwnedFd, delay_us: &AtomicU64, stop: &AtomicBool) -> std::io::Result<()> {
    let mut pending: VecDeque<(u32, Instant)> = VecDeque::new();
    let mut buf = vec![0u8; 1 << 16];
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        while let Some(&(id, due)) = pending.front()
            && due <= now
        {
            send(socket, verdict(id))?;
            pending.pop_front();
        }
        // Wake for the next due packet, or to look at the stop flag. poll
        // sleeps on a high-resolution timer; a socket timeout would round
        // up to the scheduler tick and add milliseconds to every packet.
        let wait = pending
            .front()
            .map_or(POLL, |&(_, due)| due.saturating_duration_since(now).min(POLL));
        let wait = rustix::event::Timespec::try_from(wait).map_err(|_| std::io::Error::other("a poll timeout"))?;
        let mut fds = [rustix::event::PollFd::new(socket, rustix::event::PollFlags::IN)];
        match rustix::event::poll(&mut fds, Some(&wait)) {
            Ok(0) | Err(rustix::io::Errno::INTR) => continue,
            Ok(_) => {}
            Err(e) => return Err(e.into()),
        }
        match rustix::net::recv(socket, &mut buf[..], RecvFlags::DONTWAIT) {
            Ok((n, _)) => {
                let due = Instant::now() + Duration::from_micros(delay_us.load(Ordering::Relaxed));
                pending.extend(packet_ids(&buf[..n.min(buf.len())]).map(|id| (id, due)));
            }
            // Nothing arrived in time, or the kernel dropped notices because
            // the thread fell behind (those packets are gone: loss).
            Err(rustix::io::Errno::AGAIN | rustix::io::Errno::INTR | rustix::io::Errno::NOBUFS) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// A netlink message header and nfgenmsg for the lab's queue; `finish`
/// fills in the length.
fn message(kind: u16, flags: u16) -> Vec<u8> {
    let mut m = Vec::with_capacity(64);
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.extend_from_slice(&kind.to_ne_bytes());
    m.extend_from_slice(&flags.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes()); // sequence number: unused
    m.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel fills it in
    // nfgenmsg: AF_UNSPEC, version 0, the queue number (big-endian).
    m.extend_from_slice(&[0, 0]);
    m.extend_from_slice(&QUEUE.to_be_bytes());
    m
}

/// Appends a netlink attribute, padded to four bytes.
fn attr(m: &mut Vec<u8>, kind: u16, payload: &[u8]) {
    let len = u16::try_from(4 + payload.len()).expect("attributes are small");
    m.extend_from_slice(&len.to_ne_bytes());
    m.extend_from_slice(&kind.to_ne_bytes());
    m.extend_from_slice(payload);
    m.resize(m.len().next_multiple_of(4), 0);
}

fn send(socket: &OwnedFd, mut m: Vec<u8>) -> std::io::Result<()> {
    let len = u32::try_from(m.len()).expect("messages are small");
    m[..4].copy_from_slice(&len.to_ne_bytes());
    rustix::net::send(socket, &m, SendFlags::empty())?;
    Ok(())
}

/// Sends a configuration message and reads the kernel's acknowledgement.
fn request(socket: &OwnedFd, m: Vec<u8>) -> std::io::Result<()> {
    send(socket, m)?;
    let mut buf = [0u8; 512];
    let (n, _) = rustix::net::recv(socket, &mut buf[..], RecvFlags::empty())?;
    let reply = &buf[..n.min(buf.len())];
    let kind = reply.get(4..6).map(|b| u16::from_ne_bytes([b[0], b[1]]));
    let code = reply
        .get(NLMSG_HDRLEN..NLMSG_HDRLEN + 4)
        .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
    match (kind, code) {
        (Some(NLMSG_ERROR), Some(0)) => Ok(()),
        (Some(NLMSG_ERROR), Some(code)) => Err(std::io::Error::from_raw_os_error(-code)),
        _ => Err(std::io::Error::other(
            "nfnetlink_queue: unexpected reply to a configuration message",
        )),
    }
}

fn verdict(id: u32) -> Vec<u8> {
    let mut m = message(NFQNL_MSG_VERDICT, NLM_F_REQUEST);
    let mut hdr = [0u8; 8];
    hdr[..4].copy_from_slice(&NF_ACCEPT.to_be_bytes());
    hdr[4..].copy_from_slice(&id.to_be_bytes());
    attr(&mut m, NFQA_VERDICT_HDR, &hdr);
    m
}

/// The ids of the queued packets announced in `buf` (one or more netlink
/// messages); anything malformed ends the walk instead of panicking.
fn packet_ids(buf: &[u8]) -> impl Iterator<Item = u32> + '_ {
    let mut at = 0;
    std::iter::from_fn(move || {
        loop {
            let header = buf.get(at..at + NLMSG_HDRLEN)?;
            let len = u32::from_ne_bytes([header[0], header[1], header[2], header[3]]) as usize;
            let kind = u16::from_ne_bytes([header[4], header[5]]);
            let body = buf.get(at + NLMSG_HDRLEN..at + len.max(NLMSG_HDRLEN))?;
            if len < NLMSG_HDRLEN {
                return None;
            }
            at += len.next_multiple_of(4);
            if kind == NFQNL_MSG_PACKET
                && let Some(id) = packet_id(body.get(NFGEN_HDRLEN..)?)
            {
                return Some(id);
            }
        }
    })
}

/// The packet id in a packet notice's attributes.
fn packet_id(mut attrs: &[u8]) -> Option<u32> {
    while attrs.len() >= 4 {
        let len = u16::from_ne_bytes([attrs[0], attrs[1]]) as usize;
        let kind = u16::from_ne_bytes([attrs[2], attrs[3]]) & NLA_TYPE_MASK;
        if len < 4 {
            return None;
        }
        if kind == NFQA_PACKET_HDR {
            let id = attrs.get(4..8)?;
            return Some(u32::from_be_bytes([id[0], id[1], id[2], id[3]]));
        }
        attrs = attrs.get(len.next_multiple_of(4)..)?;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packet_ids_come_from_packet_notices_and_garbage_ends_the_walk() {
        let mut notice = message(NFQNL_MSG_PACKET, 0);
        attr(&mut notice, 9, &[1, 2, 3]);
        attr(&mut notice, NFQA_PACKET_HDR, &[0, 0, 1, 2, 8, 0, 3]);
        let len = notice.len() as u32;
        notice[..4].copy_from_slice(&len.to_ne_bytes());
        let mut two = notice.clone();
        two.extend_from_slice(&notice);
        assert_eq!(packet_ids(&two).collect::<Vec<_>>(), [258, 258]);
        // Truncated or zero-length input yields what was whole, never a panic.
        for cut in 0..two.len() {
            assert!(packet_ids(&two[..cut]).count() <= 1);
        }
        let mut zero = notice.clone();
        zero[..4].copy_from_slice(&0u32.to_ne_bytes());
        assert_eq!(packet_ids(&zero).count(), 0);
    }
}
