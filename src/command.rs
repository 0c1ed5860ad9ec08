//! The lines a person types into `backchannel run`: plain text goes to the
//! current room's hallway, `/commands` do the rest. Parsing is pure, so every
//! input can be tested (and fuzzed) without a node.

use crate::id::Room;
use crate::room::{ChatMode, QuestionState, Role};

/// A parsed input line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Post text to the current room.
    Say(String),
    /// `/join ROOM`
    Join(Room),
    /// `/leave [ROOM]` (default: the current room)
    Leave(Option<Room>),
    /// `/room ROOM`: switch the current room.
    Switch(Room),
    /// `/rooms`
    Rooms,
    /// `/dm PEER TEXT`; PEER is a peer id or a nickname.
    Dm {
        /// Peer id or nickname.
        peer: String,
        /// The message.
        text: String,
    },
    /// `/peers`
    Peers,
    /// `/net`: reachability, external addresses, relays, the DHT.
    Net,
    /// `/outbox`: DMs waiting for receipts.
    Outbox,
    /// `/requests`: the requests inbox; `/requests on|off` accepts or refuses them.
    Requests(Option<bool>),
    /// `/accept PEER [NICK]`: make a requester a contact.
    Accept(String, Option<String>),
    /// `/decline PEER`: delete a request.
    Decline(String),
    /// `/contacts`
    Contacts,
    /// `/group new NAME PEER...`
    GroupNew(String, Vec<String>),
    /// `/group add|remove NAME PEER`
    GroupMember {
        /// The group.
        group: String,
        /// The peer.
        peer: String,
        /// Add (true) or remove.
        add: bool,
    },
    /// `/group leave NAME`
    GroupLeave(String),
    /// `/group rename NAME NEWNAME`
    GroupRename(String, String),
    /// `/groups`
    Groups,
    /// `/g NAME TEXT`: send to a group.
    GroupSay(String, String),
    /// `/nick PEER NAME`: a local name for a peer, usable wherever a peer is named.
    Nick(String, String),
    /// `/addrs`: the addresses others can dial.
    Addrs,
    /// `/dial MULTIADDR`: connect to a peer now.
    Dial(String),
    /// `/block PEER`: close and refuse connections with a peer.
    Block(String),
    /// `/unblock PEER`
    Unblock(String),
    /// `/history [ROOM|PEER]` (default: the current room)
    History(Option<String>),
    /// `/stats`
    Stats,
    /// `/host NAME`: create a hosted room (you are its host) and join it.
    Host(String),
    /// `/mod PEER`, `/unmod PEER`, `/speaker PEER`, `/listener PEER`: set a
    /// participant's role in the current room (host only).
    SetRole(String, Role),
    /// `/delete ID`: delete a post (yours; any, for moderators and the host).
    Delete(String),
    /// `/edit ID TEXT`: replace the text of a post of yours.
    Edit(String, String),
    /// `/remove PEER` (`/unremove PEER`): remove a participant from the
    /// current room (or let them back).
    Remove(String, bool),
    /// `/chat on|off|readonly`: who may post in the current room.
    Chat(ChatMode),
    /// `/who`: who is in the current room.
    Who,
    /// `/reply ID TEXT`
    Reply(String, String),
    /// `/react ID EMOJI` (`/unreact ID EMOJI`): on a post or a DM.
    React(String, String, bool),
    /// `/ask TEXT`: a question to the stage.
    Ask(String),
    /// `/questions`: the current room's question queue.
    Questions,
    /// `/answered ID`, `/dismiss ID`, `/reopen ID`: a question's state.
    Mark(String, QuestionState),
    /// `/sync`: reconcile the current room's history with its peers now.
    Sync,
    /// `/rules`: the current room's host, mode, roles and removals.
    Rules,
    /// `/help`
    Help,
    /// `/quit`
    Quit,
}

/// Why a line is not a valid command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0} (type /help for the commands)")]
pub struct ParseError(String);

