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
use backchannel::{DmError, GroupError, Handle, NodeError, PeerId, PostError, RejectReason, Room, RoomOpError};

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

/// Runs one command; a refusal is said in words, with what to do.
pub async fn execute(s: &mut Session, cmd: Command) -> anyhow::Result<()> {
    let doing = Doing::of(&cmd);
    let me = s.out.me;
    dispatch(s, cmd).await.map_err(|e| in_words(e, doing, me))
}

/// What a command tried, for saying why it was refused.
#[derive(Clone, Copy)]
enum Doing {
    Role,
    Remove,
    Chat,
    Delete,
    Edit,
    Mark,
    Other,
}

impl Doing {
    fn of(cmd: &Command) -> Doing {
        match cmd {
            Command::SetRole(..) => Doing::Role,
            Command::Remove(..) => Doing::Remove,
            Command::Chat(_) => Doing::Chat,
            Command::Delete(_) => Doing::Delete,
            Command::Edit(..) => Doing::Edit,
            Command::Mark(..) => Doing::Mark,
            _ => Doing::Other,
        }
    }
}

/// The refusals [`in_words`] says in words, from whichever operation's
/// error carries them (a post's or a room operation's `NotAllowed`, a DM's
/// or a group's `InvalidPeer`, or any of them as a [`NodeError`]).
enum Refused<'a> {
    NotAllowed(&'a Room, RejectReason),
    InvalidPeer(PeerId),
}

impl Refused<'_> {
    fn of(e: &anyhow::Error) -> Option<Refused<'_>> {
        use Refused::{InvalidPeer, NotAllowed};
        if let Some(RoomOpError::NotAllowed { room, reason }) = e.downcast_ref::<RoomOpError>() {
            return Some(NotAllowed(room, *reason));
        }
        if let Some(PostError::NotAllowed { room, reason }) = e.downcast_ref::<PostError>() {
            return Some(NotAllowed(room, *reason));
        }
        if let Some(DmError::InvalidPeer(peer)) = e.downcast_ref::<DmError>() {
            return Some(InvalidPeer(*peer));
        }
        if let Some(GroupError::InvalidPeer(peer)) = e.downcast_ref::<GroupError>() {
            return Some(InvalidPeer(*peer));
        }
        match e.downcast_ref::<NodeError>()? {
            NodeError::NotAllowed { room, reason } => Some(NotAllowed(room, *reason)),
            NodeError::InvalidPeer(peer) => Some(InvalidPeer(*peer)),
            _ => None,
        }
    }
}

/// A node error in words a person can act on: which rule refused it and
/// who may do it, instead of the rule's code ("not_allowed").
fn in_words(e: anyhow::Error, doing: Doing, me: Option<PeerId>) -> anyhow::Error {
    let Some(refused) = Refused::of(&e) else {
        return e;
    };
    let text = match refused {
        Refused::NotAllowed(room, reason) => {
            let why = match (reason, doing) {
                (RejectReason::Removed, _) => {
                    "you were removed from it; its host or a moderator can let you back in (/unremove)".into()
                }
                (RejectReason::ChatClosed, _) => "its hallway is closed to you (off, or read-only for listeners); \
                     its host or a moderator can open it (/chat on) or make you a speaker"
                    .into(),
                (_, Doing::Role) => "only its host gives roles (/mod, /speaker, /listener, /unmod)".into(),
                (_, Doing::Remove) => "only its host and moderators remove people, and a moderator cannot \
                     remove another moderator or the host"
                    .into(),
                (_, Doing::Chat) => "only its host and moderators switch the hallway".into(),
                (_, Doing::Delete) => "you can delete only your own posts; its host and moderators delete any".into(),
                (_, Doing::Edit) => "you can edit only your own posts".to_string(),
                (_, Doing::Mark) => {
                    "only its host, moderators and speakers mark questions (in an open room: the asker)".into()
                }
                (_, Doing::Other) => "its rules do not let you do that (/rules shows them)".to_string(),
            };
            format!("not allowed in {room}: {why}")
        }
        Refused::InvalidPeer(peer) if Some(peer) == me => {
            format!("{peer} is you: a DM or group goes to someone else")
        }
        Refused::InvalidPeer(peer) => format!(
            "cannot send to {peer}: it is not an ed25519 peer id, so no message could be signed for it \
             (Backchannel peer ids start with 12D3KooW)"
        ),
    };
    anyhow::anyhow!(text)
}

async fn dispatch(s: &mut Session, cmd: Command) -> anyhow::Result<()> {
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
