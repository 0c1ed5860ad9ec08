//! Command-line arguments, and the one place they become library types.

use std::path::PathBuf;

use anyhow::{Context, bail};
use backchannel::lab::scenario::Scenario;
use backchannel::multiaddr::Protocol;
use backchannel::{Config, Multiaddr, Room};
use clap::{Args, Parser, Subcommand};

/// Backchannel: peer-to-peer text beside live audio rooms.
#[derive(Debug, Parser)]
#[command(name = "backchannel", version, about)]
pub struct Cli {
    /// Where the identity and the log live [default: the platform's data
    /// directory, e.g. ~/.local/share/backchannel]
    #[arg(long, global = true, env = "BACKCHANNEL_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// What to do.
    #[command(subcommand)]
    pub command: Cmd,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Create an identity in the data directory (keeps an existing one) and print its peer id.
    Init(InitArgs),
    /// Encrypt a plaintext data directory (its identity key and log) under a passphrase.
    Encrypt,
    /// Change the passphrase of an encrypted data directory.
    Passphrase,
    /// Print the peer id of the identity in the data directory.
    Id,
    /// Run a participant node in this terminal.
    Run(RunArgs),
    /// Run an always-on helper that joins no rooms: bootstrap, DHT server,
    /// relay and reachability tests for participants behind NATs.
    Serve(ServeArgs),
    /// Print the node's log as /history shows it (a running node is asked for it).
    History(HistoryArgs),
    /// Start a local mesh of nodes on loopback, drive traffic, inject faults, report.
    Mesh(MeshArgs),
}

/// `backchannel init`
#[derive(Debug, Args)]
pub struct InitArgs {
    /// Do not encrypt the data directory. Without this, a new directory is
    /// encrypted under a passphrase typed in the terminal or given in
    /// BACKCHANNEL_PASSPHRASE; with neither (a script) it stays plaintext,
    /// and `init` says so.
    #[arg(long)]
    pub plaintext: bool,
}

/// `backchannel mesh`: flags override the scenario file (or the defaults).
#[derive(Debug, Args)]
pub struct MeshArgs {
    /// Nodes in the mesh [default: 10].
    #[arg(long)]
    pub nodes: Option<usize>,
    /// Rooms; node i is in room i % ROOMS [default: 1].
    #[arg(long)]
    pub rooms: Option<usize>,
    /// Hallway posts per second, over all publishers [default: 20].
    #[arg(long, value_name = "MSGS_PER_S")]
    pub rate: Option<f64>,
    /// Bytes of text per message [default: 200].
    #[arg(long, value_name = "BYTES")]
    pub size: Option<usize>,
    /// Seconds of traffic [default: 10].
    #[arg(long, value_name = "SECS")]
    pub duration: Option<f64>,
    /// full, line, ring or random:K, within each room [default: random:4].
    #[arg(long)]
    pub topology: Option<String>,
    /// DM pairs (seeded) sending direct messages during the run [default: 0].
    #[arg(long)]
    pub dm_pairs: Option<usize>,
    /// DMs in flight per pair [default: 64].
    #[arg(long)]
    pub dm_window: Option<usize>,
    /// Run every node as a real `backchannel run` process.
    #[arg(long)]
    pub processes: bool,
    /// Run every node as a process in its own home behind a NAT (Linux
    /// network namespaces, one helper; needs root, ip and iptables).
    /// Implies --processes.
    #[arg(long)]
    pub netns: bool,
    /// Encrypted data directories (to measure the cost of encryption at rest).
    #[arg(long)]
    pub encrypt: bool,
    /// A scenario file (TOML or JSON): traffic, faults, topology.
    #[arg(long, value_name = "FILE")]
    pub scenario: Option<PathBuf>,
    /// Seed for topology, pairs and identities [default: 1].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Print one JSON summary object per run instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Draw the latency distribution (CDF) to this SVG file.
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,
}

impl MeshArgs {
    /// The scenario to run: the file (or defaults) with flags on top.
    pub fn scenario(&self) -> anyhow::Result<Scenario> {
        let mut s = match &self.scenario {
            Some(path) => {
                let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
                Scenario::parse(&text).with_context(|| format!("in {}", path.display()))?
            }
            None => Scenario::default(),
        };
        if let Some(v) = self.nodes {
            s.nodes = v;
        }
        if let Some(v) = self.rooms {
            s.hallway.rooms = v;
        }
        if let Some(v) = self.rate {
            s.hallway.rate = v;
        }
        if let Some(v) = self.size {
            s.hallway.size = v;
            s.dm.size = v;
        }
        if let Some(v) = self.duration {
            s.hallway.duration_s = v;
        }
        if let Some(v) = &self.topology {
            s.topology = v.clone();
        }
        if let Some(v) = self.dm_pairs {
            s.dm.pairs = v;
        }
        if let Some(v) = self.dm_window {
            s.dm.window = v;
        }
        if let Some(v) = self.seed {
            s.seed = v;
        }
        s.processes |= self.processes || self.netns;
        s.netns |= self.netns;
        s.encrypt |= self.encrypt;
        s.validate()?;
        Ok(s)
    }
}

