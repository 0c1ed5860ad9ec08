//! One handler per operation of the local API, each a call on the node's
//! [`Handle`](crate::Handle) (the calls the CLI's `/commands` make). Requests name peers,
//! rooms, groups and messages by their full ids; every part of a request is
//! parsed here, and anything malformed is a 4xx with a JSON `{"error": …}`.
//!
//! What a handler does that the node does not announce as an event (a post,
//! a DM, a room operation, a join) is published on the event stream as the
//! `run --json` answer line, so every open page sees it.

use std::str::FromStr;

use axum::Router;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequest, FromRequestParts, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::AppState;
use super::events::Subscription;
use super::transcript::Transcript;
use crate::id::as_text;
use crate::json_line::{Contact, History, Op, OutboxRow};
use crate::node::{
    DialFailure, DmError, GroupEdit, GroupError, HistoryQuery, JoinError, LogRooms, NodeError, PostError, PostOptions,
    RoomOpError,
};
use crate::room::RoomAction;
use crate::{GroupId, JsonLine, MessageId, Multiaddr, PeerId, Room};

/// Posts or messages per page when the request does not say.
const DEFAULT_PAGE: usize = 50;
/// Posts per room and messages per conversation in `/history` when the
/// request does not say: `backchannel history`'s default.
const DEFAULT_HISTORY: usize = 1000;
/// The largest page served.
const MAX_PAGE: usize = 500;

/// The API's routes (under /api/v1) and the login page.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/login", get(login))
        .route("/api/v1/openapi.json", get(openapi))
        .route("/api/v1/login-url", post(login_url))
        .route("/api/v1/events", get(events))
        .route("/api/v1/node", get(node))
        .route("/api/v1/peers", get(peers))
        .route("/api/v1/dial", post(dial))
        .route("/api/v1/stats", get(stats))
        .route("/api/v1/rooms", get(rooms).post(join))
        .route("/api/v1/hosted", post(host))
        .route("/api/v1/rooms/{room}", delete(leave))
        .route("/api/v1/rooms/{room}/posts", get(room_posts).post(room_post))
        .route("/api/v1/rooms/{room}/ops", post(room_op))
        .route("/api/v1/rooms/{room}/who", get(who))
        .route("/api/v1/rooms/{room}/rules", get(rules))
        .route("/api/v1/rooms/{room}/questions", get(questions))
        .route("/api/v1/rooms/{room}/sync", post(sync))
        .route("/api/v1/history", get(history))
        .route("/api/v1/dms/{peer}", get(dm_history).post(dm_send))
        .route("/api/v1/dm-reactions", post(dm_react))
        .route("/api/v1/outbox", get(outbox))
        .route("/api/v1/contacts", get(contacts))
        .route("/api/v1/contacts/{peer}", put(set_contact))
        .route("/api/v1/requests", get(requests))
        .route("/api/v1/requests/setting", put(requests_setting))
        .route("/api/v1/requests/{peer}/decline", post(decline))
        .route("/api/v1/blocked/{peer}", put(block).delete(unblock))
        .route("/api/v1/groups", get(groups).post(group_create))
        .route("/api/v1/groups/{group}", delete(group_leave))
        .route("/api/v1/groups/{group}/name", put(group_rename))
        .route(
            "/api/v1/groups/{group}/members/{peer}",
            put(group_add).delete(group_remove),
        )
        .route("/api/v1/groups/{group}/messages", get(group_history).post(group_send))
}

// ---- errors and extractors ---------------------------------------------------

/// A refused request: a status and `{"error": message}`.
pub struct Problem(StatusCode, String);

impl Problem {
    fn bad(message: impl Into<String>) -> Self {
        Problem(StatusCode::BAD_REQUEST, message.into())
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        (self.0, axum::Json(json!({ "error": self.1 }))).into_response()
    }
}

