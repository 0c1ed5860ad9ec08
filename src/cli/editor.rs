//! The line editor of `backchannel run` in a terminal (rustyline): the
//! prompt and the half-typed line stay intact below arriving messages,
//! typed lines are kept in a history (up and down arrows), and tab
//! completes commands, nicknames, room ids, group names and message ids.
//! Only when stdin and stdout are both a terminal and `--json` is off;
//! pipes and scripts keep the plain line protocol.

use std::collections::{BTreeSet, VecDeque};
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use backchannel::JsonLine;
use backchannel::command::HELP;
use backchannel::json_line::History;
use rustyline::completion::Completer;
use rustyline::error::ReadlineError;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::history::DefaultHistory;
use rustyline::validate::Validator;
use rustyline::{Context, Editor, ExternalPrinter};
use tokio::sync::mpsc;

use super::names::Names;
use super::render::Sink;

/// Message ids offered for completion: the latest ones seen.
const RECENT_IDS: usize = 200;

/// How long the editor waits for a line to be handled before it shows the
/// prompt again anyway (a slow command must not block typing).
const READY_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Lines typed in the editor, in history at most (in memory).
const HISTORY_LINES: usize = 1000;

/// Whether `run` gets the line editor.
pub fn wanted(json: bool) -> bool {
    !json && std::io::stdin().is_terminal() && std::io::stdout().is_terminal()
}

/// What tab can complete besides names: rooms and recent message ids, as
/// the session's lines show them.
#[derive(Default)]
pub struct Known {
    rooms: BTreeSet<String>,
    ids: VecDeque<String>,
}

impl Known {
    /// Learns the rooms and message ids a line shows.
    pub fn learn(&mut self, line: &JsonLine) {
        match line {
            JsonLine::Joined { room } | JsonLine::CurrentRoom { room } | JsonLine::Hosting { room, .. } => {
                self.rooms.insert(room.to_string());
            }
            JsonLine::Left { room, .. } => {
                self.rooms.remove(room.as_str());
            }
            JsonLine::Hallway { id, .. }
            | JsonLine::Dm { id, .. }
            | JsonLine::Posted { id, .. }
            | JsonLine::DmSent { id, .. }
            | JsonLine::RoomDone { id, .. }
            | JsonLine::History(History::Hallway { id, .. } | History::Dm { id, .. }) => self.id(id.short()),
            JsonLine::Questions { questions, .. } => {
                for q in questions {
                    self.id(q.id.short());
                }
            }
            _ => {}
        }
    }

    fn id(&mut self, id: String) {
        if self.ids.contains(&id) {
            return;
        }
        self.ids.push_back(id);
        if self.ids.len() > RECENT_IDS {
            self.ids.pop_front();
        }
    }
}

/// The editor's helper: completion from the session's names and lines.
struct Helper {
    names: Arc<Mutex<Names>>,
    known: Arc<Mutex<Known>>,
    commands: Vec<String>,
}

impl Helper {
    /// What `word` (the word under the cursor) may become.
    fn candidates(&self, word: &str, first: bool) -> Vec<String> {
        if first && word.starts_with('/') {
            return self.commands.iter().filter(|c| c.starts_with(word)).cloned().collect();
        }
        // "@nick" mentions complete like names.
        let (at, word) = match word.strip_prefix('@') {
            Some(rest) => ("@", rest),
            None => ("", word),
        };
        let mut all: Vec<String> = Vec::new();
        {
            let names = self.names.lock().expect("names lock");
            all.extend(names.all_names());
            if at.is_empty() {
                all.extend(names.group_names());
            }
        }
        if at.is_empty() {
            let known = self.known.lock().expect("known lock");
            all.extend(known.rooms.iter().cloned());
            all.extend(known.ids.iter().rev().cloned());
        }
        let mut out: Vec<String> = all
            .into_iter()
            .filter(|c| c.starts_with(word) && !c.is_empty())
            .map(|c| format!("{at}{c}"))
            .collect();
        let mut seen = BTreeSet::new();
        out.retain(|c| seen.insert(c.clone()));
        out
    }
}

impl Completer for Helper {
    type Candidate = String;

    fn complete(&self, line: &str, pos: usize, _ctx: &Context<'_>) -> rustyline::Result<(usize, Vec<String>)> {
        let before = &line[..pos];
        let start = before.rfind(char::is_whitespace).map_or(0, |i| i + 1);
        let first = before[..start].trim().is_empty();
        let mut candidates = self.candidates(&before[start..], first);
        // A single command completes with the space after it.
        if first && candidates.len() == 1 {
            candidates[0].push(' ');
        }
        Ok((start, candidates))
    }
}

impl Hinter for Helper {
    type Hint = String;
}
impl Highlighter for Helper {}
impl Validator for Helper {}
impl rustyline::Helper for Helper {}

