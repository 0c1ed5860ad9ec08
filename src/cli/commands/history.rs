//! `/history [ROOM|PEER|GROUP]`: the latest messages from the node's log.

use anyhow::Context;
use backchannel::json_line::History;
use backchannel::{HistoryQuery, JsonLine, Room};

use super::Session;
use super::groups::find_group;

/// Messages shown by `/history`.
const HISTORY_LIMIT: usize = 50;

/// Shows a peer's conversation, a group's, or a room (the current one by
/// default) as it shows now: edits, deletes, reactions, questions applied.
pub async fn show(s: &mut Session, target: Option<String>) -> anyhow::Result<()> {
    let query = match target {
        None => HistoryQuery::Room(s.current.clone().context("you are in no room: /history ROOM|PEER")?),
        Some(t) => match s.out.resolve(&t) {
            Some(peer) => HistoryQuery::Peer(peer),
            None => match find_group(&s.handle, &t).await {
                Ok(group) => HistoryQuery::Group(group),
                Err(_) => HistoryQuery::Room(Room::new(t)?),
            },
        },
    };
    if let HistoryQuery::Room(room) = &query {
        for p in s.handle.room_view(room, HISTORY_LIMIT).await? {
            s.out.emit(&JsonLine::History(History::from_post(room.clone(), p)));
        }
        return Ok(());
    }
    for m in s.handle.history(query, HISTORY_LIMIT).await? {
        s.out.logged(&m);
    }
    Ok(())
}