impl From<NodeError> for Problem {
    fn from(e: NodeError) -> Self {
        use NodeError as E;
        let status = match &e {
            // The node is out of room for another dial now; the request
            // itself is fine and may succeed later.
            E::Stopped
            | E::Dial {
                reason: DialFailure::ConnectionLimit,
                ..
            } => StatusCode::SERVICE_UNAVAILABLE,
            E::InvalidText
            | E::InvalidNick
            | E::InvalidPeer(_)
            | E::InvalidGroupName
            | E::InvalidEmoji
            | E::TooManyMentions
            | E::InvalidRoom(_)
            | E::GroupTooLarge(_)
            | E::NotARequest(_)
            | E::Dial { .. } => StatusCode::BAD_REQUEST,
            E::NotJoined(_) | E::UnknownGroup(_) | E::UnknownMessage(_) => StatusCode::NOT_FOUND,
            E::NotModerator(_) | E::NotMember(_) | E::NotAllowed { .. } => StatusCode::FORBIDDEN,
            E::OutboxFull(_) | E::Backlog(..) => StatusCode::TOO_MANY_REQUESTS,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Problem(status, e.to_string())
    }
}

/// An operation family's error answers as the [`NodeError`] it converts
/// into: one status mapping for every operation.
macro_rules! problem_via_node_error {
    ($($family:ty),+) => {
        $(
            impl From<$family> for Problem {
                fn from(e: $family) -> Self {
                    NodeError::from(e).into()
                }
            }
        )+
    };
}

problem_via_node_error!(JoinError, PostError, RoomOpError, DmError, GroupError);

type Answer<T> = Result<axum::Json<T>, Problem>;

fn ok<T>(value: T) -> Answer<T> {
    Ok(axum::Json(value))
}

/// A JSON body; a malformed, oversize or mistyped one is a [`Problem`].
pub struct Body<T>(T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Problem> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(Body(value)),
            Err(rejection) => Err(Problem(rejection.status(), rejection.body_text())),
        }
    }
}

/// The path's parameters, each parsed to its type ([`Param`]).
pub struct Path<T>(T);

impl<S: Send + Sync, T: FromPath> FromRequestParts<S> for Path<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        let axum::extract::Path(raw) = axum::extract::Path::<Vec<String>>::from_request_parts(parts, state)
            .await
            .map_err(|e| Problem::bad(e.body_text()))?;
        T::from_path(&raw).map(Path)
    }
}

/// Types made from a path's parameters.
pub trait FromPath: Sized {
    /// Parses the parameters, in path order.
    fn from_path(raw: &[String]) -> Result<Self, Problem>;
}

/// One path parameter: a room, a peer, a group or a message id.
pub trait Param: Sized {
    /// Parses one parameter.
    fn param(raw: &str) -> Result<Self, Problem>;
}

impl Param for Room {
    fn param(raw: &str) -> Result<Self, Problem> {
        Room::new(raw).map_err(|e| Problem::bad(e.to_string()))
    }
}

impl Param for PeerId {
    fn param(raw: &str) -> Result<Self, Problem> {
        parse_peer(raw)
    }
}

impl Param for GroupId {
    fn param(raw: &str) -> Result<Self, Problem> {
        GroupId::from_str(raw).map_err(|_| Problem::bad("a group id is 64 hex digits"))
    }
}

impl<A: Param> FromPath for A {
    fn from_path(raw: &[String]) -> Result<Self, Problem> {
        match raw {
            [a] => A::param(a),
            _ => Err(Problem::bad("wrong path")),
        }
    }
}

impl<A: Param, B: Param> FromPath for (A, B) {
    fn from_path(raw: &[String]) -> Result<Self, Problem> {
        match raw {
            [a, b] => Ok((A::param(a)?, B::param(b)?)),
            _ => Err(Problem::bad("wrong path")),
        }
    }
}

fn parse_peer(raw: &str) -> Result<PeerId, Problem> {
    PeerId::from_str(raw).map_err(|_| Problem::bad("not a peer id"))
}

/// A query string; a malformed one is a [`Problem`].
pub struct Params<T>(T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Params<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(v)| Params(v))
            .map_err(|e| Problem::bad(e.body_text()))
    }
}

// ---- paging ------------------------------------------------------------------

/// `?limit=N&before=ID`: the `limit` items just before `before` (default:
/// the latest).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Page {
    limit: Option<usize>,
    before: Option<String>,
}

