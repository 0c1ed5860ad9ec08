//! The `--json` line protocol: one [`JsonLine`] per line of
//! `backchannel run --json` and `backchannel history --json`.
//!
//! The binary writes every line through this type, and the lab's process
//! driver and the CLI tests read them back with it, so the schema is written
//! once. docs/JSON.md documents it for script authors. Each line is an object
//! whose `"type"` names the variant (`"hallway"`, `"dm"`, ...); ids, peer ids,
//! rooms and addresses are strings, times are ms since the Unix epoch.
//! Serializing a line and parsing it back gives the same value (a property
//! test checks it), and a line made from an [`Event`] gives that event back
//! ([`JsonLine::to_event`]).

use serde::{Deserialize, Serialize};

use crate::group::GroupMessage;
use crate::id::as_text;
use crate::node::{Participant, RoomPost, RoomRules};
use crate::room::{ChatMode, QuestionState, Reaction, Role, RoomAction};
use crate::{
    Delivery, DialFailure, DirectMessage, Direction, DmFailure, Event, GroupId, GroupInfo, HallwayPost, MessageId,
    Multiaddr, NetInfo, PeerId, PeerInfo, RejectReason, Request, Room, RoomInfo, Stats,
};

/// One line of `backchannel run --json` or `backchannel history --json`.
///
/// Variants that mirror an [`Event`] come first, then the answers to
/// `/commands`, then the session's own lines.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum JsonLine {
    /// [`Event::Listening`]: an address others can dial (ends in `/p2p/<id>`).
    Listening {
        /// The address.
        #[serde(with = "as_text")]
        addr: Multiaddr,
    },
    /// [`Event::PeerConnected`].
    PeerConnected {
        /// The peer.
        #[serde(with = "as_text")]
        peer: PeerId,
    },
    /// [`Event::PeerDisconnected`].
    PeerDisconnected {
        /// The peer.
        #[serde(with = "as_text")]
        peer: PeerId,
    },
    /// [`Event::RoomPeerJoined`]: a peer subscribed to a joined room.
    RoomPeerJoined {
        /// The room.
        #[serde(with = "as_text")]
        room: Room,
        /// The peer.
        #[serde(with = "as_text")]
        peer: PeerId,
    },
    /// [`Event::RoomPeerLeft`].
    RoomPeerLeft {
        /// The room.
        #[serde(with = "as_text")]
        room: Room,
        /// The peer.
        #[serde(with = "as_text")]
        peer: PeerId,
    },
    /// [`Event::PostSent`]: a post that waited for the room's first peer went out.
    PostSent {
        /// The room.
        #[serde(with = "as_text")]
        room: Room,
        /// The post.
        #[serde(with = "as_text")]
        id: MessageId,
    },
    /// [`Event::PostsWaiting`]: own posts waiting for their pace.
    PostsWaiting {
        /// The room.
        #[serde(with = "as_text")]
        room: Room,
        /// Posts still waiting (0: all sent).
        waiting: usize,
    },
    /// [`Event::Hallway`]: a post in a room's hallway.
    Hallway {
        /// The room.
        #[serde(with = "as_text")]
        room: Room,
        /// The author.
        #[serde(with = "as_text")]
        from: PeerId,
        /// The author's nickname.
        nick: Option<String>,
        /// The post's id.
        #[serde(with = "as_text")]
        id: MessageId,
        /// The text.
        text: String,
        /// The author's clock.
        time: u64,
        /// The room clock.
        clock: u64,
        /// The post it answers.
        #[serde(with = "as_text::option", default)]
        reply_to: Option<MessageId>,
        /// Participants mentioned.
        #[serde(with = "as_text::vec")]
        mentions: Vec<PeerId>,
        /// This node is among `mentions`.
        mentions_me: bool,
        /// A question to the stage.
        question: bool,
    },
    /// [`Event::RoomOp`]: an operation on a room, applied.
    RoomOp {
        /// The room.
        #[serde(with = "as_text")]
        room: Room,
        /// The operation's id.
        #[serde(with = "as_text")]
        id: MessageId,
        /// Its author.
        #[serde(with = "as_text")]
        from: PeerId,
        /// What it does.
        op: Op,
    },
    /// [`Event::Presence`]: someone announced being in a room, or left it.
    Presence {
        /// The room.
        #[serde(with = "as_text")]
        room: Room,
        /// The peer.
        #[serde(with = "as_text")]
        peer: PeerId,
        /// Its nickname.
        nick: Option<String>,
        /// False: gone.
        present: bool,
    },
    /// [`Event::Synced`]: a history sync with a peer completed.
    Synced {
        /// The room.
        #[serde(with = "as_text")]
        room: Room,
        /// The peer.
        #[serde(with = "as_text")]
        peer: PeerId,
        /// Posts and operations received.
        received: usize,
        /// Posts and operations sent.
        sent: usize,
    },
    /// [`Event::DialFailed`]: a connection this node tried to open failed.
    DialFailed {
        /// The peer it was meant to reach.
        #[serde(with = "as_text::option", default)]
        peer: Option<PeerId>,
        /// The address that failed.
        #[serde(with = "as_text::option", default)]
        addr: Option<Multiaddr>,
        /// Why, in words ([`DialFailure`]'s text).
        reason: DialFailure,
    },
    /// [`Event::Dm`]: a direct message (or a DM reaction) to this node.
    Dm {
        /// The author.
        #[serde(with = "as_text")]
        from: PeerId,
        /// The recipient (this node).
        #[serde(with = "as_text")]
        to: PeerId,
        /// The author's nickname.
        nick: Option<String>,
        /// The DM's id.
        #[serde(with = "as_text")]
        id: MessageId,
        /// The text (empty for a reaction).
        text: String,
        /// The author's clock.
        time: u64,
        /// From a non-contact: it waits in the requests inbox.
        request: bool,
        /// A reaction to a message of the conversation.
        reaction: Option<Reaction>,
    },
    /// [`Event::DmQueued`]: a DM waits in the outbox.
    Queued {
        /// The DM.
        #[serde(with = "as_text")]
        id: MessageId,
        /// Its recipient.
        #[serde(with = "as_text")]
        to: PeerId,
        /// The next attempt.
        retry_at: u64,
        /// Why the last attempt failed.
        reason: DmFailure,
    },
    /// [`Event::DmSent`]: an attempt to deliver a DM is on the wire.
    Sent {
        /// The DM.
        #[serde(with = "as_text")]
        id: MessageId,
        /// Its recipient.
        #[serde(with = "as_text")]
        to: PeerId,
        /// Which attempt (1 is the first).
        attempt: u32,
    },
    /// [`Event::GroupChanged`]: a group's members or name, now.
    Group {
        /// The group.
        #[serde(with = "as_text")]
        group: GroupId,
        /// Its name.
        name: String,
        /// Its moderator.
        #[serde(with = "as_text")]
        moderator: PeerId,
        /// Its members.
        #[serde(with = "as_text::vec")]
        members: Vec<PeerId>,
    },
    /// [`Event::GroupWarning`]: added to a group with people this node blocked.
    GroupWarning {
        /// The group.
        #[serde(with = "as_text")]
        group: GroupId,
        /// Its name.
        name: String,
        /// The blocked members.
        #[serde(with = "as_text::vec")]
        blocked: Vec<PeerId>,
    },
    /// [`Event::GroupMessage`]: a message to a group.
    GroupMessage {
        /// The group.
        #[serde(with = "as_text")]
        group: GroupId,
        /// The author.
        #[serde(with = "as_text")]
        from: PeerId,
        /// The author's nickname.
        nick: Option<String>,
        /// The message's id.
        #[serde(with = "as_text")]
        id: MessageId,
        /// The text.
        text: String,
        /// The author's clock.
        time: u64,
        /// The Lamport clock: display order is (lamport, id).
        lamport: u64,
        /// The group state version the author saw.
        version: u64,
    },
    /// [`Event::GroupDelivered`]: receipts for a group message so far.
    GroupDelivered {
        /// The group.
        #[serde(with = "as_text")]
        group: GroupId,
        /// The message.
        #[serde(with = "as_text")]
        id: MessageId,
        /// Members that acknowledged it.
        delivered: usize,
        /// Members it was sent to.
        of: usize,
    },
    /// [`Event::ContactChanged`]: a peer became a contact or got a petname.
    Contact {
        /// The peer.
        #[serde(with = "as_text")]
        peer: PeerId,
        /// Its petname (may be empty).
        petname: String,
    },
    /// [`Event::RequestDeclined`].
    Declined {
        /// The peer.
        #[serde(with = "as_text")]
        peer: PeerId,
        /// Its messages deleted from the log.
        deleted: usize,
    },
    /// [`Event::RequestsSetting`]: whether requests from non-contacts are accepted.
    RequestsSetting {
        /// Accepted.
        accept: bool,
    },
    /// [`Event::BlockChanged`] with `blocked: true`.
    Blocked {
        /// The peer.
        #[serde(with = "as_text")]
        peer: PeerId,
    },
    /// [`Event::BlockChanged`] with `blocked: false`.
    Unblocked {
        /// The peer.
        #[serde(with = "as_text")]
        peer: PeerId,
    },
    /// [`Event::Delivered`]: a valid receipt for a DM arrived.
    Delivered {
        /// The DM.
        #[serde(with = "as_text")]
        id: MessageId,
        /// Its recipient.
        #[serde(with = "as_text")]
        to: PeerId,
    },
    /// [`Event::DmFailed`]: a DM was given up.
    DmFailed {
        /// The DM.
        #[serde(with = "as_text")]
        id: MessageId,
        /// Its recipient.
        #[serde(with = "as_text")]
        to: PeerId,
        /// Why.
        reason: DmFailure,
    },
    /// [`Event::Rejected`]: bytes from a peer were rejected and counted.
    Rejected {
        /// The peer that sent them.
        #[serde(with = "as_text")]
        from: PeerId,
        /// Why, as [`RejectReason::as_str`] names it.
        reason: RejectReason,
    },

    /// `/say` or plain text: the post is logged and published.
    Posted {
        /// The room.
        #[serde(with = "as_text")]
        room: Room,
        /// The post.
        #[serde(with = "as_text")]
        id: MessageId,
    },
    /// `--room`, `/join`: the room is joined and current.
    Joined {
        /// The room.
        #[serde(with = "as_text")]
        room: Room,
    },
    /// `/leave`.
    Left {
        /// The room.
        #[serde(with = "as_text")]
        room: Room,
        /// Posts that never reached a peer (they stay in the log).
        unsent: usize,
    },
    /// `/switch`: the current room.
    CurrentRoom {
        /// The room.
        #[serde(with = "as_text")]
        room: Room,
    },
    /// `/rooms`.
    Rooms {
        /// The joined rooms.
        rooms: Vec<RoomInfo>,
        /// The current room.
        #[serde(with = "as_text::option", default)]
        current: Option<Room>,
    },
    /// `/dm`: the DM is logged and on its way.
    DmSent {
        /// The recipient.
        #[serde(with = "as_text")]
        to: PeerId,
        /// The DM.
        #[serde(with = "as_text")]
        id: MessageId,
        /// The text.
        text: String,
    },
    /// `/react` on a DM.
    DmReactionSent {
        /// The DM reacted to.
        #[serde(with = "as_text")]
        target: MessageId,
        /// The reaction's own id.
        #[serde(with = "as_text")]
        id: MessageId,
    },
    /// `/peers`.
    Peers {
        /// The connected peers.
        peers: Vec<PeerInfo>,
    },
    /// `/net`.
    Net {
        /// What the node knows of its place in the network.
        net: NetInfo,
    },
    /// `/addrs`.
    Addresses {
        /// The listen addresses, each ending in `/p2p/<id>`.
        #[serde(with = "as_text::vec")]
        addrs: Vec<Multiaddr>,
    },
    /// `/requests`.
    Requests {
        /// Peers in the requests inbox.
        requests: Vec<Request>,
    },
    /// `/contacts`.
    Contacts {
        /// The contacts.
        contacts: Vec<Contact>,
    },
    /// `/group new`.
    GroupCreated {
        /// The group.
        #[serde(with = "as_text")]
        group: GroupId,
        /// Its name.
        name: String,
    },
    /// `/groups`.
    Groups {
        /// The groups.
        groups: Vec<GroupInfo>,
    },
    /// `/g`: the group message is on its way.
    GroupSent {
        /// The group.
        #[serde(with = "as_text")]
        group: GroupId,
        /// The message.
        #[serde(with = "as_text")]
        id: MessageId,
    },
    /// `/outbox`.
    Outbox {
        /// The DMs waiting for a receipt.
        outbox: Vec<OutboxRow>,
    },
    /// `/dial`.
    Dialling {
        /// The address.
        #[serde(with = "as_text")]
        addr: Multiaddr,
    },
    /// `/history` and `backchannel history`: one logged message.
    History(History),
    /// `/stats`.
    Stats {
        /// The counters.
        stats: Stats,
    },
    /// `/help`.
    Help {
        /// The help text.
        text: String,
    },
    /// `/host`: a hosted room, joined and current.
    Hosting {
        /// The room (`NAME~HOST`).
        #[serde(with = "as_text")]
        room: Room,
        /// Its host (this node).
        #[serde(with = "as_text::option", default)]
        host: Option<PeerId>,
        /// Where others can reach this node.
        #[serde(with = "as_text::vec")]
        addrs: Vec<Multiaddr>,
    },
    /// A room operation or post made by a command (`/reply`, `/ask`,
    /// `/delete`, `/mod`, ...).
    RoomDone {
        /// The room.
        #[serde(with = "as_text")]
        room: Room,
        /// The operation's or post's id.
        #[serde(with = "as_text")]
        id: MessageId,
        /// What was done, in words.
        what: String,
    },
    /// `/who`.
    Who {
        /// The room.
        #[serde(with = "as_text")]
        room: Room,
        /// Who is in it.
        participants: Vec<Participant>,
    },
    /// `/rules`.
    Rules {
        /// The room.
        #[serde(with = "as_text")]
        room: Room,
        /// Its rules.
        rules: RoomRules,
    },
    /// `/questions`.
    Questions {
        /// The room.
        #[serde(with = "as_text")]
        room: Room,
        /// The questions, in room order.
        questions: Vec<RoomPost>,
    },
    /// `/sync`.
    SyncStarted {
        /// The room.
        #[serde(with = "as_text")]
        room: Room,
        /// Peers a sync started with.
        peers: usize,
    },

    /// The first line of `run`: this node's peer id.
    Identity {
        /// The peer id.
        #[serde(with = "as_text")]
        peer: PeerId,
    },
    /// `run` created a new identity.
    IdentityCreated {
        /// The key file.
        path: String,
    },
    /// `run --ui`: the URL that opens the web app, logged in (once: the
    /// first visit uses up its code).
    WebApp {
        /// `http://127.0.0.1:PORT/login?code=…`
        url: String,
    },
    /// A command failed or could not be parsed.
    Error {
        /// What went wrong.
        message: String,
    },
    /// The last line of `run`: the node stopped and its log is flushed.
    Stopped,
    /// The local API's event stream (docs/API.md): this client missed lines
    /// that are no longer kept (it asked for an old `seq`, or read too
    /// slowly). It reads the state again and reconnects from this line's
    /// `seq`.
    Reload,
}

