//! `clat run`: the CLAT on Linux. Creates the TUN, gives it the CLAT
//! address, makes sure the host firewall lets the engine's own connections
//! in (`--firewall`), adds the IPv4 default route (always, or with `--auto`
//! only while the host has no native IPv4), runs the engine until
//! SIGINT/SIGTERM and serves `clat status` on a control socket of its own.
//!
//! Each thing it sets up is a guard ([`crate::host_setup`],
//! [`crate::firewall::Openings`], [`crate::control::ControlSocket`],
//! [`EngineGuard`], [`MonitorGuard`]) held by [`run`]: whichever way `run`
//! returns, they are undone in the reverse order of their creation.

use crate::args::{parse_duration, parse_positive_duration, parse_resolver};
use crate::auto_mode::{self, Activity, ActivityState};
use crate::control::{ControlAddr, ControlSocket, Request};
use crate::firewall::{self, Family, FirewallMode, ListenerPath};
use crate::host_setup::{if_index, raise_fd_limit, Ipv4DefaultRoute, PingGroupRange, TunLink};
use crate::listener_probe::{self, ProbeOutcome};
use crate::report::{Limits, Recorder};
use crate::status::{self, Status};
use crate::{host_cmd::ip, report_consumer, resolv_watch, route_watch, sd_notify, sys};
use anyhow::{bail, Context, Result};
use clat_discovery::{
    discover_rfc7050, fmt_duration, resolv_conf, DiscoveredPrefix, MonitorConfig, PrefixMonitor,
    PrefixSource,
};
use clat_engine::{open_tun, open_tun_offload, Engine, EngineConfig};
use clat_protect::{BindDeviceProtect, MarkProtect, NoProtect, Protector};
use ipnet::Ipv6Net;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Name of the TUN device to create.
    #[arg(long, default_value = "clat0")]
    pub tun: String,
    /// NAT64 prefix (RFC 6052 length /32, /40, /48, /56, /64 or /96), e.g. 64:ff9b::/96.
    /// Default: discovered (PREF64 from Router Advertisements on --pref64-listen,
    /// then RFC 7050 through the upstream resolvers), re-validated when its
    /// lifetime runs out, and followed when it changes.
    #[arg(long, value_name = "PREFIX", value_parser = crate::args::parse_prefix)]
    pub pref64: Option<Ipv6Net>,
    /// Listen for PREF64 (RFC 8781) in Router Advertisements on this uplink
    /// interface (needs accept_ra on it); PREF64 is preferred over RFC 7050.
    #[arg(long, value_name = "IFACE", conflicts_with = "pref64")]
    pub pref64_listen: Option<String>,
    /// How long to wait at start for a discovered prefix before giving up.
    #[arg(long, value_parser = parse_positive_duration, default_value = "10s")]
    pub discover_timeout: Duration,
    /// Shortest wait between two RFC 7050 re-validations, however small the
    /// TTL of the answer (RFC 7050 section 5).
    #[arg(long, value_parser = parse_positive_duration, default_value = "60s")]
    pub min_revalidate: Duration,
    /// Upstream resolver for the DNS relay (repeatable): an address or [v6]:port / v4:port.
    /// Default: the nameservers of --resolv-conf, followed when the file changes.
    #[arg(long = "dns", value_name = "ADDR", value_parser = parse_resolver)]
    pub dns: Vec<SocketAddr>,
    /// Where the upstream resolvers come from without --dns; watched, and
    /// the relay and prefix discovery follow when it changes (another
    /// network). Behind systemd-resolved, /run/systemd/resolve/resolv.conf
    /// lists the network's own resolvers.
    #[arg(long, value_name = "PATH", default_value = "/etc/resolv.conf")]
    pub resolv_conf: PathBuf,
    /// The CLAT IPv4 address; the next two addresses of its /29 become the internal
    /// NAT address and the DNS relay.
    #[arg(long, default_value = "192.0.0.4")]
    pub clat_addr: Ipv4Addr,
    /// MTU of the TUN. TCP is terminated locally (the app's TCP talks to the
    /// engine's listener over the TUN), so a large MTU only means fewer,
    /// larger segments on that local leg: about 5x the throughput of 1500.
    /// UDP and ICMP are re-originated over IPv6 whatever their size (the
    /// kernel fragments IPv6 when needed).
    #[arg(long, default_value_t = 65000)]
    pub mtu: u16,
    /// Do not add the IPv4 default route through the TUN.
    #[arg(long, conflicts_with = "auto")]
    pub no_routes: bool,
    /// Carry IPv4 only while the host has no native IPv4 default route (the
    /// CLAT's own aside) and a NAT64 prefix is known: the CLAT's route is
    /// withdrawn and its flows closed when native IPv4 appears, and put back
    /// when it goes, following route netlink events. `clat status` says
    /// which (`activity`) and why (`activity_reason`).
    #[arg(long)]
    pub auto: bool,
    /// Host firewall: `auto` checks with a real connection through the TUN
    /// that the engine's listener is reachable (over IPv6 too with
    /// --carry-ipv6) and, when a firewall (nftables, iptables-nft,
    /// iptables-legacy, their ip6tables twins, firewalld) drops it, opens
    /// it for this TUN only until exit; `check` stops with the command that
    /// opens it instead; `off` does neither. When the path stays blocked,
    /// the exit status is 6 (the host needs configuring).
    #[arg(long, value_enum, default_value = "auto")]
    pub firewall: FirewallMode,
    /// Idle timeout of UDP mappings (e.g. 300s, 5m, 2s, 500ms).
    #[arg(long, value_parser = parse_duration, default_value = "5m")]
    pub udp_timeout: Duration,
    /// Idle timeout of established TCP flows.
    #[arg(long, value_parser = parse_duration, default_value = "2h4m")]
    pub tcp_est_timeout: Duration,
    /// Timeout of transitory TCP flows (handshake not finished).
    #[arg(long, value_parser = parse_duration, default_value = "4m")]
    pub tcp_trans_timeout: Duration,
    /// Idle timeout of ICMP echo mappings.
    #[arg(long, value_parser = parse_duration, default_value = "60s")]
    pub icmp_timeout: Duration,
    /// How long the DNS relay waits for one resolver before trying the next
    /// (and answering SERVFAIL after the last).
    #[arg(long, value_parser = parse_duration, default_value = "2s")]
    pub dns_timeout: Duration,
    /// Maximum number of live flows (TCP + UDP + ICMP).
    #[arg(long, default_value_t = 16384)]
    pub max_flows: usize,
    /// Carry non-global IPv4 destinations even with the well-known prefix
    /// 64:ff9b::/96 (RFC 6052 section 3.1 says not to).
    #[arg(long)]
    pub allow_non_global: bool,
    /// Set this firewall mark (SO_MARK) on every upstream socket. With
    /// --native-ipv4 or --carry-ipv6 a routing rule must send the mark to a
    /// table of its own (`ip rule add fwmark N lookup T`, for IPv6 `ip -6
    /// rule`); without one `clat run` refuses to start, since the engine's
    /// sockets would loop into the TUN.
    #[arg(long, value_name = "N", conflicts_with = "bind_device")]
    pub mark: Option<u32>,
    /// Bind every upstream socket to this interface (SO_BINDTODEVICE).
    #[arg(long, value_name = "IFACE")]
    pub bind_device: Option<String>,
    /// With --auto: stay active when the host has a native IPv4 default
    /// route, and carry IPv4 flows natively (IPv4 sockets to the
    /// destination itself) while it has one, through the NAT64 when it has
    /// none; flows keep the path they started on, and native ones are reset
    /// when the native route goes. The CLAT's route is then 0.0.0.0/1 and
    /// 128.0.0.0/1 through the TUN, which win over the native default route
    /// whatever its metric, so all IPv4 goes through the TUN. Requires
    /// --bind-device IFACE (the uplink that has the native route) or
    /// --mark N with a rule of yours that routes marked IPv4 by a table
    /// with the native default route and without the TUN's routes, so that
    /// the engine's own IPv4 sockets leave through the uplink instead of
    /// looping into the TUN.
    #[arg(long, requires = "auto")]
    pub native_ipv4: bool,
    /// Carry IPv6 too (issue 15: an always-on CLAT that passes traffic
    /// through): the TUN gets fd9c:7c5a:e1b6:464::1/64 and the routes
    /// ::/1 and 8000::/1, which win over the uplink's IPv6 default route
    /// whatever its metric, and the engine re-originates IPv6 flows to
    /// their own destination through its upstream sockets. Requires
    /// --bind-device IFACE or --mark N, as --native-ipv4 does, so that the
    /// engine's own IPv6 sockets leave through the uplink.
    #[arg(long)]
    pub carry_ipv6: bool,
    /// Open the TUN as Android's VpnService does: no virtio-net header and
    /// no offloads. By default `clat run` opens it with IFF_VNET_HDR and
    /// checksum and TCP segmentation offloads (TUN_F_CSUM, TUN_F_TSO4,
    /// TUN_F_TSO6), so that TCP crosses the TUN in segments of up to 64
    /// KiB with checksums left partial; without them every byte is
    /// checksummed and copied in software (the benchmark's Android rows
    /// use this). When the kernel refuses the offloads, `clat run` logs it
    /// once and runs without them.
    #[arg(long)]
    pub no_tun_offloads: bool,
    /// Control socket for `clat status`: `@NAME` (abstract, scoped to the
    /// network namespace) or a path (guarded by an flock on PATH.lock).
    /// Default: @clat/<tun>.
    #[arg(long, value_name = "@NAME|PATH")]
    pub control: Option<ControlAddr>,
    /// Record which local processes use IPv4 through the CLAT, for `clat
    /// report`: each new flow's socket is looked up (sock_diag, /proc) and
    /// counted per process, in memory only (no payload; names and
    /// destinations appear in the report and in debug logs, nowhere else).
    /// Off by default: without it the engine builds no flow event at all.
    #[arg(long)]
    pub report: bool,
}

