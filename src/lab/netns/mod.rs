//! The NAT lab: a small internet made of Linux network namespaces on one
//! machine, so tests can put nodes behind address translation.
//!
//! ```text
//!            "public" namespace: bridge br0 (198.18.0.0/15, no address)
//!        ┌──────────────┬───────────────┬───────────────┐
//!   helper h1       helper h2      NAT of alice     NAT of carol
//!   198.18.1.1      198.18.1.2     198.18.2.1       198.18.2.2 (wan)
//!                                  10.0.1.1 (lan)   10.0.2.1 (lan)
//!                                      │                │
//!                                  home alice       home carol
//!                                  10.0.1.2         10.0.2.2
//! ```
//!
//! Every host is its own namespace; a home's NAT is a namespace of its own
//! that forwards, masquerades and drops unsolicited traffic from the public
//! side, as a home router does. [`Nat::Easy`] keeps a connection's source
//! port when it is free (endpoint-independent mapping, what hole punching
//! needs); [`Nat::Hard`] picks a random port for every connection
//! (`MASQUERADE --random-fully`), so hole punching must fail. Each public
//! link can delay and drop packets ([`Netem`]: the effect of `tc netem`,
//! built from iptables and NFQUEUE because the kernels this project runs on
//! lack the netem qdisc; see `delay.rs`).
//!
//! Nothing is created in the root namespace: links are created inside the
//! lab's namespaces, and the public segment is a bridge inside a namespace of
//! its own, so lab traffic cannot leave the lab. Namespace names carry the
//! owning process id and a per-process counter, so labs in parallel test
//! processes never collide; dropping the lab (also while a test panics) kills
//! every process inside its namespaces and deletes them, and a lab left by a
//! killed process is removed by the next [`NatLab::new`].
//!
//! Building a lab needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN), `ip`
//! (iproute2) and `iptables`; without them [`NatLab::new`] says what is
//! missing.

mod delay;

use std::net::Ipv4Addr;
use std::os::fd::AsFd;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

/// Every lab namespace starts with this, followed by the owning process id:
/// how a later lab recognises one left behind by a killed process.
const PREFIX: &str = "bcl";

/// The public segment; 198.18.0.0/15 is reserved for benchmarking (RFC 2544),
/// so lab addresses can never be mistaken for a real host.
const PUBLIC_PREFIX_LEN: u8 = 15;

/// Helpers and NATs are numbered from 1 within one octet of their subnet.
const MAX_HOSTS_PER_KIND: usize = 250;

/// A host name is part of namespace names and error messages; short and
/// plain keeps both readable.
const MAX_NAME_LEN: usize = 20;

/// Netem delays beyond this are a mistake, not a network.
const MAX_DELAY: Duration = Duration::from_secs(10);

/// Labs made by this process so far: the second part of the unique prefix.
static LABS: AtomicU32 = AtomicU32::new(0);

/// Why the NAT lab could not be built or used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NetnsError {
    /// The lab creates namespaces and links, which needs root.
    #[error(
        "the NAT lab needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN to create network namespaces); effective uid is {0}"
    )]
    NotRoot(u32),
    /// A program the lab runs is not installed.
    #[error("the NAT lab needs `{tool}`, which is not installed: apt-get install -y {package}")]
    MissingTool {
        /// The program.
        tool: &'static str,
        /// The Debian package that provides it.
        package: &'static str,
    },
    /// A setup command failed.
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        /// The command line.
        command: String,
        /// How it ended.
        status: String,
        /// What it printed on stderr.
        stderr: String,
    },
    /// A host name is invalid or taken.
    #[error("host name {0:?}: use 1-20 lowercase letters and digits, starting with a letter, unique in the lab")]
    BadName(String),
    /// No host has this name.
    #[error("no host {0:?} in the lab")]
    UnknownHost(String),
    /// The lab has as many helpers or homes as it can number.
    #[error("the lab holds at most 250 helpers and 250 homes")]
    Full,
    /// A netem setting is out of range.
    #[error("netem: {0}")]
    BadNetem(String),
    /// Talking to the operating system failed.
    #[error("NAT lab: {0}")]
    Io(#[from] std::io::Error),
}

