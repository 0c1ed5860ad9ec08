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

/// "…abc123": how a line shows a peer id.
fn short(id: &str) -> String {
    format!("…{}", &id[id.len() - 6..])
}

/// The id in brackets after the clock: "[lobby] 12:00:00 [3fa2c1d0] ...".
fn bracket_id(line: &str) -> String {
    line.split('[').nth(2).expect("an id in brackets")[..8].to_owned()
}

/// Issue 13, items 4, 6, 8 and 5: in a hosted room, lines carry a short
/// room label (not the 60-character id) and one line per arrival; role
/// confirmations keep the case of names and ids; refusals say who may do
/// it; this node shows by its name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hosted_room_reads_like_words() {
    let tmp = tempfile::tempdir().expect("tmp");
    let mut a = Human::run(&tmp.path().join("a"), &["--name", "alice"]);
    let (a_id, addr) = a.identity_and_addr().await;
    a.say("/host stage").await;
    let room = format!("stage~{a_id}");
    a.wait("hosting", |l| l == format!("hosting {room}")).await;
    let label = format!("[stage~{}]", short(&a_id));

    let mut b = Human::run(
        &tmp.path().join("b"),
        &["--name", "Bob", "--room", &room, "--peer", &addr],
    );
    let (b_id, _) = b.identity_and_addr().await;
    let arrival = format!("{label} * Bob ({}) is here", short(&b_id));
    a.wait("Bob's arrival", |l| l == arrival).await;
    // One line per arrival: the subscription under it is for --verbose.
    assert!(
        !a.seen
            .iter()
            .any(|l| l.contains("subscribed") || l.contains(&room[..20]) && l.starts_with('[')),
        "{:#?}",
        a.seen
    );

    // Bob knows alice by name once she announced herself.
    b.wait("alice here", |l| {
        l == format!("{label} * alice ({}) is here", short(&a_id))
    })
    .await;
    b.say("/chat off").await;
    let refused = b.wait("a refusal", |l| l.starts_with("error:")).await;
    assert!(refused.contains("only its host and moderators switch"), "{refused}");

    a.say("/mod Bob").await;
    let done = a.wait("the role", |l| l.contains("is now")).await;
    assert!(
        done.contains(&format!("Bob ({}) is now moderator", short(&b_id))),
        "{done}"
    );
    let seen = b.wait("the role", |l| l.contains(" made ")).await;
    assert!(
        seen.contains(&format!("alice ({}) made Bob (you) moderator", short(&a_id))),
        "{seen}"
    );
    b.say("/mod alice").await;
    let refused = b.wait("a refusal", |l| l.starts_with("error:")).await;
    assert!(
        refused.contains("only its host gives roles") && !refused.contains("not_moderator"),
        "{refused}"
    );

    a.say("/who").await;
    a.wait("alice as herself", |l| {
        l.starts_with("host") && l.ends_with("alice (you)")
    })
    .await;
}

