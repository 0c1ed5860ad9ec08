//! [`Node::start`] and the [`Handle`] that drives a running node: each
//! method sends the event loop a command with a oneshot for its reply.

use std::sync::Arc;
use std::time::Duration;

use libp2p::{Multiaddr, PeerId};
use tokio::sync::{Mutex, mpsc, oneshot};
use tokio::task::JoinHandle;

use super::error::Stopped;
use super::log_view::{LogRooms, LogView};
use super::{
    Config, DmError, Event, GroupEdit, GroupError, GroupInfo, HistoryQuery, JoinError, NetInfo, NodeError, Participant,
    PeerInfo, PostError, PostOptions, Request, RoomFootprint, RoomInfo, RoomOpError, RoomPost, RoomRules, StartError,
    Stats, event_loop, outbox,
};
use crate::group::GroupId;
use crate::id::{MessageId, Room};
use crate::identity::Identity;
use crate::protocol::MAX_NICK_BYTES;
use crate::room::RoomAction;
use crate::store::{LoggedMessage, Store};

/// Calls waiting for the event loop. Callers wait (backpressure) when full.
const COMMAND_CAPACITY: usize = 256;

/// Events waiting for the application. When the application does not keep up,
/// further events are dropped and counted in [`Stats::events_dropped`]; the
/// messages themselves stay in the log. Never blocking the event loop on the
/// application rules out deadlocks between the two.
const EVENT_CAPACITY: usize = 8192;

/// A running node: its handle, its events, and the task to await on exit.
pub struct Node {
    /// Drives the node; clone it freely.
    pub handle: Handle,
    /// Everything that happens, in order.
    pub events: mpsc::Receiver<Event>,
}

/// A cheap-to-clone handle to a running node.
#[derive(Clone)]
pub struct Handle {
    peer_id: PeerId,
    commands: mpsc::Sender<ToLoop>,
    task: Arc<Mutex<Option<JoinHandle<()>>>>,
}

