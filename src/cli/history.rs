//! `backchannel history`: the log of a node that is not running, read
//! straight from its sled store, with the names the log knows.

use std::process::ExitCode;

use anyhow::{Context, bail};
use backchannel::{LoggedMessage, PeerId, Room};

use super::args::{Cli, HistoryArgs};
use super::render::Out;

/// `backchannel history`
pub fn run(cli: &Cli, args: &HistoryArgs) -> anyhow::Result<ExitCode> {
    let mut out = Out::new(args.json, false);
    let dir = cli.data_dir()?;
    if !super::unlock::has_log(&dir) {
        bail!("no log in {}: this node has never run", dir.display());
    }
    let key = super::unlock::unlock(&dir)?;
    let store = match super::unlock::open_log(&dir, key.as_ref()) {
        Ok(store) => store,
        Err(e) if e.is_locked() => bail!(
            "the node using {} is running, and it holds its log: read it there with /history, \
             or stop it first",
            dir.display()
        ),
        Err(e) => return Err(e).with_context(|| format!("opening the log in {}", dir.display())),
    };
    // Names first, so that every line (also the first ones) shows them.
    if let Ok(identity) = super::unlock::identity(&dir, key.as_ref()) {
        out.set_me(identity.peer_id(), None);
    }
    let mut messages: Vec<LoggedMessage> = Vec::new();
    for peer in store.conversations()? {
        messages.extend(store.conversation(&peer, args.limit)?);
    }
    for m in &messages {
        out.names().learn_logged(m);
    }
    out.set_petnames(store.contacts()?);

    if let Some(room) = &args.room {
        let room = Room::new(room.as_str())?;
        print(&out, store.room(&room, args.limit)?);
    } else if let Some(peer) = &args.peer {
        let peer: PeerId = out.resolve(peer).with_context(|| {
            format!(
                "--peer {peer:?}: no conversation with anyone of that name; \
                 give a peer id, a contact's name or a nickname from a DM"
            )
        })?;
        print(&out, store.conversation(&peer, args.limit)?);
    } else {
        for room in store.rooms()? {
            print(&out, store.room(&room, args.limit)?);
        }
        print(&out, messages);
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints messages; the names on all of them are learned before the first
/// is shown.
fn print(out: &Out, messages: Vec<LoggedMessage>) {
    for m in &messages {
        out.names().learn_logged(m);
    }
    for m in &messages {
        out.logged(m);
    }
}