/// Issue 13, items 5, 4 and 10: names survive a restart and show in the
/// offline history (which also takes a name for --peer); a DM's line comes
/// before its receipt; a group shows by its name with one line per receipt;
/// a DM reaction shows as one; a sync that brings nothing says nothing;
/// times are local.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_and_quiet_lines_across_a_restart() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (da, db) = (tmp.path().join("a"), tmp.path().join("b"));
    let mut a = Human::run(&da, &["--room", "lobby", "--name", "alice"]);
    let (a_id, addr) = a.identity_and_addr().await;
    let mut b = Human::run(&db, &["--room", "lobby", "--name", "bob", "--peer", &addr]);
    let (b_id, _) = b.identity_and_addr().await;
    let bob = format!("bob ({})", short(&b_id));
    let alice = format!("alice ({})", short(&a_id));
    a.wait("bob here", |l| l == format!("[lobby] * {bob} is here")).await;

    a.say("/dm bob hi").await;
    let sent = a.wait("the DM's line", |l| l.starts_with("[dm] →")).await;
    let dm_id = sent.rsplit("(sending ").next().expect("an id")[..8].to_owned();
    a.wait("the receipt", |l| l == format!("[dm] ✓ {dm_id} delivered to {bob}"))
        .await;

    b.wait("the request", |l| l.starts_with("[request]") && l.contains(&alice))
        .await;
    b.say("/accept alice").await;
    b.wait("a contact", |l| l == format!("{alice} is a contact")).await;
    b.say(&format!("/react {dm_id} 🎉")).await;
    b.wait("reacted", |l| l.starts_with("[dm] reacted")).await;
    a.wait("the reaction", |l| l.contains(&format!("(reacts 🎉 to [{dm_id}])")))
        .await;
    a.say("/history bob").await;
    let line = a
        .wait("the reaction in history", |l| {
            l.starts_with("[dm]") && l.contains(&format!("{bob} → "))
        })
        .await;
    assert!(line.ends_with(&format!("(reacts 🎉 to [{dm_id}])")), "{line}");

    a.say("/group new crew bob").await;
    a.wait("created", |l| l.starts_with("created group crew")).await;
    a.say("/g crew hello crew").await;
    a.wait("the group receipt", |l| {
        l.starts_with("[g crew] ✓") && l.ends_with("delivered to 1 of 1")
    })
    .await;
    b.wait("the group message", |l| {
        l.starts_with("[g crew]") && l.ends_with(&format!("{alice}: hello crew"))
    })
    .await;
    let receipts = a
        .seen
        .iter()
        .filter(|l| l.contains(&format!("delivered to {bob}")))
        .count();
    assert_eq!(
        receipts, 1,
        "one receipt line for the DM, none per group member: {:#?}",
        a.seen
    );

    a.say("/sync").await;
    a.wait("sync started", |l| l.contains("syncing history with 1 peers"))
        .await;
    let after = a.lines_for(Duration::from_secs(2)).await;
    assert!(!after.iter().any(|l| l.contains("history sync")), "{after:#?}");

    // Bob restarts alone: alice, a contact without a petname, keeps her name.
    b.say("/quit").await;
    b.wait("stopped", |l| l.starts_with("stopped")).await;
    let mut b = Human::run(&db, &["--room", "lobby"]);
    b.identity_and_addr().await;
    b.say("/contacts").await;
    b.wait("alice by name", |l| l == alice).await;

    a.say("/quit").await;
    a.wait("stopped", |l| l.starts_with("stopped")).await;
    a.child.wait().await.expect("exit");
    let history = |args: &[&str], tz: &str| {
        let out = std::process::Command::new(BIN)
            .arg("--data-dir")
            .arg(&da)
            .arg("history")
            .args(args)
            .env("TZ", tz)
            .output()
            .expect("history runs");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).expect("utf8")
    };
    let text = history(&["--peer", "bob"], "UTC");
    assert!(text.contains(&format!("alice (you) → {bob}: hi ✓")), "{text}");
    // Times are local: five hours east of UTC shows five hours later.
    let json = history(&["--peer", &b_id, "--json"], "UTC");
    let time = json
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("json"))
        .find(|v| v["text"] == "hi")
        .and_then(|v| v["time"].as_u64())
        .expect("the DM");
    let s = (time / 1000 + 5 * 3600) % 86_400;
    let clock = format!("{:02}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60);
    let text = history(&["--peer", "bob"], "XYZ-5");
    assert!(text.contains(&format!("[dm] {clock} alice (you)")), "{clock}: {text}");
}

