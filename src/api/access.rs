//! Who may talk to the local API: the token, the one-time login codes, the
//! Host and Origin checks and the request rate.
//!
//! The API listens on loopback only, but loopback is shared by every program
//! and every web page the person's browser has open. So:
//!
//! - every request carries the token (a header, or the HttpOnly SameSite
//!   cookie the one-time login URL sets); a missing or wrong one gets a bare
//!   401 and nothing else;
//! - the Host header must name loopback with this port, so a DNS-rebinding
//!   page (evil.example resolving to 127.0.0.1) is refused before the token
//!   is even looked at;
//! - an Origin header, when a browser sends one, must be this server's own,
//!   so no other site's page can drive the node with the person's cookie;
//! - a token bucket bounds the request rate of everyone together.

use std::collections::VecDeque;
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use axum::http::{HeaderMap, header};

/// The token file inside the data directory.
pub const TOKEN_FILE: &str = "api-token";

/// Login codes not yet used, at most: older ones are forgotten.
const MAX_LOGIN_CODES: usize = 16;

/// Reads the API token from `dir`, or creates it (32 random bytes as hex,
/// mode 0600) when there is none. The token stays across restarts so a
/// program configured with it keeps working.
pub fn load_or_create_token(dir: &Path) -> io::Result<String> {
    match read_token(dir)? {
        Some(token) => Ok(token),
        None => create_token(&dir.join(TOKEN_FILE)),
    }
}

/// Reads the API token from `dir`: None when there is none yet, an error
/// when the file holds something else. Programs on this machine (and
/// `backchannel history`) read it to talk to the node.
pub fn read_token(dir: &Path) -> io::Result<Option<String>> {
    let path = dir.join(TOKEN_FILE);
    let file = match fs::File::open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut text = String::new();
    file.take(1024).read_to_string(&mut text)?;
    let token = text.trim().to_owned();
    if token.len() != 64 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{} does not hold an API token; delete it to make a new one",
                path.display()
            ),
        ));
    }
    Ok(Some(token))
}

fn create_token(path: &PathBuf) -> io::Result<String> {
    let token = random_hex()?;
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(token.as_bytes())?;
    file.sync_all()?;
    Ok(token)
}

/// 32 random bytes from the operating system, as 64 hex digits.
pub fn random_hex() -> io::Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| io::Error::other(e.to_string()))?;
    Ok(hex::encode(bytes))
}

/// Compares two secrets in time that depends only on their lengths, so the
/// time a refusal takes says nothing about how much of a guess was right.
pub fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The name of the cookie that carries the token. It names the port because
/// browsers share cookies between the ports of one host: two nodes on one
/// machine must not overwrite each other's.
pub fn cookie_name(port: u16) -> String {
    format!("backchannel_{port}")
}

/// The token a request presents: `Authorization: Bearer`, else the cookie.
pub fn presented_token(headers: &HeaderMap, cookie: &str) -> Option<String> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let value = value.to_str().ok()?;
        return value.strip_prefix("Bearer ").map(|t| t.trim().to_owned());
    }
    for value in headers.get_all(header::COOKIE) {
        let Ok(value) = value.to_str() else { continue };
        for pair in value.split(';') {
            if let Some((name, token)) = pair.trim().split_once('=')
                && name == cookie
            {
                return Some(token.to_owned());
            }
        }
    }
    None
}

/// Whether a Host header names this server on loopback: `127.0.0.1:PORT`,
/// `localhost:PORT` or `[::1]:PORT`. Anything else (a missing header, a
/// domain name resolving to loopback) is a page that should not be here.
pub fn host_ok(headers: &HeaderMap, port: u16) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
        return false;
    };
    let Some((name, p)) = host.rsplit_once(':') else {
        return false;
    };
    p.parse::<u16>().is_ok_and(|p| p == port) && matches!(name, "127.0.0.1" | "localhost" | "[::1]")
}

/// Whether the Origin header, if any, is this server's own origin. Programs
/// send none; browsers send one on every cross-origin request and on
/// WebSocket handshakes.
pub fn origin_ok(headers: &HeaderMap, port: u16) -> bool {
    let mut origins = headers.get_all(header::ORIGIN).iter();
    let Some(origin) = origins.next() else {
        return true;
    };
    if origins.next().is_some() {
        return false;
    }
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    let Some(rest) = origin.strip_prefix("http://") else {
        return false;
    };
    let Some((name, p)) = rest.rsplit_once(':') else {
        return false;
    };
    p.parse::<u16>().is_ok_and(|p| p == port) && matches!(name, "127.0.0.1" | "localhost" | "[::1]")
}

