//! Asking a running node for its log: `backchannel history` while the node
//! holds the log locked. Every `run` serves the local API on 127.0.0.1 and
//! writes its address to `<data dir>/api-addr`; this reads that file and the
//! token in `<data dir>/api-token`, and sends one `GET /api/v1/history` as
//! any program would (Host naming the server, the token as a bearer). The
//! address file is read only while the log is locked, so one a killed node
//! left behind is never used once no node runs.
//!
//! A few lines of HTTP/1.1 over a blocking socket, rather than a client
//! crate: one request, `Connection: close`, an answer read to its end and
//! bounded.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use backchannel::LogRooms;
use backchannel::api::{ADDR_FILE, TOKEN_FILE, Transcript, read_token};

/// How long the node may take to accept the connection: it is on this
/// machine, so anything longer means it is stuck.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// How long the node may take to read and send the history: reading a log
/// of a few hundred thousand messages takes seconds; a minute of silence is
/// a node that will not answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);

/// The largest answer read: 1 GiB, over a million messages of the longest
/// text. A bigger answer is not a history (something else on that port?).
const MAX_ANSWER: u64 = 1 << 30;

/// Asks the node that runs on `dir` for its log.
pub fn transcript(dir: &Path, rooms: &LogRooms, limit: usize) -> anyhow::Result<Transcript> {
    let running = format!("the node using {} is running (it holds its log)", dir.display());
    let addr_path = dir.join(ADDR_FILE);
    let addr = match std::fs::read_to_string(&addr_path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "{running}, but it serves no local API to ask (a `backchannel serve` helper, or a node \
             whose local API did not start): read its history there with /history, or stop it first"
        ),
        Err(e) => return Err(e).with_context(|| format!("{running}; reading {}", addr_path.display())),
    };
    let addr: SocketAddr = addr
        .trim()
        .parse()
        .ok()
        .filter(|a: &SocketAddr| a.ip().is_loopback())
        .ok_or_else(|| {
            anyhow!(
                "{running}, but {} holds no loopback address ({:?}): read its history there with \
                 /history, or stop it first",
                addr_path.display(),
                addr.trim()
            )
        })?;
    let token = read_token(dir)
        .with_context(|| format!("{running}; reading its API token"))?
        .ok_or_else(|| anyhow!("{running}, but {} is missing", dir.join(TOKEN_FILE).display()))?;

    let (status, body) = get(addr, &history_path(rooms, limit), &token).map_err(|e| {
        anyhow!(
            "{running}, but does not answer at {addr} ({e}): read its history there with /history, or stop it first"
        )
    })?;
    match status {
        200 => serde_json::from_slice(&body)
            .with_context(|| format!("{running}; what answered at {addr} sent something that is not its history")),
        401 => bail!(
            "{running}, but the server at {addr} refused the token in {}: is it another program, or \
             was the token replaced while the node runs?",
            dir.join(TOKEN_FILE).display()
        ),
        _ => {
            let said = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["error"].as_str().map(str::to_owned))
                .unwrap_or_default();
            bail!("{running}; asked for its history, it answered {status} {said}")
        }
    }
}

/// `/api/v1/history` with the query `backchannel history`'s flags make.
fn history_path(rooms: &LogRooms, limit: usize) -> String {
    let mut path = format!("/api/v1/history?limit={limit}");
    match rooms {
        LogRooms::All => {}
        LogRooms::Only(room) => path.push_str(&format!("&room={}", percent_encode(room.as_str()))),
        LogRooms::None => path.push_str("&rooms=false"),
    }
    path
}

/// Every byte but the unreserved ones as `%XX`, for a query value.
fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// One GET to `addr`: the status and the body.
fn get(addr: SocketAddr, path: &str, token: &str) -> std::io::Result<(u16, Vec<u8>)> {
    let mut stream = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)?;
    stream.set_read_timeout(Some(ANSWER_TIMEOUT))?;
    stream.set_write_timeout(Some(CONNECT_TIMEOUT))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Accept: application/json\r\nConnection: close\r\n\r\n"
    )?;
    stream.flush()?;
    let mut raw = Vec::new();
    stream.take(MAX_ANSWER + 1).read_to_end(&mut raw)?;
    if raw.len() as u64 > MAX_ANSWER {
        return Err(std::io::Error::other("an answer of more than 1 GiB"));
    }
    parse(&raw).ok_or_else(|| std::io::Error::other("an answer that is not HTTP"))
}

/// A whole HTTP/1.1 response: its status and body (by Content-Length, by
/// chunks, or to the end of the connection).
fn parse(raw: &[u8]) -> Option<(u16, Vec<u8>)> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..end]).ok()?;
    let body = &raw[end + 4..];
    let mut lines = head.split("\r\n");
    let status = lines.next()?.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()?;
    let mut length = None;
    let mut chunked = false;
    for line in lines {
        let (name, value) = line.split_once(':')?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(value.parse::<usize>().ok()?);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.eq_ignore_ascii_case("chunked");
        }
    }
    let body = match (chunked, length) {
        (true, _) => dechunk(body)?,
        (false, Some(length)) => body.get(..length)?.to_vec(),
        (false, None) => body.to_vec(),
    };
    Some((status, body))
}

/// The body of a chunked answer; None if it is cut short or malformed.
fn dechunk(mut raw: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let end = raw.windows(2).position(|w| w == b"\r\n")?;
        let size = std::str::from_utf8(&raw[..end]).ok()?;
        let size = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
        raw = &raw[end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(raw.get(..size)?);
        raw = raw.get(size..)?.strip_prefix(b"\r\n")?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_read_by_their_framing() {
        let plain = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello and more";
        assert_eq!(parse(plain), Some((200, b"hello".to_vec())));
        let chunked =
            b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n";
        assert_eq!(parse(chunked), Some((404, b"abcde".to_vec())));
        let to_the_end = b"HTTP/1.1 401 Unauthorized\r\n\r\n";
        assert_eq!(parse(to_the_end), Some((401, Vec::new())));
        for bad in [
            &b"SSH-2.0-OpenSSH\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\nshort",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n",
            b"HTTP/1.1 2",
        ] {
            assert_eq!(parse(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn the_query_names_what_history_was_asked_for() {
        let room = backchannel::Room::new("a room/with?odd&chars").expect("a room");
        assert_eq!(history_path(&LogRooms::All, 7), "/api/v1/history?limit=7");
        assert_eq!(
            history_path(&LogRooms::Only(room), 1),
            "/api/v1/history?limit=1&room=a%20room%2Fwith%3Fodd%26chars"
        );
        assert_eq!(history_path(&LogRooms::None, 2), "/api/v1/history?limit=2&rooms=false");
    }
}