/// What a [`Handle`] asks of the event loop, with the oneshot for its
/// answer. One variant per operation; fields are named, so a call reads the
/// same at the handle and in the loop's dispatch.
pub(crate) enum Call {
    Join {
        room: Room,
        reply: Reply<Result<(), JoinError>>,
    },
    Prepare {
        room: Room,
        reply: Reply<()>,
    },
    Leave {
        room: Room,
        reply: Reply<Result<usize, NodeError>>,
    },
    Post {
        room: Room,
        text: String,
        options: PostOptions,
        reply: Reply<Result<MessageId, PostError>>,
    },
    Host {
        name: String,
        reply: Reply<Result<Room, JoinError>>,
    },
    RoomOp {
        room: Room,
        action: RoomAction,
        reply: Reply<Result<MessageId, RoomOpError>>,
    },
    ReactDm {
        target: MessageId,
        emoji: String,
        retract: bool,
        reply: Reply<Result<MessageId, DmError>>,
    },
    RoomView {
        room: Room,
        limit: usize,
        reply: Reply<Result<Vec<RoomPost>, NodeError>>,
    },
    RoomPage {
        room: Room,
        before: Option<MessageId>,
        limit: usize,
        reply: Reply<Result<(Vec<RoomPost>, bool), NodeError>>,
    },
    LogView {
        rooms: LogRooms,
        limit: usize,
        reply: Reply<Result<LogView, NodeError>>,
    },
    Rules {
        room: Room,
        reply: Reply<Result<RoomRules, NodeError>>,
    },
    Who {
        room: Room,
        reply: Reply<Result<Vec<Participant>, NodeError>>,
    },
    Sync {
        room: Room,
        reply: Reply<Result<usize, NodeError>>,
    },
    Footprint {
        room: Room,
        reply: Reply<RoomFootprint>,
    },
    Subscribe {
        room: Room,
        reply: Reply<Result<mpsc::Receiver<Event>, NodeError>>,
    },
    SendDm {
        to: PeerId,
        text: String,
        reply: Reply<Result<MessageId, DmError>>,
    },
    History {
        query: HistoryQuery,
        limit: usize,
        reply: Reply<Result<Vec<LoggedMessage>, NodeError>>,
    },
    Peers {
        reply: Reply<Vec<PeerInfo>>,
    },
    Net {
        reply: Reply<NetInfo>,
    },
    Rooms {
        reply: Reply<Vec<RoomInfo>>,
    },
    Stats {
        reply: Reply<Stats>,
    },
    Outbox {
        reply: Reply<Vec<outbox::OutboxEntry>>,
    },
    Contacts {
        reply: Reply<Vec<(PeerId, String)>>,
    },
    SetContact {
        peer: PeerId,
        petname: String,
        reply: Reply<Result<(), NodeError>>,
    },
    Decline {
        peer: PeerId,
        reply: Reply<Result<usize, NodeError>>,
    },
    Requests {
        reply: Reply<Result<Vec<Request>, NodeError>>,
    },
    AcceptRequests {
        accept: bool,
        reply: Reply<Result<(), NodeError>>,
    },
    GroupCreate {
        name: String,
        members: Vec<PeerId>,
        reply: Reply<Result<GroupId, GroupError>>,
    },
    GroupEdit {
        group: GroupId,
        edit: GroupEdit,
        reply: Reply<Result<(), GroupError>>,
    },
    GroupSend {
        group: GroupId,
        text: String,
        reply: Reply<Result<MessageId, GroupError>>,
    },
    Groups {
        reply: Reply<Vec<GroupInfo>>,
    },
    ListenAddrs {
        reply: Reply<Vec<Multiaddr>>,
    },
    Dial {
        addr: Multiaddr,
        reply: Reply<Result<(), NodeError>>,
    },
    SetBlocked {
        peer: PeerId,
        blocked: bool,
        reply: Reply<Result<(), NodeError>>,
    },
    AddAddress {
        peer: PeerId,
        addr: Multiaddr,
        reply: Reply<()>,
    },
}

/// The answer channel of a [`Call`].
pub(crate) type Reply<T> = oneshot::Sender<T>;

/// What travels from a [`Handle`] to the event loop: a call, or the request
/// to stop (kept apart, so the loop's dispatch has no case it cannot take).
pub(crate) enum ToLoop {
    Call(Call),
    Shutdown(Reply<()>),
}

impl Node {
    /// Opens the log, starts the network and spawns the event loop. Must be
    /// called inside a tokio runtime.
    pub async fn start(config: Config, identity: Identity) -> Result<Node, StartError> {
        check_nick(&config)?;
        let store = open_store(&config).await?;
        Self::start_with_store(config, identity, store).await
    }

    /// [`Node::start`] on a log the caller opened, instead of the one in
    /// `config.data_dir`: tests give a [`Store::with_engine`] whose engine
    /// they make fail. The node flushes and uses it as its own; a clone kept
    /// by the caller sees the same log.
    pub async fn start_with_store(config: Config, identity: Identity, store: Store) -> Result<Node, StartError> {
        check_nick(&config)?;
        let (commands_tx, commands_rx) = command_channel();
        let (events_tx, events_rx) = mpsc::channel(EVENT_CAPACITY);
        let peer_id = identity.peer_id();
        let event_loop = event_loop::EventLoop::new(config, identity, store, commands_rx, events_tx)?;
        let task = tokio::spawn(event_loop.run());
        Ok(Node {
            handle: Handle {
                peer_id,
                commands: commands_tx,
                task: Arc::new(Mutex::new(Some(task))),
            },
            events: events_rx,
        })
    }
}

/// The channel from handles to the event loop: [`COMMAND_CAPACITY`] calls
/// wait in it, and a caller beyond them waits to send ([`Handle::ask`]).
fn command_channel() -> (mpsc::Sender<ToLoop>, mpsc::Receiver<ToLoop>) {
    mpsc::channel(COMMAND_CAPACITY)
}