/// One-time login codes: each opens one browser session (sets the cookie)
/// and is then gone, so a URL left in a terminal's scrollback or a browser's
/// history does not log anyone in again.
#[derive(Default)]
pub struct LoginCodes {
    codes: Mutex<VecDeque<String>>,
}

impl LoginCodes {
    /// A new code.
    pub fn mint(&self) -> io::Result<String> {
        let code = random_hex()?;
        let mut codes = self.codes.lock().unwrap_or_else(|e| e.into_inner());
        if codes.len() == MAX_LOGIN_CODES {
            codes.pop_front();
        }
        codes.push_back(code.clone());
        Ok(code)
    }

    /// Uses up `code`: true if it was valid.
    pub fn redeem(&self, code: &str) -> bool {
        let mut codes = self.codes.lock().unwrap_or_else(|e| e.into_inner());
        match codes.iter().position(|c| same_secret(c, code)) {
            Some(i) => {
                codes.remove(i);
                true
            }
            None => false,
        }
    }
}

/// A token bucket shared by every request: `burst` requests at once, then
/// `per_second`. One bucket for all because there is one legitimate user;
/// what it bounds is a runaway script or a hostile page hammering the node.
pub struct RateLimit {
    state: Mutex<(f64, Instant)>,
    per_second: f64,
    burst: f64,
}

impl RateLimit {
    /// A full bucket.
    pub fn new(per_second: u32, burst: u32) -> Self {
        Self {
            state: Mutex::new((f64::from(burst), Instant::now())),
            per_second: f64::from(per_second),
            burst: f64::from(burst),
        }
    }

    /// Takes one request's worth: false when the bucket is empty.
    pub fn allow(&self) -> bool {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let (tokens, last) = *state;
        let tokens = (tokens + now.duration_since(last).as_secs_f64() * self.per_second).min(self.burst);
        if tokens < 1.0 {
            *state = (tokens, now);
            return false;
        }
        *state = (tokens - 1.0, now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.append(name.clone(), HeaderValue::from_str(value).expect("header value"));
        }
        h
    }

    #[test]
    fn host_must_be_loopback_with_this_port() {
        for ok in ["127.0.0.1:8080", "localhost:8080", "[::1]:8080"] {
            assert!(host_ok(&headers(&[(header::HOST, ok)]), 8080), "{ok}");
        }
        for bad in [
            "127.0.0.1:8081",
            "evil.example:8080",
            "127.0.0.1",
            "localhost.evil:8080",
            "",
        ] {
            assert!(!host_ok(&headers(&[(header::HOST, bad)]), 8080), "{bad}");
        }
        assert!(!host_ok(&HeaderMap::new(), 8080));
    }

    #[test]
    fn origin_absent_or_own() {
        assert!(origin_ok(&HeaderMap::new(), 80));
        assert!(origin_ok(&headers(&[(header::ORIGIN, "http://127.0.0.1:80")]), 80));
        for bad in [
            "http://evil.example",
            "null",
            "https://127.0.0.1:80",
            "http://127.0.0.1:81",
        ] {
            assert!(!origin_ok(&headers(&[(header::ORIGIN, bad)]), 80), "{bad}");
        }
    }

    #[test]
    fn token_from_header_or_cookie() {
        let h = headers(&[(header::AUTHORIZATION, "Bearer abc")]);
        assert_eq!(presented_token(&h, "c").as_deref(), Some("abc"));
        let h = headers(&[(header::COOKIE, "x=1; c=tok; y=2")]);
        assert_eq!(presented_token(&h, "c").as_deref(), Some("tok"));
        assert_eq!(presented_token(&HeaderMap::new(), "c"), None);
        assert!(same_secret("abc", "abc") && !same_secret("abc", "abd") && !same_secret("abc", "ab"));
    }

    #[test]
    fn a_login_code_works_once() {
        let codes = LoginCodes::default();
        let code = codes.mint().expect("code");
        assert!(codes.redeem(&code));
        assert!(!codes.redeem(&code));
    }

    #[test]
    fn the_token_file_is_private_and_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = load_or_create_token(dir.path()).expect("created");
        assert_eq!(load_or_create_token(dir.path()).expect("read"), first);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.path().join(TOKEN_FILE))
                .expect("meta")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
