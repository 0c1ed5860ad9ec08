//! A minimal WebDriver client (W3C protocol over HTTP) driving Debian's
//! headless Chromium through `chromedriver`. Small on purpose: the few
//! commands the browser tests use, over the HTTP client in `http.rs`, so
//! the tests add no crate to build.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use super::T;
use super::http::send;

/// The key W3C WebDriver gives element references under.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A running chromedriver.
pub struct Driver {
    addr: SocketAddr,
    _child: Child,
}

fn find_program(names: &[&str]) -> Option<String> {
    let path = std::env::var_os("PATH")?;
    for dir in std::env::split_paths(&path) {
        for name in names {
            if dir.join(name).is_file() {
                return Some(dir.join(name).display().to_string());
            }
        }
    }
    None
}

impl Driver {
    /// Starts chromedriver on a free loopback port. Fails, saying what to
    /// install, when Chromium or its driver is missing: browser tests are
    /// never skipped.
    pub async fn start() -> Driver {
        let driver = find_program(&["chromedriver"]).unwrap_or_else(|| {
            panic!(
                "the browser tests need chromedriver and chromium on PATH: \
                 apt-get install chromium chromium-driver (.ci/run installs them)"
            )
        });
        assert!(
            find_program(&["chromium", "chromium-browser"]).is_some(),
            "the browser tests need chromium on PATH: apt-get install chromium chromium-driver (.ci/run installs them)"
        );
        let port = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
            probe.local_addr().expect("addr").port()
        };
        let mut child = Command::new(driver)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("chromedriver starts");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        tokio::time::timeout(T, async {
            while let Some(line) = lines.next_line().await.expect("chromedriver output") {
                if line.contains("started successfully") {
                    return;
                }
            }
            panic!("chromedriver exited before it was ready");
        })
        .await
        .expect("chromedriver ready in time");
        // Keep draining its output so it never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Driver {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            _child: child,
        }
    }

    /// A new browser (its own profile, so its own cookies) of this size.
    pub async fn browser(&self, profile: &Path, width: u32, height: u32) -> Browser {
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": find_program(&["chromium", "chromium-browser"]).expect("chromium"),
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--no-first-run", "--disable-extensions", "--disable-background-networking",
                    format!("--window-size={width},{height}"),
                    format!("--user-data-dir={}", profile.display()),
                ],
            },
        }}});
        let reply = call(self.addr, "POST", "/session", Some(caps)).await;
        let session = reply["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {reply}"))
            .to_owned();
        let browser = Browser {
            addr: self.addr,
            session,
        };
        // A little under the HTTP client's own limit, so a wait that fails says so.
        let ms = T.as_millis() as u64 - 2000;
        browser
            .cmd("POST", "/timeouts", Some(json!({"script": ms, "pageLoad": ms})))
            .await;
        browser
    }
}

async fn call(addr: SocketAddr, method: &str, path: &str, body: Option<Value>) -> Value {
    let (status, value) = try_call(addr, method, path, body).await;
    assert!(status == 200, "WebDriver {method} {path}: {status} {value}");
    value["value"].clone()
}

/// A WebDriver command: the status and the whole answer.
async fn try_call(addr: SocketAddr, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let host = addr.to_string();
    let mut headers = vec![("Host", host.as_str())];
    if !body.is_empty() {
        headers.push(("Content-Type", "application/json"));
    }
    let reply = send(addr, method, path, &headers, body.as_bytes()).await;
    (reply.status, reply.json())
}

/// One browser session.
pub struct Browser {
    addr: SocketAddr,
    session: String,
}