/// A room operation as a [`JsonLine::RoomOp`] carries it, tagged by `"kind"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Op {
    /// [`RoomAction::SetRole`].
    SetRole {
        /// The participant.
        #[serde(with = "as_text")]
        peer: PeerId,
        /// The new role.
        role: Role,
    },
    /// [`RoomAction::Delete`].
    Delete {
        /// The post.
        #[serde(with = "as_text")]
        target: MessageId,
    },
    /// [`RoomAction::Edit`].
    Edit {
        /// The post.
        #[serde(with = "as_text")]
        target: MessageId,
        /// The new text.
        text: String,
    },
    /// [`RoomAction::Remove`].
    Remove {
        /// The participant.
        #[serde(with = "as_text")]
        peer: PeerId,
        /// Lets them back in.
        restore: bool,
    },
    /// [`RoomAction::Chat`].
    Chat {
        /// The hallway's mode.
        mode: ChatMode,
    },
    /// [`RoomAction::Question`].
    Question {
        /// The question post.
        #[serde(with = "as_text")]
        target: MessageId,
        /// Its new state.
        state: QuestionState,
    },
    /// [`RoomAction::React`].
    React {
        /// The post.
        #[serde(with = "as_text")]
        target: MessageId,
        /// The emoji.
        emoji: String,
        /// Takes the reaction back.
        retract: bool,
    },
}