/// What `clat run` follows: the prefix in use (written by the prefix
/// monitor's thread) and the upstream resolvers (by the main thread when
/// resolv.conf changes); read by `clat status`.
#[derive(Debug, Clone)]
pub struct RunState {
    /// `None` only with `--auto` before the first prefix is found.
    pub current: Option<DiscoveredPrefix>,
    /// The monitor lost every prefix (e.g. the DNS64 now says "no DNS64"):
    /// the engine keeps the last one until a new one is found.
    pub lost: bool,
    pub upstream_dns: Vec<SocketAddr>,
    /// Whether IPv4 goes through the CLAT now, and why.
    pub activity: ActivityState,
    /// When `clat run` started (uptime).
    pub started: Instant,
    /// When `current` was last learnt or re-validated (its lifetime counts
    /// from there).
    pub prefix_learnt: Instant,
}

/// Where the prefix comes from: `--pref64`, or a [`PrefixMonitor`] whose
/// changes arrive on the receiver.
pub struct PrefixSeed {
    /// `None` only with `--auto`, when none came within
    /// `--discover-timeout`: the monitor keeps looking.
    pub first: Option<DiscoveredPrefix>,
    pub monitor: Option<(PrefixMonitor, Receiver<Option<DiscoveredPrefix>>)>,
}

