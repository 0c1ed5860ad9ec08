//! Contacts and the requests inbox. Accepting, naming, declining and
//! blocking print nothing here: the node's events say what happened.

use backchannel::JsonLine;
use backchannel::json_line::Contact;

use super::Session;

/// `/requests`
pub async fn requests(s: &mut Session) -> anyhow::Result<()> {
    let requests = s.handle.requests().await?;
    s.out.emit(&JsonLine::Requests { requests });
    Ok(())
}

/// `/accept PEER [NICK]` and `/nick PEER NAME`: a contact with a petname
/// (may be empty).
pub async fn set(s: &mut Session, peer: &str, petname: &str) -> anyhow::Result<()> {
    let peer = s.peer(peer)?;
    s.handle.set_contact(peer, petname).await?;
    s.out.set_petnames(s.handle.contacts().await?);
    Ok(())
}

/// `/contacts`
pub async fn list(s: &mut Session) -> anyhow::Result<()> {
    let contacts = s.handle.contacts().await?;
    s.out.set_petnames(contacts.clone());
    let contacts = contacts
        .into_iter()
        .map(|(peer, nick)| Contact { peer, nick })
        .collect();
    s.out.emit(&JsonLine::Contacts { contacts });
    Ok(())
}