/// Opens the log, waiting briefly for a node that just stopped in this
/// process to release it.
async fn open_store(config: &Config) -> Result<Store, StartError> {
    let path = config.log_path();
    let key = config.data_key.clone();
    let opened =
        tokio::task::spawn_blocking(move || Store::open_keyed_waiting(&path, key.as_ref(), Duration::from_secs(2)))
            .await
            // Opening the log panicked: a bug, not a condition to report.
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
    match opened {
        Err(e) if e.is_locked() => Err(StartError::LogInUse(config.log_path())),
        other => Ok(other?),
    }
}

fn check_nick(config: &Config) -> Result<(), StartError> {
    if let Some(nick) = &config.nick
        && (nick.len() > MAX_NICK_BYTES || nick.chars().any(char::is_control))
    {
        return Err(StartError::InvalidNick);
    }
    Ok(())
}

fn check_group_name(name: &str) -> Result<(), GroupError> {
    if name.is_empty() || name.len() > crate::protocol::MAX_GROUP_NAME_BYTES || name.chars().any(char::is_control) {
        return Err(GroupError::InvalidGroupName);
    }
    Ok(())
}

impl Handle {
    /// This node's peer id.
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// Sends a call and waits for its answer; [`Stopped`] (which becomes
    /// each family's `Stopped`) if the event loop is gone.
    async fn ask<T>(&self, make: impl FnOnce(Reply<T>) -> Call) -> Result<T, Stopped> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(ToLoop::Call(make(reply)))
            .await
            .map_err(|_| Stopped)?;
        answer.await.map_err(|_| Stopped)
    }

    /// Makes this node ready to join `room` at once: mints its stamp for the
    /// room (docs/PROTOCOL.md "Stamps", a few hundredths of a second of a
    /// core) unless the log keeps one, and keeps it, without joining. An
    /// application can call it when it shows a room (a link, a listing), so
    /// that pressing "join" never waits for the stamp. Returns when the
    /// stamp is kept (or could not be: the join then mints again); fails
    /// only with [`JoinError::Stopped`].
    pub async fn prepare_room(&self, room: &Room) -> Result<(), JoinError> {
        Ok(self
            .ask(|reply| Call::Prepare {
                room: room.clone(),
                reply,
            })
            .await?)
    }

    /// Joins a room: subscribes to its hallway. Returns the room's own
    /// handle ([`RoomHandle`]), which posts, moderates, reads and leaves it;
    /// joining a room already joined is not an error.
    /// [`JoinError::Subscribe`] if gossipsub refuses the room's topic.
    pub async fn join(&self, room: &Room) -> Result<RoomHandle, JoinError> {
        self.ask(|reply| Call::Join {
            room: room.clone(),
            reply,
        })
        .await??;
        Ok(self.room(room))
    }

    /// The handle of `room`, joined or not, without asking the node
    /// anything: its operations fail with `NotJoined` ([`PostError::NotJoined`],
    /// [`RoomOpError::NotJoined`], [`NodeError::NotJoined`]) where they need
    /// the room joined.
    pub fn room(&self, room: &Room) -> RoomHandle {
        RoomHandle {
            room: room.clone(),
            node: self.clone(),
        }
    }

    /// Leaves a room. Returns how many posts were still waiting for peers
    /// (they stay in the log but are not sent).
    pub async fn leave(&self, room: &Room) -> Result<usize, NodeError> {
        self.ask(|reply| Call::Leave {
            room: room.clone(),
            reply,
        })
        .await?
    }

    /// Posts to a room's hallway. Returns once the post is signed, durably
    /// logged and handed to gossipsub (or queued until the room has peers).
    /// [`PostError::Flush`] means it is signed, logged in memory and handed
    /// on, but not (yet) on disk: posting it again would post it twice.
    /// [`PostError::NotJoined`] before a join, [`PostError::NotAllowed`]
    /// when the room's rules refuse it, [`PostError::Backlog`] when too many
    /// posts already wait for the room's first peer.
    pub async fn post(&self, room: &Room, text: &str) -> Result<MessageId, PostError> {
        self.post_with(room, text, PostOptions::default()).await
    }

    /// Sends a direct message. Returns once it is signed, durably logged and
    /// sent; [`Event::Delivered`] or [`Event::DmFailed`] follows.
    /// [`DmError::Flush`] means it is not (yet) on disk, but it is in the
    /// outbox and those events still follow. [`DmError::InvalidPeer`] for
    /// this node itself or a peer id without an ed25519 key,
    /// [`DmError::OutboxFull`] when too many DMs wait for receipts.
    pub async fn send_dm(&self, to: PeerId, text: &str) -> Result<MessageId, DmError> {
        self.ask(|reply| Call::SendDm {
            to,
            text: text.to_owned(),
            reply,
        })
        .await?
    }

    /// The last `limit` messages of a room or a conversation, oldest first.
    pub async fn history(&self, query: HistoryQuery, limit: usize) -> Result<Vec<LoggedMessage>, NodeError> {
        self.ask(|reply| Call::History { query, limit, reply }).await?
    }

    /// The connected peers.
    pub async fn peers(&self) -> Result<Vec<PeerInfo>, NodeError> {
        Ok(self.ask(|reply| Call::Peers { reply }).await?)
    }

    /// Reachability, external addresses, relays and the DHT (`/net`).
    pub async fn net(&self) -> Result<NetInfo, NodeError> {
        Ok(self.ask(|reply| Call::Net { reply }).await?)
    }

    /// The joined rooms.
    pub async fn rooms(&self) -> Result<Vec<RoomInfo>, NodeError> {
        Ok(self.ask(|reply| Call::Rooms { reply }).await?)
    }

    /// Creates a group with this node as moderator and `members` (up to
    /// [`Config::max_group_members`] with the moderator). Returns once the
    /// creation is on disk; members learn of it through their outboxes.
    /// [`GroupError::GroupTooLarge`] beyond the limit,
    /// [`GroupError::InvalidPeer`] for a member without an ed25519 key.
    pub async fn group_create(&self, name: &str, members: Vec<PeerId>) -> Result<GroupId, GroupError> {
        check_group_name(name)?;
        self.ask(|reply| Call::GroupCreate {
            name: name.to_owned(),
            members,
            reply,
        })
        .await?
    }

    /// Adds, removes or renames (moderator) or leaves (anyone).
    /// [`GroupError::NotModerator`] when another member tries a moderator's
    /// change, [`GroupError::UnknownGroup`] for a group this node does not know.
    pub async fn group_edit(&self, group: GroupId, edit: GroupEdit) -> Result<(), GroupError> {
        if let GroupEdit::Rename(name) = &edit {
            check_group_name(name)?;
        }
        self.ask(|reply| Call::GroupEdit { group, edit, reply }).await?
    }

    /// Sends a message to a group: signed once, delivered to each member with
    /// a receipt each ([`Event::GroupDelivered`]). [`GroupError::NotMember`]
    /// after this node left or was removed.
    pub async fn group_send(&self, group: GroupId, text: &str) -> Result<MessageId, GroupError> {
        self.ask(|reply| Call::GroupSend {
            group,
            text: text.to_owned(),
            reply,
        })
        .await?
    }

    /// The groups this node knows.
    pub async fn groups(&self) -> Result<Vec<GroupInfo>, NodeError> {
        Ok(self.ask(|reply| Call::Groups { reply }).await?)
    }

    /// The contacts and their petnames (empty: none set).
    pub async fn contacts(&self) -> Result<Vec<(PeerId, String)>, NodeError> {
        Ok(self.ask(|reply| Call::Contacts { reply }).await?)
    }

    /// Makes `peer` a contact (accepting its request) with a local petname,
    /// or renames a contact.
    pub async fn set_contact(&self, peer: PeerId, petname: &str) -> Result<(), NodeError> {
        if petname.len() > MAX_NICK_BYTES || petname.chars().any(char::is_control) {
            return Err(NodeError::InvalidNick);
        }
        self.ask(|reply| Call::SetContact {
            peer,
            petname: petname.to_owned(),
            reply,
        })
        .await?
    }

    /// Declines a request: deletes that peer's DMs. Returns how many.
    pub async fn decline(&self, peer: PeerId) -> Result<usize, NodeError> {
        self.ask(|reply| Call::Decline { peer, reply }).await?
    }

    /// The requests inbox: peers who are not contacts and sent DMs.
    pub async fn requests(&self) -> Result<Vec<Request>, NodeError> {
        self.ask(|reply| Call::Requests { reply }).await?
    }

    /// Accepts (true) or refuses (false) DMs from non-contacts from now on.
    pub async fn accept_requests(&self, on: bool) -> Result<(), NodeError> {
        self.ask(|reply| Call::AcceptRequests { accept: on, reply }).await?
    }

    /// The DMs waiting for receipts, soonest expiry first.
    pub async fn outbox(&self) -> Result<Vec<outbox::OutboxEntry>, NodeError> {
        Ok(self.ask(|reply| Call::Outbox { reply }).await?)
    }

    /// The node's counters.
    pub async fn stats(&self) -> Result<Stats, NodeError> {
        Ok(self.ask(|reply| Call::Stats { reply }).await?)
    }

    /// What the node keeps about `room` now, joined or not (empty once it
    /// has left the room).
    pub async fn room_footprint(&self, room: &Room) -> Result<RoomFootprint, NodeError> {
        Ok(self
            .ask(|reply| Call::Footprint {
                room: room.clone(),
                reply,
            })
            .await?)
    }

    /// The addresses the node listens on, each ending in `/p2p/<id>`.
    pub async fn listen_addrs(&self) -> Result<Vec<Multiaddr>, NodeError> {
        Ok(self.ask(|reply| Call::ListenAddrs { reply }).await?)
    }

    /// Dials an address. Returns once the dial has started: a failure after
    /// that is [`Event::DialFailed`], with its [`crate::DialFailure`]. Fails
    /// at once with [`NodeError::Dial`] only when the node refuses to start
    /// the dial (`DialFailure::ConnectionLimit`: too many dials pending).
    pub async fn dial(&self, addr: Multiaddr) -> Result<(), NodeError> {
        self.ask(|reply| Call::Dial { addr, reply }).await?
    }

    /// Tells the node where `peer` can be reached (as mDNS or identify would),
    /// so a DM to a peer it is not connected to can dial it.
    pub async fn add_peer_address(&self, peer: PeerId, addr: Multiaddr) -> Result<(), NodeError> {
        Ok(self.ask(|reply| Call::AddAddress { peer, addr, reply }).await?)
    }

    /// Blocks `peer` until [`Handle::unblock_peer`], across restarts: its
    /// connections are closed and refused in both directions, and its posts
    /// (whoever forwards them) and DMs are dropped before they are stored or
    /// shown, counted in [`Stats::dropped_blocked`]. The mesh lab also cuts
    /// partitions with it.
    pub async fn block_peer(&self, peer: PeerId) -> Result<(), NodeError> {
        self.ask(|reply| Call::SetBlocked {
            peer,
            blocked: true,
            reply,
        })
        .await?
    }

    /// Unblocks `peer`: new messages from it are accepted again.
    pub async fn unblock_peer(&self, peer: PeerId) -> Result<(), NodeError> {
        self.ask(|reply| Call::SetBlocked {
            peer,
            blocked: false,
            reply,
        })
        .await?
    }

    /// Creates a hosted room named `name` with this node as its host, and
    /// joins it. The returned room's id (`NAME~PEERID`) is what others join.
    /// [`JoinError::InvalidRoom`] when `name` is not a room name.
    pub async fn host(&self, name: &str) -> Result<Room, JoinError> {
        self.ask(|reply| Call::Host {
            name: name.to_owned(),
            reply,
        })
        .await?
    }

    /// Posts with extras: a reply, mentions, or a question to the stage.
    /// Fails as [`Handle::post`] does, and with [`PostError::UnknownMessage`]
    /// when the post replied to is not a post of the room.
    pub async fn post_with(&self, room: &Room, text: &str, options: PostOptions) -> Result<MessageId, PostError> {
        self.ask(|reply| Call::Post {
            room: room.clone(),
            text: text.to_owned(),
            options,
            reply,
        })
        .await?
    }

    /// Signs, logs and publishes a room operation, if this node has the
    /// right ([`RoomOpError::NotAllowed`] otherwise): roles, deletes, edits,
    /// removals, the hallway's mode, question states, reactions.
    /// [`RoomOpError::UnknownMessage`] when the post it is about is not a
    /// post of the room, [`RoomOpError::NoSuchReaction`] when taking back a
    /// reaction this node has not made.
    pub async fn room_op(&self, room: &Room, action: RoomAction) -> Result<MessageId, RoomOpError> {
        if let RoomAction::React(r) = &action {
            crate::room::check_emoji(&r.emoji).map_err(|_| RoomOpError::InvalidEmoji)?;
        }
        self.ask(|reply| Call::RoomOp {
            room: room.clone(),
            action,
            reply,
        })
        .await?
    }

    /// Reacts to a DM of a conversation (or takes the reaction back): sent to
    /// the other participant as a DM with a receipt.
    /// [`DmError::UnknownMessage`] when `target` is not a DM here.
    pub async fn react_dm(&self, target: MessageId, emoji: &str, retract: bool) -> Result<MessageId, DmError> {
        crate::room::check_emoji(emoji).map_err(|_| DmError::InvalidEmoji)?;
        self.ask(|reply| Call::ReactDm {
            target,
            emoji: emoji.to_owned(),
            retract,
            reply,
        })
        .await?
    }

    /// The last `limit` posts a room shows, in the room's order (the same on
    /// every node): deleted posts and posts the rules refuse left out, edits
    /// applied, reactions counted. Works for rooms left or ended too.
    pub async fn room_view(&self, room: &Room, limit: usize) -> Result<Vec<RoomPost>, NodeError> {
        self.ask(|reply| Call::RoomView {
            room: room.clone(),
            limit,
            reply,
        })
        .await?
    }

    /// A page of what [`Handle::room_view`] shows: the `limit` posts just
    /// before the post `before` (default: the latest), in the room's order,
    /// and whether older ones exist. For a joined room it reads only as far
    /// back as the page needs, so a long room opens as fast as a short one
    /// (the local API pages rooms with it). [`NodeError::UnknownMessage`]
    /// when `before` is not a post of the room.
    pub async fn room_page(
        &self,
        room: &Room,
        before: Option<MessageId>,
        limit: usize,
    ) -> Result<(Vec<RoomPost>, bool), NodeError> {
        self.ask(|reply| Call::RoomPage {
            room: room.clone(),
            before,
            limit,
            reply,
        })
        .await?
    }

    /// The log as `backchannel history` shows it: each room of `rooms` as
    /// [`Handle::room_view`] shows it and each DM conversation, the last
    /// `limit` of each, and the contacts (see [`LogView`]).
    pub async fn log_view(&self, rooms: LogRooms, limit: usize) -> Result<LogView, NodeError> {
        self.ask(|reply| Call::LogView { rooms, limit, reply }).await?
    }

    /// A room's rules now: host, hallway mode, roles, removals.
    pub async fn room_rules(&self, room: &Room) -> Result<RoomRules, NodeError> {
        self.ask(|reply| Call::Rules {
            room: room.clone(),
            reply,
        })
        .await?
    }

    /// Who is in a joined room now, with nicknames and roles (this node too).
    pub async fn who(&self, room: &Room) -> Result<Vec<Participant>, NodeError> {
        self.ask(|reply| Call::Who {
            room: room.clone(),
            reply,
        })
        .await?
    }

    /// A room's questions to the stage, in the room's order, with states.
    pub async fn questions(&self, room: &Room) -> Result<Vec<RoomPost>, NodeError> {
        let view = self.room_view(room, usize::MAX).await?;
        Ok(view.into_iter().filter(|p| p.question.is_some()).collect())
    }

    /// Starts history sync of a joined room with every peer in it now.
    /// Returns how many syncs started; [`Event::Synced`] reports each.
    pub async fn sync(&self, room: &Room) -> Result<usize, NodeError> {
        self.ask(|reply| Call::Sync {
            room: room.clone(),
            reply,
        })
        .await?
    }

    /// Stops the node: closes the network, flushes the log and waits until
    /// the log is closed. Safe to call more than once.
    pub async fn shutdown(&self) {
        let (reply, answer) = oneshot::channel();
        if self.commands.send(ToLoop::Shutdown(reply)).await.is_ok() {
            let _ = answer.await;
        }
        if let Some(task) = self.task.lock().await.take() {
            let _ = task.await;
        }
    }
}