impl From<&RoomAction> for Op {
    fn from(action: &RoomAction) -> Self {
        match action.clone() {
            RoomAction::SetRole { peer, role } => Op::SetRole { peer, role },
            RoomAction::Delete(target) => Op::Delete { target },
            RoomAction::Edit { target, text } => Op::Edit { target, text },
            RoomAction::Remove { peer, restore } => Op::Remove { peer, restore },
            RoomAction::Chat(mode) => Op::Chat { mode },
            RoomAction::Question { target, state } => Op::Question { target, state },
            RoomAction::React(Reaction { target, emoji, retract }) => Op::React { target, emoji, retract },
        }
    }
}

impl From<Op> for RoomAction {
    fn from(op: Op) -> Self {
        match op {
            Op::SetRole { peer, role } => RoomAction::SetRole { peer, role },
            Op::Delete { target } => RoomAction::Delete(target),
            Op::Edit { target, text } => RoomAction::Edit { target, text },
            Op::Remove { peer, restore } => RoomAction::Remove { peer, restore },
            Op::Chat { mode } => RoomAction::Chat(mode),
            Op::Question { target, state } => RoomAction::Question { target, state },
            Op::React { target, emoji, retract } => RoomAction::React(Reaction { target, emoji, retract }),
        }
    }
}

/// A logged message as `/history` and `backchannel history` show it, tagged
/// by `"kind"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum History {
    /// A hallway post.
    Hallway {
        /// The room.
        #[serde(with = "as_text")]
        room: Room,
        /// The author.
        #[serde(with = "as_text")]
        from: PeerId,
        /// The author's nickname.
        nick: Option<String>,
        /// The post's id.
        #[serde(with = "as_text")]
        id: MessageId,
        /// The text (with `post`: the latest edit).
        text: String,
        /// The author's clock.
        time: u64,
        /// Sent or received by this node.
        direction: Direction,
        /// The post as the room shows it now (edits, reactions, question
        /// state): present in `/history` of a room and in `backchannel
        /// history`, which show a room the same way.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        post: Option<RoomPost>,
    },
    /// A group message.
    Group {
        /// The group.
        #[serde(with = "as_text")]
        group: GroupId,
        /// The author.
        #[serde(with = "as_text")]
        from: PeerId,
        /// The author's nickname.
        nick: Option<String>,
        /// The message's id.
        #[serde(with = "as_text")]
        id: MessageId,
        /// The text.
        text: String,
        /// The author's clock.
        time: u64,
        /// The Lamport clock.
        lamport: u64,
        /// Sent or received by this node.
        direction: Direction,
    },
    /// A direct message.
    Dm {
        /// The author.
        #[serde(with = "as_text")]
        from: PeerId,
        /// The recipient.
        #[serde(with = "as_text")]
        to: PeerId,
        /// The author's nickname.
        nick: Option<String>,
        /// The DM's id.
        #[serde(with = "as_text")]
        id: MessageId,
        /// The text.
        text: String,
        /// The author's clock.
        time: u64,
        /// Sent or received by this node.
        direction: Direction,
        /// For a sent DM: where its delivery stands.
        delivery: Delivery,
        /// A reaction to a message of the conversation (the text is empty).
        #[serde(default)]
        reaction: Option<Reaction>,
    },
}

