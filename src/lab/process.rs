//! Nodes as real `backchannel run --json` processes: the lab talks to them
//! through stdin and reads their events from stdout, as a script would:
//! each line is a [`JsonLine`], read back into the exact [`Event`] it shows.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;

use super::LabError;
use super::metrics;
use crate::data_dir;
use crate::seal::{KdfParams, PASSPHRASE_VAR, Passphrase};
use crate::{Event, Identity, JsonLine, MessageId, Multiaddr, PeerId, Room};

/// What a process reports to the lab besides node events.
pub(crate) enum ProcReport {
    /// A node event, stamped on arrival.
    Event(usize, Instant, Box<Event>),
    /// A `dm_sent` line: the DM's id (matched to sends in order).
    DmSent(usize, MessageId),
    /// A `stats` line: rejected inputs by reason.
    Stats(std::collections::BTreeMap<crate::RejectReason, u64>),
}

/// What a node process runs with besides its data directory and identity.
#[derive(Debug, Clone)]
pub(crate) struct Launch {
    /// The room it joins.
    pub(crate) room: Room,
    /// A network namespace of the NAT lab to run in (`ip netns exec`); the
    /// node then listens on every interface, is not declared public, and
    /// finds the others through `bootstrap`.
    pub(crate) netns: Option<String>,
    /// Helpers to bootstrap from.
    pub(crate) bootstrap: Vec<Multiaddr>,
}

/// One node running as a child process.
pub(crate) struct ProcNode {
    pub(crate) index: usize,
    pub(crate) peer_id: PeerId,
    pub(crate) addr: Multiaddr,
    bin: PathBuf,
    dir: PathBuf,
    launch: Launch,
    child: Option<Child>,
    stdin: Option<ChildStdin>,
    /// CPU time of earlier incarnations (read just before they ended).
    cpu_before: Duration,
    /// Highest peak RSS of any incarnation.
    rss_peak: u64,
    /// DM sends waiting for their `dm_sent` line: (pair, time sent).
    pub(crate) dm_sends: Arc<Mutex<VecDeque<(usize, Instant)>>>,
}

/// The passphrase of the lab's encrypted directories: no secret, so their
/// key files use [`KdfParams::insecure_fast`].
const LAB_PASSPHRASE: &str = "the mesh lab's passphrase";

/// Makes `dir` an encrypted data directory holding the identity of
/// `secret`, which [`ProcNode::start`] then runs unlocked.
pub(crate) fn encrypt_dir(dir: &Path, secret: [u8; 32]) -> Result<(), LabError> {
    let passphrase = Passphrase::new(LAB_PASSPHRASE).expect("not empty");
    data_dir::create(
        dir,
        &Identity::from_secret(secret),
        &passphrase,
        KdfParams::insecure_fast(),
    )
    .map(drop)
    .map_err(|e| LabError::Scenario(format!("encrypting {}: {e}", dir.display())))
}

impl ProcNode {
    /// Creates the node's identity from `secret` in `dir` (unless
    /// [`encrypt_dir`] made `dir` an encrypted directory holding it) and
    /// starts it.
    pub(crate) async fn start(
        bin: &Path,
        dir: PathBuf,
        index: usize,
        secret: [u8; 32],
        launch: Launch,
        peers: &[Multiaddr],
        tx: &mpsc::UnboundedSender<ProcReport>,
    ) -> Result<ProcNode, LabError> {
        let identity = Identity::from_secret(secret);
        if !data_dir::is_encrypted(&dir) {
            identity
                .save(&dir)
                .map_err(|e| LabError::Scenario(format!("node {index}: {e}")))?;
        }
        let mut node = ProcNode {
            index,
            peer_id: identity.peer_id(),
            addr: if launch.netns.is_some() {
                "/ip4/0.0.0.0/tcp/0"
            } else {
                "/ip4/127.0.0.1/tcp/0"
            }
            .parse()
            .expect("valid"),
            bin: bin.to_path_buf(),
            dir,
            launch,
            child: None,
            stdin: None,
            cpu_before: Duration::ZERO,
            rss_peak: 0,
            dm_sends: Arc::default(),
        };
        node.spawn(peers, tx).await?;
        Ok(node)
    }