/// One joined room, as [`Handle::join`] returns it (iroh-gossip's
/// `GossipTopic` is the model): the room's operations without naming the
/// room each time, and [`RoomHandle::subscribe`], the room's own event
/// stream. Cheap to clone; it holds a [`Handle`] and the room's id.
#[derive(Clone)]
pub struct RoomHandle {
    room: Room,
    node: Handle,
}

impl RoomHandle {
    /// The room.
    pub fn room(&self) -> &Room {
        &self.room
    }

    /// The node's handle.
    pub fn node(&self) -> &Handle {
        &self.node
    }

    /// The room's events, from now on, in order: posts, operations,
    /// presence, sync, peers joining and leaving, this node's posts going
    /// out ([`Event::room`] names the room of each). While a stream of the
    /// room is open, these events go to its streams instead of the node's
    /// [`Node::events`]; when every stream of the room is dropped they go
    /// back there. Leaving the room ends its streams. A stream that is not
    /// read loses events beyond 4096 (counted in [`Stats::events_dropped`];
    /// the messages are in the log).
    pub async fn subscribe(&self) -> Result<mpsc::Receiver<Event>, NodeError> {
        self.node
            .ask(|reply| Call::Subscribe {
                room: self.room.clone(),
                reply,
            })
            .await?
    }