impl Browser {
    async fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        call(self.addr, method, &format!("/session/{}{path}", self.session), body).await
    }

    /// Opens a URL.
    pub async fn goto(&self, url: &str) {
        self.cmd("POST", "/url", Some(json!({ "url": url }))).await;
    }

    /// Reloads the page.
    pub async fn reload(&self) {
        self.cmd("POST", "/refresh", Some(json!({}))).await;
    }

    /// Runs a script (its `return` value comes back).
    pub async fn js(&self, script: &str, args: Value) -> Value {
        self.cmd("POST", "/execute/sync", Some(json!({ "script": script, "args": args })))
            .await
    }

    /// The element a CSS selector finds first.
    pub async fn find(&self, css: &str) -> String {
        let found = self
            .cmd("POST", "/element", Some(json!({"using": "css selector", "value": css})))
            .await;
        found[ELEMENT].as_str().expect("an element").to_owned()
    }

    /// Clicks what `css` finds (once it is there). The app redraws lists
    /// when events arrive, so an element found may be replaced before the
    /// click lands; then it is found again.
    pub async fn click(&self, css: &str) {
        for _ in 0..50 {
            self.wait(
                &format!("{css} to show"),
                &format!("return !!document.querySelector({css:?})"),
            )
            .await;
            let el = self.find(css).await;
            let path = format!("/session/{}/element/{el}/click", self.session);
            let (status, value) = try_call(self.addr, "POST", &path, Some(json!({}))).await;
            match status {
                200 => return,
                404 if value["value"]["error"] == "stale element reference" => continue,
                _ => panic!("WebDriver click {css}: {status} {value}"),
            }
        }
        panic!("{css} kept being replaced before it could be clicked");
    }

    /// Types into what `css` finds (once it is there).
    pub async fn type_into(&self, css: &str, text: &str) {
        self.wait(
            &format!("{css} to show"),
            &format!("return !!document.querySelector({css:?})"),
        )
        .await;
        let el = self.find(css).await;
        self.cmd("POST", &format!("/element/{el}/value"), Some(json!({ "text": text })))
            .await;
    }

    /// Waits until `script` returns a truthy value, and returns it. The
    /// check runs in the page on every change of the document (a
    /// MutationObserver), so the wait ends when the page changes, not at
    /// the next poll; WebDriver's script timeout ([`T`]) bounds it.
    pub async fn wait(&self, what: &str, script: &str) -> Value {
        let waiter = format!(
            "const done = arguments[arguments.length - 1];
             const check = () => {{ try {{ return (function () {{ {script} }})(); }} catch (e) {{ return null; }} }};
             const now = check();
             if (now) {{ done(now); return; }}
             const obs = new MutationObserver(() => {{ const v = check(); if (v) {{ obs.disconnect(); done(v); }} }});
             obs.observe(document, {{ subtree: true, childList: true, attributes: true, characterData: true }});"
        );
        let body = json!({ "script": waiter, "args": [] });
        let path = format!("/session/{}/execute/async", self.session);
        let host = self.addr.to_string();
        let text = body.to_string();
        let reply = send(
            self.addr,
            "POST",
            &path,
            &[("Host", &host), ("Content-Type", "application/json")],
            text.as_bytes(),
        )
        .await;
        assert_eq!(reply.status, 200, "timed out waiting for {what}: {}", reply.json());
        reply.json()["value"].clone()
    }

    /// Waits until the app has loaded (after a login or a reload).
    pub async fn ready(&self) {
        self.wait(
            "the app to load",
            "return document.documentElement.dataset.ready === 'true'",
        )
        .await;
    }

    /// Resizes the window.
    pub async fn resize(&self, width: u32, height: u32) {
        self.cmd("POST", "/window/rect", Some(json!({"width": width, "height": height})))
            .await;
    }

    /// A PNG of the viewport.
    pub async fn screenshot(&self) -> Vec<u8> {
        let b64 = self.cmd("GET", "/screenshot", None).await;
        decode_base64(b64.as_str().expect("base64"))
    }

    /// Ends the session (the browser quits).
    pub async fn quit(self) {
        call(self.addr, "DELETE", &format!("/session/{}", self.session), None).await;
    }
}

fn decode_base64(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {c}"),
    };
    let bytes: Vec<u8> = text
        .bytes()
        .filter(|c| *c != b'=' && !c.is_ascii_whitespace())
        .collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let v: Vec<u32> = chunk.iter().map(|&c| u32::from(value(c))).collect();
        let n = v.iter().enumerate().fold(0u32, |acc, (i, x)| acc | (x << (18 - 6 * i)));
        for i in 0..chunk.len().saturating_sub(1) {
            out.push((n >> (16 - 8 * i)) as u8);
        }
    }
    out
}