    /// Starts the process (again), listening on the node's address.
    pub(crate) async fn spawn(
        &mut self,
        peers: &[Multiaddr],
        tx: &mpsc::UnboundedSender<ProcReport>,
    ) -> Result<(), LabError> {
        let listen: Multiaddr = self
            .addr
            .iter()
            .filter(|p| !matches!(p, libp2p::multiaddr::Protocol::P2p(_)))
            .collect();
        let mut cmd = match &self.launch.netns {
            Some(netns) => {
                let mut cmd = Command::new("ip");
                cmd.args(["netns", "exec", netns]).arg(&self.bin);
                cmd
            }
            None => Command::new(&self.bin),
        };
        cmd.arg("--data-dir").arg(&self.dir).args([
            "run",
            "--json",
            "--no-mdns",
            "--name",
            &format!("node{}", self.index),
        ]);
        // Not `--public`: a public node serves the DHT, and the DHT would
        // connect the room beyond the scenario's topology (see
        // `runner::run_node`). On loopback the node dials its edges' peers;
        // in the NAT lab it meets them through its bootstrap helpers.
        cmd.args(["--room", self.launch.room.as_str(), "--listen", &listen.to_string()]);
        // Behind NATs the others' addresses are of no use: the node meets
        // them through its bootstrap helpers.
        for p in peers.iter().filter(|_| self.launch.netns.is_none()) {
            cmd.args(["--peer", &p.to_string()]);
        }
        for b in &self.launch.bootstrap {
            cmd.args(["--bootstrap", &b.to_string()]);
        }
        if data_dir::is_encrypted(&self.dir) {
            cmd.env(PASSPHRASE_VAR, LAB_PASSPHRASE);
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| LabError::Scenario(format!("starting {}: {e}", self.bin.display())))?;
        let stdout = child.stdout.take().expect("piped");
        self.stdin = child.stdin.take();
        self.child = Some(child);
        let mut lines = BufReader::new(stdout).lines();
        // The first address it listens on.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let line = tokio::time::timeout_at(deadline, lines.next_line())
                .await
                .map_err(|_| LabError::Timeout(format!("node {} to listen", self.index)))?
                .map_err(LabError::Io)?
                .ok_or(LabError::Stopped(self.index))?;
            if let Ok(JsonLine::Listening { addr }) = serde_json::from_str(&line) {
                self.addr = addr;
                break;
            }
        }
        let (index, tx, dm_sends) = (self.index, tx.clone(), self.dm_sends.clone());
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                let at = Instant::now();
                let Ok(line) = serde_json::from_str::<JsonLine>(&line) else {
                    continue;
                };
                let report = match line {
                    JsonLine::DmSent { id, .. } => Some(ProcReport::DmSent(index, id)),
                    JsonLine::Stats { stats } => Some(ProcReport::Stats(stats.rejected)),
                    line => line.to_event().map(|e| ProcReport::Event(index, at, Box::new(e))),
                };
                if let Some(report) = report
                    && tx.send(report).is_err()
                {
                    break;
                }
            }
            drop(dm_sends);
        });
        Ok(())
    }

    /// Types a line into the node.
    pub(crate) async fn say(&mut self, line: &str) -> Result<(), LabError> {
        let stdin = self.stdin.as_mut().ok_or(LabError::Stopped(self.index))?;
        stdin.write_all(format!("{line}\n").as_bytes()).await?;
        stdin.flush().await?;
        Ok(())
    }

    fn account(&mut self) {
        if let Some(pid) = self.child.as_ref().and_then(Child::id) {
            self.cpu_before += metrics::cpu_time(Some(pid));
            self.rss_peak = self.rss_peak.max(metrics::rss(Some(pid)).1);
        }
    }

    /// Stops the node cleanly (`/quit`), killing it if it does not exit.
    pub(crate) async fn stop(&mut self) {
        self.account();
        let _ = self.say("/quit").await;
        self.stdin = None;
        if let Some(mut child) = self.child.take()
            && tokio::time::timeout(Duration::from_secs(10), child.wait())
                .await
                .is_err()
        {
            let _ = child.kill().await;
        }
    }

    /// SIGKILLs the node.
    pub(crate) async fn kill(&mut self) {
        self.account();
        self.stdin = None;
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }

    /// CPU time of all incarnations so far.
    pub(crate) fn cpu(&self) -> Duration {
        let now = self
            .child
            .as_ref()
            .and_then(Child::id)
            .map_or(Duration::ZERO, |pid| metrics::cpu_time(Some(pid)));
        self.cpu_before + now
    }

    /// Highest peak RSS of all incarnations, in bytes.
    pub(crate) fn rss_peak(&self) -> u64 {
        let now = self
            .child
            .as_ref()
            .and_then(Child::id)
            .map_or(0, |pid| metrics::rss(Some(pid)).1);
        self.rss_peak.max(now)
    }

    /// Resident memory now, in bytes.
    pub(crate) fn rss_now(&self) -> u64 {
        self.child
            .as_ref()
            .and_then(Child::id)
            .map_or(0, |pid| metrics::rss(Some(pid)).0)
    }
}
