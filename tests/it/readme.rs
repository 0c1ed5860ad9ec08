//! README.md is true: its test commands are what CI runs (and need nothing
//! rustup does not install without the line that installs it), and its
//! sample output is what the binary prints.

use std::path::Path;

use crate::everyday::Human;

fn readme() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).expect("README.md")
}

/// The lines of the fenced block after `marker`.
fn block_after(text: &str, marker: &str) -> Vec<String> {
    let rest = &text[text.find(marker).unwrap_or_else(|| panic!("{marker} in README.md"))..];
    rest.lines()
        .skip_while(|l| !l.starts_with("```"))
        .skip(1)
        .take_while(|l| !l.starts_with("```"))
        .map(str::to_owned)
        .collect()
}

/// Issue 13, item 11: `cargo nextest run` failed with "no such command" on
/// a machine with only rustup's toolchain. Every tool the README's test
/// commands use beyond cargo is installed by a line before it, and CI
/// (.ci/run) runs the same commands.
#[test]
fn the_readme_test_commands_are_what_ci_runs() {
    let commands: Vec<String> = block_after(&readme(), "Run the tests")
        .into_iter()
        .map(|l| l.split(" #").next().unwrap_or_default().trim().to_owned())
        .filter(|l| !l.is_empty())
        .collect();
    assert!(
        commands.iter().any(|c| c.starts_with("cargo nextest run")),
        "{commands:?}"
    );
    for (i, c) in commands.iter().enumerate() {
        if c.starts_with("cargo nextest") {
            assert!(
                commands[..i]
                    .iter()
                    .any(|p| p == "cargo install cargo-nextest --locked"),
                "{c:?} needs cargo-nextest, which rustup does not install: {commands:?}"
            );
        }
    }
    let ci = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(".ci/run")).expect(".ci/run");
    for c in &commands {
        assert!(ci.contains(c.as_str()), ".ci/run does not run {c:?}");
    }
}

/// A line with what changes from run to run (peer ids, message ids, times,
/// ports) replaced by placeholders.
fn shape(line: &str) -> String {
    let mut out = String::new();
    let mut run = String::new();
    let flush = |run: &mut String, out: &mut String| {
        if run.is_empty() {
            return;
        }
        let word = if run.starts_with("12D3KooW") {
            "<peer>".to_owned()
        } else if out.ends_with('…') && run.len() == 6 {
            "<short>".to_owned()
        } else if run.len() == 8 && run.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()) {
            "<id>".to_owned()
        } else if run.chars().all(|c| c.is_ascii_digit()) {
            "<n>".to_owned()
        } else {
            run.clone()
        };
        out.push_str(&word);
        run.clear();
    };
    for c in line.chars() {
        if c.is_ascii_alphanumeric() {
            run.push(c);
        } else {
            flush(&mut run, &mut out);
            out.push(c);
        }
    }
    flush(&mut run, &mut out);
    out
}

/// Issue 13, item 10: the README's samples differed from what the terminal
/// shows. They are compared with a real run, line by line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_samples_are_what_the_binary_prints() {
    let text = readme();
    let tmp = tempfile::tempdir().expect("tmp");
    let mut alice = Human::run(&tmp.path().join("alice"), &["--room", "lobby", "--name", "alice"]);
    let (_, addr) = alice.identity_and_addr().await;
    let starts: Vec<String> = block_after(&text, "<!-- sample: alice starts -->");
    // The first lines after the identity is created, in order.
    let shown: Vec<String> = alice
        .seen
        .iter()
        .filter(|l| !l.starts_with("created a new identity"))
        .map(|l| shape(l))
        .collect();
    let expected: Vec<String> = starts.iter().map(|l| shape(l)).collect();
    assert_eq!(shown, expected, "README's start differs from {:#?}", alice.seen);

    let mut bob = Human::run(
        &tmp.path().join("bob"),
        &["--room", "lobby", "--name", "bob", "--peer", &addr],
    );
    bob.identity_and_addr().await;
    alice
        .wait("bob here", |l| l.contains("* bob (") && l.ends_with("is here"))
        .await;
    bob.say("hello").await;
    alice.wait("hello", |l| l.ends_with(": hello")).await;
    alice.say("/dm bob see you after").await;
    alice.wait("the receipt", |l| l.starts_with("[dm] ✓")).await;

    let sample: Vec<String> = block_after(&text, "<!-- sample: alice sees bob -->");
    let shown: Vec<String> = alice.seen.iter().map(|l| shape(l)).collect();
    // Every sample line is shown, in the README's order.
    let mut from = 0;
    for line in &sample {
        let want = shape(line);
        let at = shown[from..]
            .iter()
            .position(|s| *s == want)
            .unwrap_or_else(|| panic!("README line {line:?} is not shown (in order): {:#?}", alice.seen));
        from += at + 1;
    }
}