/// How a home's NAT maps ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nat {
    /// Keeps the source port when it is free, the same mapping for every
    /// destination: most home routers; hole punching can work.
    Easy,
    /// A random port for every connection (per destination): a symmetric
    /// NAT; hole punching must fail and only a relay can help.
    Hard,
}

/// Delay and loss on a public link, in each direction.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Netem {
    /// Added to every packet, each way: a path across two public links (a
    /// home to a helper) has a round trip of about 2 × (delay₁ + delay₂).
    pub delay: Duration,
    /// Percentage of packets dropped, each way (0 to 100).
    pub loss: f64,
}

/// One host of the lab: a helper on the public segment or a home behind its NAT.
#[derive(Debug, Clone)]
pub struct Host {
    name: String,
    netns: String,
    addr: Ipv4Addr,
    public_addr: Ipv4Addr,
    nat: Option<Nat>,
    /// The helper's or NAT's end of the public link: (namespace, interface).
    link: (String, String),
}

impl Host {
    /// The host's name in the lab.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The namespace the host's programs run in.
    pub fn netns(&self) -> &str {
        &self.netns
    }

    /// The host's own address: public for a helper, private for a home.
    pub fn addr(&self) -> Ipv4Addr {
        self.addr
    }

    /// The address the public segment sees: the helper's own, or the
    /// public side of the home's NAT.
    pub fn public_addr(&self) -> Ipv4Addr {
        self.public_addr
    }

    /// The home's NAT, or None for a helper.
    pub fn nat(&self) -> Option<Nat> {
        self.nat
    }
}

/// A small internet of network namespaces; see the module docs. Dropping it
/// kills the processes inside and deletes the namespaces.
#[derive(Debug)]
pub struct NatLab {
    prefix: String,
    public_netns: String,
    hosts: Vec<Host>,
    /// Every namespace created so far, in order: what teardown removes.
    namespaces: Vec<String>,
    helpers: usize,
    homes: usize,
    /// The delay threads of links with a delay, by namespace.
    delayers: Mutex<Vec<(String, delay::Delayer)>>,
}

impl NatLab {
    /// Checks for root and the tools, removes labs left by dead processes,
    /// and creates the public segment.
    pub fn new() -> Result<NatLab, NetnsError> {
        check_privileges()?;
        check_tools()?;
        remove_stale_labs()?;
        let prefix = format!(
            "{PREFIX}{}-{}",
            std::process::id(),
            LABS.fetch_add(1, Ordering::Relaxed)
        );
        let mut lab = NatLab {
            public_netns: format!("{prefix}-pub"),
            prefix,
            hosts: Vec::new(),
            namespaces: Vec::new(),
            helpers: 0,
            homes: 0,
            delayers: Mutex::default(),
        };
        let public = lab.public_netns.clone();
        lab.add_netns(&public)?;
        run("ip", &["-n", &public, "link", "add", "br0", "type", "bridge"])?;
        run("ip", &["-n", &public, "link", "set", "br0", "up"])?;
        Ok(lab)
    }

    /// Adds a helper: a host with an address on the public segment.
    pub fn helper(mut self, name: &str) -> Result<NatLab, NetnsError> {
        self.add_helper(name)?;
        Ok(self)
    }

    /// Adds a home: a host with a private address behind its own NAT.
    pub fn home(mut self, name: &str, nat: Nat) -> Result<NatLab, NetnsError> {
        self.add_home(name, nat)?;
        Ok(self)
    }

    /// Adds a helper to a lab that is already in use.
    pub fn add_helper(&mut self, name: &str) -> Result<&Host, NetnsError> {
        self.check_name(name)?;
        if self.helpers == MAX_HOSTS_PER_KIND {
            return Err(NetnsError::Full);
        }
        self.helpers += 1;
        let addr = Ipv4Addr::new(198, 18, 1, self.helpers as u8);
        let netns = format!("{}-{name}", self.prefix);
        self.add_netns(&netns)?;
        self.attach(&netns, "eth0", addr)?;
        self.hosts.push(Host {
            name: name.to_owned(),
            netns: netns.clone(),
            addr,
            public_addr: addr,
            nat: None,
            link: (netns, "eth0".to_owned()),
        });
        Ok(self.hosts.last().expect("just pushed"))
    }