/// A page of items, oldest first, and whether older ones exist.
#[derive(Serialize)]
struct Paged<T> {
    items: Vec<T>,
    more: bool,
}

fn page<T>(mut all: Vec<T>, page: &Page, id: impl Fn(&T) -> MessageId) -> Result<Paged<T>, Problem> {
    let limit = page.limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE);
    let end = match &page.before {
        None => all.len(),
        Some(before) => {
            let before =
                MessageId::from_str(before).map_err(|_| Problem::bad("before: a message id is 64 hex digits"))?;
            all.iter()
                .position(|item| id(item) == before)
                .ok_or_else(|| Problem(StatusCode::NOT_FOUND, format!("no message {} here", before.short())))?
        }
    };
    let start = end.saturating_sub(limit);
    all.truncate(end);
    let items = all.split_off(start);
    Ok(Paged { items, more: start > 0 })
}

fn history_id(h: &History) -> MessageId {
    match h {
        History::Hallway { id, .. } | History::Group { id, .. } | History::Dm { id, .. } => *id,
    }
}

// ---- session ----------------------------------------------------------------

#[derive(Deserialize)]
struct Code {
    code: String,
}

/// The one-time login URL: a valid code sets the cookie and opens the app.
async fn login(State(s): State<AppState>, Params(Code { code }): Params<Code>) -> Response {
    if !s.codes.redeem(&code) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let cookie = format!("{}={}; HttpOnly; SameSite=Strict; Path=/", s.cookie, s.token);
    let mut response = Html(
        "<!doctype html><meta charset=utf-8><meta http-equiv=refresh content=\"0;url=/\">\
         <title>Backchannel</title><a href=\"/\">Open Backchannel</a>",
    )
    .into_response();
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

#[derive(Serialize)]
struct LoginUrl {
    url: String,
}

async fn login_url(State(s): State<AppState>) -> Answer<LoginUrl> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], s.port));
    let url = s
        .login_url(addr)
        .map_err(|e| Problem(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    ok(LoginUrl { url })
}

async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        include_str!("openapi.json"),
    )
        .into_response()
}

// ---- events -----------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Since {
    since: Option<u64>,
}

/// The WebSocket of numbered event lines.
async fn events(State(s): State<AppState>, Params(Since { since }): Params<Since>, ws: WebSocketUpgrade) -> Response {
    let Ok(permit) = s.sockets.clone().try_acquire_owned() else {
        return Problem(StatusCode::SERVICE_UNAVAILABLE, "too many event streams open".into()).into_response();
    };
    ws.max_message_size(4096).on_upgrade(move |socket| async move {
        stream(s, socket, since).await;
        drop(permit);
    })
}

async fn stream(s: AppState, mut socket: WebSocket, since: Option<u64>) {
    use tokio::sync::broadcast::error::RecvError;
    let mut closing = s.closing.clone();
    let mut live = match s.events.subscribe(since) {
        Subscription::Reload(frame) => {
            let _ = socket.send(Message::Text(frame.as_ref().into())).await;
            let _ = socket.send(Message::Close(None)).await;
            return;
        }
        Subscription::Frames(backlog, live) => {
            for frame in backlog {
                if socket.send(Message::Text(frame.as_ref().into())).await.is_err() {
                    return;
                }
            }
            live
        }
    };
    loop {
        tokio::select! {
            frame = live.recv() => match frame {
                Ok(frame) => {
                    if socket.send(Message::Text(frame.as_ref().into())).await.is_err() {
                        return;
                    }
                }
                Err(RecvError::Lagged(_)) => {
                    let _ = socket.send(Message::Text(s.events.reload_now().as_ref().into())).await;
                    let _ = socket.send(Message::Close(None)).await;
                    return;
                }
                Err(RecvError::Closed) => return,
            },
            incoming = socket.recv() => match incoming {
                // The client says nothing but pings (answered by axum) and close.
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
                Some(Ok(_)) => {}
            },
            _ = async { drop(closing.wait_for(|closed| *closed).await) } => {
                let _ = socket.send(Message::Close(None)).await;
                return;
            }
        }
    }
}

