//! Issue 15, item 4: data encrypted at rest, through the real binary. An
//! encrypted node's files hold none of its DM or post text nor its key
//! after real traffic; it restarts as itself with its history; a wrong
//! passphrase is a clear error that changes no file; converting a plaintext
//! directory keeps every message; and a conversion killed anywhere leaves
//! the old state or the new one, each readable, never a mix.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use backchannel::Identity;
use backchannel::data_dir;
use backchannel::lab::Rng;
use backchannel::seal::{KdfParams, PASSPHRASE_VAR, Passphrase};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::cli::{BIN, Proc, is};
use crate::support::T;

const PASS: &str = "correct horse battery staple";
const SECRET_A: [u8; 32] = [0xa7; 32];
const SECRET_B: [u8; 32] = [0xb3; 32];
const DM_A: &str = "a DM from alice that only bob may read (q8Zt)";
const DM_B: &str = "bob answers alice in private (w3Kx)";
const POST_A: &str = "alice posts in the hallway (m1Vr)";
const POST_B: &str = "bob posts in the hallway (c5Jn)";

/// The binary on `dir`, with the passphrase variable set or unset and no
/// terminal.
fn bin(dir: &Path, pass: Option<&str>, args: &[&str]) -> Output {
    let mut cmd = std::process::Command::new(BIN);
    cmd.arg("--data-dir").arg(dir).args(args).stdin(Stdio::null());
    match pass {
        Some(p) => cmd.env(PASSPHRASE_VAR, p),
        None => cmd.env_remove(PASSPHRASE_VAR),
    };
    cmd.output().expect("the binary runs")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A `run --json` node on `dir`, unlocked with `pass` if given.
fn node(dir: &Path, pass: Option<&str>, args: &[&str]) -> Proc {
    let mut cmd = tokio::process::Command::new(BIN);
    cmd.arg("--data-dir")
        .arg(dir)
        .arg("run")
        .args(["--json", "--no-mdns", "--listen", "/ip4/127.0.0.1/tcp/0"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    match pass {
        Some(p) => cmd.env(PASSPHRASE_VAR, p),
        None => cmd.env_remove(PASSPHRASE_VAR),
    };
    let mut child = cmd.spawn().expect("the binary starts");
    Proc {
        stdin: child.stdin.take(),
        lines: BufReader::new(child.stdout.take().expect("stdout")).lines(),
        child,
    }
}

/// Stops a node with `/quit` (its log is flushed) and waits for it to exit.
async fn quit(mut p: Proc) {
    p.say("/quit").await;
    let status = tokio::time::timeout(T, p.child.wait())
        .await
        .expect("the node stops")
        .expect("wait");
    assert!(status.success());
}

/// Every file under `dir`, with its bytes.
fn files(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        for entry in std::fs::read_dir(dir).expect("readable") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                walk(&path, out);
            } else {
                out.insert(path.clone(), std::fs::read(&path).expect("readable file"));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, &mut out);
    out
}

/// The files under `dir` that contain `needle`.
fn holding(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    files(dir)
        .into_iter()
        .filter(|(_, bytes)| bytes.windows(needle.len()).any(|w| w == needle))
        .map(|(path, _)| path)
        .collect()
}

/// `history --json`, as a sorted list of lines.
fn history(dir: &Path, pass: Option<&str>) -> Vec<String> {
    let out = bin(dir, pass, &["history", "--json"]);
    assert!(out.status.success(), "history: {}", stderr(&out));
    let mut lines: Vec<String> = String::from_utf8(out.stdout)
        .expect("utf8")
        .lines()
        .map(str::to_owned)
        .collect();
    lines.sort();
    lines
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("readable") {
        let path = entry.expect("entry").path();
        let target = to.join(path.file_name().expect("a name"));
        if path.is_dir() {
            copy_tree(&path, &target);
        } else {
            std::fs::copy(&path, &target).expect("copy");
        }
    }
}

/// Alice (on `da`, unlocked with `pass_a`) and bob (on `db`, plaintext)
/// meet in a room; each posts `posts` times and DMs the other `dms` times
/// (the first of each being the named texts); then both stop. Returns
/// their peer ids.
async fn chat(da: &Path, pass_a: Option<&str>, db: &Path, posts: usize, dms: usize) -> (String, String) {
    let mut a = node(da, pass_a, &["--room", "lobby", "--name", "alice"]);
    let (a_id, addr) = a.identity_and_addr().await;
    let mut b = node(db, None, &["--room", "lobby", "--name", "bob", "--peer", &addr]);
    let b_id = b.wait("identity", |v| is(v, "identity")).await["peer"]
        .as_str()
        .expect("peer")
        .to_owned();
    a.wait("bob in the room", |v| {
        is(v, "room_peer_joined") && v["peer"] == b_id.as_str()
    })
    .await;
    b.wait("alice in the room", |v| {
        is(v, "room_peer_joined") && v["peer"] == a_id.as_str()
    })
    .await;
    for i in 0..posts {
        let (ta, tb) = match i {
            0 => (POST_A.to_owned(), POST_B.to_owned()),
            _ => (format!("alice post {i}"), format!("bob post {i}")),
        };
        a.say(&ta).await;
        b.wait("alice's post", |v| is(v, "hallway") && v["text"] == ta.as_str())
            .await;
        b.say(&tb).await;
        a.wait("bob's post", |v| is(v, "hallway") && v["text"] == tb.as_str())
            .await;
    }
    for i in 0..dms {
        let (ta, tb) = match i {
            0 => (DM_A.to_owned(), DM_B.to_owned()),
            _ => (format!("alice dm {i}"), format!("bob dm {i}")),
        };
        a.say(&format!("/dm {b_id} {ta}")).await;
        b.wait("alice's DM", |v| is(v, "dm") && v["text"] == ta.as_str()).await;
        b.say(&format!("/dm {a_id} {tb}")).await;
        a.wait("bob's DM", |v| is(v, "dm") && v["text"] == tb.as_str()).await;
    }
    quit(a).await;
    quit(b).await;
    (a_id, b_id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_encrypted_node_leaves_no_text_or_key_on_disk_and_restarts_as_itself() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (da, db) = (tmp.path().join("a"), tmp.path().join("b"));
    // Known secrets, so that the files can be searched for them.
    let pass = Passphrase::new(PASS).expect("a passphrase");
    data_dir::create(&da, &Identity::from_secret(SECRET_A), &pass, KdfParams::default()).expect("encrypted");
    Identity::from_secret(SECRET_B).save(&db).expect("plaintext");

    let (a_id, b_id) = chat(&da, Some(PASS), &db, 3, 3).await;

    // Bob's plaintext directory holds all of it: the search finds what is there.
    for needle in [DM_A.as_bytes(), DM_B.as_bytes(), POST_A.as_bytes(), &SECRET_B[..]] {
        assert!(!holding(&db, needle).is_empty(), "the plaintext control");
    }
    // Alice's holds none of it.
    for needle in [
        DM_A.as_bytes(),
        DM_B.as_bytes(),
        POST_A.as_bytes(),
        POST_B.as_bytes(),
        b"alice dm 2",
        b"bob post 1",
        &SECRET_A[..],
    ] {
        assert_eq!(
            holding(&da, needle),
            Vec::<PathBuf>::new(),
            "{:?} is on disk",
            String::from_utf8_lossy(needle)
        );
    }

    // Restarted, alice is herself, back in her room, with her history.
    let mut a = node(&da, Some(PASS), &[]);
    let again = a.wait("identity", |v| is(v, "identity")).await;
    assert_eq!(again["peer"], a_id.as_str());
    a.wait("lobby rejoined", |v| is(v, "joined") && v["room"] == "lobby")
        .await;
    quit(a).await;
    let dms = bin(&da, Some(PASS), &["history", "--peer", &b_id]);
    let text = String::from_utf8_lossy(&dms.stdout);
    assert!(
        text.contains(DM_A) && text.contains(DM_B) && text.contains("bob dm 2"),
        "{text}"
    );
    let room = bin(&da, Some(PASS), &["history", "--room", "lobby"]);
    let text = String::from_utf8_lossy(&room.stdout);
    assert!(text.contains(POST_A) && text.contains(POST_B), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_or_missing_passphrase_is_a_clear_error_and_changes_no_file() {
    let tmp = tempfile::tempdir().expect("tmp");
    let da = tmp.path().join("a");
    // `init` with a passphrase in the environment encrypts.
    let init = bin(&da, Some(PASS), &["init"]);
    assert!(init.status.success(), "{}", stderr(&init));
    assert!(String::from_utf8_lossy(&init.stdout).contains("encrypted"));
    // A node logs a DM (queued for a peer that is not there) and stops.
    let mut a = node(&da, Some(PASS), &[]);
    a.identity_and_addr().await;
    let bob = Identity::generate().peer_id();
    a.say(&format!("/dm {bob} {DM_A}")).await;
    a.wait("the DM logged", |v| is(v, "dm_sent")).await;
    quit(a).await;
    let before = files(&da);
    assert!(before.keys().any(|p| p.starts_with(da.join("sealed/log"))), "a log");

    for args in [
        &["run", "--no-mdns"][..],
        &["history"],
        &["id"],
        &["init"],
        &["serve", "--listen", "/ip4/127.0.0.1/tcp/0"],
    ] {
        let wrong = bin(&da, Some("not the passphrase"), args);
        assert!(!wrong.status.success(), "{args:?}");
        assert!(
            stderr(&wrong).contains("wrong passphrase"),
            "{args:?}: {}",
            stderr(&wrong)
        );
        assert_eq!(files(&da), before, "{args:?} with a wrong passphrase changed a file");
        let none = bin(&da, None, args);
        assert!(!none.status.success(), "{args:?}");
        assert!(
            stderr(&none).contains("is encrypted") && stderr(&none).contains(PASSPHRASE_VAR),
            "{args:?}: {}",
            stderr(&none)
        );
        assert_eq!(files(&da), before, "{args:?} without a passphrase changed a file");
    }
    // Encrypting again, or changing the passphrase without a terminal, is
    // refused too, and changes nothing.
    for args in [&["encrypt"][..], &["passphrase"]] {
        assert!(!bin(&da, Some(PASS), args).status.success(), "{args:?}");
        assert_eq!(files(&da), before, "{args:?}");
    }
    // The right passphrase opens it.
    let text = history(&da, Some(PASS)).join("\n");
    assert!(text.contains(DM_A), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn converting_a_plaintext_directory_keeps_every_message_and_the_identity() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (da, db) = (tmp.path().join("a"), tmp.path().join("b"));
    let (a_id, b_id) = chat(&da, None, &db, 5, 5).await;
    let before = history(&da, None);
    assert!(before.len() >= 20, "{before:?}");
    assert!(!holding(&da, DM_A.as_bytes()).is_empty());

    let out = bin(&da, Some(PASS), &["encrypt"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(history(&da, Some(PASS)), before, "every message kept");
    for needle in [DM_A, DM_B, POST_A, POST_B, "alice dm 4"] {
        assert_eq!(holding(&da, needle.as_bytes()), Vec::<PathBuf>::new(), "{needle}");
    }
    assert!(!da.join("identity.key").exists() && !da.join("log").exists());

    // The converted node runs as itself, and what it logs now comes after
    // what it logged before (sequence numbers go on from the old log's).
    let mut a = node(&da, Some(PASS), &[]);
    let (again, _) = a.identity_and_addr().await;
    assert_eq!(again, a_id);
    a.say(&format!("/dm {b_id} after the conversion")).await;
    a.wait("the DM logged", |v| is(v, "dm_sent")).await;
    quit(a).await;
    let out = bin(&da, Some(PASS), &["history", "--peer", &b_id]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.trim_end()
            .lines()
            .last()
            .is_some_and(|l| l.contains("after the conversion")),
        "the newest DM is last: {text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conversion_killed_anywhere_leaves_the_old_state_or_the_new_one() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (template, db) = (tmp.path().join("template"), tmp.path().join("b"));
    chat(&template, None, &db, 10, 10).await;
    let expected = history(&template, None);

    // How long a whole conversion takes, to kill within it.
    let timed = tmp.path().join("timed");
    copy_tree(&template, &timed);
    let start = Instant::now();
    let out = bin(&timed, Some(PASS), &["encrypt"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let full = start.elapsed();

    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_nanos() as u64;
    println!("seed {seed}, a whole conversion took {full:?}");
    let mut rng = Rng::new(seed);
    // Crashes right after each step (the process aborts there), then SIGKILLs
    // at random moments.
    let mut trials: Vec<(Option<&str>, Duration)> = ["staged", "copied", "verified", "switched"]
        .into_iter()
        .map(|step| (Some(step), Duration::ZERO))
        .collect();
    for _ in 0..8 {
        // Mostly past the key derivation, which takes most of the time.
        let at = full.mul_f64(0.3 + 0.7 * (rng.next_u64() % 1000) as f64 / 1000.0);
        trials.push((None, at));
    }
    let (mut old, mut new) = (0, 0);
    for (i, (step, at)) in trials.into_iter().enumerate() {
        let dir = tmp.path().join(format!("trial-{i}"));
        copy_tree(&template, &dir);
        let mut cmd = tokio::process::Command::new(BIN);
        cmd.arg("--data-dir")
            .arg(&dir)
            .arg("encrypt")
            .env(PASSPHRASE_VAR, PASS)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        if let Some(step) = step {
            cmd.env("BACKCHANNEL_ABORT_AFTER", step);
        }
        let mut child = cmd.spawn().expect("encrypt starts");
        if step.is_none() {
            // The kill lands wherever the conversion is at this moment.
            if tokio::time::timeout(at, child.wait()).await.is_err() {
                child.start_kill().expect("kill");
            }
        }
        tokio::time::timeout(T, child.wait())
            .await
            .expect("encrypt ends")
            .expect("wait");

        if data_dir::is_encrypted(&dir) {
            new += 1;
            assert_eq!(
                history(&dir, Some(PASS)),
                expected,
                "trial {i} ({step:?}, {at:?}): new state"
            );
            // Reading it finished the switch: no plaintext is left.
            assert_eq!(holding(&dir, DM_A.as_bytes()), Vec::<PathBuf>::new(), "trial {i}");
            assert!(!dir.join("log").exists() && !dir.join("identity.key").exists());
        } else {
            old += 1;
            assert_eq!(history(&dir, None), expected, "trial {i} ({step:?}, {at:?}): old state");
            assert!(!dir.join("sealed.tmp").exists(), "the half-built copy is removed");
            // And the conversion can simply be run again.
            let again = bin(&dir, Some(PASS), &["encrypt"]);
            assert!(again.status.success(), "{}", stderr(&again));
            assert_eq!(
                history(&dir, Some(PASS)),
                expected,
                "trial {i}: converted after the crash"
            );
        }
    }
    println!("{old} trials left the old state, {new} the new one");
    assert!(
        old >= 3 && new >= 1,
        "the aborts after staged, copied and verified keep the old state"
    );
}

/// The mesh lab runs encrypted nodes, in this process and as real
/// processes, through a restart (which reopens the sealed log, unlocked
/// again from the environment for a process), with DMs: every expected
/// delivery happens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lab_runs_encrypted_nodes_in_process_and_as_processes() {
    use backchannel::lab::runner;
    use backchannel::lab::scenario::{Fault, Scenario};
    for processes in [false, true] {
        let mut s = Scenario {
            name: "encrypted".into(),
            nodes: 4,
            seed: 5,
            topology: "ring".into(),
            processes,
            encrypt: true,
            settle_s: 5.0,
            faults: vec![Fault::Restart {
                at_s: 0.8,
                node: 1,
                down_s: 0.5,
            }],
            ..Scenario::default()
        };
        s.hallway.rate = 10.0;
        s.hallway.duration_s = 2.0;
        s.dm.pairs = 1;
        s.dm.rate = 10.0;
        s.dm.window = 4;
        let bin = std::path::PathBuf::from(BIN);
        let r = runner::run_with(&s, Some(bin), |_| {})
            .await
            .expect("the run completes");
        assert!(r.expected > 0, "{r:#?}");
        assert_eq!(r.delivered, r.expected, "processes: {processes}: {:#?}", r.per_node);
        assert_eq!(r.duplicates, 0);
        assert!(r.dm.delivered > 0, "{:?}", r.dm);
        assert!(
            r.per_node[1].delivered > 0,
            "the restarted node reopened its sealed log"
        );
    }
}
