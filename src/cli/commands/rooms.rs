//! Rooms and their hallways: joining, posting, replies, questions, reactions.

use anyhow::bail;
use backchannel::PostOptions;
use backchannel::{Handle, JsonLine, MessageId, Room};
use backchannel::{Reaction, RoomAction};

use super::Session;

/// Plain text: a post to the current room. Only scripts hear back (the id).
pub async fn say(s: &mut Session, text: &str) -> anyhow::Result<()> {
    let room = s.room()?;
    let id = s.handle.post(&room, text).await?;
    s.out.emit(&JsonLine::Posted { room: room.clone(), id });
    // Alone in the room, the post waits for the first peer: say so once,
    // when the first post starts waiting (/rooms counts them).
    let info = s.handle.rooms().await?;
    if info
        .iter()
        .any(|r| r.room == room.as_str() && r.peers == 0 && r.unsent == 1)
    {
        s.out.note(&format!(
            "[{}] nobody else is here yet: your posts wait and go out when someone joins",
            s.out.names().room(&room)
        ));
    }
    Ok(())
}

/// `/join ROOM`
pub async fn join(s: &mut Session, room: Room) -> anyhow::Result<()> {
    s.handle.join(&room).await?;
    s.out.emit(&JsonLine::Joined { room: room.clone() });
    s.current = Some(room);
    Ok(())
}

/// `/leave [ROOM]`: the current room becomes another joined room, if any.
pub async fn leave(s: &mut Session, room: Option<Room>) -> anyhow::Result<()> {
    let Some(room) = room.or_else(|| s.current.clone()) else {
        bail!("you are in no room")
    };
    if !s.handle.rooms().await?.iter().any(|r| r.room == room.as_str()) {
        bail!("you are not in {room} (/rooms lists the rooms you are in)");
    }
    let unsent = s.handle.leave(&room).await?;
    s.out.emit(&JsonLine::Left {
        room: room.clone(),
        unsent,
    });
    if s.current.as_ref() == Some(&room) {
        s.current = s
            .handle
            .rooms()
            .await?
            .first()
            .and_then(|r| Room::new(r.room.as_str()).ok());
    }
    Ok(())
}

/// `/room ROOM`
pub async fn switch(s: &mut Session, room: Room) -> anyhow::Result<()> {
    if !s.handle.rooms().await?.iter().any(|r| r.room == room.as_str()) {
        bail!("not in room {room}: /join it first");
    }
    s.out.emit(&JsonLine::CurrentRoom { room: room.clone() });
    s.current = Some(room);
    Ok(())
}

/// `/rooms`
pub async fn list(s: &mut Session) -> anyhow::Result<()> {
    let rooms = s.handle.rooms().await?;
    s.out.emit(&JsonLine::Rooms {
        rooms,
        current: s.current.clone(),
    });
    Ok(())
}

/// `/host NAME`: the hosted room becomes the current room.
pub async fn host(s: &mut Session, name: &str) -> anyhow::Result<()> {
    let room = s.handle.host(name).await?;
    let addrs = s.handle.listen_addrs().await?;
    s.out.emit(&JsonLine::Hosting {
        room: room.clone(),
        host: room.host(),
        addrs,
    });
    s.current = Some(room);
    Ok(())
}

/// `/who`
pub async fn who(s: &mut Session) -> anyhow::Result<()> {
    let room = s.room()?;
    let participants = s.handle.who(&room).await?;
    s.out.emit(&JsonLine::Who { room, participants });
    Ok(())
}

/// `/rules`
pub async fn rules(s: &mut Session) -> anyhow::Result<()> {
    let room = s.room()?;
    let rules = s.handle.room_rules(&room).await?;
    s.out.emit(&JsonLine::Rules { room, rules });
    Ok(())
}

/// `/reply ID TEXT`
pub async fn reply(s: &mut Session, target: &str, text: &str) -> anyhow::Result<()> {
    let room = s.room()?;
    let target = find_post(&s.handle, &room, target).await?;
    let options = PostOptions {
        reply_to: Some(target),
        ..PostOptions::default()
    };
    let id = s.handle.post_with(&room, text, options).await?;
    done(s, room, id, format!("replied to [{}]", target.short()));
    Ok(())
}

/// `/ask TEXT`
pub async fn ask(s: &mut Session, text: &str) -> anyhow::Result<()> {
    let room = s.room()?;
    let options = PostOptions {
        question: true,
        ..PostOptions::default()
    };
    let id = s.handle.post_with(&room, text, options).await?;
    done(s, room, id, "asked the stage".into());
    Ok(())
}

/// `/react ID EMOJI`, `/unreact ID EMOJI`: a post of the current room if the
/// id names one, else a DM.
pub async fn react(s: &mut Session, target: &str, emoji: String, add: bool) -> anyhow::Result<()> {
    let post = match s.current.clone() {
        Some(room) => find_post(&s.handle, &room, target).await.ok().map(|t| (room, t)),
        None => None,
    };
    let Some((room, target)) = post else {
        return super::dm::react(s, target, &emoji, add).await;
    };
    let reaction = Reaction {
        target,
        emoji,
        retract: !add,
    };
    let id = s.handle.room_op(&room, RoomAction::React(reaction)).await?;
    done(s, room, id, format!("reacted to [{}]", target.short()));
    Ok(())
}

/// `/questions`
pub async fn questions(s: &mut Session) -> anyhow::Result<()> {
    let room = s.room()?;
    let questions = s.handle.questions(&room).await?;
    s.out.emit(&JsonLine::Questions { room, questions });
    Ok(())
}

/// `/sync`
pub async fn sync(s: &mut Session) -> anyhow::Result<()> {
    let room = s.room()?;
    let peers = s.handle.sync(&room).await?;
    s.out.emit(&JsonLine::SyncStarted { room, peers });
    Ok(())
}

/// Reports a room operation or post a command made.
pub(super) fn done(s: &Session, room: Room, id: MessageId, what: String) {
    s.out.emit(&JsonLine::RoomDone { room, id, what });
}

/// A post of `room` by its id or the first hex digits of it.
pub(super) async fn find_post(handle: &Handle, room: &Room, prefix: &str) -> anyhow::Result<MessageId> {
    let prefix = prefix
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    if prefix.is_empty() || !prefix.chars().all(|c| c.is_ascii_hexdigit()) {
        bail!("{prefix:?} is not a message id");
    }
    let view = handle.room_view(room, usize::MAX).await?;
    let found: Vec<MessageId> = view
        .iter()
        .map(|p| p.id)
        .filter(|id| id.to_string().starts_with(&prefix))
        .collect();
    match found.as_slice() {
        [one] => Ok(*one),
        [] => bail!("no post [{prefix}] in {room}"),
        _ => bail!("[{prefix}] names {} posts: give more digits", found.len()),
    }
}
