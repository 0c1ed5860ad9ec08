//! `backchannel run` in a real terminal: a pseudo-terminal made by tmux
//! (`send-keys` types, `capture-pane` reads the screen). The line editor
//! keeps a half-typed line intact while messages arrive, and tab completes
//! a nickname. tmux is needed (`apt-get install tmux`; .ci/run installs it):
//! without it these tests fail saying so, they are never skipped.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::cli::{BIN, Proc, is};
use crate::support::T;

/// A tmux server of its own (its own socket), killed when dropped.
struct Tmux {
    socket: PathBuf,
}

impl Tmux {
    /// Starts `command` in a detached 160x40 session.
    fn start(dir: &Path, command: &str) -> Tmux {
        let tmux = Tmux {
            socket: dir.join("tmux.sock"),
        };
        let ok = tmux
            .cmd()
            .args(["new-session", "-d", "-x", "160", "-y", "40", command])
            .status()
            .unwrap_or_else(|e| panic!("tmux is needed for the terminal tests (apt-get install tmux): {e}"));
        assert!(ok.success(), "tmux new-session failed");
        tmux
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new("tmux");
        c.arg("-S").arg(&self.socket);
        c
    }

    /// Types text (literally, no key names).
    fn type_text(&self, text: &str) {
        assert!(
            self.cmd()
                .args(["send-keys", "-l", text])
                .status()
                .expect("tmux")
                .success()
        );
    }

    /// Presses a key ("Tab", "Enter").
    fn key(&self, key: &str) {
        assert!(self.cmd().args(["send-keys", key]).status().expect("tmux").success());
    }

    /// The screen's lines, without the empty ones at the end.
    fn screen(&self) -> Vec<String> {
        let out = self.cmd().args(["capture-pane", "-p"]).output().expect("tmux");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let mut lines: Vec<String> = text.lines().map(|l| l.trim_end().to_owned()).collect();
        while lines.last().is_some_and(|l| l.is_empty()) {
            lines.pop();
        }
        lines
    }

    /// Waits until the screen satisfies `f` (it is read every 20 ms: tmux
    /// has no event for "the screen changed").
    async fn wait(&self, what: &str, f: impl Fn(&[String]) -> bool) -> Vec<String> {
        let deadline = tokio::time::Instant::now() + T;
        loop {
            let screen = self.screen();
            if f(&screen) {
                return screen;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}: {screen:#?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd().arg("kill-server").status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_prompt_survives_arriving_messages_and_tab_completes_a_nickname() {
    let tmp = tempfile::tempdir().expect("tmp");
    let command = format!(
        "TZ=UTC {BIN} --data-dir {} run --no-mdns --listen /ip4/127.0.0.1/tcp/0 --room lobby --name alice",
        tmp.path().join("a").display()
    );
    let tmux = Tmux::start(tmp.path(), &command);
    let screen = tmux
        .wait("alice listening", |s| s.iter().any(|l| l.starts_with("listening on ")))
        .await;
    let addr = screen
        .iter()
        .find_map(|l| l.strip_prefix("listening on "))
        .expect("an address")
        .to_owned();

    let mut bob = Proc::run(
        &tmp.path().join("b"),
        &["--room", "lobby", "--name", "bobby", "--peer", &addr],
    );
    tmux.wait("bobby here", |s| {
        s.iter().any(|l| l.contains("* bobby (") && l.ends_with("is here"))
    })
    .await;

    // A message arrives while a line is half typed: the line stays as typed,
    // on the prompt line below the message. Keys are typed only once the
    // prompt shows, as a person would: keys that arrive while the editor is
    // between two lines can be taken by its terminal queries as it starts
    // the next one (rustyline asks the cursor's position and reads the
    // answer from the same input), a race on a loaded machine.
    let prompt = |room: &'static str| move |s: &[String]| s.last().is_some_and(|l| l == room);
    tmux.wait("the prompt", prompt("[lobby]")).await;
    tmux.type_text("half typed");
    tmux.wait("the typed text", |s| {
        s.last().is_some_and(|l| l == "[lobby] half typed")
    })
    .await;
    bob.say("hello from bob").await;
    let screen = tmux
        .wait("bob's message above the prompt", |s| {
            s.iter().any(|l| l.contains("): hello from bob")) && s.last().is_some_and(|l| l == "[lobby] half typed")
        })
        .await;
    let message = screen.iter().position(|l| l.contains("hello from bob")).expect("shown");
    assert_eq!(message, screen.len() - 2, "{screen:#?}");
    tmux.key("Enter");
    let post = bob.wait("alice's line", |v| is(v, "hallway")).await;
    assert_eq!(post["text"], "half typed");

    // Tab completes a nickname seen in the room.
    tmux.wait("the prompt again", prompt("[lobby]")).await;
    tmux.type_text("/dm bo");
    tmux.key("Tab");
    tmux.wait("the completed nickname", |s| {
        s.last().is_some_and(|l| l == "[lobby] /dm bobby")
    })
    .await;
    tmux.type_text(" psst");
    tmux.key("Enter");
    let dm = bob.wait("the DM", |v| is(v, "dm")).await;
    assert_eq!(dm["text"], "psst");

    // The prompt follows the current room.
    tmux.wait("the prompt after the DM", prompt("[lobby]")).await;
    tmux.type_text("/join music");
    tmux.key("Enter");
    tmux.wait("the new room's prompt", |s| s.last().is_some_and(|l| l == "[music]"))
        .await;

    // Up recalls the last line from the history.
    tmux.key("Up");
    tmux.wait("the recalled line", |s| {
        s.last().is_some_and(|l| l == "[music] /join music")
    })
    .await;
}
