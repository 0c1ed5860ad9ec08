//! Groups: small private conversations with a moderator.

use anyhow::bail;
use backchannel::{GroupEdit, GroupId, Handle, JsonLine};

use super::Session;

/// `/group new NAME PEER...`
pub async fn create(s: &mut Session, name: &str, peers: &[String]) -> anyhow::Result<()> {
    let members = peers.iter().map(|p| s.peer(p)).collect::<anyhow::Result<Vec<_>>>()?;
    let group = s.handle.group_create(name, members).await?;
    s.out.emit(&JsonLine::GroupCreated {
        group,
        name: name.to_owned(),
    });
    Ok(())
}

/// `/group add|remove NAME PEER`
pub async fn member(s: &mut Session, group: &str, peer: &str, add: bool) -> anyhow::Result<()> {
    let group = find_group(&s.handle, group).await?;
    let peer = s.peer(peer)?;
    let edit = if add {
        GroupEdit::Add(peer)
    } else {
        GroupEdit::Remove(peer)
    };
    Ok(s.handle.group_edit(group, edit).await?)
}

/// `/group rename NAME NEWNAME`
pub async fn rename(s: &mut Session, group: &str, new: String) -> anyhow::Result<()> {
    let group = find_group(&s.handle, group).await?;
    Ok(s.handle.group_edit(group, GroupEdit::Rename(new)).await?)
}

/// `/group leave NAME`
pub async fn leave(s: &mut Session, group: &str) -> anyhow::Result<()> {
    let group = find_group(&s.handle, group).await?;
    Ok(s.handle.group_edit(group, GroupEdit::Leave).await?)
}

/// `/groups`
pub async fn list(s: &mut Session) -> anyhow::Result<()> {
    let groups = s.handle.groups().await?;
    s.out.emit(&JsonLine::Groups { groups });
    Ok(())
}

/// `/g NAME TEXT`. Only scripts hear back (the id); receipts follow as
/// `group_delivered`.
pub async fn say(s: &mut Session, group: &str, text: &str) -> anyhow::Result<()> {
    let group = find_group(&s.handle, group).await?;
    let id = s.handle.group_send(group, text).await?;
    s.out.emit(&JsonLine::GroupSent { group, id });
    Ok(())
}

/// A group by name (or id, or id prefix) among the node's groups.
pub(super) async fn find_group(handle: &Handle, name: &str) -> anyhow::Result<GroupId> {
    let groups = handle.groups().await?;
    let found: Vec<_> = groups
        .iter()
        .filter(|g| g.name == name || g.id.to_string().starts_with(name))
        .collect();
    match found.as_slice() {
        [one] => Ok(one.id),
        [] => bail!("no group {name:?}: /groups lists them"),
        _ => bail!("{name:?} names {} groups: use the id shown by /groups", found.len()),
    }
}