    /// Adds a home to a lab that is already in use.
    pub fn add_home(&mut self, name: &str, nat: Nat) -> Result<&Host, NetnsError> {
        self.check_name(name)?;
        if self.homes == MAX_HOSTS_PER_KIND {
            return Err(NetnsError::Full);
        }
        self.homes += 1;
        let i = self.homes as u8;
        let public_addr = Ipv4Addr::new(198, 18, 2, i);
        let (lan, addr) = (Ipv4Addr::new(10, 0, i, 1), Ipv4Addr::new(10, 0, i, 2));
        let (netns, router) = (format!("{}-{name}", self.prefix), format!("{}-{name}-nat", self.prefix));
        self.add_netns(&router)?;
        self.add_netns(&netns)?;
        self.attach(&router, "wan", public_addr)?;
        run(
            "ip",
            &[
                "-n", &router, "link", "add", "lan", "type", "veth", "peer", "name", "eth0", "netns", &netns,
            ],
        )?;
        run(
            "ip",
            &["-n", &router, "addr", "add", &format!("{lan}/24"), "dev", "lan"],
        )?;
        run("ip", &["-n", &router, "link", "set", "lan", "up"])?;
        run(
            "ip",
            &["-n", &netns, "addr", "add", &format!("{addr}/24"), "dev", "eth0"],
        )?;
        run("ip", &["-n", &netns, "link", "set", "eth0", "up"])?;
        run(
            "ip",
            &["-n", &netns, "route", "add", "default", "via", &lan.to_string()],
        )?;
        in_netns(&router, || std::fs::write("/proc/sys/net/ipv4/ip_forward", "1"))??;
        let mut masquerade = vec!["-t", "nat", "-A", "POSTROUTING", "-o", "wan", "-j", "MASQUERADE"];
        if nat == Nat::Hard {
            masquerade.push("--random-fully");
        }
        iptables(&router, &masquerade)?;
        // A home router lets in only what answers traffic from inside, both
        // for the home (FORWARD) and for itself (INPUT).
        for chain in ["FORWARD", "INPUT"] {
            let established = [
                "-A",
                chain,
                "-i",
                "wan",
                "-m",
                "conntrack",
                "--ctstate",
                "ESTABLISHED,RELATED",
            ];
            iptables(&router, &[&established[..], &["-j", "ACCEPT"]].concat())?;
            iptables(&router, &["-A", chain, "-i", "wan", "-j", "DROP"])?;
        }
        self.hosts.push(Host {
            name: name.to_owned(),
            netns,
            addr,
            public_addr,
            nat: Some(nat),
            link: (router, "wan".to_owned()),
        });
        Ok(self.hosts.last().expect("just pushed"))
    }

    /// The host with this name.
    pub fn host(&self, name: &str) -> Result<&Host, NetnsError> {
        self.hosts
            .iter()
            .find(|h| h.name == name)
            .ok_or_else(|| NetnsError::UnknownHost(name.to_owned()))
    }

    /// Every host, in the order they were added.
    pub fn hosts(&self) -> &[Host] {
        &self.hosts
    }

    /// Every namespace of the lab (hosts, NATs and the public segment).
    pub fn namespaces(&self) -> &[String] {
        &self.namespaces
    }