    /// [`Handle::post`] to this room.
    pub async fn post(&self, text: &str) -> Result<MessageId, PostError> {
        self.node.post(&self.room, text).await
    }

    /// [`Handle::post_with`] to this room.
    pub async fn post_with(&self, text: &str, options: PostOptions) -> Result<MessageId, PostError> {
        self.node.post_with(&self.room, text, options).await
    }

    /// [`Handle::room_op`] in this room.
    pub async fn op(&self, action: RoomAction) -> Result<MessageId, RoomOpError> {
        self.node.room_op(&self.room, action).await
    }

    /// [`Handle::room_view`] of this room.
    pub async fn view(&self, limit: usize) -> Result<Vec<RoomPost>, NodeError> {
        self.node.room_view(&self.room, limit).await
    }

    /// [`Handle::room_page`] of this room.
    pub async fn page(&self, before: Option<MessageId>, limit: usize) -> Result<(Vec<RoomPost>, bool), NodeError> {
        self.node.room_page(&self.room, before, limit).await
    }

    /// [`Handle::room_rules`] of this room.
    pub async fn rules(&self) -> Result<RoomRules, NodeError> {
        self.node.room_rules(&self.room).await
    }

    /// [`Handle::who`] is in this room.
    pub async fn who(&self) -> Result<Vec<Participant>, NodeError> {
        self.node.who(&self.room).await
    }