/// `backchannel run`
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Join this room at start (repeatable); the first is the current room.
    #[arg(long = "room", value_name = "ROOM")]
    pub rooms: Vec<String>,
    /// Your display name, sent with your messages (at most 32 bytes).
    #[arg(long, value_name = "NICK")]
    pub name: Option<String>,
    /// Listen on this address (repeatable) [default: /ip4/0.0.0.0/tcp/0 and /ip4/0.0.0.0/udp/0/quic-v1].
    #[arg(long, value_name = "MULTIADDR")]
    pub listen: Vec<Multiaddr>,
    /// Dial this peer at start and whenever it is lost; must end in /p2p/<id> (repeatable).
    #[arg(long, value_name = "MULTIADDR")]
    pub peer: Vec<Multiaddr>,
    /// Do not discover peers on the local network with mDNS.
    #[arg(long)]
    pub no_mdns: bool,
    /// A helper (`backchannel serve`) to find rooms and peers through across
    /// the internet; must end in /p2p/<id> (repeatable, or comma-separated in
    /// the variable). Remembered: later starts without it use the last ones.
    #[arg(long, value_name = "MULTIADDR", env = "BACKCHANNEL_BOOTSTRAP", value_delimiter = ',')]
    pub bootstrap: Vec<Multiaddr>,
    /// This node is reachable at the addresses it listens on (a server with
    /// a public address, or all nodes on one machine): serve the DHT at once.
    #[arg(long)]
    pub public: bool,
    /// Do not relay for others or test their reachability, even when this
    /// node is publicly reachable.
    #[arg(long)]
    pub no_help: bool,
    /// Print one JSON object per line per event on stdout, and nothing else.
    #[arg(long)]
    pub json: bool,
    /// Print the URL that opens the web app. The node always serves it and
    /// the local API on 127.0.0.1 (docs/API.md); `history` asks it there.
    #[arg(long)]
    pub ui: bool,
    /// The port of the web app and local API on 127.0.0.1 [default: a free one].
    #[arg(long, value_name = "PORT")]
    pub ui_port: Option<u16>,
    /// Show every line: routine history syncs, each DM retry, repeated
    /// connection failures, peers' subscriptions, full room ids.
    #[arg(long, short)]
    pub verbose: bool,
}

/// `backchannel serve`
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Listen on this address (repeatable) [default: TCP and QUIC on port 4001, all interfaces].
    #[arg(long, value_name = "MULTIADDR")]
    pub listen: Vec<Multiaddr>,
    /// An address others reach this helper at, if it is not one it listens
    /// on (a forwarded port, a 1:1 NAT); repeatable.
    #[arg(long, value_name = "MULTIADDR")]
    pub external: Vec<Multiaddr>,
    /// Another helper to join the DHT through; must end in /p2p/<id> (repeatable).
    #[arg(long, value_name = "MULTIADDR", env = "BACKCHANNEL_BOOTSTRAP", value_delimiter = ',')]
    pub bootstrap: Vec<Multiaddr>,
    /// Print one JSON object per line per event on stdout, and nothing else.
    #[arg(long)]
    pub json: bool,
}

impl ServeArgs {
    /// Builds the helper's configuration.
    pub fn config(&self, data_dir: PathBuf) -> anyhow::Result<Config> {
        let mut config = Config::new(data_dir);
        config.listen = if self.listen.is_empty() {
            vec![
                "/ip4/0.0.0.0/tcp/4001".parse()?,
                "/ip4/0.0.0.0/udp/4001/quic-v1".parse()?,
            ]
        } else {
            self.listen.clone()
        };
        for addr in &self.bootstrap {
            if !matches!(addr.iter().last(), Some(Protocol::P2p(_))) {
                bail!("--bootstrap {addr}: the address must end in /p2p/<peer id>");
            }
        }
        config.bootstrap = self.bootstrap.clone();
        config.external = self.external.clone();
        config.helper = true;
        config.help_others = true;
        config.mdns = false;
        config.presence = false;
        Ok(config)
    }
}

/// `backchannel history`
#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// Only this room's hallway.
    #[arg(long, conflicts_with = "peer", value_name = "ROOM")]
    pub room: Option<String>,
    /// Only the conversation with this peer id.
    #[arg(long, value_name = "PEER")]
    pub peer: Option<String>,
    /// At most this many messages per room or conversation (the latest).
    #[arg(long, default_value_t = 1000)]
    pub limit: usize,
    /// One JSON object per line.
    #[arg(long)]
    pub json: bool,
}

impl Cli {
    /// The data directory in force.
    pub fn data_dir(&self) -> anyhow::Result<PathBuf> {
        match &self.data_dir {
            Some(dir) => Ok(dir.clone()),
            None => Ok(dirs::data_dir()
                .context("no platform data directory; pass --data-dir DIR")?
                .join("backchannel")),
        }
    }
}

impl RunArgs {
    /// Builds the node configuration.
    pub fn config(&self, data_dir: PathBuf) -> anyhow::Result<Config> {
        let mut config = Config::new(data_dir);
        if !self.listen.is_empty() {
            config.listen = self.listen.clone();
        }
        for peer in &self.peer {
            if !matches!(peer.iter().last(), Some(Protocol::P2p(_))) {
                bail!("--peer {peer}: the address must end in /p2p/<peer id>");
            }
        }
        config.peers = self.peer.clone();
        for addr in &self.bootstrap {
            if !matches!(addr.iter().last(), Some(Protocol::P2p(_))) {
                bail!("--bootstrap {addr}: the address must end in /p2p/<peer id>");
            }
        }
        config.bootstrap = self.bootstrap.clone();
        config.help_others = !self.no_help;
        config.public = self.public;
        config.mdns = !self.no_mdns;
        // A person expects the rooms they /join to be there next time.
        config.remember_rooms = true;
        config.nick = self.name.clone();
        config.rooms = self
            .rooms
            .iter()
            .map(|r| Room::new(r.as_str()).with_context(|| format!("--room {r:?}")))
            .collect::<anyhow::Result<_>>()?;
        Ok(config)
    }
}
