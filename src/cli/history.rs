//! `backchannel history`: the log of a node that is not running, read
//! straight from its sled store.

use std::process::ExitCode;

use anyhow::{Context, bail};
use backchannel::{PeerId, Room, Store};

use super::args::{Cli, HistoryArgs};
use super::render::Out;

/// `backchannel history`
pub fn run(cli: &Cli, args: &HistoryArgs) -> anyhow::Result<ExitCode> {
    let out = Out::new(args.json, false);
    let dir = cli.data_dir()?;
    let path = dir.join("log");
    if !path.exists() {
        bail!("no log in {}: this node has never run", dir.display());
    }
    let store = Store::open(&path).with_context(|| {
        format!(
            "opening the log in {} (is a node using this data directory running?)",
            dir.display()
        )
    })?;
    if let Some(room) = &args.room {
        let room = Room::new(room.as_str())?;
        for m in store.room(&room, args.limit)? {
            out.logged(&m);
        }
    } else if let Some(peer) = &args.peer {
        let peer: PeerId = peer
            .parse()
            .with_context(|| format!("--peer {peer:?} is not a peer id"))?;
        for m in store.conversation(&peer, args.limit)? {
            out.logged(&m);
        }
    } else {
        for room in store.rooms()? {
            for m in store.room(&room, args.limit)? {
                out.logged(&m);
            }
        }
        for peer in store.conversations()? {
            for m in store.conversation(&peer, args.limit)? {
                out.logged(&m);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
