//! The node itself: peers, addresses, dialling, counters, help.

use anyhow::Context;
use backchannel::command::HELP;
use backchannel::{JsonLine, Multiaddr};

use super::Session;

/// `/peers`
pub async fn peers(s: &mut Session) -> anyhow::Result<()> {
    let peers = s.handle.peers().await?;
    s.out.emit(&JsonLine::Peers { peers });
    Ok(())
}

/// `/net`
pub async fn net(s: &mut Session) -> anyhow::Result<()> {
    let net = s.handle.net().await?;
    s.out.emit(&JsonLine::Net { net });
    Ok(())
}

/// `/addrs`
pub async fn addrs(s: &mut Session) -> anyhow::Result<()> {
    let addrs = s.handle.listen_addrs().await?;
    s.out.emit(&JsonLine::Addresses { addrs });
    Ok(())
}

/// `/dial MULTIADDR`
pub async fn dial(s: &mut Session, addr: &str) -> anyhow::Result<()> {
    let addr: Multiaddr = addr.parse().with_context(|| format!("{addr:?} is not a multiaddr"))?;
    s.handle.dial(addr.clone()).await?;
    s.out.emit(&JsonLine::Dialling { addr });
    Ok(())
}

/// `/stats`
pub async fn stats(s: &mut Session) -> anyhow::Result<()> {
    let stats = s.handle.stats().await?;
    s.out.emit(&JsonLine::Stats { stats });
    Ok(())
}

/// `/help`
pub fn help(s: &mut Session) -> anyhow::Result<()> {
    s.out.emit(&JsonLine::Help { text: HELP.into() });
    Ok(())
}
