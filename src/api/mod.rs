//! The local API and the web app: HTTP for commands and queries, a
//! WebSocket for live events, and the web app's files, served by the node's
//! own process on loopback (docs/API.md).
//!
//! ```text
//!  browser / program ──HTTP, WS (127.0.0.1 only)──▶ access (rate, Host, Origin, token)
//!                                                        │
//!                      routes ──Handle (the CLI's calls)─┼──▶ EventLoop
//!                      /api/v1/events ◀── EventLog ◀─────┴── node events + the API's answers
//! ```
//!
//! - `access`: the token file, login codes, Host and Origin checks, rate;
//! - `events`: the numbered [`JsonLine`]s, kept for replay;
//! - `routes`: one handler per operation, each a call on the [`Handle`];
//! - `transcript`: the log as `backchannel history` prints it, which the CLI
//!   asks a running node for;
//! - `assets`: the web app, embedded in the binary.
//!
//! The API holds no node state of its own: whoever runs the node feeds its
//! events to [`Api::publish_event`] (the CLI's printer task does).

mod access;
mod assets;
mod events;
mod routes;
mod transcript;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;

pub use access::{TOKEN_FILE, read_token};
pub use events::EventLog;
pub use transcript::{ConversationLines, RoomLines, Transcript};

use crate::{Event, Handle, JsonLine, PeerId};

/// The file in the data directory that holds the API's address while it runs.
pub const ADDR_FILE: &str = "api-addr";

/// How the API is set up. The defaults suit one person and their scripts.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Where the token file (and the address file) live: the node's data directory.
    pub data_dir: PathBuf,
    /// The port on 127.0.0.1; 0 picks a free one.
    pub port: u16,
    /// The node's display name, as the web app shows it.
    pub nick: Option<String>,
    /// Largest request body accepted: 64 KiB, far above any text the
    /// protocol allows (a group of 15 peer ids is under 1 KiB).
    pub max_body: usize,
    /// Requests per second, all clients together, after a burst of
    /// `burst`: 100. Opening a room is about ten requests, so a person
    /// clicking around never meets the limit; a runaway script does.
    pub requests_per_second: u32,
    /// See `requests_per_second`: 400, a few tabs loading at once.
    pub burst: u32,
    /// WebSocket clients at once: 16 (a few tabs and scripts); each costs
    /// about 135 KB of the node's memory (docs/PERFORMANCE.md).
    pub max_sockets: usize,
    /// Event lines kept for clients that reconnect: 4096, minutes of a busy
    /// room; a hallway line is about 400 bytes, so under 2 MB.
    pub replay: usize,
    /// Lines a live client may fall behind before it is told to reload:
    /// 1024, a burst of many seconds of a busy room.
    pub lag: usize,
}

impl ApiConfig {
    /// The defaults, with the node's data directory.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            port: 0,
            nick: None,
            max_body: 64 * 1024,
            requests_per_second: 100,
            burst: 400,
            max_sockets: 16,
            replay: 4096,
            lag: 1024,
        }
    }
}

/// What the handlers share.
pub(crate) struct Shared {
    handle: Handle,
    me: PeerId,
    nick: Option<String>,
    port: u16,
    token: String,
    cookie: String,
    codes: access::LoginCodes,
    rate: access::RateLimit,
    sockets: Arc<Semaphore>,
    max_body: usize,
    events: EventLog,
    closing: watch::Receiver<bool>,
}

type AppState = Arc<Shared>;

/// A running API server.
pub struct Api {
    shared: AppState,
    addr: SocketAddr,
    close: watch::Sender<bool>,
    task: tokio::sync::Mutex<Option<JoinHandle<()>>>,
    addr_file: PathBuf,
}

/// Why the API could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// The token file could not be read or created, or the port not bound.
    #[error("local API: {0}")]
    Io(#[from] std::io::Error),
}

