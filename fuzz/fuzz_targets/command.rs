//! Any typed line through the session's command parser: a command, nothing,
//! or an error with a message, never a panic. A parsed command printed back
//! in its canonical form parses to the same command, and line endings never
//! change what a line means.

#![no_main]

use backchannel::command::{Command, parse};
use backchannel::{ChatMode, QuestionState, Role};
use libfuzzer_sys::fuzz_target;

/// The canonical line for a command.
fn line(cmd: &Command) -> String {
    let opt = |name: &str, arg: &Option<String>| match arg {
        Some(a) => format!("/{name} {a}"),
        None => format!("/{name}"),
    };
    match cmd {
        Command::Say(text) if text.starts_with('/') => format!("/{text}"),
        Command::Say(text) => text.clone(),
        Command::Join(room) => format!("/join {room}"),
        Command::Leave(room) => opt("leave", &room.as_ref().map(|r| r.to_string())),
        Command::Switch(room) => format!("/room {room}"),
        Command::Rooms => "/rooms".into(),
        Command::Dm { peer, text } => format!("/dm {peer} {text}"),
        Command::Peers => "/peers".into(),
        Command::Net => "/net".into(),
        Command::Outbox => "/outbox".into(),
        Command::Requests(None) => "/requests".into(),
        Command::Requests(Some(on)) => format!("/requests {}", if *on { "on" } else { "off" }),
        Command::Accept(peer, nick) => match nick {
            Some(nick) => format!("/accept {peer} {nick}"),
            None => format!("/accept {peer}"),
        },
        Command::Decline(peer) => format!("/decline {peer}"),
        Command::Contacts => "/contacts".into(),
        Command::GroupNew(name, peers) => format!("/group new {name} {}", peers.join(" ")),
        Command::GroupMember { group, peer, add } => {
            format!("/group {} {group} {peer}", if *add { "add" } else { "remove" })
        }
        Command::GroupLeave(group) => format!("/group leave {group}"),
        Command::GroupRename(group, name) => format!("/group rename {group} {name}"),
        Command::Groups => "/groups".into(),
        Command::GroupSay(group, text) => format!("/g {group} {text}"),
        Command::Nick(peer, name) => format!("/nick {peer} {name}"),
        Command::Addrs => "/addrs".into(),
        Command::Dial(addr) => format!("/dial {addr}"),
        Command::Block(peer) => format!("/block {peer}"),
        Command::Unblock(peer) => format!("/unblock {peer}"),
        Command::History(what) => opt("history", what),
        Command::Stats => "/stats".into(),
        Command::Help => "/help".into(),
        Command::Quit => "/quit".into(),
        Command::Host(name) => format!("/host {name}"),
        Command::SetRole(peer, role) => match role {
            Role::Moderator => format!("/mod {peer}"),
            Role::Speaker => format!("/speaker {peer}"),
            Role::Listener | Role::Host => format!("/listener {peer}"),
        },
        Command::Delete(id) => format!("/delete {id}"),
        Command::Edit(id, text) => format!("/edit {id} {text}"),
        Command::Remove(peer, false) => format!("/remove {peer}"),
        Command::Remove(peer, true) => format!("/unremove {peer}"),
        Command::Chat(ChatMode::On) => "/chat on".into(),
        Command::Chat(ChatMode::Off) => "/chat off".into(),
        Command::Chat(ChatMode::ReadOnly) => "/chat readonly".into(),
        Command::Who => "/who".into(),
        Command::Reply(id, text) => format!("/reply {id} {text}"),
        Command::React(id, emoji, true) => format!("/react {id} {emoji}"),
        Command::React(id, emoji, false) => format!("/unreact {id} {emoji}"),
        Command::Ask(text) => format!("/ask {text}"),
        Command::Questions => "/questions".into(),
        Command::Mark(id, QuestionState::Answered) => format!("/answered {id}"),
        Command::Mark(id, QuestionState::Dismissed) => format!("/dismiss {id}"),
        Command::Mark(id, QuestionState::Open) => format!("/reopen {id}"),
        Command::Sync => "/sync".into(),
        Command::Rules => "/rules".into(),
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let parsed = parse(text);
    for ending in ["\n", "\r\n", "\r\n\n"] {
        assert_eq!(
            parse(&format!("{text}{ending}")),
            parsed,
            "a line ending changed the meaning"
        );
    }
    match parsed {
        Ok(Some(cmd)) => {
            let canonical = line(&cmd);
            assert_eq!(
                parse(&canonical),
                Ok(Some(cmd.clone())),
                "{canonical:?} parses differently"
            );
        }
        Ok(None) => assert!(text.trim().is_empty()),
        Err(e) => assert!(!e.to_string().is_empty()),
    }
});
