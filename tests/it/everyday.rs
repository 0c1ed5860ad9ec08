//! Everyday use of the real binary as a person meets it, in the terminal's
//! words (issue 13): what is shown, what is said when something fails, and
//! what is remembered across restarts. Each test names what it guards.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use crate::cli::BIN;
use crate::support::T;

/// A `backchannel run` process without `--json`: lines for people.
pub(crate) struct Human {
    pub(crate) child: Child,
    stdin: Option<ChildStdin>,
    lines: Lines<BufReader<ChildStdout>>,
    /// Every line read so far.
    pub(crate) seen: Vec<String>,
}

impl Human {
    pub(crate) fn run(dir: &Path, args: &[&str]) -> Human {
        let mut child = Command::new(BIN)
            .arg("--data-dir")
            .arg(dir)
            .arg("run")
            .args(["--no-mdns", "--listen", "/ip4/127.0.0.1/tcp/0"])
            .args(args)
            .env("TZ", "UTC")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("the binary starts");
        Human {
            stdin: child.stdin.take(),
            lines: BufReader::new(child.stdout.take().expect("stdout")).lines(),
            child,
            seen: Vec::new(),
        }
    }

    /// Reads lines until one matches, within the test time limit.
    pub(crate) async fn wait(&mut self, what: &str, mut f: impl FnMut(&str) -> bool) -> String {
        let seen = &mut self.seen;
        let lines = &mut self.lines;
        tokio::time::timeout(T, async {
            loop {
                let line = lines
                    .next_line()
                    .await
                    .expect("read")
                    .unwrap_or_else(|| panic!("EOF before {what}; saw {seen:#?}"));
                seen.push(line.clone());
                if f(&line) {
                    return line;
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}; saw {:#?}", self.seen))
    }

    /// Every line printed within `d` (for asserting what is not shown).
    pub(crate) async fn lines_for(&mut self, d: Duration) -> Vec<String> {
        let mut got = Vec::new();
        let end = tokio::time::Instant::now() + d;
        while let Ok(Ok(Some(line))) = tokio::time::timeout_at(end, self.lines.next_line()).await {
            self.seen.push(line.clone());
            got.push(line);
        }
        got
    }

    /// The node's peer id and listen address, from its first lines.
    pub(crate) async fn identity_and_addr(&mut self) -> (String, String) {
        let id = self.wait("you are", |l| l.starts_with("you are ")).await["you are ".len()..].to_owned();
        let addr = self.wait("listening", |l| l.starts_with("listening on ")).await["listening on ".len()..].to_owned();
        (id, addr)
    }

    pub(crate) async fn say(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin.write_all(format!("{line}\n").as_bytes()).await.expect("write");
        stdin.flush().await.expect("flush");
    }
}

/// A loopback TCP port nothing listens on (bound, then closed).
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// Issue 13, item 2: a dead `--peer` and a failed `/dial` were silent at the
/// default level. Each is now said once, with the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_failures_are_said() {
    let tmp = tempfile::tempdir().expect("tmp");
    let someone = backchannel::Identity::from_secret([9; 32]).peer_id();
    let dead = format!("/ip4/127.0.0.1/tcp/{}/p2p/{someone}", closed_port());
    let mut a = Human::run(&tmp.path().join("a"), &["--room", "lobby", "--peer", &dead]);
    let line = a.wait("the dead --peer", |l| l.contains("cannot reach")).await;
    assert!(line.contains(&dead) && line.contains("refused"), "{line}");

    let port = closed_port();
    a.say(&format!("/dial /ip4/127.0.0.1/tcp/{port}")).await;
    let line = a.wait("the failed /dial", |l| l.contains("cannot reach /ip4")).await;
    assert!(line.contains(&format!("/tcp/{port}")), "{line}");
}

/// Issue 13, item 2: a second node on a `--listen` port in use started
/// without error and took the first node's incoming connections
/// (SO_REUSEPORT). It is an error now, and the first node is untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listen_port_in_use_is_an_error() {
    let tmp = tempfile::tempdir().expect("tmp");
    let mut a = Human::run(&tmp.path().join("a"), &["--room", "lobby"]);
    let (_, addr) = a.identity_and_addr().await;
    let listen = addr.split("/p2p/").next().expect("an address").to_owned();
    let out = std::process::Command::new(BIN)
        .arg("--data-dir")
        .arg(tmp.path().join("b"))
        .args(["run", "--no-mdns", "--listen", &listen])
        .stdin(Stdio::null())
        .output()
        .expect("runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("already in use"), "{err}");
    // It failed before creating an identity for a node that never ran.
    assert!(!tmp.path().join("b").join("identity.key").exists());
}
