//! Moderation of the current room: roles, deletes, edits, removals, the
//! hallway's mode, question states. The room's rules decide who may; a
//! refusal comes back as an error.

use backchannel::{ChatMode, QuestionState, Role, RoomAction};

use super::Session;
use super::rooms::{done, find_post};
use crate::cli::render::{mode_word, role_word, state_word};

/// `/mod`, `/unmod`, `/speaker`, `/listener PEER`
pub async fn set_role(s: &mut Session, peer: &str, role: Role) -> anyhow::Result<()> {
    let room = s.room()?;
    let peer = s.peer(peer)?;
    let id = s.handle.room_op(&room, RoomAction::SetRole { peer, role }).await?;
    let what = format!("{} is now {}", s.out.who(&peer), role_word(role));
    done(s, room, id, what);
    Ok(())
}

/// `/delete ID`
pub async fn delete(s: &mut Session, target: &str) -> anyhow::Result<()> {
    let room = s.room()?;
    let target = find_post(&s.handle, &room, target).await?;
    let id = s.handle.room_op(&room, RoomAction::Delete(target)).await?;
    done(s, room, id, format!("deleted [{}]", target.short()));
    Ok(())
}

/// `/edit ID TEXT`
pub async fn edit(s: &mut Session, target: &str, text: String) -> anyhow::Result<()> {
    let room = s.room()?;
    let target = find_post(&s.handle, &room, target).await?;
    let id = s.handle.room_op(&room, RoomAction::Edit { target, text }).await?;
    done(s, room, id, format!("edited [{}]", target.short()));
    Ok(())
}

/// `/remove PEER`, `/unremove PEER`
pub async fn remove(s: &mut Session, peer: &str, restore: bool) -> anyhow::Result<()> {
    let room = s.room()?;
    let peer = s.peer(peer)?;
    let id = s.handle.room_op(&room, RoomAction::Remove { peer, restore }).await?;
    let what = if restore { "let back in" } else { "removed" };
    let what = format!("{what} {}", s.out.who(&peer));
    done(s, room, id, what);
    Ok(())
}

/// `/chat on|off|readonly`
pub async fn chat(s: &mut Session, mode: ChatMode) -> anyhow::Result<()> {
    let room = s.room()?;
    let id = s.handle.room_op(&room, RoomAction::Chat(mode)).await?;
    done(s, room, id, format!("hallway {}", mode_word(mode)));
    Ok(())
}

/// `/answered ID`, `/dismiss ID`, `/reopen ID`
pub async fn mark(s: &mut Session, target: &str, state: QuestionState) -> anyhow::Result<()> {
    let room = s.room()?;
    let target = find_post(&s.handle, &room, target).await?;
    let id = s.handle.room_op(&room, RoomAction::Question { target, state }).await?;
    let what = format!("question [{}] {}", target.short(), state_word(state));
    done(s, room, id, what);
    Ok(())
}