/// What `/help` prints.
pub const HELP: &str = "\
text              post to the current room's hallway
/join ROOM        join a room (and make it current)
/leave [ROOM]     leave a room (default: the current one)
/room ROOM        switch the current room
/rooms            list joined rooms
/dm PEER TEXT     send a private message (PEER: peer id or nickname)
/peers            list connected peers (direct or relayed, and over what)
/net              reachability, relays, the DHT and bootstrap helpers
/outbox           DMs still waiting for their receipt (retried until delivered or expired)
/requests [on|off]  DMs from people who are not your contacts; on/off accepts or refuses them
/accept PEER [NICK] make a requester a contact   /decline PEER  delete a request
/contacts         your contacts                 /nick PEER NAME  your name for a peer
/group new NAME PEER...   a group backchannel (you moderate it; up to 15 members)
/group add|remove NAME PEER, /group rename NAME NEW, /group leave NAME, /groups
/g NAME TEXT      send to a group
/addrs            the addresses others can use with --peer
/dial MULTIADDR   connect to a peer now
/block PEER       close and refuse connections with a peer; /unblock PEER undoes it
/history [ROOM|PEER|GROUP]  show the log of a room, a conversation or a group
/stats            show counters (rejected input, deliveries)
Rooms (ID: a post's id or its first hex digits, as shown in brackets):
/host NAME        create a hosted room (you are its host); others /join the id it prints
/who              who is in the current room, with roles   /rules  host, mode, roles
/reply ID TEXT    answer a post            /ask TEXT   a question to the stage
/react ID EMOJI   react to a post or DM    /unreact ID EMOJI  take it back
/edit ID TEXT     change your post         /delete ID  delete it (moderators: any post)
/questions        the question queue       /answered ID, /dismiss ID, /reopen ID
/mod PEER, /unmod PEER, /speaker PEER, /listener PEER   roles (host only)
/remove PEER, /unremove PEER   remove a participant (moderators)
/chat on|off|readonly   who may post (moderators)   /sync  fetch missed history now
/help             this help
/quit             stop the node";

/// Parses one input line. An empty (or all-space) line is `Ok(None)`.
pub fn parse(line: &str) -> Result<Option<Command>, ParseError> {
    let line = line.trim_end_matches(['\r', '\n']);
    if line.trim().is_empty() {
        return Ok(None);
    }
    let Some(rest) = line.strip_prefix('/') else {
        return Ok(Some(Command::Say(line.to_owned())));
    };
    // "//text" posts "/text", for a line that must start with a slash.
    if rest.starts_with('/') {
        return Ok(Some(Command::Say(rest.to_owned())));
    }
    let (name, args) = match rest.split_once(char::is_whitespace) {
        Some((name, args)) => (name, args.trim()),
        None => (rest, ""),
    };
    let room = |args: &str| Room::new(args).map_err(|e| ParseError(e.to_string()));
    let none = |cmd: Command| {
        if args.is_empty() {
            Ok(Some(cmd))
        } else {
            Err(ParseError(format!("/{name} takes no arguments")))
        }
    };
    match name {
        "join" | "j" => Ok(Some(Command::Join(room(need(args, "/join ROOM")?)?))),
        "leave" => Ok(Some(Command::Leave(if args.is_empty() {
            None
        } else {
            Some(room(args)?)
        }))),
        "room" => Ok(Some(Command::Switch(room(need(args, "/room ROOM")?)?))),
        "rooms" => none(Command::Rooms),
        "dm" | "msg" => {
            let usage = "usage: /dm PEER TEXT";
            let (peer, text) = args
                .split_once(char::is_whitespace)
                .ok_or_else(|| ParseError(usage.into()))?;
            let text = text.trim();
            if text.is_empty() {
                return Err(ParseError(usage.into()));
            }
            Ok(Some(Command::Dm {
                peer: peer.to_owned(),
                text: text.to_owned(),
            }))
        }
        "peers" => none(Command::Peers),
        "net" => none(Command::Net),
        "outbox" => none(Command::Outbox),
        "requests" => match args {
            "" => Ok(Some(Command::Requests(None))),
            "on" => Ok(Some(Command::Requests(Some(true)))),
            "off" => Ok(Some(Command::Requests(Some(false)))),
            _ => Err(ParseError("usage: /requests [on|off]".into())),
        },
        "accept" => {
            let mut words = need(args, "/accept PEER [NICK]")?.splitn(2, char::is_whitespace);
            let peer = words.next().unwrap_or_default().to_owned();
            let nick = words.next().map(|n| n.trim().to_owned()).filter(|n| !n.is_empty());
            Ok(Some(Command::Accept(peer, nick)))
        }
        "decline" => Ok(Some(Command::Decline(need(args, "/decline PEER")?.to_owned()))),
        "contacts" => none(Command::Contacts),
        "groups" => none(Command::Groups),
        "g" => {
            let usage = "usage: /g GROUP TEXT";
            let (group, text) = need(args, usage)?
                .split_once(char::is_whitespace)
                .ok_or_else(|| ParseError(usage.into()))?;
            Ok(Some(Command::GroupSay(group.to_owned(), text.trim().to_owned())))
        }
        "group" => {
            let usage =
                "usage: /group new NAME PEER... | add NAME PEER | remove NAME PEER | rename NAME NEW | leave NAME";
            let words: Vec<&str> = args.split_whitespace().collect();
            match words.as_slice() {
                ["new", name, peers @ ..] if !peers.is_empty() => Ok(Some(Command::GroupNew(
                    (*name).to_owned(),
                    peers.iter().map(|p| (*p).to_owned()).collect(),
                ))),
                [op @ ("add" | "remove"), group, peer] => Ok(Some(Command::GroupMember {
                    group: (*group).to_owned(),
                    peer: (*peer).to_owned(),
                    add: *op == "add",
                })),
                ["rename", group, new] => Ok(Some(Command::GroupRename((*group).to_owned(), (*new).to_owned()))),
                ["leave", group] => Ok(Some(Command::GroupLeave((*group).to_owned()))),
                _ => Err(ParseError(usage.into())),
            }
        }
        "nick" => {
            let usage = "usage: /nick PEER NAME";
            let (peer, name) = need(args, usage)?
                .split_once(char::is_whitespace)
                .ok_or_else(|| ParseError(usage.into()))?;
            Ok(Some(Command::Nick(peer.to_owned(), name.trim().to_owned())))
        }
        "addrs" => none(Command::Addrs),
        "dial" => Ok(Some(Command::Dial(need(args, "/dial MULTIADDR")?.to_owned()))),
        "block" => Ok(Some(Command::Block(need(args, "/block PEER")?.to_owned()))),
        "unblock" => Ok(Some(Command::Unblock(need(args, "/unblock PEER")?.to_owned()))),
        "history" => Ok(Some(Command::History((!args.is_empty()).then(|| args.to_owned())))),
        "stats" => none(Command::Stats),
        "host" => Ok(Some(Command::Host(need(args, "/host NAME")?.to_owned()))),
        "mod" => Ok(Some(Command::SetRole(one(args, "/mod PEER")?, Role::Moderator))),
        "unmod" => Ok(Some(Command::SetRole(one(args, "/unmod PEER")?, Role::Listener))),
        "speaker" => Ok(Some(Command::SetRole(one(args, "/speaker PEER")?, Role::Speaker))),
        "listener" => Ok(Some(Command::SetRole(one(args, "/listener PEER")?, Role::Listener))),
        "delete" => Ok(Some(Command::Delete(one(args, "/delete ID")?))),
        "edit" => {
            let (id, text) = two(args, "/edit ID TEXT")?;
            Ok(Some(Command::Edit(id, text)))
        }
        "remove" => Ok(Some(Command::Remove(one(args, "/remove PEER")?, false))),
        "unremove" => Ok(Some(Command::Remove(one(args, "/unremove PEER")?, true))),
        "chat" => match args {
            "on" => Ok(Some(Command::Chat(ChatMode::On))),
            "off" => Ok(Some(Command::Chat(ChatMode::Off))),
            "readonly" | "read-only" => Ok(Some(Command::Chat(ChatMode::ReadOnly))),
            _ => Err(ParseError("usage: /chat on|off|readonly".into())),
        },
        "who" => none(Command::Who),
        "reply" => {
            let (id, text) = two(args, "/reply ID TEXT")?;
            Ok(Some(Command::Reply(id, text)))
        }
        "react" | "unreact" => {
            let usage = format!("/{name} ID EMOJI");
            let (id, emoji) = two(args, &usage)?;
            if emoji.contains(char::is_whitespace) {
                return Err(ParseError(format!("usage: {usage}")));
            }
            Ok(Some(Command::React(id, emoji, name == "react")))
        }
        "ask" => Ok(Some(Command::Ask(need(args, "/ask TEXT")?.to_owned()))),
        "questions" => none(Command::Questions),
        "answered" => Ok(Some(Command::Mark(one(args, "/answered ID")?, QuestionState::Answered))),
        "dismiss" => Ok(Some(Command::Mark(one(args, "/dismiss ID")?, QuestionState::Dismissed))),
        "reopen" => Ok(Some(Command::Mark(one(args, "/reopen ID")?, QuestionState::Open))),
        "sync" => none(Command::Sync),
        "rules" => none(Command::Rules),
        "help" | "?" => none(Command::Help),
        "quit" | "exit" => none(Command::Quit),
        _ => Err(ParseError(format!("unknown command /{name}"))),
    }
}

/// Exactly one word.
fn one(args: &str, usage: &str) -> Result<String, ParseError> {
    let word = need(args, usage)?;
    if word.contains(char::is_whitespace) {
        return Err(ParseError(format!("usage: {usage}")));
    }
    Ok(word.to_owned())
}

/// A word, then the rest (not empty).
fn two(args: &str, usage: &str) -> Result<(String, String), ParseError> {
    let (first, rest) = need(args, usage)?
        .split_once(char::is_whitespace)
        .ok_or_else(|| ParseError(format!("usage: {usage}")))?;
    let rest = rest.trim();
    if rest.is_empty() {
        return Err(ParseError(format!("usage: {usage}")));
    }
    Ok((first.to_owned(), rest.to_owned()))
}

fn need<'a>(args: &'a str, usage: &str) -> Result<&'a str, ParseError> {
    if args.is_empty() {
        Err(ParseError(format!("usage: {usage}")))
    } else {
        Ok(args)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(line: &str) -> Command {
        parse(line).unwrap().unwrap()
    }

    #[test]
    fn parses_every_command() {
        assert_eq!(parse("   ").unwrap(), None);
        assert_eq!(ok("hello there"), Command::Say("hello there".into()));
        assert_eq!(ok("//not a command"), Command::Say("/not a command".into()));
        assert_eq!(ok("/join lobby"), Command::Join(Room::new("lobby").unwrap()));
        assert_eq!(ok("/leave"), Command::Leave(None));
        assert_eq!(ok("/leave x"), Command::Leave(Some(Room::new("x").unwrap())));
        assert_eq!(ok("/room x"), Command::Switch(Room::new("x").unwrap()));
        assert_eq!(ok("/rooms"), Command::Rooms);
        assert_eq!(
            ok("/dm alice  hi there "),
            Command::Dm {
                peer: "alice".into(),
                text: "hi there".into()
            }
        );
        assert_eq!(ok("/peers"), Command::Peers);
        assert_eq!(ok("/net"), Command::Net);
        assert_eq!(ok("/outbox"), Command::Outbox);
        assert_eq!(ok("/requests"), Command::Requests(None));
        assert_eq!(ok("/requests off"), Command::Requests(Some(false)));
        assert_eq!(ok("/accept bob"), Command::Accept("bob".into(), None));
        assert_eq!(
            ok("/accept bob Bobby B"),
            Command::Accept("bob".into(), Some("Bobby B".into()))
        );
        assert_eq!(ok("/decline bob"), Command::Decline("bob".into()));
        assert_eq!(ok("/contacts"), Command::Contacts);
        assert_eq!(
            ok("/group new mods a b"),
            Command::GroupNew("mods".into(), vec!["a".into(), "b".into()])
        );
        assert_eq!(
            ok("/group remove mods b"),
            Command::GroupMember {
                group: "mods".into(),
                peer: "b".into(),
                add: false
            }
        );
        assert_eq!(
            ok("/group rename mods hosts"),
            Command::GroupRename("mods".into(), "hosts".into())
        );
        assert_eq!(ok("/group leave mods"), Command::GroupLeave("mods".into()));
        assert_eq!(ok("/groups"), Command::Groups);
        assert_eq!(ok("/g mods hi all"), Command::GroupSay("mods".into(), "hi all".into()));
        assert_eq!(ok("/nick 12D3x Ann"), Command::Nick("12D3x".into(), "Ann".into()));
        assert_eq!(ok("/addrs"), Command::Addrs);
        assert_eq!(
            ok("/dial /ip4/127.0.0.1/tcp/1"),
            Command::Dial("/ip4/127.0.0.1/tcp/1".into())
        );
        assert_eq!(ok("/block bob"), Command::Block("bob".into()));
        assert_eq!(ok("/unblock bob"), Command::Unblock("bob".into()));
        assert_eq!(ok("/history"), Command::History(None));
        assert_eq!(ok("/history bob"), Command::History(Some("bob".into())));
        assert_eq!(ok("/stats"), Command::Stats);
        assert_eq!(ok("/help"), Command::Help);
        assert_eq!(ok("/quit"), Command::Quit);
        assert_eq!(ok("/host stage"), Command::Host("stage".into()));
        assert_eq!(ok("/mod bob"), Command::SetRole("bob".into(), Role::Moderator));
        assert_eq!(ok("/unmod bob"), Command::SetRole("bob".into(), Role::Listener));
        assert_eq!(ok("/speaker bob"), Command::SetRole("bob".into(), Role::Speaker));
        assert_eq!(ok("/delete ab12"), Command::Delete("ab12".into()));
        assert_eq!(
            ok("/edit ab12 new text"),
            Command::Edit("ab12".into(), "new text".into())
        );
        assert_eq!(ok("/remove bob"), Command::Remove("bob".into(), false));
        assert_eq!(ok("/chat readonly"), Command::Chat(ChatMode::ReadOnly));
        assert_eq!(ok("/chat off"), Command::Chat(ChatMode::Off));
        assert_eq!(ok("/who"), Command::Who);
        assert_eq!(ok("/reply ab12 yes!"), Command::Reply("ab12".into(), "yes!".into()));
        assert_eq!(ok("/react ab12 👍"), Command::React("ab12".into(), "👍".into(), true));
        assert_eq!(
            ok("/unreact ab12 👍"),
            Command::React("ab12".into(), "👍".into(), false)
        );
        assert_eq!(ok("/ask why?"), Command::Ask("why?".into()));
        assert_eq!(ok("/questions"), Command::Questions);
        assert_eq!(
            ok("/answered ab12"),
            Command::Mark("ab12".into(), QuestionState::Answered)
        );
        assert_eq!(
            ok("/dismiss ab12"),
            Command::Mark("ab12".into(), QuestionState::Dismissed)
        );
        assert_eq!(ok("/sync"), Command::Sync);
    }

    #[test]
    fn rejects_bad_input_with_a_message() {
        for line in [
            "/join",
            "/dm",
            "/dm bob",
            "/dm bob   ",
            "/nope",
            "/rooms x",
            "/room \u{7}",
            "/quit now",
            "/host",
            "/mod a b",
            "/edit ab12",
            "/chat maybe",
            "/react ab12",
            "/react ab12 two words",
            "/who me",
        ] {
            let err = parse(line).unwrap_err();
            assert!(!err.to_string().is_empty(), "{line}");
        }
        let long = format!("/join {}", "x".repeat(65));
        assert!(parse(&long).is_err());
    }
}
