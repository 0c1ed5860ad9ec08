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