impl Api {
    /// Binds 127.0.0.1:`config.port` and serves the API for `handle` on the
    /// current tokio runtime (the node's). Creates the token file if needed.
    pub async fn start(handle: Handle, config: ApiConfig) -> Result<Api, ApiError> {
        let token = access::load_or_create_token(&config.data_dir)?;
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, config.port)).await?;
        let addr = listener.local_addr()?;
        let (close, closing) = watch::channel(false);
        let shared = Arc::new(Shared {
            me: handle.peer_id(),
            handle,
            nick: config.nick.clone(),
            port: addr.port(),
            cookie: access::cookie_name(addr.port()),
            token,
            codes: access::LoginCodes::default(),
            rate: access::RateLimit::new(config.requests_per_second, config.burst),
            sockets: Arc::new(Semaphore::new(config.max_sockets)),
            max_body: config.max_body,
            events: EventLog::new(config.replay, config.lag),
            closing: closing.clone(),
        });
        let app = router(shared.clone(), config.max_body);
        let mut stop = closing;
        let task = tokio::spawn(async move {
            let shutdown = async move {
                let _ = stop.wait_for(|closed| *closed).await;
            };
            if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(shutdown).await {
                tracing::warn!("local API stopped: {e}");
            }
        });
        // Written whole and then renamed into place, so a program reading it
        // (`backchannel history`) never sees half an address.
        let addr_file = config.data_dir.join(ADDR_FILE);
        let partial = config.data_dir.join(format!("{ADDR_FILE}.partial"));
        std::fs::write(&partial, format!("{addr}\n"))?;
        std::fs::rename(&partial, &addr_file)?;
        Ok(Api {
            shared,
            addr,
            close,
            task: tokio::sync::Mutex::new(Some(task)),
            addr_file,
        })
    }

    /// The address served (127.0.0.1 and a port).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The token programs send as `Authorization: Bearer TOKEN`.
    pub fn token(&self) -> &str {
        &self.shared.token
    }

    /// A URL that opens the web app logged in, once: its code is used up by
    /// the first visit, which sets the cookie.
    pub fn login_url(&self) -> Result<String, ApiError> {
        Ok(self.shared.login_url(self.addr)?)
    }

    /// Numbers and streams a node event (those `run --json` prints).
    pub fn publish_event(&self, event: &Event) {
        if let Some(line) = JsonLine::from_event(event, Some(self.shared.me)) {
            self.shared.events.publish(&line);
        }
    }

    /// Numbers and streams any line, e.g. an answer another front end gave.
    pub fn publish(&self, line: &JsonLine) -> u64 {
        self.shared.events.publish(line)
    }

    /// Bytes of event lines held for replay.
    pub fn replay_bytes(&self) -> usize {
        self.shared.events.replay_bytes()
    }

    /// Stops serving: open WebSockets close, the address file goes. Safe
    /// to call more than once.
    pub async fn shutdown(&self) {
        let _ = self.close.send(true);
        let _ = std::fs::remove_file(&self.addr_file);
        if let Some(task) = self.task.lock().await.take() {
            let _ = task.await;
        }
    }
}

impl Shared {
    fn login_url(&self, addr: SocketAddr) -> std::io::Result<String> {
        let code = self.codes.mint()?;
        Ok(format!("http://{addr}/login?code={code}"))
    }
}

fn router(shared: AppState, max_body: usize) -> Router {
    routes::routes()
        .merge(assets::routes())
        .layer(middleware::from_fn_with_state(shared.clone(), guard))
        // The guard reads bodies up to the same bound; this one stops the
        // extractors from applying a different default.
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(shared)
}

/// Every request passes here first: rate, Host, Origin, then the token
/// (the login page takes a one-time code instead). The body is read here,
/// whole and bounded, before anything answers: a refusal sent while the
/// client is still sending would reach it as a reset connection, not as
/// the refusal.
async fn guard(State(s): State<AppState>, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let headers = &parts.headers;
    let refusal = if !s.rate.allow() {
        Some(StatusCode::TOO_MANY_REQUESTS)
    } else if !access::host_ok(headers, s.port) || !access::origin_ok(headers, s.port) {
        Some(StatusCode::FORBIDDEN)
    } else if parts.uri.path() != "/login"
        && !access::presented_token(headers, &s.cookie).is_some_and(|t| access::same_secret(&t, &s.token))
    {
        Some(StatusCode::UNAUTHORIZED)
    } else {
        None
    };
    let body = axum::body::to_bytes(body, s.max_body).await;
    if let Some(status) = refusal {
        return bare(status);
    }
    let Ok(body) = body else {
        return bare(StatusCode::PAYLOAD_TOO_LARGE);
    };
    let mut response = next.run(Request::from_parts(parts, axum::body::Body::from(body))).await;
    let h = response.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        ),
    );
    response
}

/// A status and nothing else.
fn bare(status: StatusCode) -> Response {
    status.into_response()
}
