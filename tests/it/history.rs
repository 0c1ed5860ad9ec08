//! `backchannel history` through the real binary (issue 13, item 9): read
//! offline, a room shows as the live view shows it (the latest text of an
//! edited post, marked edited; deleted posts gone; reactions counted).

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
