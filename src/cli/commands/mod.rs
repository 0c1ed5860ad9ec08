//! The `/commands` of `backchannel run`, one file per family; [`execute`]
//! only delegates. Each command prints its answer as a [`JsonLine`]
//! through the session's [`Out`]; many print nothing, because the node's
//! event says it.
//!
//! [`JsonLine`]: backchannel::JsonLine

mod contacts;
mod dm;
mod groups;
mod history;
mod moderation;
mod node;
mod rooms;

use anyhow::Context;
use backchannel::command::Command;
use backchannel::{Handle, PeerId, Room};

use super::render::Out;

/// What the commands of one session share.
pub struct Session {
    /// The node.
    pub handle: Handle,
    /// Where answers go.
    pub out: Out,
    /// The room plain text goes to.
    pub current: Option<Room>,
}

impl Session {
    /// The current room, or an error saying there is none.
    fn room(&self) -> anyhow::Result<Room> {
        self.current.clone().context("you are in no room: /join ROOM first")
    }

    /// The peer a command names.
    fn peer(&self, name: &str) -> anyhow::Result<PeerId> {
        self.out.peer(name)
    }
}

/// Runs one command.
pub async fn execute(s: &mut Session, cmd: Command) -> anyhow::Result<()> {
    match cmd {
        Command::Say(text) => rooms::say(s, &text).await,
        Command::Join(room) => rooms::join(s, room).await,
        Command::Leave(room) => rooms::leave(s, room).await,
        Command::Switch(room) => rooms::switch(s, room).await,
        Command::Rooms => rooms::list(s).await,
        Command::Host(name) => rooms::host(s, &name).await,
        Command::Who => rooms::who(s).await,
        Command::Rules => rooms::rules(s).await,
        Command::Reply(target, text) => rooms::reply(s, &target, &text).await,
        Command::Ask(text) => rooms::ask(s, &text).await,
        Command::React(target, emoji, add) => rooms::react(s, &target, emoji, add).await,
        Command::Questions => rooms::questions(s).await,
        Command::Sync => rooms::sync(s).await,
        Command::SetRole(peer, role) => moderation::set_role(s, &peer, role).await,
        Command::Delete(target) => moderation::delete(s, &target).await,
        Command::Edit(target, text) => moderation::edit(s, &target, text).await,
        Command::Remove(peer, restore) => moderation::remove(s, &peer, restore).await,
        Command::Chat(mode) => moderation::chat(s, mode).await,
        Command::Mark(target, state) => moderation::mark(s, &target, state).await,
        Command::Dm { peer, text } => dm::send(s, &peer, &text).await,
        Command::Outbox => dm::outbox(s).await,
        Command::Requests(None) => contacts::requests(s).await,
        Command::Requests(Some(on)) => Ok(s.handle.accept_requests(on).await?),
        Command::Accept(peer, nick) => contacts::set(s, &peer, nick.as_deref().unwrap_or("")).await,
        Command::Nick(peer, name) => contacts::set(s, &peer, &name).await,
        // The node's `declined` event says how many messages went.
        Command::Decline(peer) => s.handle.decline(s.peer(&peer)?).await.map(drop).map_err(Into::into),
        Command::Contacts => contacts::list(s).await,
        Command::Block(peer) => Ok(s.handle.block_peer(s.peer(&peer)?).await?),
        Command::Unblock(peer) => Ok(s.handle.unblock_peer(s.peer(&peer)?).await?),
        Command::GroupNew(name, peers) => groups::create(s, &name, &peers).await,
        Command::GroupMember { group, peer, add } => groups::member(s, &group, &peer, add).await,
        Command::GroupRename(group, new) => groups::rename(s, &group, new).await,
        Command::GroupLeave(group) => groups::leave(s, &group).await,
        Command::Groups => groups::list(s).await,
        Command::GroupSay(group, text) => groups::say(s, &group, &text).await,
        Command::History(target) => history::show(s, target).await,
        Command::Peers => node::peers(s).await,
        Command::Net => node::net(s).await,
        Command::Addrs => node::addrs(s).await,
        Command::Dial(addr) => node::dial(s, &addr).await,
        Command::Stats => node::stats(s).await,
        Command::Help => node::help(s),
        // The run loop stops on /quit before it gets here.
        Command::Quit => Ok(()),
    }
}