/// `--pref64` wins (explicit configuration first, as docs/ARCHITECTURE.md orders the
/// sources); otherwise start the monitor (PREF64 on `--pref64-listen`, then
/// RFC 7050 through `resolvers`) and wait up to `--discover-timeout` for its
/// first prefix. Without one, fail with the reason RFC 7050 gives, except
/// with `--auto`: a host with native IPv4 and no NAT64 is where `--auto`
/// stands by, so the monitor keeps looking and the CLAT waits for it.
pub fn resolve_prefix(
    args: &Args,
    resolvers: &[SocketAddr],
    protector: &Protector,
) -> Result<PrefixSeed> {
    if let Some(p) = args.pref64 {
        return Ok(PrefixSeed {
            first: Some(DiscoveredPrefix {
                prefix: p,
                source: PrefixSource::Config,
                lifetime: Duration::MAX,
            }),
            monitor: None,
        });
    }
    let mut cfg = MonitorConfig::new(resolvers.to_vec(), protector.clone());
    cfg.pref64_interface = args.pref64_listen.clone();
    cfg.min_revalidate = args.min_revalidate;
    cfg.retry = cfg.retry.min(args.min_revalidate);
    let (tx, rx) = mpsc::channel();
    let monitor = PrefixMonitor::start(
        cfg,
        Box::new(move |p| {
            let _ = tx.send(p);
        }),
    )
    .context("cannot start prefix discovery")?;
    let deadline = Instant::now() + args.discover_timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(Some(first)) => {
                log::info!("NAT64 prefix {first}");
                return Ok(PrefixSeed {
                    first: Some(first),
                    monitor: Some((monitor, rx)),
                });
            }
            Ok(None) => continue,
            Err(_) => break,
        }
    }
    if args.auto {
        log::info!(
            "no NAT64 prefix within {}; standing by until one is found",
            fmt_duration(args.discover_timeout)
        );
        return Ok(PrefixSeed {
            first: None,
            monitor: Some((monitor, rx)),
        });
    }
    monitor.stop();
    // Ask once more, only to say why there is nothing.
    let why = match discover_rfc7050(resolvers, Duration::from_secs(2), protector.as_ref()) {
        Err(e) => e.to_string(),
        Ok(_) => "the DNS64 answered only after the deadline".into(),
    };
    let ra = match &args.pref64_listen {
        Some(i) => format!(" and no PREF64 in Router Advertisements on {i}"),
        None => String::new(),
    };
    bail!(
        "no NAT64 prefix within {}: {why}{ra}; give one with --pref64",
        fmt_duration(args.discover_timeout)
    )
}

/// The nameservers of a resolv.conf file (none when it cannot be read).
fn file_resolvers(path: &Path) -> Vec<SocketAddr> {
    match std::fs::read_to_string(path) {
        Ok(text) => resolv_conf::parse_resolv_conf(&text),
        Err(e) => {
            log::warn!("cannot read {}: {e}", path.display());
            Vec::new()
        }
    }
}

/// `resolvers` without those in the CLAT's own /29: in a namespace or host
/// whose resolv.conf points at our relay (as the lab's phone does for its
/// apps), forwarding there would loop.
fn upstream_only(resolvers: Vec<SocketAddr>, own: ipnet::Ipv4Net) -> Vec<SocketAddr> {
    let (keep, looped): (Vec<SocketAddr>, Vec<SocketAddr>) =
        resolvers.into_iter().partition(|r| match r {
            SocketAddr::V4(a) => !own.contains(a.ip()),
            SocketAddr::V6(_) => true,
        });
    for r in &looped {
        log::warn!("ignoring resolver {r}: it is the CLAT's own address range");
    }
    keep
}

/// Applies the monitor's changes to the running engine: a new prefix resets
/// the flows that used the old one (`Engine::set_prefix`); a lost prefix is
/// logged and the last one kept, since flows through it may still work and
/// there is nothing better to use (with `--auto` the main thread, told by
/// [`SIG_REEVALUATE`], then stands by).
fn follow_prefix(
    rx: Receiver<Option<DiscoveredPrefix>>,
    engine: Arc<Mutex<Engine>>,
    state: Arc<Mutex<RunState>>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("clat-prefix-apply".into())
        .spawn(move || {
            // Ends when the monitor stops (it owns the sender).
            for change in rx {
                let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
                match change {
                    Some(p) if st.current.as_ref().map(|c| c.prefix) == Some(p.prefix) => {
                        st.current = Some(p);
                        st.prefix_learnt = Instant::now();
                        st.lost = false;
                    }
                    Some(p) => {
                        match &st.current {
                            Some(c) => log::info!("NAT64 prefix changed: {} -> {p}", c.prefix),
                            None => log::info!("NAT64 prefix {p}"),
                        }
                        let e = engine.lock().unwrap_or_else(|e| e.into_inner());
                        match e.set_prefix(p.prefix) {
                            Ok(()) => {
                                st.current = Some(p);
                                st.prefix_learnt = Instant::now();
                                st.lost = false;
                            }
                            Err(err) => log::error!("cannot switch to prefix {p}: {err}"),
                        }
                    }
                    None => {
                        if let Some(c) = &st.current {
                            log::warn!(
                                "NAT64 prefix lost; keeping {} until another is found",
                                c.prefix
                            );
                        }
                        st.lost = true;
                    }
                }
                drop(st);
                // Blocked in every thread: taken by the main thread.
                sys::raise_to_self(sig_reevaluate());
            }
        })
}

