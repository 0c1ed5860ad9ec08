//! The real binary: two `backchannel run --json` processes chat through
//! stdin and stdout; bad command lines fail cleanly. Every line they print
//! is a `JsonLine` that reads back to exactly the JSON printed.

use std::path::Path;
use std::process::Stdio;

use backchannel::JsonLine;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use crate::support::T;

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_backchannel");

pub(crate) struct Proc {
    pub(crate) child: Child,
    pub(crate) stdin: Option<ChildStdin>,
    pub(crate) lines: Lines<BufReader<ChildStdout>>,
}

impl Proc {
    pub(crate) fn run(dir: &Path, args: &[&str]) -> Proc {
        let mut child = Command::new(BIN)
            .arg("--data-dir")
            .arg(dir)
            .arg("run")
            .args(["--json", "--no-mdns", "--listen", "/ip4/127.0.0.1/tcp/0"])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("the binary starts");
        Proc {
            stdin: child.stdin.take(),
            lines: BufReader::new(child.stdout.take().expect("stdout")).lines(),
            child,
        }
    }

    /// Reads JSON lines until one matches; every stdout line must be a
    /// [`JsonLine`] that writes back to the same JSON.
    pub(crate) async fn wait(&mut self, what: &str, f: impl FnMut(&Value) -> bool) -> Value {
        self.wait_within(T, what, f).await
    }

    /// [`Proc::wait`] with its own time limit.
    pub(crate) async fn wait_within(
        &mut self,
        limit: std::time::Duration,
        what: &str,
        mut f: impl FnMut(&Value) -> bool,
    ) -> Value {
        tokio::time::timeout(limit, async {
            loop {
                let line = self
                    .lines
                    .next_line()
                    .await
                    .expect("read")
                    .unwrap_or_else(|| panic!("EOF before {what}"));
                let v: Value = serde_json::from_str(&line).unwrap_or_else(|_| panic!("not JSON: {line}"));
                check_line(&v);
                if f(&v) {
                    return v;
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
    }

    /// The node's peer id and first listen address, from its first lines.
    pub(crate) async fn identity_and_addr(&mut self) -> (String, String) {
        let id = self.wait("identity", |v| is(v, "identity")).await["peer"]
            .as_str()
            .expect("peer")
            .to_owned();
        let addr = self.wait("listening", |v| is(v, "listening")).await["addr"]
            .as_str()
            .expect("addr")
            .to_owned();
        (id, addr)
    }

    pub(crate) async fn say(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin.write_all(format!("{line}\n").as_bytes()).await.expect("write");
        stdin.flush().await.expect("flush");
    }
}

/// A line the binary printed parses as a [`JsonLine`], and that line
/// serializes to exactly the JSON printed: nothing a script reads is lost.
pub(crate) fn check_line(v: &Value) -> JsonLine {
    let line: JsonLine = serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("not a JsonLine ({e}): {v}"));
    assert_eq!(&serde_json::to_value(&line).expect("serializes"), v);
    line
}

pub(crate) fn is(v: &Value, ty: &str) -> bool {
    v["type"] == ty
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_chat_through_stdin_and_stdout() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (da, db) = (tmp.path().join("a"), tmp.path().join("b"));
    let mut a = Proc::run(&da, &["--room", "lobby", "--name", "alice"]);
    let (a_id, addr) = a.identity_and_addr().await;
    assert!(addr.ends_with(&format!("/p2p/{a_id}")));

    let mut b = Proc::run(&db, &["--room", "lobby", "--name", "bob", "--peer", &addr]);
    let b_id = b.wait("identity", |v| is(v, "identity")).await["peer"]
        .as_str()
        .expect("peer")
        .to_owned();
    b.wait("alice in the room", |v| {
        is(v, "room_peer_joined") && v["peer"] == a_id.as_str()
    })
    .await;
    a.wait("bob in the room", |v| {
        is(v, "room_peer_joined") && v["peer"] == b_id.as_str()
    })
    .await;

    b.say("hello from bob").await;
    let post = a.wait("bob's post", |v| is(v, "hallway")).await;
    assert_eq!(
        (post["text"].as_str(), post["from"].as_str()),
        (Some("hello from bob"), Some(b_id.as_str()))
    );
    assert_eq!(
        (post["room"].as_str(), post["nick"].as_str()),
        (Some("lobby"), Some("bob"))
    );

    // End of input does not stop bob's node.
    drop(b.stdin.take());
    // Alice learned bob's nickname from his post.
    a.say("/dm bob psst").await;
    // The receipt can come back before the command's own line: take both in
    // either order.
    let (mut sent, mut delivered) = (None, None);
    while sent.is_none() || delivered.is_none() {
        let v = a
            .wait("dm_sent and delivered", |v| is(v, "dm_sent") || is(v, "delivered"))
            .await;
        if is(&v, "dm_sent") {
            sent = Some(v);
        } else {
            delivered = Some(v);
        }
    }
    let (sent, delivered) = (sent.expect("seen"), delivered.expect("seen"));
    assert_eq!(delivered["id"], sent["id"]);
    let dm = b.wait("the DM", |v| is(v, "dm")).await;
    assert_eq!(
        (dm["text"].as_str(), dm["from"].as_str()),
        (Some("psst"), Some(a_id.as_str()))
    );
    assert_eq!(dm["id"], sent["id"]);

    a.say("/bogus").await;
    a.wait("an error line", |v| is(v, "error")).await;

    a.say("/quit").await;
    a.wait("stopped", |v| is(v, "stopped")).await;
    assert!(a.child.wait().await.expect("exit").success());

    // SIGTERM stops bob cleanly.
    let pid = b.child.id().expect("pid");
    let killed = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("kill -TERM {pid}"))
        .status();
    assert!(killed.expect("kill").success());
    b.wait("stopped", |v| is(v, "stopped")).await;
    assert!(b.child.wait().await.expect("exit").success());

    // The stopped node's log is readable.
    let out = std::process::Command::new(BIN)
        .arg("--data-dir")
        .arg(&db)
        .args(["history", "--room", "lobby", "--json"])
        .output()
        .expect("history runs");
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).expect("utf8");
    assert!(text.contains("hello from bob"), "{text}");
    for line in text.lines() {
        check_line(&serde_json::from_str(line).expect("a JSON line"));
    }
    let out = std::process::Command::new(BIN)
        .arg("--data-dir")
        .arg(&db)
        .args(["history", "--peer", &a_id])
        .output()
        .expect("history runs");
    assert!(String::from_utf8_lossy(&out.stdout).contains("psst"));
}

#[test]
fn init_and_id() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("me");
    let run = |args: &[&str]| {
        std::process::Command::new(BIN)
            .arg("--data-dir")
            .arg(&dir)
            .args(args)
            .output()
            .expect("runs")
    };
    let missing = run(&["id"]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("backchannel init"));

