//! The durability crash test with real processes: the recipient is killed
//! with SIGKILL 20 times, at random moments, while 1,000 DMs stream in.
//! In the end every DM the sender saw delivered is in the recipient's log,
//! every DM is logged exactly once and shown at most once, and the sender's
//! outbox is empty.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::sync::Notify;

use crate::cli::{BIN, Proc, is};

const DMS: usize = 1000;
const KILLS: usize = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkilled_recipient_loses_nothing_and_shows_nothing_twice() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (da, db) = (tmp.path().join("a"), tmp.path().join("b"));
    let mut a = Proc::run(&da, &["--name", "alice"]);
    let (a_id, a_addr) = a.identity_and_addr().await;
    let mut b = Proc::run(&db, &["--peer", &a_addr]);
    let b_id = b.wait("identity", |v| is(v, "identity")).await["peer"]
        .as_str()
        .expect("peer")
        .to_owned();
    a.wait("bob connects", |v| {
        is(v, "peer_connected") && v["peer"] == b_id.as_str()
    })
    .await;

    // Alice's output is drained in the background: delivered ids.
    let delivered: Arc<Mutex<HashSet<String>>> = Arc::default();
    let progress = Arc::new(Notify::new());
    let Proc {
        child: mut a_child,
        stdin: a_stdin,
        lines: mut a_lines,
    } = a;
    {
        let (delivered, progress) = (delivered.clone(), progress.clone());
        tokio::spawn(async move {
            while let Ok(Some(line)) = a_lines.next_line().await {
                let v: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
                if is(&v, "delivered") {
                    delivered
                        .lock()
                        .expect("lock")
                        .insert(v["id"].as_str().unwrap_or_default().to_owned());
                    progress.notify_waiters();
                }
            }
        });
    }
    // 1,000 DMs typed into alice as fast as she takes them.
    let mut a_in = a_stdin.expect("stdin");
    let writer = tokio::spawn(async move {
        for i in 0..DMS {
            a_in.write_all(format!("/dm {b_id} message {i}\n").as_bytes())
                .await
                .expect("write");
        }
        a_in.flush().await.expect("flush");
        a_in
    });

    // Kill bob 20 times, each after a random number (1..=30) of DMs shown.
    let mut shown: HashMap<String, usize> = HashMap::new();
    let mut seed: u64 = 0x5eed;
    for _ in 0..KILLS {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let after = 1 + (seed >> 33) as usize % 30;
        let mut seen = 0;
        while seen < after && delivered.lock().expect("lock").len() < DMS {
            let v = b.wait("a DM", |v| is(v, "dm")).await;
            *shown.entry(v["id"].as_str().expect("id").to_owned()).or_default() += 1;
            seen += 1;
        }
        b.child.start_kill().expect("SIGKILL");
        b.child.wait().await.expect("reaped");
        b = Proc::run(&db, &["--peer", &a_addr]);
    }
    // Let everything arrive: alice retries as soon as bob reconnects.
    let _a_in = writer.await.expect("writer");
    let done = async {
        loop {
            let notified = progress.notified();
            if delivered.lock().expect("lock").len() >= DMS {
                break;
            }
            tokio::select! {
                _ = notified => {}
                line = b.lines.next_line() => {
                    let line = line.expect("read").expect("bob is running");
                    let v: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
                    if is(&v, "dm") {
                        *shown.entry(v["id"].as_str().expect("id").to_owned()).or_default() += 1;
                    }
                }
            }
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(180), done)
        .await
        .expect("all 1000 DMs delivered in time");
    let twice: Vec<_> = shown.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "DMs shown more than once: {twice:?}");

    // Alice's outbox is empty; stop both.
    let a_in = _a_in;
    drop(a_in);
    let pid = a_child.id().expect("pid");
    let _ = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("kill -TERM {pid}"))
        .status();
    a_child.wait().await.expect("alice exits");
    b.child.start_kill().expect("kill bob");
    b.child.wait().await.expect("bob exits");
    let history = |dir: &std::path::Path, peer: &str| -> Vec<Value> {
        let out = std::process::Command::new(BIN)
            .arg("--data-dir")
            .arg(dir)
            .args(["history", "--peer", peer, "--json", "--limit", "100000"])
            .output()
            .expect("history runs");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    };
    let b_log = history(&db, &a_id);
    let b_ids: Vec<&str> = b_log.iter().filter_map(|v| v["id"].as_str()).collect();
    let unique: HashSet<&str> = b_ids.iter().copied().collect();
    assert_eq!(b_ids.len(), DMS, "every DM logged exactly once at bob");
    assert_eq!(unique.len(), DMS);
    for id in delivered.lock().expect("lock").iter() {
        assert!(
            unique.contains(id.as_str()),
            "{id} was delivered but is not in bob's log"
        );
    }
    let a_log = history(&da, &{
        let b_line = &b_log[0];
        b_line["to"].as_str().expect("to").to_owned()
    });
    assert!(
        a_log.iter().all(|v| v["delivery"]["state"] == "delivered"),
        "alice's outbox is empty"
    );
}
