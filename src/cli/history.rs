//! `backchannel history`: a node's log as `/history` shows it, with the
//! names the log knows. The log of a node that is not running is read
//! straight from its sled store; a running node holds its log locked, so it
//! is asked through its local API (`ask`). Either way the answer is one
//! [`Transcript`], printed here, so the lines are the same.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, bail};
use backchannel::api::Transcript;
use backchannel::json_line::History;
use backchannel::seal::DataKey;
use backchannel::{JsonLine, PeerId, Room, Store};
use backchannel::{LogRooms, LogView};

use super::args::{Cli, HistoryArgs};
use super::ask;
use super::render::Out;

/// `backchannel history`
pub fn run(cli: &Cli, args: &HistoryArgs) -> anyhow::Result<ExitCode> {
    let dir = cli.data_dir()?;
    if !super::unlock::has_log(&dir) {
        bail!("no log in {}: this node has never run", dir.display());
    }
    let key = super::unlock::unlock(&dir)?;
    let rooms = match (&args.room, &args.peer) {
        (Some(room), _) => LogRooms::Only(Room::new(room.as_str())?),
        (None, Some(_)) => LogRooms::None,
        (None, None) => LogRooms::All,
    };
    let transcript = match super::unlock::open_log(&dir, key.as_ref()) {
        Ok(store) => read(&dir, key.as_ref(), &store, &rooms, args.limit)?,
        Err(e) if e.is_locked() => ask::transcript(&dir, &rooms, args.limit)?,
        Err(e) => return Err(e).with_context(|| format!("opening the log in {}", dir.display())),
    };
    print(args, transcript)?;
    Ok(ExitCode::SUCCESS)
}

/// The log of a node that is not running, read from its store.
fn read(
    dir: &Path,
    key: Option<&DataKey>,
    store: &Store,
    rooms: &LogRooms,
    limit: usize,
) -> anyhow::Result<Transcript> {
    // The key tells this node's own messages; a log whose key is gone is
    // still readable.
    let me = super::unlock::identity(dir, key)
        .ok()
        .map(|identity| identity.peer_id());
    let view =
        LogView::read(store, me, rooms, limit).with_context(|| format!("reading the log in {}", dir.display()))?;
    Ok(Transcript::from(view))
}

/// Prints what `args` asks for; the names on every line are learned before
/// the first is shown.
fn print(args: &HistoryArgs, transcript: Transcript) -> anyhow::Result<()> {
    let mut out = Out::new(args.json, false);
    if let Some(me) = transcript.me {
        out.set_me(me, None);
    }
    let rooms = transcript.rooms.iter().flat_map(|r| &r.lines);
    for line in transcript.conversations.iter().flat_map(|c| &c.lines).chain(rooms) {
        out.names().learn_history(line);
    }
    out.set_petnames(transcript.contacts.into_iter().map(|c| (c.peer, c.nick)).collect());

    let lines: Vec<History> = if args.room.is_some() {
        transcript.rooms.into_iter().flat_map(|r| r.lines).collect()
    } else if let Some(peer) = &args.peer {
        let peer: PeerId = out.resolve(peer).with_context(|| {
            format!(
                "--peer {peer:?}: no conversation with anyone of that name; \
                 give a peer id, a contact's name or a nickname from a DM"
            )
        })?;
        transcript
            .conversations
            .into_iter()
            .filter(|c| c.peer == peer)
            .flat_map(|c| c.lines)
            .collect()
    } else {
        let rooms = transcript.rooms.into_iter().flat_map(|r| r.lines);
        rooms
            .chain(transcript.conversations.into_iter().flat_map(|c| c.lines))
            .collect()
    };
    for line in lines {
        out.emit(&JsonLine::History(line));
    }
    Ok(())
}
