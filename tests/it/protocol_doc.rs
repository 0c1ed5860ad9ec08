//! docs/PROTOCOL.md follows proto/backchannel.proto: every field of every
//! wire message is documented under its message with its number, name and
//! type, every table of fields in the spec names only fields the schema has,
//! and every enum value is given with its number. A field added to the
//! schema without the spec (or the reverse) fails here, so the spec another
//! implementation is written from cannot drift from what nodes send.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

#[derive(Debug, Clone, PartialEq)]
struct Field {
    name: String,
    number: u32,
    /// As written in the schema: `uint64`, `bytes`, `Reaction`...
    ty: String,
    repeated: bool,
}

#[derive(Debug, Default)]
struct Schema {
    /// Message name to its fields (oneof members included), in order.
    messages: BTreeMap<String, Vec<Field>>,
    /// Enum name to its values.
    enums: BTreeMap<String, Vec<(String, u32)>>,
}

const SCALARS: &[&str] = &[
    "bytes", "string", "bool", "uint32", "uint64", "int32", "int64", "sint32", "sint64", "fixed32", "fixed64",
    "sfixed32", "sfixed64", "float", "double",
];

/// Reads the schema's messages and enums. It knows the subset of proto3 the
/// schema uses and fails on anything else, so that it cannot skip a field.
fn parse_schema(text: &str) -> Schema {
    let mut schema = Schema::default();
    // The innermost message or enum being read, and whether inside a oneof.
    let mut message: Option<String> = None;
    let mut en: Option<String> = None;
    let mut in_oneof = false;
    for (n, raw) in text.lines().enumerate() {
        let line = raw.split("//").next().unwrap_or("").trim();
        let at = || format!("proto line {}: {raw:?}", n + 1);
        if line.is_empty() || line.starts_with("syntax ") || line.starts_with("package ") {
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["message", name, "{"] => {
                assert!(
                    message.is_none() && en.is_none(),
                    "nested messages are not read: {}",
                    at()
                );
                message = Some((*name).to_owned());
                schema.messages.insert((*name).to_owned(), Vec::new());
            }
            ["enum", name, "{"] => {
                assert!(message.is_none() && en.is_none(), "nested enums are not read: {}", at());
                en = Some((*name).to_owned());
                schema.enums.insert((*name).to_owned(), Vec::new());
            }
            ["oneof", _, "{"] => {
                assert!(message.is_some() && !in_oneof, "a oneof outside a message: {}", at());
                in_oneof = true;
            }
            ["}"] => {
                if in_oneof {
                    in_oneof = false;
                } else if message.take().is_none() {
                    assert!(en.take().is_some(), "an unmatched brace: {}", at());
                }
            }
            [value, "=", number] if en.is_some() => {
                let number = number
                    .trim_end_matches(';')
                    .parse()
                    .unwrap_or_else(|_| panic!("{}", at()));
                let values = en
                    .as_ref()
                    .and_then(|e| schema.enums.get_mut(e))
                    .expect("inside an enum");
                values.push(((*value).to_owned(), number));
            }
            fields if message.is_some() => {
                let (repeated, rest) = match fields {
                    ["repeated", rest @ ..] => (true, rest),
                    rest => (false, rest),
                };
                let [ty, name, "=", number] = rest else {
                    panic!("not a field this test reads: {}", at());
                };
                let number = number
                    .trim_end_matches(';')
                    .parse()
                    .unwrap_or_else(|_| panic!("{}", at()));
                let fields = message
                    .as_ref()
                    .and_then(|m| schema.messages.get_mut(m))
                    .expect("inside a message");
                fields.push(Field {
                    name: (*name).to_owned(),
                    number,
                    ty: (*ty).to_owned(),
                    repeated,
                });
            }
            _ => panic!("not a line this test reads: {}", at()),
        }
    }
    assert!(message.is_none() && en.is_none(), "the schema ends inside a block");
    schema
}

/// A table row that documents a field: `| 3 \`time_ms\` | uint64 | ...`, or
/// `| 3 \`fetch\` (oneof \`kind\`) | \`IdList\` ... |`.
#[derive(Debug)]
struct Row {
    line: usize,
    number: u32,
    name: String,
    ty: String,
}

