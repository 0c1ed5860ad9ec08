//! The library's structure, checked from its source (docs/ARCHITECTURE.md,
//! "Invariants"): no import circle among the top-level modules of `src/`,
//! the generated protobuf types named only inside `src/wire/`, the one
//! place where wire bytes become domain values, and the log and the message
//! bodies free of the network and of IO.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).expect("src/ is readable") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The source without comment lines (docs name modules they do not use).
fn code(path: &Path) -> String {
    fs::read_to_string(path)
        .expect("a readable source file")
        .lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The top-level module a file belongs to: `src/node/event_loop/sync.rs` is
/// in `node`, `src/id.rs` is `id`.
fn module_of(path: &Path) -> String {
    let rel = path.strip_prefix(src()).expect("a file under src/");
    let first = rel.components().next().expect("a path").as_os_str().to_string_lossy();
    first.trim_end_matches(".rs").to_owned()
}

fn identifier(s: &str) -> &str {
    let end = s.find(|c: char| !(c.is_alphanumeric() || c == '_')).unwrap_or(s.len());
    &s[..end]
}

/// The first path segment of each item a `crate::` path names: `crate::id::Room`
/// gives `id`; `crate::{id::Room, message}` gives `id` and `message`.
fn crate_paths(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 0;
            let end = group
                .char_indices()
                .find(|&(_, c)| {
                    match c {
                        '{' => depth += 1,
                        '}' if depth == 0 => return true,
                        '}' => depth -= 1,
                        _ => {}
                    }
                    false
                })
                .map_or(group.len(), |(i, _)| i);
            let mut depth = 0;
            let mut start = 0;
            for (i, c) in group[..end].char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        out.push(identifier(group[start..i].trim()).to_owned());
                        start = i + 1;
                    }
                    _ => {}
                }
            }
            out.push(identifier(group[start..end].trim()).to_owned());
        } else {
            out.push(identifier(rest).to_owned());
        }
    }
    out.retain(|name| !name.is_empty());
    out
}

/// The library's modules (`mod` lines of lib.rs) and, for each name the
/// crate root re-exports (`pub use message::{Body, ..}`), its module.
fn library() -> (BTreeSet<String>, BTreeMap<String, String>) {
    let lib = code(&src().join("lib.rs"));
    let mut modules = BTreeSet::new();
    let mut reexports = BTreeMap::new();
    for statement in lib.split(';') {
        let statement = statement.trim();
        for line in statement.lines() {
            let line = line.trim();
            if let Some(name) = line.strip_prefix("pub mod ").or_else(|| line.strip_prefix("mod ")) {
                modules.insert(identifier(name).to_owned());
            }
        }
        if let Some(at) = statement.find("pub use ") {
            let path = &statement[at + "pub use ".len()..];
            let module = identifier(path).to_owned();
            let names = match path.find('{') {
                Some(open) => path[open + 1..].trim_end_matches('}').to_owned(),
                None => path.rsplit("::").next().unwrap_or_default().to_owned(),
            };
            for name in names.split(',') {
                let name = identifier(name.trim());
                if !name.is_empty() {
                    reexports.insert(name.to_owned(), module.clone());
                }
            }
        }
    }
    (modules, reexports)
}

/// Which top-level modules each library module imports from.
fn import_graph() -> BTreeMap<String, BTreeSet<String>> {
    let (modules, reexports) = library();
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = modules.iter().map(|m| (m.clone(), BTreeSet::new())).collect();
    for file in files {
        let from = module_of(&file);
        if !modules.contains(&from) {
            // lib.rs itself, and the binary's modules (main.rs and the files
            // it declares), which use the library by its name.
            continue;
        }
        for name in crate_paths(&code(&file)) {
            let to = if modules.contains(&name) {
                name
            } else if let Some(module) = reexports.get(&name) {
                module.clone()
            } else {
                // An item of lib.rs itself (`crate::serde_display`).
                continue;
            };
            if to != from && modules.contains(&to) {
                graph.get_mut(&from).expect("a library module").insert(to);
            }
        }
    }
    graph
}

