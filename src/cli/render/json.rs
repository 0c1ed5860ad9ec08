//! Lines for scripts: each [`JsonLine`] as one line of JSON (docs/JSON.md).

use backchannel::JsonLine;

/// The line as JSON, without a newline.
pub fn line(line: &JsonLine) -> String {
    // Every field is a string, a number, a bool or a list or map of them, so
    // serializing cannot fail; if it ever did, scripts still get a JSON line.
    serde_json::to_string(line).unwrap_or_else(|e| {
        let error = JsonLine::Error {
            message: format!("cannot write a line as JSON: {e}"),
        };
        serde_json::to_string(&error).unwrap_or_default()
    })
}