fn field_row(line: &str) -> Option<(u32, String, String)> {
    let cells: Vec<&str> = line.trim().trim_matches('|').split('|').map(str::trim).collect();
    let first = cells.first()?;
    let (number, rest) = first.split_once(' ')?;
    let number: u32 = number.parse().ok()?;
    let name = rest.strip_prefix('`')?;
    let (name, after) = name.split_once('`')?;
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return None;
    }
    let after = after.trim();
    if !(after.is_empty() || after.starts_with("(oneof `")) {
        return None;
    }
    Some((number, name.to_owned(), cells.get(1)?.to_string()))
}

/// Backticked words of a line: `Envelope`, `kind`...
fn backticked(line: &str) -> Vec<&str> {
    line.split('`').skip(1).step_by(2).collect()
}

/// Every table of field rows in the spec, with the message it documents:
/// the first message the nearest line above it names in backticks (the
/// section heading or the sentence introducing it), skipping other tables.
fn field_tables<'a>(doc: &'a str, schema: &Schema) -> Vec<(Option<&'a str>, Vec<Row>)> {
    let lines: Vec<&str> = doc.lines().collect();
    let mut tables = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        if !lines[i].starts_with('|') {
            i += 1;
            continue;
        }
        let start = i;
        let mut rows = Vec::new();
        while i < lines.len() && lines[i].starts_with('|') {
            if let Some((number, name, ty)) = field_row(lines[i]) {
                rows.push(Row {
                    line: i + 1,
                    number,
                    name,
                    ty,
                });
            }
            i += 1;
        }
        if rows.is_empty() {
            continue;
        }
        let owner = lines[..start]
            .iter()
            .rev()
            .filter(|l| !l.starts_with('|'))
            .find_map(|l| backticked(l).into_iter().find(|w| schema.messages.contains_key(*w)));
        tables.push((owner, rows));
    }
    tables
}

/// The type cell a field's row must have: the scalar as written, or the
/// message or enum type in backticks (with what the spec says of it).
fn type_matches(field: &Field, cell: &str) -> bool {
    let scalar = SCALARS.contains(&field.ty.as_str());
    let cell_ty = match (field.repeated, cell.strip_prefix("repeated ")) {
        (true, Some(rest)) => rest,
        (false, None) => cell,
        _ => return false,
    };
    if scalar {
        cell_ty == field.ty
    } else {
        cell_ty.starts_with(&format!("`{}`", field.ty))
    }
}

/// What the spec gets wrong against the schema, one line each.
fn mismatches(schema: &Schema, doc: &str) -> Vec<String> {
    let mut out = Vec::new();
    let tables = field_tables(doc, schema);
    // Each table row is a field of the table's message, numbered and typed
    // as in the schema.
    for (owner, rows) in &tables {
        let Some(owner) = owner else {
            out.push(format!(
                "line {}: a table of fields that names no message above it",
                rows[0].line
            ));
            continue;
        };
        let fields = &schema.messages[*owner];
        for row in rows {
            match fields.iter().find(|f| f.name == row.name) {
                None => out.push(format!("line {}: {owner} has no field `{}`", row.line, row.name)),
                Some(f) if f.number != row.number => out.push(format!(
                    "line {}: {owner}.{} is field {} in the schema, {} in the spec",
                    row.line, f.name, f.number, row.number
                )),
                Some(f) if !type_matches(f, &row.ty) => out.push(format!(
                    "line {}: {owner}.{} is `{}{}` in the schema, {:?} in the spec",
                    row.line,
                    f.name,
                    if f.repeated { "repeated " } else { "" },
                    f.ty,
                    row.ty
                )),
                Some(_) => {}
            }
        }
    }
    // Each field of each message is documented: in a table of its message,
    // or, for a message the spec has no table for (a oneof's member types,
    // `DmReply`), inline as "1 `peer`: ..." or "`receipt` (field 1)".
    for (message, fields) in &schema.messages {
        let table_rows: Vec<&Row> = tables
            .iter()
            .filter(|(owner, _)| *owner == Some(message.as_str()))
            .flat_map(|(_, rows)| rows)
            .collect();
        for f in fields {
            let documented = if message == "Payload" {
                // The table of kinds: `| 1 | \`HallwayPost\` | ...`.
                doc.contains(&format!("| {} | `{}` |", f.number, f.ty))
            } else if !table_rows.is_empty() {
                table_rows.iter().any(|r| r.name == f.name && r.number == f.number)
            } else {
                doc.contains(&format!("{} `{}`:", f.number, f.name))
                    || doc.contains(&format!("`{}` (field {})", f.name, f.number))
            };
            if !documented {
                out.push(format!("{message}.{} (field {}) is not in the spec", f.name, f.number));
            }
        }
        if message != "Payload" && table_rows.is_empty() && !doc.contains(&format!("`{message}`")) {
            out.push(format!("message {message} is not named in the spec"));
        }
    }
    // Each enum value is given with its number: `0 DELIVERED`, without the
    // prefix the schema's style puts on every value (`RECEIPT_STATUS_`).
    for (name, values) in &schema.enums {
        let prefix = values
            .iter()
            .map(|(v, _)| v.as_str())
            .reduce(|a, b| {
                let common = a.chars().zip(b.chars()).take_while(|(x, y)| x == y).count();
                &a[..common]
            })
            .unwrap_or("");
        let prefix = &prefix[..prefix.rfind('_').map_or(0, |i| i + 1)];
        for (value, number) in values {
            let short = &value[prefix.len()..];
            if !doc.contains(&format!("`{number} {short}`")) {
                out.push(format!("{name}: `{number} {short}` ({value}) is not in the spec"));
            }
        }
    }
    out
}

