//! The web app in a real headless Chromium, driven through WebDriver: two
//! nodes on loopback, each with its API, each with a browser logged in
//! through its one-time URL. What is checked is what a person sees.
//!
//! With `BACKCHANNEL_SCREENSHOTS=DIR` the tests also save screenshots of the
//! main views there (docs/screenshots/ holds the committed ones).

use std::path::PathBuf;

use serde_json::json;

use crate::support::api::{ApiNode, nodes};
use crate::support::webdriver::{Browser, Driver};

/// Logs a browser in with a fresh one-time URL of `node`.
async fn open(driver: &Driver, node: &ApiNode, profile: &tempfile::TempDir, width: u32, height: u32) -> Browser {
    let browser = driver.browser(profile.path(), width, height).await;
    browser.goto(&node.api.login_url().expect("login url")).await;
    browser.ready().await;
    browser
}

/// True once a post whose text contains `text` is on the page.
fn shows(text: &str) -> String {
    format!("return [...document.querySelectorAll('.post .text')].some(e => e.textContent.includes({text:?}))")
}

async fn shot(browser: &Browser, name: &str) {
    if let Some(dir) = std::env::var_os("BACKCHANNEL_SCREENSHOTS") {
        let dir = PathBuf::from(dir);
        std::fs::create_dir_all(&dir).expect("screenshot dir");
        std::fs::write(dir.join(format!("{name}.png")), browser.screenshot().await).expect("screenshot");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_pages_chat_a_dm_turns_delivered_a_request_is_accepted_and_a_reload_keeps_the_view() {
    let (mut lab, n) = nodes(2, |_| {}).await;
    let (a, b) = (&n[0], &n[1]);
    let driver = Driver::start().await;
    let (pa, pb) = (tempfile::tempdir().expect("dir"), tempfile::tempdir().expect("dir"));
    let page_a = open(&driver, a, &pa, 1280, 800).await;
    let page_b = open(&driver, b, &pb, 1280, 800).await;

    // Both join the lobby through the join form.
    for page in [&page_a, &page_b] {
        page.type_into("#join-room", "lobby").await;
        page.click("#join-form button[type=submit]").await;
        page.wait(
            "the lobby to open",
            "return location.hash === '#/room/lobby' && !!document.querySelector('#text')",
        )
        .await;
    }
    page_a
        .wait(
            "B in A's who list",
            "return document.querySelector('#aside').textContent.includes('node1')",
        )
        .await;

    // Every control on the page has a name a screen reader can say.
    let unlabelled = page_a
        .js(
            "return [...document.querySelectorAll('input, textarea, select, button')]
               .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label') && !e.textContent.trim())
               .map(e => e.outerHTML)",
            json!([]),
        )
        .await;
    assert_eq!(unlabelled, json!([]), "controls without a label");

    // A posts from the keyboard (Enter sends); it appears on B's page.
    page_a.type_into("#text", "hello from A\u{E007}").await;
    page_b.wait("A's post on B's page", &shows("hello from A")).await;
    page_a.wait("A's post on A's page", &shows("hello from A")).await;

    // A opens a conversation with B and sends a DM: it turns delivered.
    page_a.type_into("#dm-peer", &b.peer.to_string()).await;
    page_a.click("#dm-form button[type=submit]").await;
    page_a
        .wait("the conversation", "return location.hash.startsWith('#/dm/')")
        .await;
    page_a.type_into("#text", "psst, B").await;
    page_a.click("#send").await;
    page_a
        .wait(
            "the DM delivered",
            "return [...document.querySelectorAll('.delivery')].some(d => d.dataset.state === 'delivered')",
        )
        .await;
    shot(&page_a, "dm").await;

    // On B's page A is a message request, with an unread count; B accepts it.
    page_b
        .wait(
            "the request in B's inbox",
            "return document.querySelector('#requests').textContent.includes('node0')",
        )
        .await;
    page_b
        .wait(
            "an unread count for the conversation",
            "return !!document.querySelector('#requests .badge, #dms .badge')",
        )
        .await;
    shot(&page_b, "requests").await;
    page_b.click("#requests button").await;
    page_b
        .wait(
            "A among B's contacts, the inbox empty",
            "return document.querySelector('#contacts').textContent.includes('node0') \
             && document.querySelectorAll('#requests li').length === 0",
        )
        .await;
    assert_eq!(b.get("/api/v1/requests").await, json!([]));

    // B opens the conversation, then reloads: the same view comes back.
    page_b.click("#contacts a").await;
    page_b.wait("B's view of the DM", &shows("psst, B")).await;
    page_b.reload().await;
    page_b.ready().await;
    page_b.wait("the DM after a reload", &shows("psst, B")).await;
    let hash = page_b.js("return location.hash", json!([])).await;
    assert_eq!(hash, json!(format!("#/dm/{}", a.peer)));

    // A phone-width view of the room.
    page_b
        .goto(&format!("http://127.0.0.1:{}/#/room/lobby", b.addr.port()))
        .await;
    page_b.ready().await;
    page_b.resize(390, 844).await;
    page_b.wait("the lobby at phone width", &shows("hello from A")).await;
    shot(&page_b, "phone").await;

    page_a.quit().await;
    page_b.quit().await;
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_makes_a_moderator_who_deletes_a_post_and_it_disappears_on_both_pages() {
    let (mut lab, n) = nodes(2, |_| {}).await;
    let (a, b) = (&n[0], &n[1]);
    let driver = Driver::start().await;
    let (pa, pb) = (tempfile::tempdir().expect("dir"), tempfile::tempdir().expect("dir"));
    let page_a = open(&driver, a, &pa, 1280, 800).await;
    let page_b = open(&driver, b, &pb, 1280, 800).await;

    // A hosts "stage" from the form; B joins it by its id.
    page_a.type_into("#join-room", "stage").await;
    page_a.click("#host-btn").await;
    let hash = page_a
        .wait(
            "the hosted room",
            "return location.hash.startsWith('#/room/stage') && location.hash",
        )
        .await;
    let room = urlencoding_decode(hash.as_str().expect("hash").trim_start_matches("#/room/"));
    page_b.type_into("#join-room", &room).await;
    page_b.click("#join-form button[type=submit]").await;
    page_b
        .wait("B in the room", "return !!document.querySelector('#text')")
        .await;

    // A sees B and makes B a moderator.
    let select = format!("select[data-peer='{}']", b.peer);
    page_a
        .wait(
            "B in A's who list",
            &format!("return !!document.querySelector(\"{select}\")"),
        )
        .await;
    page_a.click(&format!("{select} option[value=moderator]")).await;
    page_b
        .wait(
            "B sees its new role",
            "return document.querySelector('.head').textContent.includes('you: moderator')",
        )
        .await;

    // A posts something B removes.
    page_a.type_into("#text", "buy cheap watches").await;
    page_a.click("#send").await;
    page_b.wait("the post at B", &shows("buy cheap watches")).await;

    // A question to the stage, a reply that mentions its asker, a reaction:
    // each shows on the pages as it should.
    let r = room.replace('~', "%7E");
    let question = b
        .ok(
            "POST",
            &format!("/api/v1/rooms/{r}/posts"),
            json!({"text": "When does the Q&A start?", "question": true}),
        )
        .await["id"]
        .clone();
    page_a
        .wait(
            "the question in A's queue",
            "return document.querySelector('#aside').textContent.includes('Questions (1)')",
        )
        .await;
    let answer = a
        .ok(
            "POST",
            &format!("/api/v1/rooms/{r}/posts"),
            json!({"text": "@node1 right after this song", "reply_to": question, "mentions": [b.peer.to_string()]}),
        )
        .await["id"]
        .clone();
    page_b
        .wait(
            "the reply, quoting the question and mentioning B",
            "return [...document.querySelectorAll('.post.mentions-me .quote')].some(q => q.textContent.includes('When does'))",
        )
        .await;
    b.ok(
        "POST",
        &format!("/api/v1/rooms/{r}/ops"),
        json!({"kind": "react", "target": answer, "emoji": "👍", "retract": false}),
    )
    .await;
    page_a
        .wait(
            "B's reaction on A's page",
            "return [...document.querySelectorAll('.reaction')].some(r => r.textContent.includes('👍 1'))",
        )
        .await;
    shot(&page_a, "moderation").await;
    shot(&page_b, "room").await;
    page_b
        .js(
            "const post = [...document.querySelectorAll('.post')].find(p => p.textContent.includes('buy cheap watches'));
             post.querySelector('button.danger').click();",
            json!([]),
        )
        .await;
    let gone = format!("return !({})", &shows("buy cheap watches")["return ".len()..]);
    page_b.wait("the post gone at B", &gone).await;
    page_a.wait("the post gone at A", &gone).await;
    let posts = a
        .get(&format!("/api/v1/rooms/{}/posts", room.replace('~', "%7E")))
        .await;
    assert!(
        posts["items"]
            .as_array()
            .expect("items")
            .iter()
            .all(|p| p["text"] != "buy cheap watches")
    );

    page_a.quit().await;
    page_b.quit().await;
    lab.shutdown().await;
}

fn urlencoding_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).expect("utf-8")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_made_on_one_page_carries_a_message_to_the_other() {
    let (mut lab, n) = nodes(2, |_| {}).await;
    let (a, b) = (&n[0], &n[1]);
    let driver = Driver::start().await;
    let (pa, pb) = (tempfile::tempdir().expect("dir"), tempfile::tempdir().expect("dir"));
    let page_a = open(&driver, a, &pa, 1280, 800).await;
    let page_b = open(&driver, b, &pb, 1280, 800).await;

    page_a.type_into("#group-name", "crew").await;
    page_a.type_into("#group-members", &b.peer.to_string()).await;
    page_a.click("#group-form button[type=submit]").await;
    page_a
        .wait("the new group's view", "return location.hash.startsWith('#/group/')")
        .await;
    page_a.type_into("#text", "hi crew\u{E007}").await;
    page_a.wait("the message on A's page", &shows("hi crew")).await;

    // B learns of the group and its message: listed, with an unread count.
    page_b
        .wait(
            "the group with one unread on B's page",
            "const a = [...document.querySelectorAll('#groups a')].find(a => a.textContent.includes('crew'));
             return a && a.querySelector('.badge') && a.querySelector('.badge').textContent === '1'",
        )
        .await;
    page_b.click("#groups a").await;
    page_b.wait("the message on B's page", &shows("hi crew")).await;
    page_b
        .wait(
            "the unread count gone once read",
            "return !document.querySelector('#groups .badge')",
        )
        .await;
    let members = page_b
        .js("return document.querySelector('#aside').textContent", json!([]))
        .await;
    assert!(members.as_str().expect("text").contains("moderator"), "{members}");

    page_a.quit().await;
    page_b.quit().await;
    lab.shutdown().await;
}
