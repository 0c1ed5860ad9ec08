//! The local API over real HTTP and WebSockets, against real nodes on
//! loopback: every endpoint, the event stream and its resume, access
//! control, bounds, and two nodes chatting through their APIs.

use std::collections::BTreeSet;

use backchannel::api::ApiConfig;
use proptest::prelude::*;
use serde_json::{Value, json};

use crate::support::api::{ApiNode, nodes};
use crate::support::http::send;

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn s(v: &Value) -> String {
    v.as_str().expect("a string").to_owned()
}

/// The routes a test called, as the OpenAPI document spells them.
#[derive(Default)]
struct Covered(BTreeSet<(String, String)>);

impl Covered {
    fn hit(&mut self, method: &str, template: &str) {
        self.0.insert((method.to_lowercase(), template.to_owned()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_answers_and_the_openapi_document_lists_them() {
    let (mut lab, n) = nodes(2, |_| {}).await;
    let (a, b) = (&n[0], &n[1]);
    let mut c = Covered::default();

    let me = a.get("/api/v1/node").await;
    c.hit("get", "/api/v1/node");
    assert_eq!(s(&me["peer"]), a.peer.to_string());
    assert_eq!(me["nick"], "node0");
    assert!(
        me["addrs"]
            .as_array()
            .expect("addrs")
            .iter()
            .any(|x| s(x).ends_with(&a.peer.to_string()))
    );

    // Rooms: host one, join it from B, post, reply, ask, react, edit, delete.
    let room = s(&a.ok("POST", "/api/v1/hosted", json!({"name": "stage"})).await["room"]);
    c.hit("post", "/api/v1/hosted");
    b.ok("POST", "/api/v1/rooms", json!({"room": room})).await;
    c.hit("post", "/api/v1/rooms");
    let r = enc(&room);
    let mut b_events = b.events(Some(0)).await;
    let post = s(&a
        .ok("POST", &format!("/api/v1/rooms/{r}/posts"), json!({"text": "welcome"}))
        .await["id"]);
    c.hit("post", "/api/v1/rooms/{room}/posts");
    b_events
        .until("A's post at B", |l| l["type"] == "hallway" && l["id"] == post.as_str())
        .await;
    let reply = a
        .ok(
            "POST",
            &format!("/api/v1/rooms/{r}/posts"),
            json!({"text": "and again", "reply_to": post, "mentions": [b.peer.to_string()]}),
        )
        .await;
    let question = s(&b
        .ok(
            "POST",
            &format!("/api/v1/rooms/{r}/posts"),
            json!({"text": "why?", "question": true}),
        )
        .await["id"]);
    a.ok(
        "POST",
        &format!("/api/v1/rooms/{r}/ops"),
        json!({"kind": "react", "target": post, "emoji": "👍", "retract": false}),
    )
    .await;
    c.hit("post", "/api/v1/rooms/{room}/ops");
    a.ok(
        "POST",
        &format!("/api/v1/rooms/{r}/ops"),
        json!({"kind": "edit", "target": post, "text": "welcome, all"}),
    )
    .await;
    a.ok(
        "POST",
        &format!("/api/v1/rooms/{r}/ops"),
        json!({"kind": "delete", "target": s(&reply["id"])}),
    )
    .await;
    let page = a.get(&format!("/api/v1/rooms/{r}/posts?limit=10")).await;
    c.hit("get", "/api/v1/rooms/{room}/posts");
    let items = page["items"].as_array().expect("items");
    assert_eq!(page["more"], false);
    assert_eq!(items[0]["text"], "welcome, all");
    assert_eq!(items[0]["edited"], true);
    assert_eq!(items[0]["reactions"], json!([["👍", 1]]));
    assert!(
        !items.iter().any(|p| p["id"] == reply["id"]),
        "the deleted reply is gone"
    );
    // Paging: the page before the question is the welcome post alone.
    let older = a
        .get(&format!("/api/v1/rooms/{r}/posts?limit=1&before={question}"))
        .await;
    assert_eq!(older["items"].as_array().expect("items").len(), 1);
    assert_eq!(older["items"][0]["id"], post.as_str());
    let qs = a.get(&format!("/api/v1/rooms/{r}/questions")).await;
    c.hit("get", "/api/v1/rooms/{room}/questions");
    assert_eq!(qs[0]["id"], question.as_str());
    a.ok(
        "POST",
        &format!("/api/v1/rooms/{r}/ops"),
        json!({"kind": "set_role", "peer": b.peer.to_string(), "role": "moderator"}),
    )
    .await;
    let rules = a.get(&format!("/api/v1/rooms/{r}/rules")).await;
    c.hit("get", "/api/v1/rooms/{room}/rules");
    assert_eq!(s(&rules["host"]), a.peer.to_string());
    let who = a.get(&format!("/api/v1/rooms/{r}/who")).await;
    c.hit("get", "/api/v1/rooms/{room}/who");
    assert!(who.as_array().expect("who").iter().any(|p| p["me"] == true));
    a.ok("POST", &format!("/api/v1/rooms/{r}/sync"), json!({})).await;
    c.hit("post", "/api/v1/rooms/{room}/sync");
    let rooms = a.get("/api/v1/rooms").await;
    c.hit("get", "/api/v1/rooms");
    assert_eq!(rooms[0]["room"], room.as_str());

    // DMs: send, history with delivery, react, outbox.
    let bp = b.peer.to_string();
    // A's own events, to know when B's receipt is in: the history read
    // below twice must not race the DM's delivery state.
    let mut a_events = a.events(None).await;
    let dm = s(&a
        .ok("POST", &format!("/api/v1/dms/{bp}"), json!({"text": "psst"}))
        .await["id"]);
    c.hit("post", "/api/v1/dms/{peer}");
    b_events
        .until("the DM at B", |l| l["type"] == "dm" && l["id"] == dm.as_str())
        .await;
    a_events
        .until("the receipt at A", |l| {
            l["type"] == "delivered" && l["id"] == dm.as_str()
        })
        .await;
    a_events.close().await;
    let dms = b.get(&format!("/api/v1/dms/{}", a.peer)).await;
    c.hit("get", "/api/v1/dms/{peer}");
    assert_eq!(dms["items"][0]["text"], "psst");
    assert_eq!(dms["items"][0]["kind"], "dm");
    // The log as `backchannel history` prints it: the room as it shows now
    // (A's page, line for line: A made every change to it), the
    // conversation, and one room alone, none, or a malformed ask.
    let log = a.get("/api/v1/history").await;
    c.hit("get", "/api/v1/history");
    let page = a.get(&format!("/api/v1/rooms/{r}/posts?limit=500")).await;
    let posts = page["items"].as_array().expect("items");
    let shown = log["rooms"][0]["lines"].as_array().expect("lines");
    assert_eq!(log["rooms"][0]["room"], room.as_str());
    assert_eq!(shown.len(), posts.len());
    for (line, post) in shown.iter().zip(posts) {
        assert_eq!((&line["kind"], &line["post"]), (&json!("hallway"), post));
        assert_eq!(line["text"], post["text"]);
    }
    assert_eq!(s(&log["me"]), a.peer.to_string());
    assert_eq!(s(&log["conversations"][0]["peer"]), bp);
    assert_eq!(log["conversations"][0]["lines"][0]["text"], "psst");
    let one = a.get(&format!("/api/v1/history?limit=1&room={r}")).await;
    assert_eq!(one["rooms"][0]["lines"].as_array().map(Vec::len), Some(1));
    let none = a.get("/api/v1/history?rooms=false").await;
    assert_eq!(none["rooms"], json!([]));
    assert_eq!(none["conversations"], log["conversations"]);
    for bad in ["?limit=x", "?room=", "?rooms=false&room=lobby", "?since=1"] {
        let refused = a.call("GET", &format!("/api/v1/history{bad}"), None).await;
        assert_eq!(
            (refused.status, refused.json()["error"].is_string()),
            (400, true),
            "{bad}"
        );
    }
    assert!(a.get("/api/v1/outbox").await.is_array());
    c.hit("get", "/api/v1/outbox");

    // Requests and contacts: A is not B's contact, so the DM is a request.
    // B declines it (the DM goes), A writes again, B accepts.
    let reqs = b.get("/api/v1/requests").await;
    c.hit("get", "/api/v1/requests");
    assert_eq!(s(&reqs[0]["peer"]), a.peer.to_string());
    let ap = a.peer.to_string();
    let declined = b.call("POST", &format!("/api/v1/requests/{ap}/decline"), None).await;
    c.hit("post", "/api/v1/requests/{peer}/decline");
    assert_eq!(declined.json(), json!({"deleted": 1}));
    assert_eq!(b.get("/api/v1/requests").await, json!([]));
    let dm = s(&a
        .ok("POST", &format!("/api/v1/dms/{bp}"), json!({"text": "again"}))
        .await["id"]);
    b_events
        .until("the second DM at B", |l| l["type"] == "dm" && l["id"] == dm.as_str())
        .await;
    b.ok("PUT", &format!("/api/v1/contacts/{ap}"), json!({"petname": "alice"}))
        .await;
    c.hit("put", "/api/v1/contacts/{peer}");
    let contacts = b.get("/api/v1/contacts").await;
    c.hit("get", "/api/v1/contacts");
    assert_eq!(contacts, json!([{"peer": ap, "nick": "alice"}]));
    b.ok("POST", "/api/v1/dm-reactions", json!({"target": dm, "emoji": "❤"}))
        .await;
    c.hit("post", "/api/v1/dm-reactions");
    a.ok("PUT", "/api/v1/requests/setting", json!({"accept": false})).await;
    c.hit("put", "/api/v1/requests/setting");
    a.ok("PUT", "/api/v1/requests/setting", json!({"accept": true})).await;

    // Groups: create, rename, add, send, read, remove, leave.
    let group = s(&a
        .ok("POST", "/api/v1/groups", json!({"name": "crew", "members": [bp]}))
        .await["group"]);
    c.hit("post", "/api/v1/groups");
    a.ok(
        "PUT",
        &format!("/api/v1/groups/{group}/name"),
        json!({"name": "the crew"}),
    )
    .await;
    c.hit("put", "/api/v1/groups/{group}/name");
    let gm = s(&a
        .ok(
            "POST",
            &format!("/api/v1/groups/{group}/messages"),
            json!({"text": "hi crew"}),
        )
        .await["id"]);
    c.hit("post", "/api/v1/groups/{group}/messages");
    let history = a.get(&format!("/api/v1/groups/{group}/messages")).await;
    c.hit("get", "/api/v1/groups/{group}/messages");
    assert_eq!(history["items"][0]["id"], gm.as_str());
    let groups = a.get("/api/v1/groups").await;
    c.hit("get", "/api/v1/groups");
    assert_eq!(groups[0]["name"], "the crew");
    let third = backchannel::Identity::from_secret([7; 32]).peer_id().to_string();
    a.ok("PUT", &format!("/api/v1/groups/{group}/members/{third}"), json!({}))
        .await;
    c.hit("put", "/api/v1/groups/{group}/members/{peer}");
    a.call("DELETE", &format!("/api/v1/groups/{group}/members/{third}"), None)
        .await;
    c.hit("delete", "/api/v1/groups/{group}/members/{peer}");
    b_events
        .until("the group at B", |l| {
            l["type"] == "group" && l["group"] == group.as_str()
        })
        .await;
    let left = b.call("DELETE", &format!("/api/v1/groups/{group}"), None).await;
    c.hit("delete", "/api/v1/groups/{group}");
    assert_eq!(left.status, 200, "{}", String::from_utf8_lossy(&left.body));

    // Node: peers, stats, dial, block, unblock, leave.
    let peers = a.get("/api/v1/peers").await;
    c.hit("get", "/api/v1/peers");
    assert!(peers.as_array().expect("peers").iter().any(|p| s(&p["peer"]) == bp));
    assert!(a.get("/api/v1/stats").await["posts_sent"].as_u64().expect("posts_sent") >= 2);
    c.hit("get", "/api/v1/stats");
    let b_addr = s(&b.get("/api/v1/node").await["addrs"][0]);
    a.ok("POST", "/api/v1/dial", json!({"addr": b_addr})).await;
    c.hit("post", "/api/v1/dial");
    let bad = a
        .call("POST", "/api/v1/dial", Some(json!({"addr": "not an address"})))
        .await;
    assert_eq!((bad.status, bad.json()["error"].is_string()), (400, true));
    a.ok("PUT", &format!("/api/v1/blocked/{third}"), json!({})).await;
    c.hit("put", "/api/v1/blocked/{peer}");
    let unblocked = a.call("DELETE", &format!("/api/v1/blocked/{third}"), None).await;
    c.hit("delete", "/api/v1/blocked/{peer}");
    assert_eq!(unblocked.status, 200);
    let left = b.call("DELETE", &format!("/api/v1/rooms/{r}"), None).await;
    c.hit("delete", "/api/v1/rooms/{room}");
    assert_eq!(left.json(), json!({"unsent": 0}));
    let url = a.ok("POST", "/api/v1/login-url", json!({})).await;
    c.hit("post", "/api/v1/login-url");
    assert!(s(&url["url"]).starts_with(&format!("http://127.0.0.1:{}/login?code=", a.addr.port())));
    let doc = a.get("/api/v1/openapi.json").await;
    c.hit("get", "/api/v1/openapi.json");
    c.hit("get", "/api/v1/events");
    c.hit("get", "/login");

    // The document lists exactly the routes this test called.
    let mut listed = BTreeSet::new();
    for (path, methods) in doc["paths"].as_object().expect("paths") {
        for method in methods.as_object().expect("methods").keys() {
            listed.insert((method.clone(), path.clone()));
        }
    }
    assert_eq!(listed, c.0, "the OpenAPI document and the routes tested differ");
    b_events.close().await;
    for node in &n {
        node.api.shutdown().await;
    }
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_reconnects_with_its_last_seq_misses_nothing() {
    let (mut lab, n) = nodes(2, |_| {}).await;
    let (a, b) = (&n[0], &n[1]);
    a.ok("POST", "/api/v1/rooms", json!({"room": "lobby"})).await;
    b.ok("POST", "/api/v1/rooms", json!({"room": "lobby"})).await;
    let mut events = a.events(Some(0)).await;
    events
        .until("B in the room", |l| {
            l["type"] == "room_peer_joined" && l["room"] == "lobby"
        })
        .await;

    let mut seen = Vec::new();
    let mut last = 0;
    for i in 0..3 {
        b.ok(
            "POST",
            "/api/v1/rooms/lobby/posts",
            json!({"text": format!("before {i}")}),
        )
        .await;
        let line = events.until("a post", |l| l["type"] == "hallway").await;
        last = line["seq"].as_u64().expect("seq");
        seen.push(s(&line["text"]));
    }
    events.close().await;
    // Posts while the client is away.
    for i in 0..3 {
        b.ok(
            "POST",
            "/api/v1/rooms/lobby/posts",
            json!({"text": format!("away {i}")}),
        )
        .await;
    }
    // Wait until A's node has them (its own stream proves it), then resume.
    let mut probe = a.events(Some(last)).await;
    let mut away = 0;
    while away < 3 {
        if probe.until("a post", |l| l["type"] == "hallway").await["text"]
            .as_str()
            .is_some_and(|t| t.starts_with("away"))
        {
            away += 1;
        }
    }
    probe.close().await;

    let mut resumed = a.events(Some(last)).await;
    let mut expect = last + 1;
    while seen.len() < 6 {
        let line = resumed.next().await.expect("the stream stays open");
        assert_eq!(line["seq"].as_u64(), Some(expect), "numbers follow on: {line}");
        expect += 1;
        if line["type"] == "hallway" {
            seen.push(s(&line["text"]));
        }
    }
    assert_eq!(seen, ["before 0", "before 1", "before 2", "away 0", "away 1", "away 2"]);
    // Live lines keep coming on the resumed stream.
    b.ok("POST", "/api/v1/rooms/lobby/posts", json!({"text": "live"})).await;
    resumed.until("the live post", |l| l["text"] == "live").await;
    resumed.close().await;
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_too_far_behind_is_told_to_reload() {
    let (mut lab, n) = nodes(1, |c| c.replay = 4).await;
    let a = &n[0];
    for i in 0..6 {
        a.ok("POST", "/api/v1/rooms", json!({"room": format!("r{i}")})).await;
    }
    let last = a.get("/api/v1/node").await["seq"].as_u64().expect("seq");
    assert!(last >= 6, "six joins were numbered");
    let mut old = a.events(Some(1)).await;
    let line = old.next().await.expect("a reload line");
    assert_eq!(line["type"], "reload");
    let resume = line["seq"].as_u64().expect("seq");
    assert!(resume >= last);
    assert!(old.next().await.is_none(), "the stream closes after reload");
    // Reconnecting from the reload line's number works.
    let mut fresh = a.events(Some(resume)).await;
    a.ok("POST", "/api/v1/rooms", json!({"room": "after"})).await;
    let line = fresh.until("the join", |l| l["type"] == "joined").await;
    assert_eq!(line["room"], "after");
    assert!(line["seq"].as_u64().expect("seq") > resume);
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_token_or_from_elsewhere_nothing_is_served() {
    let (mut lab, n) = nodes(1, |_| {}).await;
    let a = &n[0];
    let host = a.host();
    let good = format!("Bearer {}", a.token);
    let wrong = format!("Bearer {}", "0".repeat(64));
    for path in [
        "/",
        "/api/v1/node",
        "/api/v1/rooms",
        "/js/main.js",
        "/api/v1/openapi.json",
    ] {
        for auth in [None, Some(wrong.as_str()), Some("Bearer "), Some("Basic x")] {
            let mut headers = vec![("Host", host.as_str())];
            if let Some(auth) = auth {
                headers.push(("Authorization", auth));
            }
            let reply = send(a.addr, "GET", path, &headers, b"").await;
            assert_eq!((reply.status, reply.body.len()), (401, 0), "{path} with {auth:?}");
            assert!(reply.header("set-cookie").is_none());
        }
    }
    // A POST without the token does nothing.
    let reply = send(
        a.addr,
        "POST",
        "/api/v1/rooms",
        &[("Host", &host), ("Content-Type", "application/json")],
        br#"{"room":"sneaky"}"#,
    )
    .await;
    assert_eq!((reply.status, reply.body.len()), (401, 0));
    assert!(a.get("/api/v1/rooms").await.as_array().expect("rooms").is_empty());

    // DNS rebinding: the right token (a page cannot know it, but still) under
    // another name is refused; so is a page from another origin.
    for bad_host in [
        "evil.example:80",
        &format!("evil.example:{}", a.addr.port()),
        "127.0.0.1:1",
    ] {
        let reply = send(
            a.addr,
            "GET",
            "/api/v1/node",
            &[("Host", bad_host), ("Authorization", &good)],
            b"",
        )
        .await;
        assert_eq!((reply.status, reply.body.len()), (403, 0), "Host {bad_host}");
    }
    let reply = send(a.addr, "GET", "/api/v1/node", &[("Authorization", &good)], b"").await;
    assert_eq!(reply.status, 403, "no Host at all");
    for origin in [
        "http://evil.example",
        "null",
        &format!("http://localhost:{}", a.addr.port() + 1),
    ] {
        let reply = send(
            a.addr,
            "GET",
            "/api/v1/node",
            &[("Host", &host), ("Authorization", &good), ("Origin", origin)],
            b"",
        )
        .await;
        assert_eq!((reply.status, reply.body.len()), (403, 0), "Origin {origin}");
    }
    let own = format!("http://127.0.0.1:{}", a.addr.port());
    let reply = send(
        a.addr,
        "GET",
        "/api/v1/node",
        &[("Host", &host), ("Authorization", &good), ("Origin", &own)],
        b"",
    )
    .await;
    assert_eq!(reply.status, 200);

    // The event stream: no token, a wrong Origin, a wrong Host.
    assert!(a.ws("/api/v1/events", &[]).await.is_err(), "no token");
    assert!(
        a.ws(
            "/api/v1/events",
            &[("Authorization", &good), ("Origin", "http://evil.example")]
        )
        .await
        .is_err(),
        "foreign origin"
    );
    assert!(
        a.ws("/api/v1/events", &[("Authorization", &good), ("Origin", &own)])
            .await
            .is_ok(),
        "own origin"
    );

    // The login URL works once and sets an HttpOnly SameSite cookie that
    // then opens everything.
    let url = a.api.login_url().expect("url");
    let path = &url[url.find("/login").expect("path")..];
    let reply = send(a.addr, "GET", path, &[("Host", &host)], b"").await;
    assert_eq!(reply.status, 200);
    let cookie = reply.header("set-cookie").expect("a cookie").to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let pair = cookie.split(';').next().expect("name=value").to_owned();
    let again = send(a.addr, "GET", path, &[("Host", &host)], b"").await;
    assert_eq!(
        (again.status, again.header("set-cookie")),
        (401, None),
        "the code is used up"
    );
    let page = send(a.addr, "GET", "/", &[("Host", &host), ("Cookie", &pair)], b"").await;
    assert_eq!(page.status, 200);
    assert!(String::from_utf8_lossy(&page.body).contains("<script type=\"module\""));
    let csp = page.header("content-security-policy").expect("a CSP");
    assert!(csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"));
    assert!(
        a.ws("/api/v1/events", &[("Cookie", &pair), ("Origin", &own)])
            .await
            .is_ok(),
        "the cookie opens the event stream"
    );
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_rates_and_sockets_are_bounded() {
    let (mut lab, n) = nodes(1, |c| {
        c.max_body = 1024;
        c.max_sockets = 2;
    })
    .await;
    let a = &n[0];
    let host = a.host();
    let auth = format!("Bearer {}", a.token);
    let headers = [
        ("Host", host.as_str()),
        ("Authorization", auth.as_str()),
        ("Content-Type", "application/json"),
    ];
    let big = json!({"room": "x".repeat(2000)}).to_string();
    let reply = send(a.addr, "POST", "/api/v1/rooms", &headers, big.as_bytes()).await;
    assert_eq!(reply.status, 413);
    // Malformed, mistyped and unknown-field bodies are 4xx with a reason.
    for body in ["{", "[]", r#"{"room": 5}"#, r#"{"room": "a", "extra": 1}"#, "\u{0}"] {
        let reply = send(a.addr, "POST", "/api/v1/rooms", &headers, body.as_bytes()).await;
        assert!((400..500).contains(&reply.status), "{body}: {}", reply.status);
        assert!(reply.json()["error"].is_string());
    }
    let reply = send(
        a.addr,
        "POST",
        "/api/v1/rooms",
        &[
            ("Host", &host),
            ("Authorization", &auth),
            ("Content-Type", "text/plain"),
        ],
        br#"{"room":"a"}"#,
    )
    .await;
    assert_eq!(reply.status, 415, "a form post cannot pass for JSON");

    let first = a.events(None).await;
    let second = a.events(None).await;
    let third = a.ws("/api/v1/events", &[("Authorization", &auth)]).await;
    assert!(third.is_err(), "a third stream is refused");
    first.close().await;
    second.close().await;
    lab.shutdown().await;

    let (mut lab, n) = nodes(1, |c| {
        c.burst = 5;
        c.requests_per_second = 1;
    })
    .await;
    let mut statuses = Vec::new();
    for _ in 0..8 {
        statuses.push(n[0].call("GET", "/api/v1/rooms", None).await.status);
    }
    assert_eq!(&statuses[..5], &[200; 5]);
    assert!(statuses[5..].contains(&429), "{statuses:?}");
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_chat_through_their_apis() {
    let (mut lab, n) = nodes(2, |_| {}).await;
    let (a, b) = (&n[0], &n[1]);
    let mut a_events = a.events(None).await;
    let mut b_events = b.events(None).await;
    a.ok("POST", "/api/v1/rooms", json!({"room": "lobby"})).await;
    b.ok("POST", "/api/v1/rooms", json!({"room": "lobby"})).await;
    a_events
        .until("B joins", |l| {
            l["type"] == "room_peer_joined" && l["peer"] == b.peer.to_string().as_str()
        })
        .await;
    let id = s(&a.ok("POST", "/api/v1/rooms/lobby/posts", json!({"text": "hi B"})).await["id"]);
    a_events
        .until("A's own post", |l| l["type"] == "posted" && l["id"] == id.as_str())
        .await;
    let got = b_events.until("A's post", |l| l["type"] == "hallway").await;
    assert_eq!(
        (s(&got["text"]), s(&got["from"]), s(&got["nick"])),
        ("hi B".into(), a.peer.to_string(), "node0".into())
    );
    let dm = s(&b
        .ok("POST", &format!("/api/v1/dms/{}", a.peer), json!({"text": "hi A"}))
        .await["id"]);
    let got = a_events.until("B's DM", |l| l["type"] == "dm").await;
    assert_eq!((s(&got["id"]), got["request"].clone()), (dm.clone(), json!(true)));
    b_events
        .until("delivered", |l| l["type"] == "delivered" && l["id"] == dm.as_str())
        .await;
    let conversation = b.get(&format!("/api/v1/dms/{}", a.peer)).await;
    assert_eq!(conversation["items"][0]["delivery"], json!({"state": "delivered"}));
    a_events.close().await;
    b_events.close().await;
    lab.shutdown().await;
}

/// One request of any shape: the parts a client controls.
fn request() -> impl Strategy<Value = (String, String, Vec<(String, String)>, Vec<u8>)> {
    let method = prop_oneof![
        Just("GET"),
        Just("POST"),
        Just("PUT"),
        Just("DELETE"),
        Just("PATCH"),
        Just("OPTIONS")
    ];
    let segment = prop_oneof![
        Just("api".to_owned()),
        Just("v1".to_owned()),
        Just("rooms".to_owned()),
        Just("dms".to_owned()),
        Just("groups".to_owned()),
        Just("posts".to_owned()),
        Just("ops".to_owned()),
        Just("members".to_owned()),
        Just("events".to_owned()),
        Just("login".to_owned()),
        Just("%00".to_owned()),
        Just("%ZZ".to_owned()),
        Just("12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN".to_owned()),
        "[a-f0-9]{0,70}",
        "[ -~&&[^ /?#]]{0,20}",
    ];
    let path = (prop::collection::vec(segment, 0..6), "(\\?[a-z=&0-9%]{0,30})?")
        .prop_map(|(segments, query)| format!("/{}{query}", segments.join("/")));
    let header = prop_oneof![
        Just(("Content-Type".to_owned(), "application/json".to_owned())),
        Just(("Content-Type".to_owned(), "text/plain".to_owned())),
        Just(("Origin".to_owned(), "http://evil.example".to_owned())),
        Just(("Cookie".to_owned(), "a=b; backchannel_1=x".to_owned())),
        Just(("Upgrade".to_owned(), "websocket".to_owned())),
        Just(("Connection".to_owned(), "Upgrade".to_owned())),
        ("[A-Za-z-]{1,12}", "[ -~]{0,20}"),
    ];
    let body = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..64),
        Just(br#"{"text":"hi"}"#.to_vec()),
        Just(br#"{"room":"lobby"}"#.to_vec()),
        Just(br#"{"kind":"delete","target":"00"}"#.to_vec()),
        Just(br#"{"name":"g","members":["x"]}"#.to_vec()),
        "[ -~]{0,80}".prop_map(String::into_bytes),
    ];
    (method, path, prop::collection::vec(header, 0..3), body).prop_map(|(m, p, h, b)| (m.to_owned(), p, h, b))
}

#[test]
fn any_request_is_answered_without_a_server_error() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let (mut lab, n) = runtime.block_on(nodes(1, |c| {
        c.burst = 100_000;
        c.requests_per_second = 100_000;
    }));
    let a: &ApiNode = &n[0];
    runtime.block_on(a.ok("POST", "/api/v1/rooms", json!({"room": "lobby"})));
    let config = ProptestConfig {
        cases: 200,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    proptest!(config, |((method, path, headers, body) in request(), with_token in any::<bool>())| {
        let host = a.host();
        let auth = format!("Bearer {}", a.token);
        let mut all: Vec<(&str, &str)> = vec![("Host", &host)];
        if with_token {
            all.push(("Authorization", &auth));
        }
        all.extend(headers.iter().map(|(n, v)| (n.as_str(), v.as_str())));
        let reply = runtime.block_on(send(a.addr, &method, &path, &all, &body));
        prop_assert!(reply.status < 500, "{method} {path} {headers:?}: {}", reply.status);
        // Without the token: a bare refusal (400 is the HTTP parser's, for
        // a request line that is not HTTP), except on the login page.
        if !with_token && !path.starts_with("/login") {
            prop_assert!([400, 401, 403].contains(&reply.status), "{method} {path}: {}", reply.status);
            prop_assert!(reply.body.is_empty(), "{method} {path}: a body without the token");
        }
    });
    // The node still works.
    runtime.block_on(async {
        let page = a.get("/api/v1/rooms/lobby/posts").await;
        assert!(page["items"].is_array());
        lab.shutdown().await;
    });
}

/// `ApiConfig` is public; its defaults are the documented ones.
#[test]
fn api_defaults_are_documented_values() {
    let c = ApiConfig::new("/tmp/x");
    assert_eq!((c.port, c.max_body, c.max_sockets, c.replay), (0, 64 * 1024, 16, 4096));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_ui_prints_one_url_that_opens_the_app() {
    use tokio::io::AsyncWriteExt;

    use crate::cli::{Proc, is};
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("a");
    let mut a = Proc::run(&dir, &["--room", "lobby", "--name", "alice", "--ui"]);
    let line = a.wait("the web app's URL", |v| is(v, "web_app")).await;
    let url = s(&line["url"]);
    let rest = url.strip_prefix("http://127.0.0.1:").expect("a loopback URL");
    let (port, path) = rest.split_at(rest.find('/').expect("a path"));
    assert!(path.starts_with("/login?code="), "{url}");
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    assert_eq!(
        std::fs::read_to_string(dir.join("api-addr")).expect("api-addr").trim(),
        addr.to_string()
    );
    let token = std::fs::read_to_string(dir.join("api-token")).expect("api-token");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join("api-token"))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let host = format!("127.0.0.1:{port}");
    let login = send(addr, "GET", path, &[("Host", &host)], b"").await;
    assert_eq!(login.status, 200);
    assert!(login.header("set-cookie").is_some_and(|c| c.contains("HttpOnly")));
    let auth = format!("Bearer {token}");
    let rooms = send(
        addr,
        "GET",
        "/api/v1/rooms",
        &[("Host", &host), ("Authorization", &auth)],
        b"",
    )
    .await;
    assert_eq!(rooms.json()[0]["room"], "lobby");

    let stdin = a.stdin.as_mut().expect("stdin");
    stdin.write_all(b"/quit\n").await.expect("quit");
    a.wait("stopped", |v| is(v, "stopped")).await;
    assert!(!dir.join("api-addr").exists(), "the address file goes with the server");
}

/// The pages the API serves (`Handle::room_page`, which reads a joined
/// room backwards only as far as a page needs) put together are exactly the
/// room's view, with deletes, edits and reactions applied; for a room left
/// too, and an unknown `before` is an unknown message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_pages_put_together_are_the_room_view() {
    use backchannel::{MessageId, NodeError};
    use backchannel::{Reaction, RoomAction};

    let room = crate::support::room("paged");
    let mut lab = crate::support::mesh(2, backchannel::lab::Topology::Full, &room).await;
    let h = lab.nodes[0].handle.clone();
    let mut ids = Vec::new();
    for i in 0..40 {
        ids.push(h.post(&room, &format!("post {i}")).await.expect("post"));
    }
    for i in [0, 13, 14, 39] {
        h.room_op(&room, RoomAction::Delete(ids[i])).await.expect("delete");
    }
    h.room_op(
        &room,
        RoomAction::Edit {
            target: ids[20],
            text: "edited".into(),
        },
    )
    .await
    .expect("edit");
    h.room_op(
        &room,
        RoomAction::React(Reaction {
            target: ids[21],
            emoji: "👍".into(),
            retract: false,
        }),
    )
    .await
    .expect("react");

    async fn pages(h: &backchannel::Handle, room: &backchannel::Room, size: usize) -> Vec<backchannel::RoomPost> {
        let mut all = Vec::new();
        let mut before = None;
        loop {
            let (mut page, more) = h.room_page(room, before, size).await.expect("page");
            assert!(page.len() <= size);
            assert!(!page.is_empty() || all.is_empty());
            before = page.first().map(|p| p.id);
            page.extend(all);
            all = page;
            if !more {
                return all;
            }
        }
    }
    let view = h.room_view(&room, usize::MAX).await.expect("view");
    assert_eq!(view.len(), 36);
    for size in [1, 7, 36, 100] {
        assert_eq!(pages(&h, &room, size).await, view, "pages of {size}");
    }
    let (page, _) = h.room_page(&room, Some(ids[15]), 2).await.expect("page");
    assert_eq!(
        page.iter().map(|p| p.text.as_str()).collect::<Vec<_>>(),
        ["post 11", "post 12"]
    );
    // A deleted post is gone from the log: it marks no place.
    let deleted = h.room_page(&room, Some(ids[14]), 2).await;
    assert!(matches!(deleted, Err(NodeError::UnknownMessage(_))));
    let unknown = h.room_page(&room, Some(MessageId::from_bytes([9; 32])), 5).await;
    assert!(matches!(unknown, Err(NodeError::UnknownMessage(_))));

    h.leave(&room).await.expect("leave");
    assert_eq!(
        pages(&h, &room, 7).await,
        h.room_view(&room, usize::MAX).await.expect("view")
    );
    let (page, _) = h.room_page(&room, Some(ids[15]), 2).await.expect("page of a room left");
    assert_eq!(
        page.iter().map(|p| p.text.as_str()).collect::<Vec<_>>(),
        ["post 11", "post 12"]
    );
    lab.shutdown().await;
}

/// The local API decides nothing itself (docs/ARCHITECTURE.md, "Invariants"):
/// each operation is asked of node B twice, through its `Handle` and through
/// its API, and both answer alike: what the node refuses the API refuses
/// with the node's own error (its text, a status naming its kind), and what
/// the node accepts the API accepts. The API checks only the shape of a
/// request (JSON, ids that parse), never a rule.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_refuses_what_the_node_refuses_and_accepts_what_it_accepts() {
    use std::str::FromStr;

    use backchannel::json_line::Op;
    use backchannel::{
        ChatMode, GroupError, Identity, MessageId, NodeError, PeerId, PostOptions, Reaction, Room, RoomAction,
    };

    let someone = || Identity::generate().peer_id();

    let (mut lab, n) = nodes(2, |_| {}).await;
    let (a, b) = (&n[0], &n[1]);
    let (node_a, node_b) = (lab.nodes[0].handle.clone(), lab.nodes[1].handle.clone());
    let room = node_a.host("stage").await.expect("A hosts");
    let r = enc(room.as_str());
    let mut b_events = b.events(Some(0)).await;
    node_b.join(&room).await.expect("B joins");
    let welcome = node_a.post(&room, "welcome").await.expect("A posts");
    b_events
        .until("A's post at B", |l| {
            l["type"] == "hallway" && l["id"] == welcome.to_string()
        })
        .await;

    // What B may not do: each through the Handle, then through the API.
    let unknown = MessageId::from_str(&"ab".repeat(32)).expect("an id");
    let nowhere = Room::new("nowhere").expect("a room name");
    let crowd: Vec<PeerId> = (0..17).map(|_| someone()).collect();
    let crowd_text: Vec<String> = crowd.iter().map(PeerId::to_string).collect();
    // What, the Handle's answer, and the same request to the API.
    type Case = (&'static str, Result<MessageId, NodeError>, &'static str, String, Value);
    let refused: Vec<Case> = vec![
        (
            "a post to a room B has not joined",
            node_b.post(&nowhere, "hi").await.map_err(NodeError::from),
            "POST",
            "/api/v1/rooms/nowhere/posts".into(),
            json!({"text": "hi"}),
        ),
        (
            "an empty post",
            node_b.post(&room, "").await.map_err(NodeError::from),
            "POST",
            format!("/api/v1/rooms/{r}/posts"),
            json!({"text": ""}),
        ),
        (
            "a post longer than the protocol allows",
            node_b.post(&room, &"x".repeat(5000)).await.map_err(NodeError::from),
            "POST",
            format!("/api/v1/rooms/{r}/posts"),
            json!({"text": "x".repeat(5000)}),
        ),
        (
            "a post mentioning 17",
            node_b
                .post_with(
                    &room,
                    "all of you",
                    PostOptions {
                        mentions: crowd.clone(),
                        ..PostOptions::default()
                    },
                )
                .await
                .map_err(NodeError::from),
            "POST",
            format!("/api/v1/rooms/{r}/posts"),
            json!({"text": "all of you", "mentions": crowd_text}),
        ),
        (
            "a reply to a post the room does not have",
            node_b
                .post_with(
                    &room,
                    "re",
                    PostOptions {
                        reply_to: Some(unknown),
                        ..PostOptions::default()
                    },
                )
                .await
                .map_err(NodeError::from),
            "POST",
            format!("/api/v1/rooms/{r}/posts"),
            json!({"text": "re", "reply_to": unknown.to_string()}),
        ),
        (
            "a listener deleting the host's post",
            node_b
                .room_op(&room, RoomAction::Delete(welcome))
                .await
                .map_err(NodeError::from),
            "POST",
            format!("/api/v1/rooms/{r}/ops"),
            serde_json::to_value(Op::from(&RoomAction::Delete(welcome))).expect("json"),
        ),
        (
            "a listener closing the hallway",
            node_b
                .room_op(&room, RoomAction::Chat(ChatMode::Off))
                .await
                .map_err(NodeError::from),
            "POST",
            format!("/api/v1/rooms/{r}/ops"),
            serde_json::to_value(Op::from(&RoomAction::Chat(ChatMode::Off))).expect("json"),
        ),
        (
            "a reaction that is not an emoji",
            node_b
                .room_op(
                    &room,
                    RoomAction::React(Reaction {
                        target: welcome,
                        emoji: "two words".into(),
                        retract: false,
                    }),
                )
                .await
                .map_err(NodeError::from),
            "POST",
            format!("/api/v1/rooms/{r}/ops"),
            json!({"kind": "react", "target": welcome.to_string(), "emoji": "two words", "retract": false}),
        ),
        (
            "a DM to itself",
            node_b.send_dm(b.peer, "me").await.map_err(NodeError::from),
            "POST",
            format!("/api/v1/dms/{}", b.peer),
            json!({"text": "me"}),
        ),
        (
            "a reaction to a DM B does not have",
            node_b.react_dm(unknown, "👍", false).await.map_err(NodeError::from),
            "POST",
            "/api/v1/dm-reactions".into(),
            json!({"target": unknown.to_string(), "emoji": "👍"}),
        ),
        (
            "a group with an empty name",
            node_b
                .group_create("", vec![a.peer])
                .await
                .map(|_| unknown)
                .map_err(NodeError::from),
            "POST",
            "/api/v1/groups".into(),
            json!({"name": "", "members": [a.peer.to_string()]}),
        ),
    ];
    for (what, by_handle, method, path, body) in refused {
        let error = match by_handle {
            Err(e) => e,
            Ok(id) => panic!("{what}: the node accepted it ({id})"),
        };
        let reply = b.call(method, &path, Some(body)).await;
        let status = match error {
            NodeError::NotJoined(_) | NodeError::UnknownMessage(_) => 404,
            NodeError::NotAllowed { .. } | NodeError::NotModerator(_) => 403,
            _ => 400,
        };
        assert_eq!(reply.status, status, "{what}: {error}");
        assert_eq!(reply.json()["error"], error.to_string(), "{what}");
    }
    // A group too large is refused alike (its text names the group id each
    // attempt draws, so only the kind is compared).
    let many: Vec<PeerId> = (0..70).map(|_| someone()).collect();
    let by_handle = node_b.group_create("big", many.clone()).await;
    assert!(matches!(by_handle, Err(GroupError::GroupTooLarge(_))), "{by_handle:?}");
    let reply = b
        .call(
            "POST",
            "/api/v1/groups",
            Some(json!({"name": "big", "members": many.iter().map(PeerId::to_string).collect::<Vec<_>>()})),
        )
        .await;
    assert_eq!(reply.status, 400);
    assert!(s(&reply.json()["error"]).ends_with("would have too many members"));

    // What B may do, it may do both ways.
    node_b.post(&room, "from the library").await.expect("a post");
    b.ok(
        "POST",
        &format!("/api/v1/rooms/{r}/posts"),
        json!({"text": "from the app"}),
    )
    .await;
    let react = RoomAction::React(Reaction {
        target: welcome,
        emoji: "👍".into(),
        retract: false,
    });
    node_b.room_op(&room, react).await.expect("a reaction");
    b.ok(
        "POST",
        &format!("/api/v1/rooms/{r}/ops"),
        json!({"kind": "react", "target": welcome.to_string(), "emoji": "🎉", "retract": false}),
    )
    .await;
    // A shows both posts and both reactions, whichever way B made them.
    let mut a_events = a.events(Some(0)).await;
    let mut seen = BTreeSet::new();
    while seen.len() < 4 {
        let line = a_events
            .until("B's posts and reactions at A", |l| {
                l["from"] == b.peer.to_string() && (l["type"] == "hallway" || l["type"] == "room_op")
            })
            .await;
        seen.insert(
            line["text"]
                .as_str()
                .or(line["op"]["emoji"].as_str())
                .unwrap_or("?")
                .to_owned(),
        );
    }
    assert_eq!(
        seen,
        BTreeSet::from(["from the library", "from the app", "👍", "🎉"].map(String::from))
    );
    let view = node_a.room(&room);
    let posts = view.view(10).await.expect("A's view");
    let texts: Vec<&str> = posts.iter().map(|p| p.text.as_str()).collect();
    assert!(
        texts.contains(&"from the library") && texts.contains(&"from the app"),
        "{texts:?}"
    );
    let shown = &posts
        .iter()
        .find(|p| p.id == welcome)
        .expect("the welcome post")
        .reactions;
    assert_eq!(shown.len(), 2, "{shown:?}");
    lab.shutdown().await;
}