/// Issue 13, item 10: small wrong confirmations.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_confirmations_say_what_happened() {
    let tmp = tempfile::tempdir().expect("tmp");
    let mut a = Human::run(&tmp.path().join("a"), &["--room", "lobby", "--name", "alice"]);
    a.identity_and_addr().await;
    a.say("hello?").await;
    a.wait("the hint", |l| l.starts_with("[lobby] nobody else is here yet"))
        .await;
    a.say("/leave nowhere").await;
    let e = a.wait("an error", |l| l.starts_with("error:")).await;
    assert!(e.contains("you are not in nowhere"), "{e}");
    a.say("/history").await;
    let post = a.wait("the post", |l| l.ends_with("alice (you): hello?")).await;
    // /stats in words (F14: it was raw pretty JSON).
    a.say("/stats").await;
    a.wait("the counters", |l| l.starts_with("posts: 1 sent")).await;
    a.wait("rejections", |l| l == "rejected: none").await;
    a.say(&format!("/unreact {} 🎉", bracket_id(&post))).await;
    let e = a.wait("an error", |l| l.starts_with("error:")).await;
    assert!(e.contains("you have not reacted"), "{e}");
}

/// Issue 13, item 10: data-directory errors say the cause once and what to
/// do; a log without its key is not "fixed" by a new key.
#[test]
fn data_directory_errors_give_advice() {
    let tmp = tempfile::tempdir().expect("tmp");
    let run = |dir: &Path, args: &[&str]| {
        let out = std::process::Command::new(BIN)
            .arg("--data-dir")
            .arg(dir)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("runs");
        (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    // A data directory under a file cannot be created.
    let file = tmp.path().join("file");
    std::fs::write(&file, b"").expect("write");
    let (ok, err) = run(&file.join("dir"), &["init"]);
    assert!(!ok);
    assert!(err.contains("--data-dir"), "{err}");
    let cause = "Not a directory";
    assert_eq!(err.matches(cause).count(), 1, "the cause once: {err}");

    // A bad --peer is found before an identity is made for a node that
    // never runs.
    let fresh = tmp.path().join("fresh");
    let (ok, err) = run(&fresh, &["run", "--no-mdns", "--peer", "/ip4/127.0.0.1/tcp/4001"]);
    assert!(!ok && err.contains("/p2p/"), "{err}");
    assert!(!fresh.join("identity.key").exists());

    // A log whose key is gone.
    let dir = tmp.path().join("old");
    std::fs::create_dir_all(dir.join("log")).expect("mkdir");
    for args in [&["run", "--no-mdns"][..], &["init"]] {
        let (ok, err) = run(&dir, args);
        assert!(!ok, "{args:?}");
        assert!(
            err.contains("no identity key") && !err.contains("run `backchannel init`"),
            "{err}"
        );
        assert!(!dir.join("identity.key").exists());
    }
}

/// Issue 13, item 7: rooms joined with /join (and hosted) were forgotten
/// on restart. They are rejoined, and a room left stays left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joined_rooms_are_rejoined_after_a_restart() {
    use crate::cli::{Proc, is};
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("a");
    let mut a = Proc::run(&dir, &["--room", "lobby"]);
    let (a_id, _) = a.identity_and_addr().await;
    for (command, answer) in [
        ("/join music", "joined"),
        ("/host stage", "hosting"),
        ("/join extra", "joined"),
        ("/leave extra", "left"),
    ] {
        a.say(command).await;
        a.wait(answer, |v| is(v, answer)).await;
    }
    a.say("/quit").await;
    a.wait("stopped", |v| is(v, "stopped")).await;
    a.child.wait().await.expect("exit");

    let mut a = Proc::run(&dir, &[]);
    a.identity_and_addr().await;
    a.say("/rooms").await;
    let rooms = a.wait("rooms", |v| is(v, "rooms")).await;
    let mut names: Vec<&str> = rooms["rooms"]
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|r| r["room"].as_str())
        .collect();
    names.sort();
    let stage = format!("stage~{a_id}");
    assert_eq!(names, vec!["lobby", "music", stage.as_str()], "{rooms}");
    // With no --room, the current room is one of them.
    assert!(rooms["current"].is_string(), "{rooms}");
}