    /// Sets delay and loss on the host's public link (both directions),
    /// replacing what was set before; `Netem::default()` clears them.
    pub fn netem(&self, host: &str, netem: Netem) -> Result<(), NetnsError> {
        if !(0.0..=100.0).contains(&netem.loss) {
            return Err(NetnsError::BadNetem(format!(
                "loss {}% is not within 0-100%",
                netem.loss
            )));
        }
        if netem.delay > MAX_DELAY {
            return Err(NetnsError::BadNetem(format!(
                "delay {:?} is over {MAX_DELAY:?}",
                netem.delay
            )));
        }
        let (netns, dev) = &self.host(host)?.link;
        // The lab owns the mangle table of the link's namespace: nothing but
        // netem rules live there, so flushing it removes the old settings.
        for chain in ["PREROUTING", "POSTROUTING"] {
            iptables(netns, &["-t", "mangle", "-F", chain])?;
        }
        let mut delayers = self.delayers.lock().unwrap_or_else(PoisonError::into_inner);
        match delayers.iter().find(|(n, _)| n == netns) {
            Some((_, delayer)) => delayer.set(netem.delay),
            None if netem.delay > Duration::ZERO => {
                delayers.push((netns.clone(), delay::Delayer::start(netns, netem.delay)?))
            }
            None => {}
        }
        let probability = (netem.loss / 100.0).to_string();
        let queue = delay::QUEUE.to_string();
        for (chain, direction) in [("PREROUTING", "-i"), ("POSTROUTING", "-o")] {
            let link = ["-t", "mangle", "-A", chain, direction, dev.as_str()];
            if netem.loss > 0.0 {
                let drop = [
                    "-m",
                    "statistic",
                    "--mode",
                    "random",
                    "--probability",
                    &probability,
                    "-j",
                    "DROP",
                ];
                iptables(netns, &[&link[..], &drop].concat())?;
            }
            if netem.delay > Duration::ZERO {
                // Without the delay thread (it failed) packets pass undelayed
                // rather than being dropped.
                let queue = ["-j", "NFQUEUE", "--queue-num", &queue, "--queue-bypass"];
                iptables(netns, &[&link[..], &queue].concat())?;
            }
        }
        Ok(())
    }

    /// A command that runs `program` inside the host's namespace (through
    /// `ip netns exec`, which executes it in place, so the child is the
    /// program). It is killed when dropped, and at the latest with the lab.
    pub fn command(
        &self,
        host: &str,
        program: impl AsRef<std::ffi::OsStr>,
    ) -> Result<tokio::process::Command, NetnsError> {
        let mut cmd = tokio::process::Command::new("ip");
        cmd.args(["netns", "exec", self.host(host)?.netns()])
            .arg(program)
            .kill_on_drop(true);
        Ok(cmd)
    }

    /// Runs `args` (a program and its arguments) inside the host's namespace
    /// to completion; an error says how it failed.
    pub fn exec(&self, host: &str, args: &[&str]) -> Result<Output, NetnsError> {
        let netns = self.host(host)?.netns();
        run("ip", &[&["netns", "exec", netns][..], args].concat())
    }

    /// Runs `f` on a thread inside the host's network namespace and returns
    /// its result. Sockets created there stay in that namespace wherever
    /// they are used afterwards, so a test can talk from any host.
    pub fn run_in<T: Send>(&self, host: &str, f: impl FnOnce() -> T + Send) -> Result<T, NetnsError> {
        in_netns(self.host(host)?.netns(), f)
    }

    fn check_name(&self, name: &str) -> Result<(), NetnsError> {
        let plain = name.len() <= MAX_NAME_LEN
            && name.starts_with(|c: char| c.is_ascii_lowercase())
            && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
        if !plain || name == "pub" || self.hosts.iter().any(|h| h.name == name) {
            return Err(NetnsError::BadName(name.to_owned()));
        }
        Ok(())
    }

    fn add_netns(&mut self, netns: &str) -> Result<(), NetnsError> {
        run("ip", &["netns", "add", netns])?;
        self.namespaces.push(netns.to_owned());
        run("ip", &["-n", netns, "link", "set", "lo", "up"])?;
        Ok(())
    }

    /// Links `dev` in `netns` to the public bridge with address `addr`.
    fn attach(&self, netns: &str, dev: &str, addr: Ipv4Addr) -> Result<(), NetnsError> {
        // Ports are numbered by host: a name that fits in 15 characters
        // whatever the host is called.
        let port = format!("p{}", self.hosts.len());
        let public = &self.public_netns;
        run(
            "ip",
            &[
                "-n", public, "link", "add", &port, "type", "veth", "peer", "name", dev, "netns", netns,
            ],
        )?;
        run("ip", &["-n", public, "link", "set", &port, "master", "br0"])?;
        run("ip", &["-n", public, "link", "set", &port, "up"])?;
        let cidr = format!("{addr}/{PUBLIC_PREFIX_LEN}");
        run("ip", &["-n", netns, "addr", "add", &cidr, "dev", dev])?;
        run("ip", &["-n", netns, "link", "set", dev, "up"])?;
        Ok(())
    }
}