/// Metric of the CLAT's default route when it must stay behind native
/// IPv4 (without `--auto`, when native IPv4 exists at start) or must not
/// collide with a native route added later (`--auto`).
const AUTO_METRIC: u32 = 2048;

/// The well-known prefix 64:ff9b::/96 (RFC 6052 section 2.1).
const WKP: std::net::Ipv6Addr = std::net::Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0);

/// Locks a mutex, taking the data even if another thread panicked while
/// holding it (the state stays readable for `clat status` and shutdown).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What `clat status` reports (see [`crate::status`]).
pub fn status(engine: &Engine, cfg: &EngineConfig, run: &RunState, tun: &str) -> Status {
    let now = Instant::now();
    let inputs = status::Inputs {
        running: engine.is_running(),
        exit_reason: engine.exit_reason(),
        activity: run.activity.clone(),
        tun,
        uptime: now.saturating_duration_since(run.started),
        prefix: run.current,
        prefix_lost: run.lost,
        prefix_age: now.saturating_duration_since(run.prefix_learnt),
        addresses: status::Addresses {
            clat: cfg.clat_v4,
            nat: cfg.nat_v4,
            dns: cfg.dns_v4,
        },
        mtu: cfg.mtu,
        resolvers: run.upstream_dns.clone(),
        max_flows: cfg.max_flows,
    };
    Status::collect(inputs, &engine.stats())
}

/// The running engine, shared with the control and prefix threads; stopped
/// (every flow closed, the TUN descriptor with them) on drop.
struct EngineGuard(Arc<Mutex<Engine>>);

impl Drop for EngineGuard {
    fn drop(&mut self) {
        if let Err(e) = lock(&self.0).stop() {
            log::warn!("engine stop: {e}");
        }
    }
}

/// The prefix monitor and the thread that applies its changes; stopped
/// and joined on drop.
struct MonitorGuard(Option<(PrefixMonitor, std::thread::JoinHandle<()>)>);

impl Drop for MonitorGuard {
    fn drop(&mut self) {
        if let Some((m, t)) = self.0.take() {
            m.stop();
            let _ = t.join();
        }
    }
}

/// Raised by the route watcher and the prefix thread: re-decide whether
/// the CLAT is active (`--auto`).
fn sig_reevaluate() -> libc::c_int {
    libc::SIGRTMIN()
}

/// Blocks the signals the main thread waits for, in this thread and the
/// threads it starts (so that they stay pending for [`signal_loop`]):
/// SIGINT/SIGTERM; SIGUSR1, raised by the engine watcher when the engine
/// ends on its own; SIGUSR2, raised by the resolv.conf watcher;
/// [`sig_reevaluate`].
fn block_signals() -> sys::SigSet {
    sys::block_signals(&[
        libc::SIGINT,
        libc::SIGTERM,
        libc::SIGUSR1,
        libc::SIGUSR2,
        sig_reevaluate(),
    ])
}

/// Exit status when the host firewall keeps the engine's own connections
/// out and `clat run` could not (or, with `--firewall check`, would not)
/// open the path: the host needs configuring, restarting will not help.
/// 6 is "program is not configured" in the LSB's list of init-script exit
/// codes, which systemd's `RestartPreventExitStatus=` in clat.service names.
pub const EXIT_FIREWALL_BLOCKED: u8 = 6;

/// The host firewall blocks the path to the engine's listener; the message
/// names the firewall and the command that opens it.
#[derive(Debug)]
struct FirewallBlocked(String);

impl std::fmt::Display for FirewallBlocked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for FirewallBlocked {}

