//! `backchannel history` through the real binary (issue 13, item 9): read
//! offline, a room shows as the live view shows it (the latest text of an
//! edited post, marked edited; deleted posts gone; reactions counted); and
//! while the node runs, `history` asks the node instead of failing on the
//! log's lock, printing exactly what it prints once the node has stopped.

use std::path::Path;
use std::process::Output;

use crate::cli::BIN;
use crate::everyday::Human;
use crate::support::T;

/// Runs `backchannel --data-dir DIR history ARGS` to its end, within the
/// test time limit. Times are shown in UTC so two runs compare equal.
async fn history(dir: &Path, args: &[&str]) -> Output {
    let run = tokio::process::Command::new(BIN)
        .arg("--data-dir")
        .arg(dir)
        .arg("history")
        .args(args)
        .env("TZ", "UTC")
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(T, run)
        .await
        .unwrap_or_else(|_| panic!("history {args:?} did not end in time"))
        .expect("history runs")
}

/// [`history`]'s standard output; it must succeed.
async fn history_ok(dir: &Path, args: &[&str]) -> String {
    let out = history(dir, args).await;
    assert!(
        out.status.success(),
        "history {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf8")
}

/// The id in brackets after the clock: "[lobby] 12:00:00 [3fa2c1d0] ...".
fn bracket_id(line: &str) -> String {
    line.split('[').nth(2).expect("an id in brackets")[..8].to_owned()
}

/// Whether a line is a post of the lobby ("[lobby] 12:00:00 [3fa2c1d0] ..."),
/// not a note or an operation about the room.
fn is_post(line: &str) -> bool {
    let Some(rest) = line.strip_prefix("[lobby] ") else {
        return false;
    };
    let bytes = rest.as_bytes();
    bytes.len() > 11 && bytes[2] == b':' && bytes[5] == b':' && &rest[8..10] == " ["
}

/// Reads the live `/history` of the current room up to the line `last` ends
/// with: the room as a person sees it while the node runs.
async fn live_view(a: &mut Human, last: &str) -> Vec<String> {
    a.say("/history").await;
    let mut lines = Vec::new();
    loop {
        let line = a.wait("a line of /history", is_post).await;
        let done = line.ends_with(last);
        lines.push(line);
        if done {
            return lines;
        }
    }
}

/// Offline `history` showed an edited post with its first text (and
/// deleted posts, and no reactions). It shows the room as `/history` does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_history_shows_the_room_as_the_live_view_does() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("a");
    let mut a = Human::run(&dir, &["--room", "lobby", "--name", "alice"]);
    a.identity_and_addr().await;
    for text in ["frist post", "gone soon", "keep me"] {
        a.say(text).await;
    }
    let posts = live_view(&mut a, "alice (you): keep me").await;
    let ids: Vec<String> = posts.iter().map(|l| bracket_id(l)).collect();
    assert_eq!(ids.len(), 3, "{posts:#?}");

    a.say(&format!("/edit {} first post", ids[0])).await;
    a.wait("the edit", |l| l.contains(&format!("edited [{}]", ids[0])))
        .await;
    a.say(&format!("/delete {}", ids[1])).await;
    a.wait("the delete", |l| l.contains(&format!("deleted [{}]", ids[1])))
        .await;
    a.say(&format!("/react {} 🎉", ids[2])).await;
    a.wait("the reaction", |l| l.contains(&format!("reacted to [{}]", ids[2])))
        .await;
    let live = live_view(&mut a, "🎉1").await;
    assert_eq!(live.len(), 2, "{live:#?}");
    a.say("/quit").await;
    a.wait("stopped", |l| l.starts_with("stopped")).await;
    a.child.wait().await.expect("exit");

    let offline = history_ok(&dir, &["--room", "lobby"]).await;
    let offline: Vec<&str> = offline.lines().collect();
    assert_eq!(offline, live, "offline history differs from the live view");
    assert!(offline[0].ends_with("alice (you): first post (edited)"), "{offline:#?}");
    // Scripts see the room's view too: the latest text and the post as shown.
    let json = history_ok(&dir, &["--room", "lobby", "--json"]).await;
    let lines: Vec<serde_json::Value> = json
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(lines.len(), 2, "{json}");
    assert_eq!(lines[0]["text"], "first post");
    assert_eq!(lines[0]["post"]["edited"], true);
    assert!(!json.contains("frist") && !json.contains("gone soon"), "{json}");
}

/// `history` of a running node failed on the log's lock. It asks the node
/// (through the local API, with the token in the data directory) and prints
/// what it prints offline for the same log: every flag, names for --peer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_while_the_node_runs_asks_it() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (da, db) = (tmp.path().join("a"), tmp.path().join("b"));
    let mut a = Human::run(&da, &["--room", "lobby", "--name", "alice"]);
    let (a_id, addr) = a.identity_and_addr().await;
    let mut b = Human::run(&db, &["--room", "lobby", "--name", "bob", "--peer", &addr]);
    b.identity_and_addr().await;
    a.wait("bob here", |l| {
        l.starts_with("[lobby] * bob (") && l.ends_with("is here")
    })
    .await;

    b.say("a typo hree").await;
    let post = a.wait("bob's post", |l| l.ends_with(": a typo hree")).await;
    b.say(&format!("/edit {} a typo here", bracket_id(&post))).await;
    a.wait("bob's edit", |l| l.contains("edited [")).await;
    b.say(&format!("/dm {a_id} psst, alice")).await;
    a.wait("bob's DM", |l| l.starts_with("[request]") || l.contains("psst, alice"))
        .await;
    a.say("/dm bob hi bob").await;
    a.wait("the receipt", |l| l.starts_with("[dm] ✓")).await;

    let runs: [&[&str]; 7] = [
        &[],
        &["--room", "lobby"],
        &["--peer", "bob"],
        &["--peer", "bob", "--json"],
        &["--json"],
        &["--limit", "1"],
        &["--room", "lobby", "--limit", "1", "--json"],
    ];
    let mut running = Vec::new();
    for args in runs {
        running.push(history_ok(&da, args).await);
    }
    assert!(
        running[1].contains("bob (") && running[1].contains(": a typo here (edited)"),
        "{}",
        running[1]
    );
    assert!(
        running[2].contains("psst, alice") && running[2].contains("hi bob"),
        "{}",
        running[2]
    );
    assert!(!running[0].contains("hree"), "{}", running[0]);

    a.say("/quit").await;
    a.wait("stopped", |l| l.starts_with("stopped")).await;
    a.child.wait().await.expect("exit");
    for (args, running) in runs.iter().zip(&running) {
        let offline = history_ok(&da, args).await;
        assert_eq!(&offline, running, "history {args:?}: running and stopped differ");
    }
}

/// A node that runs but cannot be asked: `history` says so, and where to
/// read the history instead, rather than failing on the lock or printing
/// nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_of_a_running_node_that_cannot_be_asked_says_so() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("a");
    let mut a = Human::run(&dir, &["--room", "lobby"]);
    a.identity_and_addr().await;
    // The address file names a port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = closed.local_addr().expect("addr").port();
    drop(closed);
    std::fs::write(dir.join("api-addr"), format!("127.0.0.1:{port}\n")).expect("write");
    let out = history(&dir, &[]).await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("is running") && err.contains("does not answer"), "{err}");
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
}