/// A contact in a [`JsonLine::Contacts`] line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contact {
    /// The peer.
    #[serde(with = "as_text")]
    pub peer: PeerId,
    /// The local petname (may be empty).
    pub nick: String,
}

/// A DM waiting for its receipt, in a [`JsonLine::Outbox`] line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxRow {
    /// The DM.
    #[serde(with = "as_text")]
    pub id: MessageId,
    /// Its recipient.
    #[serde(with = "as_text")]
    pub to: PeerId,
    /// Attempts so far.
    pub attempts: u32,
    /// When the next attempt is due.
    pub next_attempt: u64,
    /// When it expires.
    pub expires: u64,
    /// An attempt is on the wire.
    pub in_flight: bool,
}

impl From<&crate::node::outbox::OutboxEntry> for OutboxRow {
    fn from(e: &crate::node::outbox::OutboxEntry) -> Self {
        Self {
            id: e.id,
            to: e.to,
            attempts: e.attempts,
            next_attempt: e.next_ms,
            expires: e.expires_ms,
            in_flight: e.in_flight,
        }
    }
}

impl History {
    /// A post of `room` as the room shows it now (`/history`, `backchannel
    /// history`): the latest text, and the whole post with its edits,
    /// reactions and question state.
    pub fn from_post(room: Room, post: RoomPost) -> History {
        History::Hallway {
            room,
            from: post.author,
            nick: post.nick.clone(),
            id: post.id,
            text: post.text.clone(),
            time: post.time_ms,
            direction: if post.mine {
                Direction::Sent
            } else {
                Direction::Received
            },
            post: Some(post),
        }
    }

    /// A message read back from the log as a `history` line shows it; None
    /// for what is not a post, a group message or a DM (receipts, room
    /// operations).
    pub fn from_logged(m: &crate::store::LoggedMessage) -> Option<History> {
        use crate::message::Body;
        let (id, from, direction) = (m.message.id(), m.message.author(), m.direction);
        Some(match m.message.body() {
            Body::Hallway(post) => History::Hallway {
                room: post.room.clone(),
                from,
                nick: post.nick.clone(),
                id,
                text: post.text.clone(),
                time: post.time_ms,
                direction,
                post: None,
            },
            Body::Group(g) => History::Group {
                group: g.group,
                from,
                nick: g.nick.clone(),
                id,
                text: g.text.clone(),
                time: g.time_ms,
                lamport: g.lamport,
                direction,
            },
            Body::Direct(dm) => History::Dm {
                from,
                to: dm.recipient,
                nick: dm.nick.clone(),
                id,
                text: dm.text.clone(),
                time: dm.time_ms,
                direction,
                delivery: m.delivery.clone(),
                reaction: dm.reaction.clone(),
            },
            _ => return None,
        })
    }
}

impl JsonLine {
    /// The line that shows `event`, or None for the events a session does
    /// not print. `me` is this node, to tell whether a post mentions it.
    pub fn from_event(event: &Event, me: Option<PeerId>) -> Option<JsonLine> {
        let event = event.clone();
        Some(match event {
            Event::Listening { addr } => JsonLine::Listening { addr },
            Event::PeerConnected { peer } => JsonLine::PeerConnected { peer },
            Event::PeerDisconnected { peer } => JsonLine::PeerDisconnected { peer },
            Event::RoomPeerJoined { room, peer } => JsonLine::RoomPeerJoined { room, peer },
            Event::RoomPeerLeft { room, peer } => JsonLine::RoomPeerLeft { room, peer },
            Event::PostSent { room, id } => JsonLine::PostSent { room, id },
            Event::Hallway { id, from, post } => JsonLine::Hallway {
                mentions_me: me.is_some_and(|me| post.mentions.contains(&me)),
                room: post.room,
                from,
                nick: post.nick,
                id,
                text: post.text,
                time: post.time_ms,
                clock: post.clock,
                reply_to: post.reply_to,
                mentions: post.mentions,
                question: post.question,
            },
            Event::RoomOp { room, id, from, action } => JsonLine::RoomOp {
                room,
                id,
                from,
                op: Op::from(&action),
            },
            Event::Presence {
                room,
                peer,
                nick,
                present,
            } => JsonLine::Presence {
                room,
                peer,
                nick,
                present,
            },
            Event::Synced {
                room,
                peer,
                received,
                sent,
            } => JsonLine::Synced {
                room,
                peer,
                received,
                sent,
            },
            Event::DialFailed { peer, addr, reason } => JsonLine::DialFailed { peer, addr, reason },
            Event::PostsWaiting { room, waiting } => JsonLine::PostsWaiting { room, waiting },
            Event::Dm { id, from, dm, request } => JsonLine::Dm {
                from,
                to: dm.recipient,
                nick: dm.nick,
                id,
                text: dm.text,
                time: dm.time_ms,
                request,
                reaction: dm.reaction,
            },
            Event::DmQueued {
                id,
                to,
                retry_at_ms,
                reason,
            } => JsonLine::Queued {
                id,
                to,
                retry_at: retry_at_ms,
                reason,
            },
            Event::DmSent { id, to, attempt } => JsonLine::Sent { id, to, attempt },
            Event::GroupChanged {
                group,
                name,
                moderator,
                members,
            } => JsonLine::Group {
                group,
                name,
                moderator,
                members,
            },
            Event::GroupWarning { group, name, blocked } => JsonLine::GroupWarning { group, name, blocked },
            Event::GroupMessage {
                group,
                id,
                from,
                message,
            } => JsonLine::GroupMessage {
                group,
                from,
                nick: message.nick,
                id,
                text: message.text,
                time: message.time_ms,
                lamport: message.lamport,
                version: message.version,
            },
            Event::GroupDelivered {
                group,
                id,
                delivered,
                of,
            } => JsonLine::GroupDelivered {
                group,
                id,
                delivered,
                of,
            },
            Event::ContactChanged { peer, petname } => JsonLine::Contact { peer, petname },
            Event::RequestDeclined { peer, deleted } => JsonLine::Declined { peer, deleted },
            Event::RequestsSetting { accept } => JsonLine::RequestsSetting { accept },
            Event::BlockChanged { peer, blocked: true } => JsonLine::Blocked { peer },
            Event::BlockChanged { peer, blocked: false } => JsonLine::Unblocked { peer },
            Event::Delivered { id, to } => JsonLine::Delivered { id, to },
            Event::DmFailed { id, to, reason } => JsonLine::DmFailed { id, to, reason },
            Event::Rejected { from, reason } => JsonLine::Rejected { from, reason },
        })
    }

