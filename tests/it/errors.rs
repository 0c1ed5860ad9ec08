//! Failures a caller can branch on (issue 11, item 6): why a dial failed
//! ([`DialFailure`], on [`NodeError::Dial`] and [`Event::DialFailed`]) and
//! why a node did not start ([`StartError`]), each typed instead of text.

use backchannel::lab::{Lab, LabConfig};
use backchannel::{Config, DialFailure, Event, Identity, Multiaddr, Node, NodeError, StartError};

use crate::support::T;

/// A loopback TCP port nothing listens on (bound, then closed).
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// Waits for the node's `DialFailed` about `addr` and returns its reason.
async fn dial_failed(lab: &mut Lab, addr: &Multiaddr) -> DialFailure {
    lab.nodes[0]
        .wait_for("the failed dial", T, |e| match e {
            Event::DialFailed {
                addr: Some(failed),
                reason,
                ..
            } if failed == addr => Some(reason.clone()),
            _ => None,
        })
        .await
        .expect("the failure is reported")
}

/// A dial starts at once and fails later: the event says why, as a value
/// (the CLI's words are its text).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_dial_says_why_as_a_value() {
    let mut lab = Lab::start(2, LabConfig::default()).await.expect("lab");

    let closed: Multiaddr = format!("/ip4/127.0.0.1/tcp/{}", closed_port()).parse().expect("addr");
    lab.nodes[0].handle.dial(closed.clone()).await.expect("the dial starts");
    let reason = dial_failed(&mut lab, &closed).await;
    assert_eq!(reason, DialFailure::Refused);
    assert!(reason.to_string().contains("refused"), "{reason}");

    // No transport of the node speaks plain UDP.
    let udp: Multiaddr = "/ip4/127.0.0.1/udp/9".parse().expect("addr");
    lab.nodes[0].handle.dial(udp.clone()).await.expect("the dial starts");
    assert_eq!(dial_failed(&mut lab, &udp).await, DialFailure::UnsupportedAddress);

    // Node 1's address, claimed for someone else: node 1 answers.
    let someone = Identity::from_secret([9; 32]).peer_id();
    let listen = lab.nodes[1]
        .addr
        .iter()
        .take_while(|p| !matches!(p, backchannel::multiaddr::Protocol::P2p(_)));
    let mut wrong: Multiaddr = listen.collect();
    wrong.push(backchannel::multiaddr::Protocol::P2p(someone));
    lab.nodes[0].handle.dial(wrong.clone()).await.expect("the dial starts");
    let answered = lab.nodes[1].peer_id();
    assert_eq!(dial_failed(&mut lab, &wrong).await, DialFailure::WrongPeer { answered });
    lab.shutdown().await;
}

/// A dial the node refuses before it starts is the handle's error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dial_beyond_the_pending_limit_is_refused_at_once() {
    let config = LabConfig {
        tweak: |c| c.connections.pending_outgoing = 0,
        ..LabConfig::default()
    };
    let mut lab = Lab::start(1, config).await.expect("lab");
    let addr: Multiaddr = format!("/ip4/127.0.0.1/tcp/{}", closed_port()).parse().expect("addr");
    let refused = lab.nodes[0].handle.dial(addr.clone()).await;
    let Err(NodeError::Dial { addr: failed, reason }) = refused else {
        panic!("expected a dial error, got {refused:?}");
    };
    assert_eq!((failed, reason), (addr, DialFailure::ConnectionLimit));
    lab.shutdown().await;
}

/// A node that cannot listen where it is told does not start, and says which
/// address and why (the IO error's kind).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listening_on_a_port_in_use_is_a_typed_start_error() {
    let tmp = tempfile::tempdir().expect("tmp");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    let addr: Multiaddr = format!("/ip4/127.0.0.1/tcp/{port}").parse().expect("addr");
    let mut config = Config::new(tmp.path());
    config.mdns = false;
    config.listen = vec![addr.clone()];
    let started = Node::start(config, Identity::from_secret([3; 32])).await;
    let Err(StartError::Listen { addr: failed, source }) = started else {
        panic!("expected a listen error, got {:?}", started.err());
    };
    assert_eq!(failed, addr);
    assert_eq!(source.kind(), std::io::ErrorKind::AddrInUse, "{source}");
}

/// Configuration a node cannot run with is refused at start, each case by
/// its own variant.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_start_configuration_is_a_typed_error() {
    let tmp = tempfile::tempdir().expect("tmp");
    let identity = Identity::from_secret([4; 32]);
    let base = || {
        let mut config = Config::new(tmp.path());
        config.mdns = false;
        config.listen = vec!["/ip4/127.0.0.1/tcp/0".parse().expect("addr")];
        config
    };
    let no_id: Multiaddr = "/ip4/127.0.0.1/tcp/1".parse().expect("addr");

    let mut config = base();
    config.peers = vec![no_id.clone()];
    let started = Node::start(config, identity.clone()).await;
    assert!(
        matches!(&started, Err(StartError::PeerWithoutId(a)) if *a == no_id),
        "{:?}",
        started.err()
    );

    let mut config = base();
    config.bootstrap = vec![no_id.clone()];
    let started = Node::start(config, identity.clone()).await;
    assert!(
        matches!(&started, Err(StartError::BootstrapWithoutId(a)) if *a == no_id),
        "{:?}",
        started.err()
    );

    let mut config = base();
    config.nick = Some("a\nb".into());
    let started = Node::start(config, identity).await;
    assert!(matches!(started, Err(StartError::InvalidNick)), "{:?}", started.err());
}