pub fn main(args: Args) -> ExitCode {
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e:#}");
            // Said once in the journal; on a terminal also when logging is off.
            if !crate::logging::stderr_is_journal() {
                eprintln!("clat run: {e:#}");
            }
            if e.chain().any(|c| c.is::<FirewallBlocked>()) {
                ExitCode::from(EXIT_FIREWALL_BLOCKED)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// `--firewall`: probes the path from the TUN to a listener on the CLAT
/// address (and, with `--carry-ipv6`, on its IPv6 address: an IPv6 INPUT
/// drop policy would stall every IPv6 TCP flow) and, when one is closed,
/// opens it or says how (see [`crate::firewall`]). Returns what it opened,
/// to be closed at exit.
fn check_firewall(
    mode: FirewallMode,
    tun_fd: (BorrowedFd<'_>, bool),
    tun: &str,
    cfg: &EngineConfig,
) -> Result<Option<firewall::Openings>> {
    const WAIT: Duration = Duration::from_secs(1);
    if mode == FirewallMode::Off {
        return Ok(None);
    }
    if mode == FirewallMode::Auto {
        firewall::remove_stale(tun);
    }
    let mut families = vec![Family::V4];
    if cfg.carry_ipv6 {
        families.push(Family::V6);
    }
    // The families whose path is closed, each with what the probe saw.
    let closed = |families: &[Family]| -> Result<Vec<(Family, String)>> {
        let mut out = Vec::new();
        for &f in families {
            let (clat, nat): (IpAddr, IpAddr) = match f {
                Family::V4 => (cfg.clat_v4.into(), cfg.nat_v4.into()),
                Family::V6 => (cfg.clat_v6.into(), cfg.nat_v6.into()),
            };
            let verdict =
                match listener_probe::probe(tun_fd, clat, nat, WAIT).with_context(|| {
                    format!(
                        "cannot probe the {} path from the TUN to the listener",
                        f.name()
                    )
                })? {
                    ProbeOutcome::Open => {
                        log::debug!(
                            "firewall: {} TCP from {tun} to the listener is open",
                            f.name()
                        );
                        continue;
                    }
                    ProbeOutcome::Dropped => format!("no answer within {}s", WAIT.as_secs()),
                    ProbeOutcome::Rejected(how) => format!("answered with {how}"),
                };
            out.push((f, format!("{}: {verdict}", f.name())));
        }
        Ok(out)
    };
    let verdicts = |c: &[(Family, String)]| {
        c.iter()
            .map(|(_, v)| v.as_str())
            .collect::<Vec<_>>()
            .join("; ")
    };
    let shut = closed(&families)?;
    if shut.is_empty() {
        return Ok(None);
    }
    let shut_families: Vec<Family> = shut.iter().map(|(f, _)| *f).collect();
    let paths: Vec<ListenerPath> = shut_families
        .iter()
        .map(|&family| match family {
            Family::V4 => ListenerPath {
                family,
                nat: cfg.nat_v4.into(),
                clat: cfg.clat_v4.into(),
            },
            Family::V6 => ListenerPath {
                family,
                nat: cfg.nat_v6.into(),
                clat: cfg.clat_v6.into(),
            },
        })
        .collect();
    let blockers = firewall::find_blockers(&shut_families);
    if mode == FirewallMode::Check || blockers.is_empty() {
        let m = firewall::blocked_message(tun, &verdicts(&shut), &blockers, &paths);
        return Err(FirewallBlocked(m).into());
    }
    let openings = firewall::Openings::open(tun, &blockers, &paths)
        .map_err(|e| FirewallBlocked(format!("{e:#}")))?;
    let still = closed(&shut_families)?;
    if still.is_empty() {
        let list: Vec<String> = blockers.iter().map(|b| b.to_string()).collect();
        log::info!("firewall: opened {} for {tun} until exit", list.join(", "));
        return Ok(Some(openings));
    }
    // `openings` is dropped on return: what was opened is closed again.
    let m = firewall::blocked_message(tun, &verdicts(&still), &[], &paths);
    Err(anyhow::Error::new(FirewallBlocked(m)).context(format!(
        "still blocked after opening {}",
        blockers
            .iter()
            .map(|b| b.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    )))
}

/// The upstream resolvers at start: `--dns`, else the resolv.conf's (both
/// without the CLAT's own /29 `own`). `--dns` values were checked when the
/// arguments were parsed (a bad one is a usage error, exit status 2).
fn initial_resolvers(args: &Args, own: ipnet::Ipv4Net) -> Result<Vec<SocketAddr>> {
    let follow_resolv_conf = args.dns.is_empty();
    let resolvers = if follow_resolv_conf {
        upstream_only(file_resolvers(&args.resolv_conf), own)
    } else {
        upstream_only(args.dns.clone(), own)
    };
    if resolvers.is_empty() {
        log::warn!(
            "no upstream resolvers (--dns or {}): the DNS relay will answer SERVFAIL{}",
            args.resolv_conf.display(),
            if follow_resolv_conf {
                " until the file lists some"
            } else {
                ""
            }
        );
    }
    Ok(resolvers)
}

/// The engine's configuration from the arguments, the first prefix (`None`
/// only with `--auto`) and the resolvers.
fn engine_config(
    args: &Args,
    first: Option<&DiscoveredPrefix>,
    resolvers: Vec<SocketAddr>,
) -> EngineConfig {
    let base = u32::from(args.clat_addr);
    EngineConfig {
        clat_v4: args.clat_addr,
        nat_v4: Ipv4Addr::from(base + 1),
        dns_v4: Ipv4Addr::from(base + 2),
        // Without a prefix yet (`--auto` only) the engine starts with the
        // well-known one, but carries nothing: the CLAT's route stays
        // withdrawn until the monitor finds the network's prefix.
        prefix: first.map_or(Ipv6Net::new(WKP, 96).expect("/96"), |p| p.prefix),
        upstream_dns: resolvers,
        mtu: args.mtu,
        max_flows: args.max_flows,
        tcp_established_timeout: args.tcp_est_timeout,
        tcp_transitory_timeout: args.tcp_trans_timeout,
        udp_timeout: args.udp_timeout,
        icmp_timeout: args.icmp_timeout,
        dns_timeout: args.dns_timeout,
        refuse_non_global_wkp: !args.allow_non_global,
        carry_ipv6: args.carry_ipv6,
        flow_events: if args.report {
            report_consumer::QUEUE
        } else {
            0
        },
        ..Default::default()
    }
}

/// The CLAT's IPv4 default route (`None` with `--no-routes`): installed
/// now without `--auto` (behind a native one, if there is one), left to
/// the signal loop's first evaluation with `--auto`.
///
/// Errors: the route cannot be added.
fn default_route(args: &Args, tun: &str, tun_index: u32) -> Result<Option<Ipv4DefaultRoute>> {
    if args.no_routes {
        return Ok(None);
    }
    if args.native_ipv4 {
        // Halves of the default route: all IPv4 through the TUN, native
        // route or not (the engine's sockets leave by --bind-device or
        // --mark).
        return Ok(Some(Ipv4DefaultRoute::split(tun)));
    }
    if args.auto {
        // Metric 2048: a native default route added later (by a DHCP
        // client, at metric 0 or NetworkManager's 100, 600) must not
        // collide with ours.
        return Ok(Some(Ipv4DefaultRoute::new(tun, Some(AUTO_METRIC))));
    }
    let native = route_watch::default_routes()
        .map(|r| route_watch::native_default(&r, tun_index).cloned())
        .unwrap_or_else(|e| {
            log::warn!("cannot read the IPv4 routes: {e}");
            None
        });
    let mut route = match native {
        Some(native) => {
            // Native IPv4 exists: stay behind it.
            log::warn!(
                "an IPv4 default route exists ({}); adding ours with metric {AUTO_METRIC}",
                native.describe()
            );
            Ipv4DefaultRoute::new(tun, Some(AUTO_METRIC))
        }
        None => Ipv4DefaultRoute::new(tun, None),
    };
    route.install()?;
    Ok(Some(route))
}

/// `--native-ipv4` and `--carry-ipv6` need the engine's own sockets of
/// that family kept out of the TUN.
fn check_native_ipv4(args: &Args) -> Result<()> {
    let protected = args.bind_device.is_some() || args.mark.is_some();
    if args.native_ipv4 && !protected {
        bail!(
            "--native-ipv4 needs --bind-device IFACE (the uplink with the native IPv4 route) \
             or --mark N (with a rule of yours that routes marked IPv4 around the TUN): \
             otherwise the engine's IPv4 sockets would follow the CLAT's own routes back \
             into the TUN"
        );
    }
    if args.carry_ipv6 && !protected {
        bail!(
            "--carry-ipv6 needs --bind-device IFACE (the uplink with the IPv6 route) \
             or --mark N (with a rule of yours that routes marked IPv6 around the TUN): \
             otherwise the engine's IPv6 sockets would follow the CLAT's own routes back \
             into the TUN"
        );
    }
    Ok(())
}

fn run(args: Args) -> Result<()> {
    let started = Instant::now();
    check_native_ipv4(&args)?;
    if let Some(mark) = args.mark {
        crate::mark_rule::check(mark, args.native_ipv4, args.carry_ipv6)?;
    }
    let sigs = block_signals();
    let own = ipnet::Ipv4Net::new(Ipv4Addr::from(u32::from(args.clat_addr) & !7), 29)?;
    let follow_resolv_conf = args.dns.is_empty();
    let resolvers = initial_resolvers(&args, own)?;
    let protector: Protector = match (&args.mark, &args.bind_device) {
        (Some(m), _) => Arc::new(MarkProtect(*m)),
        (None, Some(d)) => Arc::new(BindDeviceProtect(d.clone())),
        _ => Arc::new(NoProtect),
    };
    let seed = resolve_prefix(&args, &resolvers, &protector)?;
    let mut cfg = engine_config(&args, seed.first.as_ref(), resolvers);
    cfg.validate().context("invalid configuration")?;
    let run_state = Arc::new(Mutex::new(RunState {
        current: seed.first,
        lost: false,
        upstream_dns: cfg.upstream_dns.clone(),
        activity: if args.auto {
            ActivityState {
                activity: Activity::Standby,
                reason: "starting".into(),
            }
        } else {
            auto_mode::always()
        },
        started,
        prefix_learnt: started,
    }));

    // Guards, undone in reverse order when `run` returns. The control
    // socket first: a second instance with the same one stops here.
    let control_addr = args
        .control
        .clone()
        .unwrap_or_else(|| ControlAddr::default_for(&args.tun));
    let control = ControlSocket::bind(&control_addr)?;
    let _ping_group = PingGroupRange::ensure();
    raise_fd_limit(cfg.max_flows);
    let (fd, tun, offloads) = if args.no_tun_offloads {
        open_tun(&args.tun).map(|(fd, tun)| (fd, tun, false))
    } else {
        open_tun_offload(&args.tun)
    }
    .with_context(|| format!("cannot open TUN {}", args.tun))?;
    cfg.tun_vnet_hdr = offloads;
    let _link = TunLink(tun.clone());
    // An IPv4-only TUN: without IPv6 on it the kernel sends no router
    // solicitations or MLD reports into it (each would wake the engine).
    // With --carry-ipv6 it has the ULA /64 (no DAD: nobody else is on a
    // TUN), whose ::2 the engine's IPv6 listener sees connections from.
    // No link-local address either (addr_gen_mode 1, before IPv6 is on):
    // its duplicate address detection and router solicitations would only
    // be dropped by the engine.
    if cfg.carry_ipv6 {
        let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{tun}/addr_gen_mode"), "1");
    }
    let disable_ipv6 = if cfg.carry_ipv6 { "0" } else { "1" };
    let _ = std::fs::write(
        format!("/proc/sys/net/ipv6/conf/{tun}/disable_ipv6"),
        disable_ipv6,
    );
    ip(&["addr", "add", &format!("{}/29", cfg.clat_v4), "dev", &tun])?;
    if cfg.carry_ipv6 {
        let a6 = format!("{}/64", cfg.clat_v6);
        ip(&["-6", "addr", "add", &a6, "dev", &tun, "nodad"])?;
    }
    let mtu = cfg.mtu.to_string();
    ip(&["link", "set", "dev", &tun, "mtu", &mtu, "up"])?;
    let tun_index = if_index(&tun)?;
    let _firewall = check_firewall(args.firewall, (fd.as_fd(), offloads), &tun, &cfg)?;
    let route = default_route(&args, &tun, tun_index)?;
    let _route6 = if cfg.carry_ipv6 && !args.no_routes {
        let mut r = Ipv4DefaultRoute::split_ipv6(&tun);
        r.install()?;
        Some(r)
    } else {
        None
    };

    let engine = Engine::start(fd, cfg.clone(), protector).context("cannot start the engine")?;
    let watch = engine.exit_watch();
    let engine = EngineGuard(Arc::new(Mutex::new(engine)));
    std::thread::Builder::new()
        .name("engine-watch".into())
        .spawn(move || {
            watch.wait();
            // SIGUSR1 is blocked in every thread, so it stays pending for
            // the main thread's wait.
            sys::raise_to_self(libc::SIGUSR1);
        })
        .context("cannot start the engine watcher")?;
    let mut monitor = MonitorGuard(None);
    if let Some((m, rx)) = seed.monitor {
        match follow_prefix(rx, engine.0.clone(), run_state.clone()) {
            Ok(t) => monitor.0 = Some((m, t)),
            Err(e) => log::error!("cannot follow prefix changes: {e}"),
        }
    }
    {
        let (engine, cfg, run_state, tun) = (
            engine.0.clone(),
            cfg.clone(),
            run_state.clone(),
            tun.clone(),
        );
        let recorder = match lock(&engine).flow_events() {
            Some(events) => {
                // A flow the engine still holds this long after its start
                // has been active all along (its longest idle timeout).
                let longest_idle = [
                    cfg.tcp_established_timeout,
                    cfg.tcp_transitory_timeout,
                    cfg.udp_timeout,
                    cfg.icmp_timeout,
                ]
                .into_iter()
                .max()
                .unwrap_or(crate::report::PRESUMED_ENDED_AFTER);
                let limits = Limits {
                    presume_ended_after: longest_idle,
                    ..Limits::default()
                };
                let r = Arc::new(Mutex::new(Recorder::new(
                    limits,
                    clat_engine::flow_events::now_ms(),
                )));
                // Sockets bound to the TUN are found only by its index.
                let ifindex = sys::if_nametoindex(&tun).unwrap_or_else(|e| {
                    log::warn!(
                        "report: no index for {tun} ({e}): sockets bound to it stay unattributed"
                    );
                    0
                });
                let counters = engine.clone();
                let dropped = move || lock(&counters).stats().flow_events_dropped;
                report_consumer::spawn(events, r.clone(), ifindex, dropped)
                    .context("cannot start the report thread")?;
                Some(r)
            }
            None => None,
        };
        control.serve(move |req| match req {
            Request::Status => {
                let st = lock(&run_state).clone();
                status(&lock(&engine), &cfg, &st, &tun).to_json() + "\n"
            }
            Request::Report { since } => match &recorder {
                Some(r) => {
                    let dropped = lock(&engine).stats().flow_events_dropped;
                    let now = clat_engine::flow_events::now_ms();
                    let mut r = lock(r);
                    r.note_events_dropped(dropped, now);
                    r.report(now, *since, dropped).to_json() + "\n"
                }
                None => "error this clat run records no report: start it with --report\n".into(),
            },
        })?;
    }
    log::info!(
        "clat running on {tun}: {} prefix {} dns {:?} control {control_addr}",
        cfg.clat_v4,
        cfg.prefix,
        cfg.upstream_dns
    );
    if follow_resolv_conf {
        if let Err(e) = resolv_watch::spawn(args.resolv_conf.clone(), libc::SIGUSR2) {
            log::warn!(
                "cannot watch {}: {e}; resolver changes will not be followed",
                args.resolv_conf.display()
            );
        }
    }
    if args.auto {
        route_watch::spawn(sig_reevaluate()).context("cannot follow IPv4 route changes")?;
    }
    let mut lp = SignalLoop {
        sigs,
        auto: args.auto,
        native_ipv4: args.native_ipv4,
        bind_device: args.bind_device.as_deref(),
        ipv4_path: None,
        tun: &tun,
        tun_index,
        route,
        engine: &engine.0,
        run_state: &run_state,
        monitor: monitor.0.as_ref().map(|(m, _)| m),
        resolv_conf: follow_resolv_conf.then_some(args.resolv_conf.as_path()),
        own,
        resolvers: cfg.upstream_dns.clone(),
    };
    let r = lp.run();
    sd_notify::tell("STOPPING=1");
    r
}

/// What the main thread does between start and exit: wait for signals and
/// act on them, nothing else (no periodic wake-up).
struct SignalLoop<'a> {
    sigs: sys::SigSet,
    auto: bool,
    /// `--native-ipv4`: native IPv4 means the native path, not standby.
    native_ipv4: bool,
    /// `--bind-device`: with `--native-ipv4`, the one interface whose
    /// default route is native IPv4.
    bind_device: Option<&'a str>,
    /// The IPv4 path last given to the engine (`--native-ipv4`).
    ipv4_path: Option<clat_engine::Ipv4Path>,
    tun: &'a str,
    tun_index: u32,
    /// `None` with `--no-routes`.
    route: Option<Ipv4DefaultRoute>,
    engine: &'a Arc<Mutex<Engine>>,
    run_state: &'a Arc<Mutex<RunState>>,
    monitor: Option<&'a PrefixMonitor>,
    /// The resolv.conf followed (without `--dns`).
    resolv_conf: Option<&'a Path>,
    own: ipnet::Ipv4Net,
    resolvers: Vec<SocketAddr>,
}

impl SignalLoop<'_> {
    /// Until SIGINT/SIGTERM (Ok) or the engine ending on its own (the
    /// error says why).
    fn run(&mut self) -> Result<()> {
        if self.auto {
            // Said with READY=1 below.
            self.reevaluate();
        }
        // Ready, active or standing by: TUN, address, firewall opening,
        // control socket and (when active) route are in place.
        sd_notify::tell(&format!("READY=1\nSTATUS={}", self.service_status()));
        loop {
            let Some(sig) = sys::wait_signal(&self.sigs, None) else {
                continue;
            };
            match sig {
                libc::SIGINT | libc::SIGTERM => {
                    log::info!("signal {sig}: stopping");
                    return Ok(());
                }
                libc::SIGUSR2 => self.resolvers_changed(),
                s if s == sig_reevaluate() && self.auto => self.reevaluate_and_tell(),
                _ => {}
            }
            let e = lock(self.engine);
            if !e.is_running() {
                bail!(
                    "engine ended: {}",
                    e.exit_reason().unwrap_or_else(|| "engine stopped".into())
                );
            }
        }
    }

    fn resolvers_changed(&mut self) {
        let Some(path) = self.resolv_conf else { return };
        let now = upstream_only(file_resolvers(path), self.own);
        if now == self.resolvers {
            return;
        }
        log::info!(
            "upstream resolvers changed: {:?} -> {now:?}",
            self.resolvers
        );
        if let Err(e) = lock(self.engine).set_upstream_dns(now.clone()) {
            log::warn!("cannot give the relay the new resolvers: {e}");
        }
        if let Some(m) = self.monitor {
            m.set_resolvers(now.clone());
        }
        lock(self.run_state).upstream_dns = now.clone();
        self.resolvers = now;
    }

    /// `--auto`: reads the IPv4 default routes and the prefix state, and
    /// puts the CLAT's route in place or withdraws it (closing the flows
    /// that used it, so that apps reconnect natively at once instead of
    /// hanging on packets that can no longer leave). Returns whether the
    /// activity or its reason changed.
    fn reevaluate(&mut self) -> bool {
        let routes = match route_watch::default_routes() {
            Ok(r) => r,
            Err(e) => {
                log::warn!("cannot read the IPv4 routes: {e}");
                return false;
            }
        };
        // With --native-ipv4 --bind-device, only a default route through
        // that interface is native IPv4 the engine's sockets can use.
        let uplink = match (self.native_ipv4, self.bind_device) {
            (true, Some(dev)) => match sys::if_nametoindex(dev) {
                Ok(i) => Some(i),
                Err(e) => {
                    log::warn!("--bind-device {dev}: {e}; no native IPv4 through it");
                    Some(0)
                }
            },
            _ => None,
        };
        let native = match uplink {
            Some(i) => route_watch::native_default_via(&routes, i),
            None => route_watch::native_default(&routes, self.tun_index),
        };
        let prefix = {
            let st = lock(self.run_state);
            st.current.as_ref().filter(|_| !st.lost).map(|c| c.prefix)
        };
        let (next, path) = auto_mode::decide(native, prefix.as_ref(), self.native_ipv4);
        let before = lock(self.run_state).activity.clone();
        if self.native_ipv4 && self.ipv4_path != Some(path) {
            // Before the route: new flows take the new path from the
            // first packet. Native -> NAT64 resets the native flows.
            match lock(self.engine).set_ipv4_path(path) {
                Ok(()) => {
                    log::info!("IPv4 path: {}", path.name());
                    self.ipv4_path = Some(path);
                }
                Err(e) => log::warn!("cannot switch the IPv4 path to {}: {e}", path.name()),
            }
        }
        if let Some(route) = &mut self.route {
            match next.activity {
                Activity::Active if !route.is_installed() => {
                    if let Err(e) = route.install() {
                        log::error!("cannot add the IPv4 default route: {e:#}");
                    }
                }
                Activity::Standby if route.is_installed() => {
                    route.withdraw();
                    if let Err(e) = lock(self.engine).network_changed() {
                        log::warn!("cannot close the CLAT's flows: {e}");
                    }
                }
                _ => {}
            }
        }
        let changed = next != before;
        if changed {
            log::info!(
                "{} -> {}: {}",
                before.activity.as_str(),
                next.activity.as_str(),
                next.reason
            );
        }
        lock(self.run_state).activity = next;
        changed
    }

    /// [`Self::reevaluate`], and a change told to systemd (`STATUS=`).
    fn reevaluate_and_tell(&mut self) {
        if self.reevaluate() {
            sd_notify::tell(&format!("STATUS={}", self.service_status()));
        }
    }

    /// The one-line `STATUS=` that `systemctl status` shows: active (and
    /// through which prefix) or standing by (and why).
    fn service_status(&self) -> String {
        let st = lock(self.run_state);
        let tun = &self.tun;
        match (st.activity.activity, &st.current) {
            (Activity::Active, _) if self.ipv4_path == Some(clat_engine::Ipv4Path::Native) => {
                format!("active: IPv4 on {tun}, leaving natively")
            }
            (Activity::Active, Some(p)) => {
                format!("active: IPv4 on {tun} through NAT64 prefix {}", p.prefix)
            }
            _ => format!(
                "{} on {tun}: {}",
                st.activity.activity.as_str(),
                st.activity.reason
            ),
        }
    }
}
