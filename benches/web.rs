//! web: the figures of docs/PERFORMANCE.md for the local API and the web
//! app, measured in a real headless Chromium (Debian's chromium and
//! chromium-driver):
//!
//! - event latency: a post made on node A, until it is on node B's page,
//!   and from B's node emitting it until it is on B's page;
//! - memory per connected page: a real `backchannel run --ui` process, its
//!   resident memory before and after 16 pages' worth of clients (each
//!   loads what the app loads and holds the event stream);
//! - time to open a room of 10,000 posts in the web app.
//!
//! `cargo bench --bench web` prints one JSON object per figure.

#![allow(missing_docs)]

#[allow(dead_code)]
mod support {
    use std::time::Duration;

    /// Every wait has this limit.
    pub const T: Duration = Duration::from_secs(60);

    #[path = "../../tests/it/support/api.rs"]
    pub mod api;
    #[path = "../../tests/it/support/http.rs"]
    pub mod http;
    #[path = "../../tests/it/support/webdriver.rs"]
    pub mod webdriver;
}

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use backchannel::api::{Api, ApiConfig};
use backchannel::lab::{Lab, LabConfig, Topology};
use backchannel::{Event, Room};
use serde_json::{Value, json};
use support::http::send;
use support::webdriver::Driver;

fn now_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64()
        * 1000.0
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    (v[i] * 10.0).round() / 10.0
}

/// Two connected nodes without rate limits, each with its API; B's events
/// are stamped when they reach the API (`stamps`: post id -> ms).
async fn pair() -> (Lab, Vec<Arc<Api>>, Arc<Mutex<HashMap<String, f64>>>) {
    let config = LabConfig {
        limits: Some(backchannel::Limits::unlimited()),
        ..LabConfig::default()
    };
    let mut lab = Lab::start(2, config).await.expect("lab");
    lab.connect(Topology::Full, support::T).await.expect("connect");
    let stamps = Arc::new(Mutex::new(HashMap::new()));
    let mut apis = Vec::new();
    for (i, node) in lab.nodes.iter_mut().enumerate() {
        let mut config = ApiConfig::new(node.config.data_dir.clone());
        config.nick = node.config.nick.clone();
        config.burst = 1_000_000;
        config.requests_per_second = 1_000_000;
        let api = Arc::new(Api::start(node.handle.clone(), config).await.expect("api"));
        let mut events = node.take_events();
        let (feed, stamps) = (api.clone(), stamps.clone());
        tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                if i == 1
                    && let Event::Hallway { id, .. } = &event
                {
                    stamps.lock().expect("stamps").insert(id.to_string(), now_ms());
                }
                feed.publish_event(&event);
            }
        });
        apis.push(api);
    }
    (lab, apis, stamps)
}

