//! Real nodes on loopback, each serving the local API as `run --ui` does:
//! the node's events go to the API's event stream, the API answers over real
//! HTTP and WebSockets.

use std::net::SocketAddr;
use std::sync::Arc;

use backchannel::PeerId;
use backchannel::api::{Api, ApiConfig};
use backchannel::lab::{Lab, LabConfig, Topology};
use futures::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::ClientRequestBuilder;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, client_async};

use super::T;
use super::http::{Reply, send};

/// A node with its API.
pub struct ApiNode {
    pub api: Arc<Api>,
    pub peer: PeerId,
    pub client: Client,
}

impl std::ops::Deref for ApiNode {
    type Target = Client;
    fn deref(&self) -> &Client {
        &self.client
    }
}

/// A client of one API: where it is and the token.
pub struct Client {
    pub addr: SocketAddr,
    pub token: String,
}

/// `n` connected lab nodes, each serving its API with `tweak` applied to
/// the API's defaults. The lab must outlive the nodes' use.
pub async fn nodes(n: usize, tweak: fn(&mut ApiConfig)) -> (Lab, Vec<ApiNode>) {
    let mut lab = Lab::start(n, LabConfig::default()).await.expect("lab");
    if n > 1 {
        lab.connect(Topology::Full, T).await.expect("connect");
    }
    let mut out = Vec::new();
    for node in &mut lab.nodes {
        let mut config = ApiConfig::new(node.config.data_dir.clone());
        config.nick = node.config.nick.clone();
        tweak(&mut config);
        let api = Arc::new(Api::start(node.handle.clone(), config).await.expect("api starts"));
        let mut events = node.take_events();
        let feed = api.clone();
        tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                feed.publish_event(&event);
            }
        });
        out.push(ApiNode {
            client: Client {
                addr: api.addr(),
                token: api.token().to_owned(),
            },
            api,
            peer: node.peer_id(),
        });
    }
    (lab, out)
}

impl Client {
    /// The Host header this server expects.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.addr.port())
    }

    /// A request with the token and the right Host.
    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Reply {
        let host = self.host();
        let auth = format!("Bearer {}", self.token);
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let mut headers = vec![("Host", host.as_str()), ("Authorization", auth.as_str())];
        if !body.is_empty() {
            headers.push(("Content-Type", "application/json"));
        }
        send(self.addr, method, path, &headers, body.as_bytes()).await
    }

    /// GET, expecting 200 and JSON.
    pub async fn get(&self, path: &str) -> Value {
        let reply = self.call("GET", path, None).await;
        assert_eq!(
            reply.status,
            200,
            "GET {path}: {}",
            String::from_utf8_lossy(&reply.body)
        );
        reply.json()
    }

    /// A method with a JSON body, expecting 200 and JSON.
    pub async fn ok(&self, method: &str, path: &str, body: Value) -> Value {
        let reply = self.call(method, path, Some(body)).await;
        assert_eq!(
            reply.status,
            200,
            "{method} {path}: {}",
            String::from_utf8_lossy(&reply.body)
        );
        reply.json()
    }

    /// Opens the event stream with the token (from `since`, if given).
    pub async fn events(&self, since: Option<u64>) -> Events {
        let path = match since {
            Some(n) => format!("/api/v1/events?since={n}"),
            None => "/api/v1/events".to_owned(),
        };
        self.ws(&path, &[("Authorization", &format!("Bearer {}", self.token))])
            .await
            .expect("the event stream opens")
    }

    /// A WebSocket handshake with exactly these extra headers.
    pub async fn ws(&self, path: &str, headers: &[(&str, &str)]) -> Result<Events, tungstenite::Error> {
        let uri: tungstenite::http::Uri = format!("ws://{}{path}", self.host()).parse().expect("uri");
        let mut request = ClientRequestBuilder::new(uri);
        for (name, value) in headers {
            request = request.with_header(*name, *value);
        }
        let stream = TcpStream::connect(self.addr).await.expect("connect");
        let (ws, _) = client_async(request, MaybeTlsStream::Plain(stream)).await?;
        Ok(Events { ws })
    }
}

/// An open event stream.
pub struct Events {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl Events {
    /// The next line (None when the server closed the stream).
    pub async fn next(&mut self) -> Option<Value> {
        loop {
            let msg = tokio::time::timeout(T, self.ws.next())
                .await
                .expect("an event line in time")?;
            match msg.expect("a frame") {
                Message::Text(text) => return Some(serde_json::from_str(text.as_str()).expect("a JSON line")),
                Message::Close(_) => return None,
                _ => {}
            }
        }
    }

    /// Reads lines until `pick` matches one; returns it.
    pub async fn until(&mut self, what: &str, mut pick: impl FnMut(&Value) -> bool) -> Value {
        loop {
            let line = self
                .next()
                .await
                .unwrap_or_else(|| panic!("stream closed before {what}"));
            if pick(&line) {
                return line;
            }
        }
    }

    /// Closes the stream.
    pub async fn close(mut self) {
        let _ = self.ws.send(Message::Close(None)).await;
    }
}
