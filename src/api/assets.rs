//! The web app: plain JavaScript modules, CSS and one HTML page, embedded
//! in the binary with `include_str!` so the app works offline and nothing
//! is loaded from anywhere but this node. There is no build step: the files
//! in src/api/web/ are what the browser runs.

use axum::Router;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::AppState;

/// Each file the app is made of: its path, media type and text.
const FILES: &[(&str, &str, &str)] = &[
    ("/", "text/html; charset=utf-8", include_str!("web/index.html")),
    ("/app.css", "text/css; charset=utf-8", include_str!("web/app.css")),
    (
        "/js/main.js",
        "text/javascript; charset=utf-8",
        include_str!("web/js/main.js"),
    ),
    (
        "/js/api.js",
        "text/javascript; charset=utf-8",
        include_str!("web/js/api.js"),
    ),
    (
        "/js/view.js",
        "text/javascript; charset=utf-8",
        include_str!("web/js/view.js"),
    ),
];

/// A route per file.
pub fn routes() -> Router<AppState> {
    FILES.iter().fold(Router::new(), |router, &(path, mime, body)| {
        router.route(path, get(move || async move { file(mime, body) }))
    })
}

fn file(mime: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, mime)], body).into_response()
}

#[cfg(test)]
mod tests {
    use super::FILES;

    /// The app works offline: no file names another host, and the page
    /// loads only files that are embedded.
    #[test]
    fn nothing_is_loaded_from_elsewhere() {
        for (path, _, body) in FILES {
            for outside in ["http://", "https://", "//cdn", "@import url("] {
                assert!(!body.contains(outside), "{path} mentions {outside}");
            }
        }
        let (_, _, index) = FILES[0];
        for reference in index.split(['"', '\'']).filter(|r| r.starts_with('/')) {
            assert!(
                FILES.iter().any(|(path, _, _)| *path == reference),
                "index.html loads {reference}, which is not embedded"
            );
        }
        for (path, _, body) in FILES.iter().filter(|(p, _, _)| p.ends_with(".js")) {
            for import in body.lines().filter_map(|l| l.split(" from '").nth(1)) {
                let target = import.trim_end_matches("';").replace("./", "/js/");
                assert!(
                    FILES.iter().any(|(p, _, _)| *p == target),
                    "{path} imports {target}, which is not embedded"
                );
            }
        }
    }
}