    let first = run(&["init"]);
    assert!(first.status.success());
    let first = String::from_utf8(first.stdout).expect("utf8");
    assert!(first.contains("created"));
    let again = String::from_utf8(run(&["init"]).stdout).expect("utf8");
    assert!(again.contains("kept"));
    let id = String::from_utf8(run(&["id"]).stdout).expect("utf8");
    assert_eq!(first.lines().last(), id.lines().last());

    // BACKCHANNEL_DATA_DIR works like --data-dir.
    let env = std::process::Command::new(BIN)
        .arg("id")
        .env("BACKCHANNEL_DATA_DIR", &dir)
        .output()
        .expect("runs");
    assert_eq!(String::from_utf8_lossy(&env.stdout), id);

    // A corrupt key is an error and is left alone.
    std::fs::write(dir.join("identity.key"), b"garbage").expect("write");
    let corrupt = run(&["id"]);
    assert!(!corrupt.status.success());
    assert!(String::from_utf8_lossy(&corrupt.stderr).contains("corrupt"));
    assert_eq!(std::fs::read(dir.join("identity.key")).expect("read"), b"garbage");
}

#[test]
fn bad_command_lines_fail_with_a_message() {
    let tmp = tempfile::tempdir().expect("tmp");
    for args in [
        vec!["run", "--no-mdns", "--peer", "/ip4/127.0.0.1/tcp/1"],
        vec!["run", "--no-mdns", "--peer", "not-an-address"],
        vec!["run", "--no-mdns", "--room", ""],
        vec![
            "run",
            "--no-mdns",
            "--name",
            "a name that is far too long to be a nickname",
        ],
        vec!["history", "--room", "lobby"],
        vec!["frobnicate"],
    ] {
        let out = std::process::Command::new(BIN)
            .arg("--data-dir")
            .arg(tmp.path().join("x"))
            .args(&args)
            .stdin(Stdio::null())
            .output()
            .expect("runs");
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.is_empty() && !err.contains("panicked"), "{args:?}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_with_sigkill_keeps_everything_it_had_shown() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (da, db) = (tmp.path().join("a"), tmp.path().join("b"));
    let mut a = Proc::run(&da, &["--room", "lobby", "--name", "alice"]);
    let (a_id, addr) = a.identity_and_addr().await;
    let mut b = Proc::run(&db, &["--room", "lobby", "--name", "bob", "--peer", &addr]);
    let b_id = b.wait("identity", |v| is(v, "identity")).await["peer"]
        .as_str()
        .expect("peer")
        .to_owned();
    b.wait("alice in the room", |v| {
        is(v, "room_peer_joined") && v["peer"] == a_id.as_str()
    })
    .await;
    a.wait("bob in the room", |v| {
        is(v, "room_peer_joined") && v["peer"] == b_id.as_str()
    })
    .await;

    // Alice shows 20 posts, then 5 DMs. A DM is flushed before it is shown,
    // and a flush covers everything logged before it, so once the DMs are
    // shown the posts are on disk too (received posts alone are flushed
    // within 200 ms: docs/ARCHITECTURE.md).
    let mut shown = Vec::new();
    for i in 0..20 {
        b.say(&format!("post {i}")).await;
    }
    for _ in 0..20 {
        let v = a.wait("a post", |v| is(v, "hallway")).await;
        shown.push(v["id"].as_str().expect("id").to_owned());
    }
    for i in 0..5 {
        b.say(&format!("/dm {a_id} dm {i}")).await;
    }
    for _ in 0..5 {
        let v = a.wait("a DM", |v| is(v, "dm")).await;
        shown.push(v["id"].as_str().expect("id").to_owned());
    }
    // SIGKILL: no chance to flush anything more.
    a.child.start_kill().expect("kill");
    a.child.wait().await.expect("reaped");

    let history = |args: &[&str]| {
        let out = std::process::Command::new(BIN)
            .arg("--data-dir")
            .arg(&da)
            .arg("history")
            .args(args)
            .arg("--json")
            .output()
            .expect("history runs");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8(out.stdout).expect("utf8");
        for line in text.lines() {
            check_line(&serde_json::from_str(line).expect("a JSON line"));
        }
        text
    };
    let logged = history(&["--room", "lobby"]) + &history(&["--peer", &b_id]);
    for id in &shown {
        assert!(
            logged.contains(id.as_str()),
            "message {id} was shown before the kill but is not in the log"
        );
    }

    // Restarted with the same identity and log, it rejoins and hears bob again.
    let mut a = Proc::run(&da, &["--room", "lobby", "--peer", &b_addr(&mut b).await]);
    let again = a.wait("identity", |v| is(v, "identity")).await;
    assert_eq!(again["peer"].as_str(), Some(a_id.as_str()));
    b.wait("alice back", |v| {
        is(v, "room_peer_joined") && v["peer"] == a_id.as_str()
    })
    .await;
    b.say("welcome back").await;
    let post = a.wait("a new post", |v| is(v, "hallway")).await;
    assert_eq!(post["text"].as_str(), Some("welcome back"));
}

/// A running node's first listen address, asked for with `/addrs`.
async fn b_addr(b: &mut Proc) -> String {
    b.say("/addrs").await;
    let v = b.wait("addresses", |v| is(v, "addresses")).await;
    v["addrs"][0].as_str().expect("an address").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hosted_room_from_the_command_line() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (da, db) = (tmp.path().join("a"), tmp.path().join("b"));
    let mut a = Proc::run(&da, &["--name", "alice"]);
    let (a_id, addr) = a.identity_and_addr().await;
    a.say("/host stage").await;
    let hosting = a.wait("hosting", |v| is(v, "hosting")).await;
    let room = hosting["room"].as_str().expect("room id").to_owned();
    assert_eq!(room, format!("stage~{a_id}"));

    let mut b = Proc::run(&db, &["--room", &room, "--name", "bob", "--peer", &addr]);
    b.wait("alice in the room", |v| {
        is(v, "room_peer_joined") && v["peer"] == a_id.as_str()
    })
    .await;
    // Alice announces herself as soon as she sees bob arrive.
    b.wait("alice's presence", |v| is(v, "presence") && v["peer"] == a_id.as_str())
        .await;
    b.say("/ask is this on?").await;
    let question = a.wait("bob's question", |v| is(v, "hallway")).await;
    assert_eq!(question["question"], true);
    let id = question["id"].as_str().expect("id").to_owned();

    // The host answers it by a short id prefix, then makes bob a speaker.
    a.say(&format!("/answered {}", &id[..8])).await;
    a.wait("done", |v| is(v, "room_done")).await;
    b.wait("the mark", |v| is(v, "room_op") && v["op"]["kind"] == "question")
        .await;
    b.say("/questions").await;
    let q = b.wait("the queue", |v| is(v, "questions")).await;
    assert_eq!(q["questions"][0]["question"], "answered", "{q}");
    a.say("/speaker bob").await;
    a.wait("done", |v| is(v, "room_done")).await;
    b.wait("the role", |v| is(v, "room_op") && v["op"]["role"] == "speaker")
        .await;

    // A listener's moderation is refused with a message; the host's works.
    b.say(&format!("/delete {}", &id[..8])).await;
    b.wait("done", |v| is(v, "room_done")).await; // bob deletes his own question
    a.wait("the delete", |v| is(v, "room_op") && v["op"]["kind"] == "delete")
        .await;
    b.say("/chat off").await;
    let refused = b.wait("a refusal", |v| is(v, "error")).await;
    assert!(
        refused["message"].as_str().unwrap_or_default().contains("not allowed"),
        "{refused}"
    );

    b.say("/who").await;
    let who = b.wait("who", |v| is(v, "who")).await;
    let roles: Vec<&str> = who["participants"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|p| p["role"].as_str())
        .collect();
    assert_eq!(roles, vec!["host", "speaker"], "{who}");
}