impl Drop for NatLab {
    fn drop(&mut self) {
        // Teardown must not panic (it may run while a test panics) and must
        // try every namespace even when one fails. The delay threads stop
        // first: they live in the namespaces.
        self.delayers.get_mut().unwrap_or_else(PoisonError::into_inner).clear();
        for netns in self.namespaces.iter().rev() {
            if let Err(e) = remove_netns(netns) {
                eprintln!("NAT lab teardown: {e}");
            }
        }
    }
}

/// Kills every process in `netns` and deletes it.
fn remove_netns(netns: &str) -> Result<(), NetnsError> {
    let pids = run("ip", &["netns", "pids", netns])?;
    for pid in String::from_utf8_lossy(&pids.stdout).split_whitespace() {
        if let Some(pid) = pid.parse().ok().and_then(rustix::process::Pid::from_raw) {
            // It may have exited since it was listed: nothing to do then.
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
        }
    }
    run("ip", &["netns", "del", netns])?;
    Ok(())
}

/// Removes the namespaces of labs whose owning process is gone (a test run
/// that was killed before its labs were dropped).
fn remove_stale_labs() -> Result<(), NetnsError> {
    let list = run("ip", &["netns", "list"])?;
    for line in String::from_utf8_lossy(&list.stdout).lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        if let Some(pid) = owner(name)
            && !Path::new(&format!("/proc/{pid}")).exists()
        {
            // Another process may be removing the same stale lab: a
            // namespace that is already gone is not an error.
            match remove_netns(name) {
                Ok(()) => {}
                Err(_) if !netns_exists(name) => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

/// The process id in a lab namespace's name (`bcl<pid>-<n>-…`), or None for
/// a namespace that is not a lab's.
fn owner(netns: &str) -> Option<u32> {
    let (pid, _) = netns.strip_prefix(PREFIX)?.split_once('-')?;
    pid.parse().ok()
}

fn netns_exists(netns: &str) -> bool {
    Path::new("/run/netns").join(netns).exists()
}

fn check_privileges() -> Result<(), NetnsError> {
    let uid = rustix::process::geteuid().as_raw();
    if uid != 0 {
        return Err(NetnsError::NotRoot(uid));
    }
    Ok(())
}

fn check_tools() -> Result<(), NetnsError> {
    for (tool, arg, package) in [("ip", "-V", "iproute2"), ("iptables", "--version", "iptables")] {
        match Command::new(tool)
            .arg(arg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
        {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(NetnsError::MissingTool { tool, package });
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Runs `f` on a new thread that has joined `netns` (the thread's namespace
/// changes, never the calling thread's).
fn in_netns<T: Send>(netns: &str, f: impl FnOnce() -> T + Send) -> Result<T, NetnsError> {
    let file = std::fs::File::open(Path::new("/run/netns").join(netns))?;
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                rustix::thread::move_into_link_name_space(
                    file.as_fd(),
                    Some(rustix::thread::LinkNameSpaceType::Network),
                )
                .map_err(std::io::Error::from)?;
                Ok(f())
            })
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// iptables in `netns`, waiting for the xtables lock (shared by every
/// namespace, so parallel labs take turns).
fn iptables(netns: &str, args: &[&str]) -> Result<Output, NetnsError> {
    run(
        "ip",
        &[&["netns", "exec", netns, "iptables", "-w", "10"][..], args].concat(),
    )
}

/// Runs a program to completion; a failure carries its stderr.
fn run(program: &'static str, args: &[&str]) -> Result<Output, NetnsError> {
    let output = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => NetnsError::MissingTool {
                tool: program,
                package: if program == "iptables" { "iptables" } else { "iproute2" },
            },
            _ => NetnsError::Io(e),
        })?;
    if !output.status.success() {
        return Err(NetnsError::Command {
            command: format!("{program} {}", args.join(" ")),
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    Ok(output)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lab_namespace_names_its_owner() {
        assert_eq!(owner("bcl1234-0-pub"), Some(1234));
        assert_eq!(owner("bcl1234-7-alice-nat"), Some(1234));
        assert_eq!(owner("bclx-0-pub"), None);
        assert_eq!(owner("bcl1234"), None);
        assert_eq!(owner("other-1234-0"), None);
    }
}
