//! Reach in the NAT lab (issue 10): two homes behind NATs that know only a
//! helper's address join `lobby`; how long until the first post and the
//! first DM arrive, and whether their connection ends up direct (hole
//! punched) or stays relayed. Each trial is a fresh lab (new namespaces, new
//! identities, new processes). Needs root, `ip` and `iptables`.
//!
//! `cargo bench --bench reach` (trials: `REACH_TRIALS`, default 20 with two
//! easy NATs, then `REACH_HARD_TRIALS`, default 5, with one hard NAT).

use std::process::Stdio;
use std::time::{Duration, Instant};

use backchannel::lab::netns::{Nat, NatLab};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout};

const BIN: &str = env!("CARGO_BIN_EXE_backchannel");
const LIMIT: Duration = Duration::from_secs(60);

struct Proc {
    _child: Child,
    stdin: Option<ChildStdin>,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Proc {
    async fn wait(&mut self, f: impl Fn(&Value) -> bool) -> Option<Value> {
        tokio::time::timeout(LIMIT, async {
            while let Ok(Some(line)) = self.lines.next_line().await {
                if let Ok(v) = serde_json::from_str::<Value>(&line)
                    && f(&v)
                {
                    return Some(v);
                }
            }
            None
        })
        .await
        .ok()
        .flatten()
    }

    async fn say(&mut self, line: &str) {
        if let Some(stdin) = self.stdin.as_mut() {
            let _ = stdin.write_all(format!("{line}\n").as_bytes()).await;
            let _ = stdin.flush().await;
        }
    }
}

/// Spawns a node in the lab. With `REACH_LOG=DIR` each node's log (at
/// `BACKCHANNEL_LOG`, default `backchannel=debug,libp2p_dcutr=debug`) goes to
/// `DIR/<trial>-<host>.log`, to see why a hole punch failed.
fn spawn(lab: &NatLab, host: &str, dir: &std::path::Path, trial: usize, args: &[&str]) -> Proc {
    let mut command = lab.command(host, BIN).expect("command");
    command
        .arg("--data-dir")
        .arg(dir.join(host))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if let Ok(logs) = std::env::var("REACH_LOG") {
        let file = std::fs::File::create(format!("{logs}/{trial}-{host}.log")).expect("log file");
        let filter = std::env::var("BACKCHANNEL_LOG").unwrap_or_else(|_| "backchannel=debug,libp2p_dcutr=debug".into());
        command.env("BACKCHANNEL_LOG", filter).stderr(file);
    }
    let mut child = command.spawn().expect("spawn");
    Proc {
        stdin: child.stdin.take(),
        lines: BufReader::new(child.stdout.take().expect("stdout")).lines(),
        _child: child,
    }
}

fn is(v: &Value, ty: &str) -> bool {
    v["type"] == ty
}

/// Bytes the helper's public interface received during the trial: relayed
/// traffic, DHT, AutoNAT and identify together (an upper bound on what was
/// relayed).
fn helper_bytes(lab: &NatLab) -> u64 {
    let out = lab.exec("h1", &["cat", "/proc/net/dev"]).expect("read counters");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim_start().starts_with("lo:") && l.contains(':'))
        .filter_map(|l| l.split(':').nth(1)?.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

struct Trial {
    first_post: Option<Duration>,
    first_dm: Option<Duration>,
    direct: Option<Duration>,
    helper_bytes: u64,
}

async fn trial(second: Nat, n: usize) -> Trial {
    let lab = NatLab::new()
        .and_then(|l| l.helper("h1"))
        .and_then(|l| l.home("alice", Nat::Easy))
        .and_then(|l| l.home("bob", second))
        .expect("the NAT lab needs root, ip and iptables");
    let tmp = tempfile::tempdir().expect("tmp");
    let listen = |host: &str| format!("/ip4/{}/tcp/4001", lab.host(host).expect("host").addr());
    let mut helper = spawn(
        &lab,
        "h1",
        tmp.path(),
        n,
        &["serve", "--json", "--listen", &listen("h1")],
    );
    let h1 = helper.wait(|v| is(v, "listening")).await.expect("helper listens")["addr"]
        .as_str()
        .expect("addr")
        .to_owned();
    let start = Instant::now();
    // Homes listen where users' nodes do by default (TCP and QUIC on
    // every interface, ports picked by the system).
    let home = |name: &str| {
        let args = ["run", "--json", "--no-mdns", "--room", "lobby", "--bootstrap", &h1];
        spawn(&lab, name, tmp.path(), n, &args)
    };
    let (mut alice, mut bob) = (home("alice"), home("bob"));
    let bob_id = bob.wait(|v| is(v, "identity")).await.expect("identity")["peer"]
        .as_str()
        .expect("peer")
        .to_owned();
    let _ = alice
        .wait(|v| is(v, "room_peer_joined") && v["peer"] == bob_id.as_str())
        .await;
    alice.say("first post").await;
    let first_post = bob
        .wait(|v| is(v, "hallway") && v["text"] == "first post")
        .await
        .map(|_| start.elapsed());
    alice.say(&format!("/dm {bob_id} first dm")).await;
    let first_dm = alice
        .wait(|v| is(v, "delivered") && v["to"] == bob_id.as_str())
        .await
        .map(|_| start.elapsed());
    let mut direct = None;
    while start.elapsed() < LIMIT {
        alice.say("/peers").await;
        let Some(list) = alice.wait(|v| is(v, "peers")).await else {
            break;
        };
        let is_direct = list["peers"].as_array().is_some_and(|peers| {
            peers.iter().any(|p| {
                p["peer"] == bob_id.as_str()
                    && p["connections"]
                        .as_array()
                        .is_some_and(|c| c.iter().any(|c| c["relayed"] == false))
            })
        });
        if is_direct {
            direct = Some(start.elapsed());
            break;
        }
        // Polling a query: there is no event to wait on.
        tokio::time::sleep(Duration::from_millis(250)).await;
        if second == Nat::Hard && start.elapsed() > Duration::from_secs(30) {
            break;
        }
    }
    Trial {
        first_post,
        first_dm,
        direct,
        helper_bytes: helper_bytes(&lab),
    }
}

fn summary(name: &str, trials: &[Trial]) {
    let ms = |d: &Option<Duration>| d.map(|d| d.as_millis() as u64);
    let stats = |mut v: Vec<u64>| -> String {
        if v.is_empty() {
            return "none".into();
        }
        v.sort_unstable();
        format!("p50 {} ms, max {} ms", v[v.len() / 2], v[v.len() - 1])
    };
    let posts: Vec<u64> = trials.iter().filter_map(|t| ms(&t.first_post)).collect();
    let dms: Vec<u64> = trials.iter().filter_map(|t| ms(&t.first_dm)).collect();
    let direct: Vec<u64> = trials.iter().filter_map(|t| ms(&t.direct)).collect();
    let mut bytes: Vec<u64> = trials.iter().map(|t| t.helper_bytes).collect();
    bytes.sort_unstable();
    println!("{name}: {} trials", trials.len());
    println!(
        "  first post delivered: {}/{}; {}",
        posts.len(),
        trials.len(),
        stats(posts.clone())
    );
    println!(
        "  first DM delivered:   {}/{}; {}",
        dms.len(),
        trials.len(),
        stats(dms.clone())
    );
    println!(
        "  ended direct:         {}/{} ({:.0}%); time to direct {}",
        direct.len(),
        trials.len(),
        100.0 * direct.len() as f64 / trials.len().max(1) as f64,
        stats(direct.clone())
    );
    println!(
        "  bytes into the helper per trial (relay, DHT, AutoNAT): p50 {} KB, max {} KB",
        bytes[bytes.len() / 2] / 1024,
        bytes[bytes.len() - 1] / 1024
    );
}

async fn trials(nat: Nat, n: usize, label: &str) -> Vec<Trial> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let t = trial(nat, if nat == Nat::Hard { 100 + i } else { i }).await;
        eprintln!(
            "{label} trial {i}: post {:?} dm {:?} direct {:?}",
            t.first_post, t.first_dm, t.direct
        );
        out.push(t);
    }
    out
}

fn main() {
    // `cargo bench` passes `--bench`; this binary takes no arguments.
    let env = |k: &str, d: usize| std::env::var(k).ok().and_then(|v| v.parse().ok()).unwrap_or(d);
    let (easy_n, hard_n) = (env("REACH_TRIALS", 20), env("REACH_HARD_TRIALS", 5));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let easy = trials(Nat::Easy, easy_n, "easy").await;
        let hard = trials(Nat::Hard, hard_n, "hard").await;
        summary("two homes behind easy NATs, one helper", &easy);
        if !hard.is_empty() {
            summary("one easy and one hard NAT (hole punching must fail)", &hard);
        }
    });
}