    /// [`Handle::questions`] of this room.
    pub async fn questions(&self) -> Result<Vec<RoomPost>, NodeError> {
        self.node.questions(&self.room).await
    }

    /// [`Handle::sync`] this room with its peers.
    pub async fn sync(&self) -> Result<usize, NodeError> {
        self.node.sync(&self.room).await
    }

    /// [`Handle::room_footprint`] of this room.
    pub async fn footprint(&self) -> Result<RoomFootprint, NodeError> {
        self.node.room_footprint(&self.room).await
    }

    /// [`Handle::leave`]s this room (ending its event streams); returns
    /// how many of this node's posts were still waiting for peers.
    pub async fn leave(self) -> Result<usize, NodeError> {
        self.node.leave(&self.room).await
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use super::*;

    type Caller = Pin<Box<dyn Future<Output = Result<Stats, NodeError>> + Send>>;

    fn caller(handle: &Handle) -> Caller {
        let handle = handle.clone();
        Box::pin(async move { handle.stats().await })
    }

    /// The event loop stalled (here: nobody takes calls from the channel,
    /// as when the loop waits for a flush with its queue full): the first
    /// [`COMMAND_CAPACITY`] calls wait in the channel, and the next caller
    /// waits to send, neither queued nor failed; each call the loop takes
    /// lets one more in. Once the loop is gone every caller, queued or
    /// waiting, is told [`NodeError::Stopped`]. The callers are polled by
    /// hand, so what is pending is decided, not timed.
    #[tokio::test]
    async fn callers_beyond_the_command_capacity_wait_for_the_loop() {
        // Tokio's cooperative budget would make a ready operation pending
        // after 128 of them in one poll of this task; the test counts on
        // exactly what the channel decides.
        tokio::task::unconstrained(async {
            let (commands, mut stalled_loop) = command_channel();
            let handle = Handle {
                peer_id: PeerId::random(),
                commands,
                task: Arc::default(),
            };
            let mut cx = Context::from_waker(std::task::Waker::noop());
            let mut callers: Vec<Caller> = (0..=COMMAND_CAPACITY).map(|_| caller(&handle)).collect();
            for caller in &mut callers {
                assert!(caller.as_mut().poll(&mut cx).is_pending(), "nobody answers yet");
            }
            assert_eq!(
                stalled_loop.len(),
                COMMAND_CAPACITY,
                "one caller more than the capacity is not queued"
            );
            assert_eq!(handle.commands.capacity(), 0);

            // The loop takes one call and answers it: its caller has its
            // answer, and the caller that waited gets in, filling the
            // channel again.
            let Some(ToLoop::Call(Call::Stats { reply })) = stalled_loop.recv().await else {
                panic!("the first call is the first caller's");
            };
            reply.send(Stats::default()).expect("the caller waits");
            assert!(matches!(callers[0].as_mut().poll(&mut cx), Poll::Ready(Ok(_))));
            assert!(callers[COMMAND_CAPACITY].as_mut().poll(&mut cx).is_pending());
            assert_eq!(stalled_loop.len(), COMMAND_CAPACITY, "the waiting caller took the room");
            let mut late = caller(&handle);
            assert!(late.as_mut().poll(&mut cx).is_pending());
            assert_eq!(stalled_loop.len(), COMMAND_CAPACITY, "a new caller waits in turn");

            // The loop ends: every caller still waiting is told, whether its
            // call was queued or not.
            drop(stalled_loop);
            for caller in callers.iter_mut().skip(1).chain([&mut late]) {
                assert!(matches!(
                    caller.as_mut().poll(&mut cx),
                    Poll::Ready(Err(NodeError::Stopped))
                ));
            }
        })
        .await;
    }
}