/// A circle through the graph, if there is one, as the modules on it.
fn find_circle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|p| p == node) {
            let mut circle = path[at..].to_vec();
            circle.push(node.to_owned());
            return Some(circle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(circle) = visit(next, graph, path, done) {
                return Some(circle);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}

#[test]
fn the_library_modules_import_each_other_without_a_circle() {
    let graph = import_graph();
    // The reader itself works: the modules that must have imports have them.
    assert!(graph["envelope"].contains("wire") && graph["wire"].contains("message"));
    assert!(graph["room"].contains("id") && graph["group"].contains("id"));
    if let Some(circle) = find_circle(&graph) {
        panic!("import circle: {}", circle.join(" -> "));
    }
    // The leaves: the wire constants import nothing of the crate, the
    // vocabulary only those constants.
    assert!(graph["protocol"].is_empty(), "protocol imports {:?}", graph["protocol"]);
    assert_eq!(graph["id"], BTreeSet::from(["protocol".to_owned()]));
}

#[test]
fn a_circle_is_found_when_there_is_one() {
    let edges = |pairs: &[(&str, &str)]| {
        let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (a, b) in pairs {
            graph.entry(a.to_string()).or_default().insert(b.to_string());
            graph.entry(b.to_string()).or_default();
        }
        graph
    };
    assert_eq!(find_circle(&edges(&[("a", "b"), ("b", "c")])), None);
    assert_eq!(
        find_circle(&edges(&[("a", "b"), ("b", "c"), ("c", "a")])),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
    assert_eq!(
        crate_paths("use crate::{\n id::{Room, key_of},\n message };\n x = crate::wire::pb;"),
        vec!["id", "message", "wire"]
    );
}

#[test]
fn only_the_wire_module_names_the_generated_protobuf_types() {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let wire = src().join("wire");
    let mut named = Vec::new();
    for file in files.iter().filter(|f| !f.starts_with(&wire)) {
        let code = code(file);
        if code.contains("pb::") || code.contains("store_pb") || code.contains("prost::") {
            named.push(file.strip_prefix(src()).expect("under src/").display().to_string());
        }
    }
    assert!(named.is_empty(), "protobuf named outside src/wire/: {named:?}");
    assert!(files.iter().any(|f| f.starts_with(&wire) && code(f).contains("pb::")));
}

/// The paths at or under `root` (`libp2p`, `tokio`, `std::fs`, ...) that
/// the code of `module`'s files names, as written (`libp2p::PeerId`,
/// `std::fs`). Paths are read as written in full: `use std::{fs, io}` is
/// seen as `std`, which no check here forbids; the code base writes its
/// imports one path per item.
fn paths_under(module: &str, root: &str) -> BTreeSet<String> {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let mut out = BTreeSet::new();
    for file in files.iter().filter(|f| module_of(f) == module) {
        let code = code(file);
        for (at, _) in code.match_indices(root) {
            // Only a path that starts here (not `crate::libp2p::` or
            // `x_tokio`) and is `root` itself or goes on below it.
            let before = code[..at].chars().next_back();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            let after = code[at + root.len()..].chars().next();
            if after.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue;
            }
            let end = code[at..]
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .map_or(code.len(), |e| at + e);
            out.insert(code[at..end].trim_end_matches(':').to_owned());
        }
    }
    out
}

#[test]
fn the_log_knows_peers_by_name_only_and_the_bodies_do_no_io() {
    // `store` names libp2p's PeerId and nothing of its network.
    let store = paths_under("store", "libp2p");
    assert_eq!(
        store,
        BTreeSet::from(["libp2p::PeerId".to_owned()]),
        "store uses {store:?}"
    );
    // `message` (what a message says) does no IO: no files, sockets, runtime,
    // log or network.
    for root in ["tokio", "sled", "std::fs", "std::net", "std::io"] {
        let used = paths_under("message", root);
        assert!(used.is_empty(), "message uses {used:?}");
    }
    let network = paths_under("message", "libp2p");
    assert_eq!(
        network,
        BTreeSet::from(["libp2p::PeerId".to_owned()]),
        "message uses {network:?}"
    );
    // Neither reaches up into the node.
    let graph = import_graph();
    for module in ["store", "message"] {
        assert!(!graph[module].contains("node"), "{module} imports node");
    }
    // The reader works: it finds what store does use.
    assert!(!paths_under("store", "sled").is_empty());
}

#[test]
fn the_local_api_reaches_the_node_only_through_its_handle() {
    // docs/ARCHITECTURE.md, "Invariants": `src/api/` calls the `Handle` and
    // relays events; the rules are the node's. So the API imports the node's
    // public face (the handle, its errors and views), the vocabulary (ids,
    // room actions, the JSON line) and nothing that stores, signs, encodes
    // or decides: no log, no envelope, no wire, no identity, no sync.
    let graph = import_graph();
    let allowed = BTreeSet::from(["node", "id", "json_line", "room", "group"].map(String::from));
    let api = &graph["api"];
    assert!(api.contains("node"), "the reader sees the API's imports: {api:?}");
    let beyond: Vec<&String> = api.difference(&allowed).collect();
    assert!(beyond.is_empty(), "the local API imports {beyond:?}");
    // Of the room module, only the names of actions, never its rules
    // (`RoomState`, the `check_*` functions).
    let mut files = Vec::new();
    rust_files(&src().join("api"), &mut files);
    for file in &files {
        let code = code(file);
        for (at, _) in code.match_indices("crate::room::") {
            let item = identifier(&code[at + "crate::room::".len()..]);
            assert!(
                ["RoomAction", "ChatMode", "Role", "QuestionState", "Reaction"].contains(&item),
                "{} names crate::room::{item}",
                file.display()
            );
        }
        for banned in ["RoomState", "check_", "Store", "sled", "gossipsub", "Signed"] {
            assert!(!code.contains(banned), "{} names {banned}", file.display());
        }
    }
    // No storage of its own either: the log is read through the handle.
    for root in ["sled", "std::fs::File"] {
        let used = paths_under("api", root);
        assert!(used.is_empty(), "the local API uses {used:?}");
    }
}