fn read(rel: &str) -> String {
    fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)).expect("a file of the repository")
}

#[test]
fn the_spec_documents_every_field_and_value_of_the_wire_schema_as_it_is() {
    let schema = parse_schema(&read("proto/backchannel.proto"));
    assert!(
        schema.messages.len() >= 19 && schema.enums.len() >= 6,
        "the schema was read: {:?}",
        schema.messages.keys()
    );
    let found = mismatches(&schema, &read("docs/PROTOCOL.md"));
    assert!(
        found.is_empty(),
        "docs/PROTOCOL.md and proto/backchannel.proto differ:\n{}",
        found.join("\n")
    );
}

#[test]
fn a_spec_that_drifts_from_the_schema_is_caught() {
    let schema = parse_schema(&read("proto/backchannel.proto"));
    let doc = read("docs/PROTOCOL.md");
    // A field left out, renumbered, retyped or invented; an enum value gone:
    // each edit of the spec, and what the reader must say of it.
    let edits: [(&str, &str, &[&str]); 7] = [
        (
            "| 9 `question` | bool |",
            "| 9 `question_mark` | bool |",
            &[
                "HallwayPost has no field `question_mark`",
                "HallwayPost.question (field 9)",
            ],
        ),
        (
            "| 5 `ttl_s` | uint32 |",
            "| 6 `ttl_s` | uint32 |",
            &["Presence.ttl_s is field 5 in the schema, 6"],
        ),
        (
            "| 5 `ttl_s` | uint32 |",
            "| 5 `ttl_s` | uint64 |",
            &["Presence.ttl_s is `uint32`"],
        ),
        (
            "| 8 `mentions` | repeated bytes |",
            "| 8 `mentions` | bytes |",
            &["HallwayPost.mentions is `repeated bytes`"],
        ),
        ("`receipt` (field 1)", "`receipt`", &["DmReply.receipt (field 1)"]),
        ("`3 BUSY`", "`3 OVERLOADED`", &["SYNC_REFUSAL_BUSY"]),
        (
            "| 7 | `Presence` |",
            "| 7 | `Presense` |",
            &["Payload.presence (field 7)"],
        ),
    ];
    for (from, to, said) in edits {
        assert!(doc.contains(from), "the spec has {from:?}");
        let found = mismatches(&schema, &doc.replacen(from, to, 1));
        for words in said {
            assert!(found.iter().any(|m| m.contains(words)), "{from:?} -> {to:?}: {found:?}");
        }
    }
    // And the schema read is the schema: a field added there is missed here.
    let mut grown = parse_schema(&read("proto/backchannel.proto"));
    grown.messages.get_mut("Presence").expect("Presence").push(Field {
        name: "room_size".into(),
        number: 7,
        ty: "uint32".into(),
        repeated: false,
    });
    let found = mismatches(&grown, &doc);
    assert_eq!(
        found,
        vec!["Presence.room_size (field 7) is not in the spec".to_owned()]
    );
}