/// Issue 13, item 3: 50 lines pasted at once reached others as 20 (their
/// per-author limit), and the sender was not told. The sender paces its own
/// posts under the limit and says so; everyone shows all 50.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pasted_burst_reaches_everyone_in_full() {
    let tmp = tempfile::tempdir().expect("tmp");
    let mut a = Human::run(&tmp.path().join("a"), &["--room", "lobby", "--name", "alice"]);
    let (a_id, addr) = a.identity_and_addr().await;
    let mut b = Human::run(
        &tmp.path().join("b"),
        &["--room", "lobby", "--name", "bob", "--peer", &addr],
    );
    b.identity_and_addr().await;
    b.wait("alice here", |l| l.contains("* alice (") && l.ends_with("is here"))
        .await;
    a.wait("bob here", |l| l.contains("* bob (") && l.ends_with("is here"))
        .await;

    let paste: String = (0..50).map(|i| format!("line {i}\n")).collect();
    let stdin = a.stdin.as_mut().expect("stdin");
    stdin.write_all(paste.as_bytes()).await.expect("paste");
    stdin.flush().await.expect("flush");
    let pacing = a.wait("the pacing line", |l| l.starts_with("[lobby] sending")).await;
    assert!(pacing.contains("more"), "{pacing}");
    let from = format!("alice ({}): line", &format!("…{}", &a_id[a_id.len() - 6..]));
    let mut got = 0;
    while got < 50 {
        b.wait("a pasted line", |l| l.contains(&from)).await;
        got += 1;
    }
    a.wait("all sent", |l| l == "[lobby] all your posts are sent").await;
    let sending = a.seen.iter().filter(|l| l.contains("sending")).count();
    assert_eq!(sending, 1, "one line while pacing, not one per second: {:#?}", a.seen);
}

/// Issue 13, item 3: posts a node missed while it was away came back with
/// the next history sync only as a count ("30 new"). Recent ones (within
/// the clock window) are shown like live posts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn posts_missed_while_away_are_shown_when_synced() {
    let tmp = tempfile::tempdir().expect("tmp");
    let mut bob = Human::run(&tmp.path().join("b"), &["--room", "lobby", "--name", "bob"]);
    let (_, bob_addr) = bob.identity_and_addr().await;
    let mut carol = Human::run(
        &tmp.path().join("c"),
        &["--room", "lobby", "--name", "carol", "--peer", &bob_addr],
    );
    carol.identity_and_addr().await;
    bob.wait("carol here", |l| l.contains("* carol (") && l.ends_with("is here"))
        .await;

    let da = tmp.path().join("a");
    let mut alice = Human::run(&da, &["--room", "lobby", "--name", "alice", "--peer", &bob_addr]);
    alice.identity_and_addr().await;
    alice.wait("connected", |l| l.starts_with("* connected to")).await;
    alice.say("/quit").await;
    alice.wait("stopped", |l| l.starts_with("stopped")).await;
    alice.child.wait().await.expect("exit");

    carol.say("while you were away").await;
    bob.wait("carol's post", |l| l.ends_with(": while you were away")).await;

    let mut alice = Human::run(&da, &["--peer", &bob_addr]);
    let line = alice
        .wait("carol's post, caught up", |l| l.ends_with(": while you were away"))
        .await;
    assert!(line.starts_with("[lobby] ") && line.contains("] carol ("), "{line}");
}

/// Issue 13, item 10 (and the report's F10): `history` on the data
/// directory of a running node printed sled's lock error twice. It says the
/// node is running and where to read its history.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_of_a_running_node_says_so() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("a");
    let mut a = Human::run(&dir, &["--room", "lobby"]);
    a.identity_and_addr().await;
    // A running node answers `history` through its local API now (item 9,
    // tests/it/history.rs); without the address file it cannot be asked,
    // and then this is still what is said.
    std::fs::remove_file(dir.join("api-addr")).ok();
    let out = std::process::Command::new(BIN)
        .arg("--data-dir")
        .arg(&dir)
        .arg("history")
        .output()
        .expect("runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("is running") && err.contains("/history"), "{err}");
    assert!(!err.contains("IO error"), "{err}");
}