/// The commands of HELP ("/join", "/dm", ...), for completion.
fn command_names() -> Vec<String> {
    let mut names: Vec<String> = HELP
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '/'))
        .filter(|w| w.len() > 1 && w.starts_with('/') && !w[1..].contains('/'))
        .map(str::to_owned)
        .collect();
    names.sort();
    names.dedup();
    names
}

/// Starts the editor on its own thread: typed lines go to `lines`, and the
/// returned sink prints above the prompt. Ctrl-C and Ctrl-D send `/quit`
/// (in a raw terminal Ctrl-C is a key, not a signal). After a line it waits
/// for `ready` (the line was handled, at most [`READY_WAIT`]) and reads
/// `prompt` again, so the prompt follows the current room.
pub fn start(
    names: Arc<Mutex<Names>>,
    known: Arc<Mutex<Known>>,
    prompt: Arc<Mutex<String>>,
    lines: mpsc::Sender<String>,
    ready: std::sync::mpsc::Receiver<()>,
) -> anyhow::Result<Sink> {
    let config = rustyline::Config::builder()
        .max_history_size(HISTORY_LINES)?
        .auto_add_history(true)
        .completion_type(rustyline::CompletionType::List)
        .build();
    let mut editor: Editor<Helper, DefaultHistory> = Editor::with_config(config)?;
    editor.set_helper(Some(Helper {
        names,
        known,
        commands: command_names(),
    }));
    let printer = Arc::new(Mutex::new(editor.create_external_printer()?));
    // The printer shows a line only while the editor reads one; before the
    // first and after the last, lines go straight to stdout. The flag flips
    // under the printer's lock, so a line is never written straight to
    // stdout once the editor may be drawing its prompt (it would land after
    // the prompt, on the prompt's line); a line the printer took just before
    // `readline` starts is shown as soon as it does.
    let reading = Arc::new(AtomicBool::new(false));
    let sink: Sink = {
        let reading = reading.clone();
        let printer = printer.clone();
        Arc::new(move |text: &str| {
            let mut printer = printer.lock().expect("printer lock");
            if !reading.load(Ordering::SeqCst) || printer.print(format!("{text}\n")).is_err() {
                outln!("{text}");
            }
        })
    };
    let set_reading = move |now: bool| {
        let _printer = printer.lock().expect("printer lock");
        reading.store(now, Ordering::SeqCst);
    };
    std::thread::spawn(move || {
        loop {
            let prompt = prompt.lock().expect("prompt lock").clone();
            set_reading(true);
            let read = editor.readline(&prompt);
            set_reading(false);
            let line = match read {
                Ok(line) => line,
                Err(ReadlineError::Interrupted | ReadlineError::Eof) => "/quit".to_owned(),
                Err(e) => {
                    tracing::warn!("line editor: {e}");
                    "/quit".to_owned()
                }
            };
            let quit = line.trim() == "/quit";
            if lines.blocking_send(line).is_err() || quit {
                break;
            }
            let _ = ready.recv_timeout(READY_WAIT);
        }
    });
    Ok(sink)
}

/// The terminal's settings, put back when `run` ends: a node stopped by
/// SIGTERM while the editor waits for a line would leave the terminal raw.
pub struct TerminalGuard {
    #[cfg(target_os = "linux")]
    saved: Option<rustix::termios::Termios>,
}

impl TerminalGuard {
    /// Saves the terminal's settings now.
    pub fn save() -> Self {
        Self {
            #[cfg(target_os = "linux")]
            saved: rustix::termios::tcgetattr(std::io::stdin()).ok(),
        }
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        #[cfg(target_os = "linux")]
        if let Some(saved) = &self.saved {
            let _ = rustix::termios::tcsetattr(std::io::stdin(), rustix::termios::OptionalActions::Now, saved);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_come_from_the_help() {
        let names = command_names();
        for c in ["/join", "/dm", "/react", "/group", "/quit", "/unreact", "/g"] {
            assert!(names.contains(&c.to_string()), "{c}: {names:?}");
        }
    }

    #[test]
    fn tab_completes_commands_names_rooms_and_ids() {
        let names = Arc::new(Mutex::new(Names::default()));
        let peer = backchannel::Identity::from_secret([5; 32]).peer_id();
        names.lock().expect("names").nick(peer, Some("carol"));
        let known = Arc::new(Mutex::new(Known::default()));
        known.lock().expect("known").learn(&JsonLine::Joined {
            room: backchannel::Room::new("lobby").expect("room"),
        });
        let h = Helper {
            names,
            known,
            commands: command_names(),
        };
        assert_eq!(h.candidates("/jo", true), ["/join"]);
        assert_eq!(h.candidates("ca", false), ["carol"]);
        assert_eq!(h.candidates("@ca", false), ["@carol"]);
        assert_eq!(h.candidates("lob", false), ["lobby"]);
    }
}
