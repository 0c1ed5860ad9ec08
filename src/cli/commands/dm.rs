//! Direct messages: sending, reactions, the outbox.

use anyhow::bail;
use backchannel::json_line::OutboxRow;
use backchannel::{Body, Handle, HistoryQuery, JsonLine, MessageId, PeerId};

use super::Session;

/// `/dm PEER TEXT`
pub async fn send(s: &mut Session, peer: &str, text: &str) -> anyhow::Result<()> {
    let to = s.peer(peer)?;
    let id = s.handle.send_dm(to, text).await?;
    s.out.emit(&JsonLine::DmSent {
        to,
        id,
        text: text.to_owned(),
    });
    Ok(())
}

/// `/react ID EMOJI` on a DM (`add: false`: `/unreact`).
pub async fn react(s: &mut Session, target: &str, emoji: &str, add: bool) -> anyhow::Result<()> {
    let target = find_dm(&s.handle, target).await?;
    let id = s.handle.react_dm(target, emoji, !add).await?;
    s.out.emit(&JsonLine::DmReactionSent { target, id });
    Ok(())
}

/// `/outbox`
pub async fn outbox(s: &mut Session) -> anyhow::Result<()> {
    let outbox = s.handle.outbox().await?.iter().map(OutboxRow::from).collect();
    s.out.emit(&JsonLine::Outbox { outbox });
    Ok(())
}

/// A DM by id or id prefix, among the recent conversations with contacts
/// and requests.
async fn find_dm(handle: &Handle, prefix: &str) -> anyhow::Result<MessageId> {
    let prefix = prefix
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    let mut peers: Vec<PeerId> = handle.contacts().await?.into_iter().map(|(p, _)| p).collect();
    peers.extend(handle.requests().await?.into_iter().map(|r| r.peer));
    let mut found = Vec::new();
    for peer in peers {
        for m in handle.history(HistoryQuery::Peer(peer), 200).await? {
            if matches!(m.message.body(), Body::Direct(_)) && m.message.id().to_string().starts_with(&prefix) {
                found.push(m.message.id());
            }
        }
    }
    found.sort();
    found.dedup();
    match found.as_slice() {
        [one] => Ok(*one),
        [] => bail!("no post or DM [{prefix}]"),
        _ => bail!("[{prefix}] names {} messages: give more digits", found.len()),
    }
}