// ---- node -------------------------------------------------------------------

#[derive(Serialize)]
struct NodeInfo {
    #[serde(with = "as_text")]
    peer: PeerId,
    nick: Option<String>,
    #[serde(with = "as_text::vec")]
    addrs: Vec<Multiaddr>,
    /// The number of the last event line: connect with `since` set to it to
    /// get what happens from now on.
    seq: u64,
}

async fn node(State(s): State<AppState>) -> Answer<NodeInfo> {
    let seq = s.events.last_seq();
    ok(NodeInfo {
        peer: s.me,
        nick: s.nick.clone(),
        addrs: s.handle.listen_addrs().await?,
        seq,
    })
}

async fn peers(State(s): State<AppState>) -> Answer<Vec<crate::PeerInfo>> {
    ok(s.handle.peers().await?)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Dial {
    addr: String,
}

async fn dial(State(s): State<AppState>, Body(d): Body<Dial>) -> Answer<serde_json::Value> {
    let addr: Multiaddr = d.addr.parse().map_err(|_| Problem::bad("not a multiaddr"))?;
    s.handle.dial(addr.clone()).await?;
    s.events.publish(&JsonLine::Dialling { addr });
    ok(json!({}))
}

async fn stats(State(s): State<AppState>) -> Answer<crate::Stats> {
    ok(s.handle.stats().await?)
}

// ---- rooms ------------------------------------------------------------------

async fn rooms(State(s): State<AppState>) -> Answer<Vec<crate::RoomInfo>> {
    ok(s.handle.rooms().await?)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Join {
    room: String,
}

#[derive(Serialize)]
struct RoomName {
    #[serde(with = "as_text")]
    room: Room,
}

async fn join(State(s): State<AppState>, Body(j): Body<Join>) -> Answer<RoomName> {
    let room = Room::param(&j.room)?;
    s.handle.join(&room).await?;
    s.events.publish(&JsonLine::Joined { room: room.clone() });
    ok(RoomName { room })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Host {
    name: String,
}

async fn host(State(s): State<AppState>, Body(h): Body<Host>) -> Answer<RoomName> {
    let room = s.handle.host(&h.name).await?;
    s.events.publish(&JsonLine::Joined { room: room.clone() });
    ok(RoomName { room })
}

#[derive(Serialize)]
struct Left {
    unsent: usize,
}

async fn leave(State(s): State<AppState>, Path(room): Path<Room>) -> Answer<Left> {
    let unsent = s.handle.leave(&room).await?;
    s.events.publish(&JsonLine::Left { room, unsent });
    ok(Left { unsent })
}

async fn room_posts(
    State(s): State<AppState>,
    Path(room): Path<Room>,
    Params(p): Params<Page>,
) -> Answer<Paged<crate::node::RoomPost>> {
    let limit = p.limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE);
    let before = p
        .before
        .as_deref()
        .map(|b| MessageId::from_str(b).map_err(|_| Problem::bad("before: a message id is 64 hex digits")))
        .transpose()?;
    let (items, more) = s.handle.room_page(&room, before, limit).await?;
    ok(Paged { items, more })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewPost {
    text: String,
    #[serde(default)]
    reply_to: Option<String>,
    #[serde(default)]
    question: bool,
    #[serde(default)]
    mentions: Vec<String>,
}

#[derive(Serialize)]
struct Id {
    #[serde(with = "as_text")]
    id: MessageId,
}

async fn room_post(State(s): State<AppState>, Path(room): Path<Room>, Body(p): Body<NewPost>) -> Answer<Id> {
    let reply_to = p
        .reply_to
        .map(|r| MessageId::from_str(&r).map_err(|_| Problem::bad("reply_to: a message id is 64 hex digits")))
        .transpose()?;
    let mentions = p.mentions.iter().map(|m| parse_peer(m)).collect::<Result<_, _>>()?;
    let options = PostOptions {
        reply_to,
        question: p.question,
        mentions,
    };
    let id = s.handle.post_with(&room, &p.text, options).await?;
    s.events.publish(&JsonLine::Posted { room, id });
    ok(Id { id })
}

async fn room_op(State(s): State<AppState>, Path(room): Path<Room>, Body(op): Body<Op>) -> Answer<Id> {
    let action = RoomAction::from(op.clone());
    let id = s.handle.room_op(&room, action).await?;
    s.events.publish(&JsonLine::RoomOp {
        room,
        id,
        from: s.me,
        op,
    });
    ok(Id { id })
}

async fn who(State(s): State<AppState>, Path(room): Path<Room>) -> Answer<Vec<crate::node::Participant>> {
    ok(s.handle.who(&room).await?)
}

async fn rules(State(s): State<AppState>, Path(room): Path<Room>) -> Answer<crate::node::RoomRules> {
    ok(s.handle.room_rules(&room).await?)
}

async fn questions(State(s): State<AppState>, Path(room): Path<Room>) -> Answer<Vec<crate::node::RoomPost>> {
    ok(s.handle.questions(&room).await?)
}

#[derive(Serialize)]
struct Syncing {
    peers: usize,
}

async fn sync(State(s): State<AppState>, Path(room): Path<Room>) -> Answer<Syncing> {
    let peers = s.handle.sync(&room).await?;
    s.events.publish(&JsonLine::SyncStarted { room, peers });
    ok(Syncing { peers })
}

// ---- the log as `backchannel history` prints it ---------------------------------

/// `?limit=N&room=ROOM` or `?limit=N&rooms=false`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HistoryParams {
    limit: Option<usize>,
    room: Option<String>,
    rooms: Option<bool>,
}

/// Every room (or one, or none) and every DM conversation, the last
/// `limit` of each, as `backchannel history` prints them. No cap on
/// `limit`: it is the CLI's `--limit`, and reading a long log is what was
/// asked for.
async fn history(State(s): State<AppState>, Params(p): Params<HistoryParams>) -> Answer<Transcript> {
    let rooms = match (p.room, p.rooms) {
        (Some(_), Some(false)) => return Err(Problem::bad("room names one room; rooms=false asks for none")),
        (Some(room), _) => LogRooms::Only(Room::param(&room)?),
        (None, Some(false)) => LogRooms::None,
        (None, _) => LogRooms::All,
    };
    let view = s.handle.log_view(rooms, p.limit.unwrap_or(DEFAULT_HISTORY)).await?;
    ok(Transcript::from(view))
}

// ---- DMs --------------------------------------------------------------------

async fn dm_history(
    State(s): State<AppState>,
    Path(peer): Path<PeerId>,
    Params(p): Params<Page>,
) -> Answer<Paged<History>> {
    let all = s.handle.history(HistoryQuery::Peer(peer), usize::MAX).await?;
    ok(page(
        all.iter().filter_map(History::from_logged).collect(),
        &p,
        history_id,
    )?)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Text {
    text: String,
}

async fn dm_send(State(s): State<AppState>, Path(peer): Path<PeerId>, Body(t): Body<Text>) -> Answer<Id> {
    let id = s.handle.send_dm(peer, &t.text).await?;
    s.events.publish(&JsonLine::DmSent {
        to: peer,
        id,
        text: t.text,
    });
    ok(Id { id })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DmReact {
    target: String,
    emoji: String,
    #[serde(default)]
    retract: bool,
}

async fn dm_react(State(s): State<AppState>, Body(r): Body<DmReact>) -> Answer<Id> {
    let target = MessageId::from_str(&r.target).map_err(|_| Problem::bad("target: a message id is 64 hex digits"))?;
    let id = s.handle.react_dm(target, &r.emoji, r.retract).await?;
    s.events.publish(&JsonLine::DmReactionSent { target, id });
    ok(Id { id })
}

async fn outbox(State(s): State<AppState>) -> Answer<Vec<OutboxRow>> {
    ok(s.handle.outbox().await?.iter().map(OutboxRow::from).collect())
}

// ---- contacts, requests, blocking ---------------------------------------------

async fn contacts(State(s): State<AppState>) -> Answer<Vec<Contact>> {
    let contacts = s.handle.contacts().await?;
    ok(contacts
        .into_iter()
        .map(|(peer, nick)| Contact { peer, nick })
        .collect())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Petname {
    #[serde(default)]
    petname: String,
}

/// Makes a peer a contact (accepting its request) or renames one.
async fn set_contact(
    State(s): State<AppState>,
    Path(peer): Path<PeerId>,
    Body(p): Body<Petname>,
) -> Answer<serde_json::Value> {
    s.handle.set_contact(peer, &p.petname).await?;
    ok(json!({}))
}

async fn requests(State(s): State<AppState>) -> Answer<Vec<crate::Request>> {
    ok(s.handle.requests().await?)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Accept {
    accept: bool,
}

async fn requests_setting(State(s): State<AppState>, Body(a): Body<Accept>) -> Answer<serde_json::Value> {
    s.handle.accept_requests(a.accept).await?;
    ok(json!({}))
}

#[derive(Serialize)]
struct Declined {
    deleted: usize,
}

async fn decline(State(s): State<AppState>, Path(peer): Path<PeerId>) -> Answer<Declined> {
    ok(Declined {
        deleted: s.handle.decline(peer).await?,
    })
}

async fn block(State(s): State<AppState>, Path(peer): Path<PeerId>) -> Answer<serde_json::Value> {
    s.handle.block_peer(peer).await?;
    ok(json!({}))
}

async fn unblock(State(s): State<AppState>, Path(peer): Path<PeerId>) -> Answer<serde_json::Value> {
    s.handle.unblock_peer(peer).await?;
    ok(json!({}))
}

// ---- groups -----------------------------------------------------------------

async fn groups(State(s): State<AppState>) -> Answer<Vec<crate::GroupInfo>> {
    ok(s.handle.groups().await?)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewGroup {
    name: String,
    members: Vec<String>,
}

#[derive(Serialize)]
struct GroupCreated {
    #[serde(with = "as_text")]
    group: GroupId,
}

async fn group_create(State(s): State<AppState>, Body(g): Body<NewGroup>) -> Answer<GroupCreated> {
    let members = g.members.iter().map(|m| parse_peer(m)).collect::<Result<_, _>>()?;
    let group = s.handle.group_create(&g.name, members).await?;
    s.events.publish(&JsonLine::GroupCreated { group, name: g.name });
    ok(GroupCreated { group })
}

async fn group_leave(State(s): State<AppState>, Path(group): Path<GroupId>) -> Answer<serde_json::Value> {
    s.handle.group_edit(group, GroupEdit::Leave).await?;
    ok(json!({}))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Rename {
    name: String,
}

async fn group_rename(
    State(s): State<AppState>,
    Path(group): Path<GroupId>,
    Body(r): Body<Rename>,
) -> Answer<serde_json::Value> {
    s.handle.group_edit(group, GroupEdit::Rename(r.name)).await?;
    ok(json!({}))
}

async fn group_add(
    State(s): State<AppState>,
    Path((group, peer)): Path<(GroupId, PeerId)>,
) -> Answer<serde_json::Value> {
    s.handle.group_edit(group, GroupEdit::Add(peer)).await?;
    ok(json!({}))
}

async fn group_remove(
    State(s): State<AppState>,
    Path((group, peer)): Path<(GroupId, PeerId)>,
) -> Answer<serde_json::Value> {
    s.handle.group_edit(group, GroupEdit::Remove(peer)).await?;
    ok(json!({}))
}

async fn group_history(
    State(s): State<AppState>,
    Path(group): Path<GroupId>,
    Params(p): Params<Page>,
) -> Answer<Paged<History>> {
    let all = s.handle.history(HistoryQuery::Group(group), usize::MAX).await?;
    ok(page(
        all.iter().filter_map(History::from_logged).collect(),
        &p,
        history_id,
    )?)
}

async fn group_send(State(s): State<AppState>, Path(group): Path<GroupId>, Body(t): Body<Text>) -> Answer<Id> {
    let id = s.handle.group_send(group, &t.text).await?;
    s.events.publish(&JsonLine::GroupSent { group, id });
    ok(Id { id })
}