async fn latency(driver: &Driver) -> Value {
    let (mut lab, apis, stamps) = pair().await;
    let room = Room::new("lobby").expect("room");
    for node in &lab.nodes {
        node.handle.join(&room).await.expect("join");
    }
    let profile = tempfile::tempdir().expect("profile");
    let page = driver.browser(profile.path(), 1280, 800).await;
    page.goto(&apis[1].login_url().expect("url")).await;
    page.ready().await;
    page.js("location.hash = '#/room/lobby'", json!([])).await;
    page.wait("the lobby", "return !!document.querySelector('#text')").await;
    // The page notes when each post's text first shows.
    page.js(
        "window.__seen = {};
         new MutationObserver(() => {
           for (const li of document.querySelectorAll('.post')) {
             const id = li.dataset.id;
             if (id && !(id in window.__seen)) window.__seen[id] = Date.now();
           }
         }).observe(document.body, { subtree: true, childList: true });",
        json!([]),
    )
    .await;
    lab.nodes[1].handle.sync(&room).await.expect("the mesh has formed");
    // A program's client of B's event stream, beside the page.
    let client = support::api::Client {
        addr: apis[1].addr(),
        token: apis[1].token().to_owned(),
    };
    let mut stream = client.events(None).await;
    let ws_seen = Arc::new(Mutex::new(HashMap::new()));
    let reader = {
        let ws_seen = ws_seen.clone();
        tokio::spawn(async move {
            while let Some(line) = stream.next().await {
                if line["type"] == "hallway" {
                    ws_seen
                        .lock()
                        .expect("seen")
                        .insert(line["id"].as_str().unwrap_or("").to_owned(), now_ms());
                }
            }
        })
    };
    const POSTS: usize = 200;
    let mut sent = Vec::new();
    for i in 0..POSTS {
        let t = now_ms();
        let id = lab.nodes[0]
            .handle
            .post(&room, &format!("latency probe {i}"))
            .await
            .expect("post");
        sent.push((id.to_string(), t));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let all = sent
        .iter()
        .map(|(id, _)| format!("{id:?}"))
        .collect::<Vec<_>>()
        .join(",");
    page.wait(
        "every post on the page",
        &format!("return [{all}].every(id => window.__seen && id in window.__seen)"),
    )
    .await;
    let seen = page.js("return window.__seen", json!([])).await;
    let stamps = stamps.lock().expect("stamps").clone();
    let ws_seen = ws_seen.lock().expect("seen").clone();
    reader.abort();
    let (mut a_to_page, mut node_to_page, mut node_to_ws) = (Vec::new(), Vec::new(), Vec::new());
    for (id, t) in &sent {
        let shown = seen[id].as_f64().expect("seen");
        a_to_page.push(shown - t);
        node_to_page.push(shown - stamps[id]);
        if let Some(w) = ws_seen.get(id) {
            node_to_ws.push(w - stamps[id]);
        }
    }
    page.quit().await;
    lab.shutdown().await;
    json!({
        "figure": "event latency", "posts": POSTS, "rate_per_s": 20,
        "post_on_a_to_b_page_ms": {"p50": pct(&mut a_to_page, 0.5), "p99": pct(&mut a_to_page, 0.99)},
        "b_node_event_to_b_page_ms": {"p50": pct(&mut node_to_page, 0.5), "p99": pct(&mut node_to_page, 0.99)},
        "b_node_event_to_a_websocket_client_ms": {"p50": pct(&mut node_to_ws, 0.5), "p99": pct(&mut node_to_ws, 0.99)},
    })
}

fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

async fn memory() -> Value {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let dir = tempfile::tempdir().expect("dir");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_backchannel"))
        .arg("--data-dir")
        .arg(dir.path())
        .args([
            "run",
            "--json",
            "--no-mdns",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--room",
            "lobby",
            "--ui",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the binary starts");
    let pid = child.id().expect("pid");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    while let Some(line) = lines.next_line().await.expect("stdout") {
        if line.contains("\"web_app\"") {
            break;
        }
    }
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let addr: std::net::SocketAddr = std::fs::read_to_string(dir.path().join("api-addr"))
        .expect("api-addr")
        .trim()
        .parse()
        .expect("addr");
    let token = std::fs::read_to_string(dir.path().join("api-token")).expect("token");
    let node = support::api::Client { addr, token };
    // Warm up: one page's worth of requests, so lazily made buffers exist.
    page_load(&node).await;
    let before = rss_kb(pid);
    const PAGES: usize = 16;
    let mut streams = Vec::new();
    for _ in 0..PAGES {
        page_load(&node).await;
        streams.push(node.events(Some(0)).await);
    }
    // Let the streams send their replay.
    for s in &mut streams {
        s.until("the first line", |_| true).await;
    }
    let after = rss_kb(pid);
    for s in streams {
        s.close().await;
    }
    json!({
        "figure": "memory per connected page", "pages": PAGES,
        "rss_before_kb": before, "rss_after_kb": after,
        "kb_per_page": ((after.saturating_sub(before)) as f64 / PAGES as f64).round(),
    })
}

/// The requests the app makes when it opens a room.
async fn page_load(node: &support::api::Client) {
    for path in [
        "/api/v1/node",
        "/api/v1/rooms",
        "/api/v1/contacts",
        "/api/v1/requests",
        "/api/v1/groups",
        "/api/v1/peers",
        "/api/v1/rooms/lobby/posts?limit=100",
        "/api/v1/rooms/lobby/who",
        "/api/v1/rooms/lobby/rules",
    ] {
        node.get(path).await;
    }
}

async fn big_room(driver: &Driver) -> Value {
    let (mut lab, apis, _) = pair().await;
    let room = Room::new("big").expect("room");
    for node in &lab.nodes {
        node.handle.join(&room).await.expect("join");
    }
    lab.nodes[1].handle.sync(&room).await.expect("the mesh has formed");
    const POSTS: usize = 10_000;
    let start = Instant::now();
    let handle = lab.nodes[0].handle.clone();
    let mut tasks = Vec::new();
    for w in 0..16 {
        let (handle, room) = (handle.clone(), room.clone());
        tasks.push(tokio::spawn(async move {
            for i in (w..POSTS).step_by(16) {
                handle
                    .post(&room, &format!("post {i}: {}", "x".repeat(80)))
                    .await
                    .expect("post");
            }
        }));
    }
    for t in tasks {
        t.await.expect("poster");
    }
    let fill_s = start.elapsed().as_secs_f64();
    let a = &apis[0];
    let host = format!("127.0.0.1:{}", a.addr().port());
    let auth = format!("Bearer {}", a.token());
    let mut api_ms = Vec::new();
    for _ in 0..10 {
        let t = Instant::now();
        let r = send(
            a.addr(),
            "GET",
            "/api/v1/rooms/big/posts?limit=100",
            &[("Host", &host), ("Authorization", &auth)],
            b"",
        )
        .await;
        assert_eq!(r.status, 200);
        api_ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let profile = tempfile::tempdir().expect("profile");
    let page = driver.browser(profile.path(), 1280, 800).await;
    page.goto(&a.login_url().expect("url")).await;
    page.ready().await;
    let mut open_ms = Vec::new();
    let mut reload_ms = Vec::new();
    for _ in 0..5 {
        // From the click on the room to its latest page on screen.
        page.js("location.hash = '#/'", json!([])).await;
        page.wait("home", "return !document.querySelector('.posts')").await;
        let t = page
            .js(
                "window.__t0 = performance.now(); location.hash = '#/room/big'; return window.__t0",
                json!([]),
            )
            .await;
        let shown = page
            .wait(
                "the room's posts",
                "return document.querySelectorAll('.posts li').length >= 100 && performance.now()",
            )
            .await;
        open_ms.push(shown.as_f64().expect("ms") - t.as_f64().expect("ms"));
        // A reload straight into the room: from navigation start.
        page.reload().await;
        let shown = page
            .wait(
                "the room after a reload",
                "return document.querySelectorAll('.posts li').length >= 100 && performance.now()",
            )
            .await;
        reload_ms.push(shown.as_f64().expect("ms"));
    }
    // Scrolling up loads the page before.
    let older = page
        .wait(
            "an older page",
            "const log = document.getElementById('log'); const n = document.querySelectorAll('.posts li').length;
             if (!window.__older) { window.__older = performance.now(); log.scrollTop = 0; log.dispatchEvent(new Event('scroll')); }
             return n >= 200 && performance.now() - window.__older",
        )
        .await;
    let heap = page
        .js(
            "return performance.memory ? performance.memory.usedJSHeapSize : null",
            json!([]),
        )
        .await;
    page.quit().await;
    lab.shutdown().await;
    json!({
        "figure": "open a room of 10,000 posts", "posts": POSTS, "fill_s": (fill_s * 10.0).round() / 10.0,
        "api_latest_page_ms": {"p50": pct(&mut api_ms, 0.5), "max": pct(&mut api_ms, 1.0)},
        "open_from_the_room_list_ms": {"p50": pct(&mut open_ms, 0.5), "max": pct(&mut open_ms, 1.0)},
        "reload_into_the_room_ms": {"p50": pct(&mut reload_ms, 0.5), "max": pct(&mut reload_ms, 1.0)},
        "older_page_on_scroll_ms": (older.as_f64().unwrap_or(0.0) * 10.0).round() / 10.0,
        "page_js_heap_mb": heap.as_f64().map(|b| (b / 1e5).round() / 10.0),
    })
}

fn main() {
    // `cargo test --benches` runs bench targets with --bench absent: nothing to do then.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let driver = Driver::start().await;
        println!("{}", latency(&driver).await);
        if std::env::var_os("WEB_BENCH_ONLY_LATENCY").is_none() {
            println!("{}", memory().await);
            println!("{}", big_room(&driver).await);
        }
    });
}