    /// The event this line shows, exactly as the node emitted it; None for
    /// lines that are not events (answers to commands, the session's own).
    pub fn to_event(&self) -> Option<Event> {
        Some(match self.clone() {
            JsonLine::Listening { addr } => Event::Listening { addr },
            JsonLine::PeerConnected { peer } => Event::PeerConnected { peer },
            JsonLine::PeerDisconnected { peer } => Event::PeerDisconnected { peer },
            JsonLine::RoomPeerJoined { room, peer } => Event::RoomPeerJoined { room, peer },
            JsonLine::RoomPeerLeft { room, peer } => Event::RoomPeerLeft { room, peer },
            JsonLine::PostSent { room, id } => Event::PostSent { room, id },
            JsonLine::Hallway {
                room,
                from,
                nick,
                id,
                text,
                time,
                clock,
                reply_to,
                mentions,
                mentions_me: _,
                question,
            } => Event::Hallway {
                id,
                from,
                post: HallwayPost {
                    room,
                    text,
                    time_ms: time,
                    nick,
                    clock,
                    reply_to,
                    mentions,
                    question,
                    stamp: None,
                },
            },
            JsonLine::RoomOp { room, id, from, op } => Event::RoomOp {
                room,
                id,
                from,
                action: op.into(),
            },
            JsonLine::Presence {
                room,
                peer,
                nick,
                present,
            } => Event::Presence {
                room,
                peer,
                nick,
                present,
            },
            JsonLine::Synced {
                room,
                peer,
                received,
                sent,
            } => Event::Synced {
                room,
                peer,
                received,
                sent,
            },
            JsonLine::DialFailed { peer, addr, reason } => Event::DialFailed { peer, addr, reason },
            JsonLine::PostsWaiting { room, waiting } => Event::PostsWaiting { room, waiting },
            JsonLine::Dm {
                from,
                to,
                nick,
                id,
                text,
                time,
                request,
                reaction,
            } => Event::Dm {
                id,
                from,
                dm: DirectMessage {
                    recipient: to,
                    text,
                    time_ms: time,
                    nick,
                    reaction,
                },
                request,
            },
            JsonLine::Queued {
                id,
                to,
                retry_at,
                reason,
            } => Event::DmQueued {
                id,
                to,
                retry_at_ms: retry_at,
                reason,
            },
            JsonLine::Sent { id, to, attempt } => Event::DmSent { id, to, attempt },
            JsonLine::Group {
                group,
                name,
                moderator,
                members,
            } => Event::GroupChanged {
                group,
                name,
                moderator,
                members,
            },
            JsonLine::GroupWarning { group, name, blocked } => Event::GroupWarning { group, name, blocked },
            JsonLine::GroupMessage {
                group,
                from,
                nick,
                id,
                text,
                time,
                lamport,
                version,
            } => Event::GroupMessage {
                group,
                id,
                from,
                message: GroupMessage {
                    group,
                    text,
                    time_ms: time,
                    lamport,
                    nick,
                    version,
                },
            },
            JsonLine::GroupDelivered {
                group,
                id,
                delivered,
                of,
            } => Event::GroupDelivered {
                group,
                id,
                delivered,
                of,
            },
            JsonLine::Contact { peer, petname } => Event::ContactChanged { peer, petname },
            JsonLine::Declined { peer, deleted } => Event::RequestDeclined { peer, deleted },
            JsonLine::RequestsSetting { accept } => Event::RequestsSetting { accept },
            JsonLine::Blocked { peer } => Event::BlockChanged { peer, blocked: true },
            JsonLine::Unblocked { peer } => Event::BlockChanged { peer, blocked: false },
            JsonLine::Delivered { id, to } => Event::Delivered { id, to },
            JsonLine::DmFailed { id, to, reason } => Event::DmFailed { id, to, reason },
            JsonLine::Rejected { from, reason } => Event::Rejected { from, reason },
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;
    use proptest::strategy::{BoxedStrategy, Union};

    use super::*;
    use crate::Identity;

    fn peer() -> BoxedStrategy<PeerId> {
        any::<[u8; 32]>()
            .prop_map(|secret| Identity::from_secret(secret).peer_id())
            .boxed()
    }

    fn list<T: std::fmt::Debug + 'static>(item: BoxedStrategy<T>) -> BoxedStrategy<Vec<T>> {
        prop::collection::vec(item, 0..3).boxed()
    }

    fn peers() -> BoxedStrategy<Vec<PeerId>> {
        prop::collection::vec(peer(), 0..4).boxed()
    }

    fn id() -> BoxedStrategy<MessageId> {
        any::<[u8; 32]>().prop_map(MessageId::from_bytes).boxed()
    }

    fn group() -> BoxedStrategy<GroupId> {
        any::<[u8; 32]>().prop_map(GroupId::from_bytes).boxed()
    }

    fn room() -> BoxedStrategy<Room> {
        let name = "[a-z0-9][a-z0-9 _.-]{0,30}[a-z0-9]";
        prop_oneof![
            name.prop_map(|n| Room::new(n).expect("a valid name")),
            (name, peer()).prop_map(|(n, host)| Room::hosted(&n, &host).expect("a valid name")),
        ]
        .boxed()
    }

    /// Any text at all: quotes, control characters, any Unicode.
    fn text() -> BoxedStrategy<String> {
        any::<String>().boxed()
    }

    fn failure() -> BoxedStrategy<DmFailure> {
        let simple = prop::sample::select(vec![
            DmFailure::NoRoute,
            DmFailure::Unreachable,
            DmFailure::Timeout,
            DmFailure::UnsupportedProtocol,
            DmFailure::Stream,
            DmFailure::Busy,
            DmFailure::UnknownGroup,
            DmFailure::RecipientStorage,
            DmFailure::NotAccepted,
            DmFailure::MalformedReply,
            DmFailure::InvalidReceipt,
            DmFailure::Expired { last: None },
        ]);
        let one = prop_oneof![simple, text().prop_map(|refusal| DmFailure::Refused { refusal })];
        prop_oneof![
            one.clone(),
            one.prop_map(|last| DmFailure::Expired {
                last: Some(Box::new(last))
            })
        ]
        .boxed()
    }

    fn dial_failure() -> BoxedStrategy<DialFailure> {
        let simple = prop::sample::select(
            crate::node::failure::FIXED_DIAL_FAILURES
                .into_iter()
                .map(|(_, f)| f)
                .collect::<Vec<_>>(),
        );
        // Libp2p's own words are any text but the fixed ones (which read
        // back as their variants, by design).
        let other = text().prop_filter_map("a fixed text", |t| {
            matches!(t.parse(), Ok(DialFailure::Other(_))).then_some(DialFailure::Other(t))
        });
        prop_oneof![
            simple,
            peer().prop_map(|answered| DialFailure::WrongPeer { answered }),
            other
        ]
        .boxed()
    }

    fn nick() -> BoxedStrategy<Option<String>> {
        proptest::option::of(text()).boxed()
    }

    fn addr() -> BoxedStrategy<Multiaddr> {
        (any::<[u8; 4]>(), any::<u16>(), peer())
            .prop_map(|([a, b, c, d], port, peer)| {
                format!("/ip4/{a}.{b}.{c}.{d}/tcp/{port}/p2p/{peer}")
                    .parse()
                    .expect("a valid address")
            })
            .boxed()
    }

    fn role() -> BoxedStrategy<Role> {
        prop_oneof![
            Just(Role::Listener),
            Just(Role::Speaker),
            Just(Role::Moderator),
            Just(Role::Host)
        ]
        .boxed()
    }

    fn question_state() -> BoxedStrategy<QuestionState> {
        prop_oneof![
            Just(QuestionState::Open),
            Just(QuestionState::Answered),
            Just(QuestionState::Dismissed)
        ]
        .boxed()
    }

    fn direction() -> BoxedStrategy<Direction> {
        prop_oneof![Just(Direction::Sent), Just(Direction::Received)].boxed()
    }

    fn reaction() -> BoxedStrategy<Reaction> {
        (id(), text(), any::<bool>())
            .prop_map(|(target, emoji, retract)| Reaction { target, emoji, retract })
            .boxed()
    }

    fn op() -> BoxedStrategy<Op> {
        prop_oneof![
            (peer(), role()).prop_map(|(peer, role)| Op::SetRole { peer, role }),
            id().prop_map(|target| Op::Delete { target }),
            (id(), text()).prop_map(|(target, text)| Op::Edit { target, text }),
            (peer(), any::<bool>()).prop_map(|(peer, restore)| Op::Remove { peer, restore }),
            prop_oneof![Just(ChatMode::On), Just(ChatMode::Off), Just(ChatMode::ReadOnly)]
                .prop_map(|mode| Op::Chat { mode }),
            (id(), question_state()).prop_map(|(target, state)| Op::Question { target, state }),
            reaction().prop_map(|r| Op::React {
                target: r.target,
                emoji: r.emoji,
                retract: r.retract
            }),
        ]
        .boxed()
    }

    fn room_post() -> BoxedStrategy<RoomPost> {
        (
            (id(), peer(), nick(), role(), text(), any::<bool>()),
            (any::<u64>(), any::<u64>(), proptest::option::of(id()), peers()),
            (
                proptest::option::of(question_state()),
                prop::collection::vec((text(), any::<usize>()), 0..3),
                any::<bool>(),
            ),
        )
            .prop_map(
                |(
                    (id, author, nick, role, text, edited),
                    (clock, time_ms, reply_to, mentions),
                    (question, reactions, mine),
                )| RoomPost {
                    id,
                    author,
                    nick,
                    role,
                    text,
                    edited,
                    clock,
                    time_ms,
                    reply_to,
                    mentions,
                    question,
                    reactions,
                    mine,
                },
            )
            .boxed()
    }

    fn stats() -> BoxedStrategy<Stats> {
        let reasons = RejectReason::ALL.to_vec();
        let by_reason = prop::collection::btree_map(prop::sample::select(reasons), any::<u64>(), 0..3);
        let by_peer = prop::collection::btree_map(text(), any::<u64>(), 0..3);
        (
            by_reason,
            by_peer,
            (any::<[u64; 29]>(), any::<[u64; 4]>()),
            any::<bool>(),
        )
            .prop_map(
                |(rejected, rejected_by_peer, (n, m), awaiting_flush): (BTreeMap<_, _>, BTreeMap<_, _>, _, _)| Stats {
                    rejected,
                    rejected_by_peer,
                    duplicates: n[0],
                    hallway_received: n[1],
                    dms_received: n[2],
                    posts_sent: n[3],
                    dms_sent: n[4],
                    dms_delivered: n[5],
                    dms_failed: n[6],
                    requests_refused: n[7],
                    dropped_blocked: n[8],
                    events_dropped: n[9],
                    room_ops_received: n[10],
                    syncs_started: n[11],
                    syncs_completed: n[12],
                    synced_received: n[13],
                    synced_sent: n[14],
                    sync_bytes_in: n[15],
                    sync_bytes_out: n[16],
                    rejected_events_suppressed: n[17],
                    hole_punches: n[18],
                    hole_punch_failures: n[19],
                    peer_lookups: n[20],
                    peer_lookups_found: n[21],
                    connections_established: n[22],
                    room_evicted: n[23],
                    presence_sent: n[24],
                    presence_received: n[25],
                    stamps_minted: n[26],
                    recovery_asked: n[27],
                    recovered: n[28],
                    presence_sent_first: m[0],
                    presence_sent_answers: m[1],
                    presence_held_back: m[2],
                    presence_over_budget: m[3],
                    awaiting_flush,
                },
            )
            .boxed()
    }

    fn history() -> BoxedStrategy<History> {
        let delivery = prop_oneof![
            Just(Delivery::None),
            Just(Delivery::Queued),
            Just(Delivery::Sent),
            Just(Delivery::Delivered),
            text().prop_map(Delivery::Failed),
        ];
        prop_oneof![
            (
                (room(), peer(), nick(), id(), text(), any::<u64>()),
                direction(),
                proptest::option::of(room_post())
            )
                .prop_map(
                    |((room, from, nick, id, text, time), direction, post)| History::Hallway {
                        room,
                        from,
                        nick,
                        id,
                        text,
                        time,
                        direction,
                        post
                    }
                ),
            (
                (group(), peer(), nick(), id(), text(), any::<u64>()),
                any::<u64>(),
                direction()
            )
                .prop_map(
                    |((group, from, nick, id, text, time), lamport, direction)| History::Group {
                        group,
                        from,
                        nick,
                        id,
                        text,
                        time,
                        lamport,
                        direction
                    }
                ),
            (
                (peer(), peer(), nick(), id(), text(), any::<u64>()),
                direction(),
                delivery,
                proptest::option::of(reaction()),
            )
                .prop_map(|((from, to, nick, id, text, time), direction, delivery, reaction)| {
                    History::Dm {
                        from,
                        to,
                        nick,
                        id,
                        text,
                        time,
                        direction,
                        delivery,
                        reaction,
                    }
                }),
        ]
        .boxed()
    }

    /// Every variant of [`JsonLine`], with any values its fields can hold.
    fn line() -> impl Strategy<Value = JsonLine> {
        use JsonLine as L;
        let finite = prop::num::f64::NORMAL | prop::num::f64::SUBNORMAL | prop::num::f64::ZERO;
        let peer_info = (
            peer(),
            prop::collection::vec(text(), 0..3),
            proptest::option::of(finite),
        )
            .prop_map(|(peer, rooms, score)| PeerInfo {
                peer,
                rooms,
                score,
                connections: Vec::new(),
            });
        let room_info =
            (text(), any::<usize>(), any::<usize>()).prop_map(|(room, peers, unsent)| RoomInfo { room, peers, unsent });
        let group_info =
            (group(), text(), peer(), peers(), any::<u64>()).prop_map(|(id, name, moderator, members, version)| {
                GroupInfo {
                    id,
                    name,
                    moderator,
                    members,
                    version,
                }
            });
        let request =
            (peer(), any::<usize>(), text()).prop_map(|(peer, messages, last)| Request { peer, messages, last });
        let participant = (peer(), nick(), role(), any::<bool>()).prop_map(|(peer, nick, role, me)| Participant {
            peer,
            nick,
            role,
            me,
        });
        let rules = (
            proptest::option::of(peer()),
            prop_oneof![Just(ChatMode::On), Just(ChatMode::Off), Just(ChatMode::ReadOnly)],
            prop::collection::vec((text(), role()), 0..3),
            peers(),
        )
            .prop_map(|(host, mode, roles, removed)| RoomRules {
                host,
                mode,
                roles,
                removed,
            });
        let outbox_row = (id(), peer(), any::<u32>(), any::<u64>(), any::<u64>(), any::<bool>()).prop_map(
            |(id, to, attempts, next_attempt, expires, in_flight)| OutboxRow {
                id,
                to,
                attempts,
                next_attempt,
                expires,
                in_flight,
            },
        );
        let reasons: Vec<BoxedStrategy<RejectReason>> =
            RejectReason::ALL.into_iter().map(|r| Just(r).boxed()).collect();
        let variants: Vec<BoxedStrategy<JsonLine>> = vec![
            addr().prop_map(|addr| L::Listening { addr }).boxed(),
            peer().prop_map(|peer| L::PeerConnected { peer }).boxed(),
            peer().prop_map(|peer| L::PeerDisconnected { peer }).boxed(),
            (room(), peer())
                .prop_map(|(room, peer)| L::RoomPeerJoined { room, peer })
                .boxed(),
            (room(), peer())
                .prop_map(|(room, peer)| L::RoomPeerLeft { room, peer })
                .boxed(),
            (room(), id()).prop_map(|(room, id)| L::PostSent { room, id }).boxed(),
            (
                (room(), peer(), nick(), id(), text(), any::<u64>()),
                (
                    any::<u64>(),
                    proptest::option::of(id()),
                    peers(),
                    any::<bool>(),
                    any::<bool>(),
                ),
            )
                .prop_map(
                    |((room, from, nick, id, text, time), (clock, reply_to, mentions, mentions_me, question))| {
                        L::Hallway {
                            room,
                            from,
                            nick,
                            id,
                            text,
                            time,
                            clock,
                            reply_to,
                            mentions,
                            mentions_me,
                            question,
                        }
                    },
                )
                .boxed(),
            (room(), id(), peer(), op())
                .prop_map(|(room, id, from, op)| L::RoomOp { room, id, from, op })
                .boxed(),
            (room(), peer(), nick(), any::<bool>())
                .prop_map(|(room, peer, nick, present)| L::Presence {
                    room,
                    peer,
                    nick,
                    present,
                })
                .boxed(),
            (room(), peer(), any::<usize>(), any::<usize>())
                .prop_map(|(room, peer, received, sent)| L::Synced {
                    room,
                    peer,
                    received,
                    sent,
                })
                .boxed(),
            (room(), any::<usize>())
                .prop_map(|(room, waiting)| L::PostsWaiting { room, waiting })
                .boxed(),
            (
                proptest::option::of(peer()),
                proptest::option::of(addr()),
                dial_failure(),
            )
                .prop_map(|(peer, addr, reason)| L::DialFailed { peer, addr, reason })
                .boxed(),
            (
                (peer(), peer(), nick(), id(), text(), any::<u64>()),
                any::<bool>(),
                proptest::option::of(reaction()),
            )
                .prop_map(|((from, to, nick, id, text, time), request, reaction)| L::Dm {
                    from,
                    to,
                    nick,
                    id,
                    text,
                    time,
                    request,
                    reaction,
                })
                .boxed(),
            (id(), peer(), any::<u64>(), failure())
                .prop_map(|(id, to, retry_at, reason)| L::Queued {
                    id,
                    to,
                    retry_at,
                    reason,
                })
                .boxed(),
            (id(), peer(), any::<u32>())
                .prop_map(|(id, to, attempt)| L::Sent { id, to, attempt })
                .boxed(),
            (group(), text(), peer(), peers())
                .prop_map(|(group, name, moderator, members)| L::Group {
                    group,
                    name,
                    moderator,
                    members,
                })
                .boxed(),
            (group(), text(), peers())
                .prop_map(|(group, name, blocked)| L::GroupWarning { group, name, blocked })
                .boxed(),
            (
                (group(), peer(), nick(), id(), text()),
                (any::<u64>(), any::<u64>(), any::<u64>()),
            )
                .prop_map(
                    |((group, from, nick, id, text), (time, lamport, version))| L::GroupMessage {
                        group,
                        from,
                        nick,
                        id,
                        text,
                        time,
                        lamport,
                        version,
                    },
                )
                .boxed(),
            (group(), id(), any::<usize>(), any::<usize>())
                .prop_map(|(group, id, delivered, of)| L::GroupDelivered {
                    group,
                    id,
                    delivered,
                    of,
                })
                .boxed(),
            (peer(), text())
                .prop_map(|(peer, petname)| L::Contact { peer, petname })
                .boxed(),
            (peer(), any::<usize>())
                .prop_map(|(peer, deleted)| L::Declined { peer, deleted })
                .boxed(),
            any::<bool>().prop_map(|accept| L::RequestsSetting { accept }).boxed(),
            peer().prop_map(|peer| L::Blocked { peer }).boxed(),
            peer().prop_map(|peer| L::Unblocked { peer }).boxed(),
            (id(), peer()).prop_map(|(id, to)| L::Delivered { id, to }).boxed(),
            (id(), peer(), failure())
                .prop_map(|(id, to, reason)| L::DmFailed { id, to, reason })
                .boxed(),
            (peer(), Union::new(reasons))
                .prop_map(|(from, reason)| L::Rejected { from, reason })
                .boxed(),
            (room(), id()).prop_map(|(room, id)| L::Posted { room, id }).boxed(),
            room().prop_map(|room| L::Joined { room }).boxed(),
            (room(), any::<usize>())
                .prop_map(|(room, unsent)| L::Left { room, unsent })
                .boxed(),
            room().prop_map(|room| L::CurrentRoom { room }).boxed(),
            (list(room_info.boxed()), proptest::option::of(room()))
                .prop_map(|(rooms, current)| L::Rooms { rooms, current })
                .boxed(),
            (peer(), id(), text())
                .prop_map(|(to, id, text)| L::DmSent { to, id, text })
                .boxed(),
            (id(), id())
                .prop_map(|(target, id)| L::DmReactionSent { target, id })
                .boxed(),
            list(peer_info.boxed()).prop_map(|peers| L::Peers { peers }).boxed(),
            prop::collection::vec(addr(), 0..3)
                .prop_map(|addrs| L::Addresses { addrs })
                .boxed(),
            list(request.boxed())
                .prop_map(|requests| L::Requests { requests })
                .boxed(),
            prop::collection::vec((peer(), text()), 0..3)
                .prop_map(|c| L::Contacts {
                    contacts: c.into_iter().map(|(peer, nick)| Contact { peer, nick }).collect(),
                })
                .boxed(),
            (group(), text())
                .prop_map(|(group, name)| L::GroupCreated { group, name })
                .boxed(),
            list(group_info.boxed()).prop_map(|groups| L::Groups { groups }).boxed(),
            (group(), id())
                .prop_map(|(group, id)| L::GroupSent { group, id })
                .boxed(),
            list(outbox_row.boxed()).prop_map(|outbox| L::Outbox { outbox }).boxed(),
            addr().prop_map(|addr| L::Dialling { addr }).boxed(),
            history().prop_map(L::History).boxed(),
            stats().prop_map(|stats| L::Stats { stats }).boxed(),
            text().prop_map(|text| L::Help { text }).boxed(),
            (
                room(),
                proptest::option::of(peer()),
                prop::collection::vec(addr(), 0..3),
            )
                .prop_map(|(room, host, addrs)| L::Hosting { room, host, addrs })
                .boxed(),
            (room(), id(), text())
                .prop_map(|(room, id, what)| L::RoomDone { room, id, what })
                .boxed(),
            (room(), list(participant.boxed()))
                .prop_map(|(room, participants)| L::Who { room, participants })
                .boxed(),
            (room(), rules)
                .prop_map(|(room, rules)| L::Rules { room, rules })
                .boxed(),
            (room(), list(room_post()))
                .prop_map(|(room, questions)| L::Questions { room, questions })
                .boxed(),
            (room(), any::<usize>())
                .prop_map(|(room, peers)| L::SyncStarted { room, peers })
                .boxed(),
            peer().prop_map(|peer| L::Identity { peer }).boxed(),
            text().prop_map(|path| L::IdentityCreated { path }).boxed(),
            text().prop_map(|message| L::Error { message }).boxed(),
            Just(L::Stopped).boxed(),
            Just(L::Reload).boxed(),
            text().prop_map(|url| L::WebApp { url }).boxed(),
        ];
        Union::new(variants)
    }

    proptest! {
        /// A line written and read back is the same line, and it is one line.
        #[test]
        fn a_line_round_trips_exactly(line in line()) {
            let text = serde_json::to_string(&line).expect("serializes");
            prop_assert!(!text.contains('\n'), "{text}");
            let back: JsonLine = serde_json::from_str(&text).expect("parses");
            prop_assert_eq!(back, line);
        }

        /// An event line gives back the event it was made from: nothing
        /// the node said is lost on the way through a process's stdout.
        #[test]
        fn an_event_line_gives_back_its_event(line in line()) {
            let Some(event) = line.to_event() else { return Ok(()) };
            // `mentions_me` is not part of the event: rebuild it with a
            // node that is mentioned exactly when the line says so.
            let me = match &line {
                JsonLine::Hallway { mentions, mentions_me: true, .. } => mentions.first().copied(),
                _ => None,
            };
            let mut expected = line.clone();
            if let JsonLine::Hallway { mentions, mentions_me, .. } = &mut expected {
                *mentions_me = me.is_some_and(|me| mentions.contains(&me));
            }
            prop_assert_eq!(JsonLine::from_event(&event, me), Some(expected));
        }
    }

    #[test]
    fn lines_keep_the_shape_scripts_know() {
        let peer = Identity::from_secret([7; 32]).peer_id();
        let line = JsonLine::Delivered {
            id: MessageId::from_bytes([1; 32]),
            to: peer,
        };
        let value = serde_json::to_value(&line).expect("serializes");
        assert_eq!(
            value,
            serde_json::json!({"type": "delivered", "id": "01".repeat(32), "to": peer.to_string()})
        );
        let stopped = serde_json::to_string(&JsonLine::Stopped).expect("serializes");
        assert_eq!(stopped, r#"{"type":"stopped"}"#);
    }

    #[test]
    fn a_bad_line_is_an_error() {
        for bad in [
            r#"{"type":"delivered","id":"zz","to":"x"}"#,
            r#"{"type":"no_such_line"}"#,
            r#"{"type":"rejected","from":"12D3KooWA","reason":"no_such_reason"}"#,
            r#"{"id":"00"}"#,
            "not json",
        ] {
            assert!(serde_json::from_str::<JsonLine>(bad).is_err(), "{bad}");
        }
    }
}
