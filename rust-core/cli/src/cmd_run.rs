//! `clat run`: the CLAT on Linux. Creates the TUN, gives it the CLAT
//! address and (unless told not to) the IPv4 default route, runs the engine
//! until SIGINT/SIGTERM, serves `clat status` on a Unix control socket, and
//! removes what it added on the way out.

use crate::args::{parse_duration, parse_positive_duration, parse_resolver};
use crate::resolv_watch;
use crate::sd_notify;
use crate::status::{self, Status};
use clat_discovery::{
    discover_rfc7050, fmt_duration, resolv_conf, DiscoveredPrefix, MonitorConfig, PrefixMonitor,
    PrefixSource,
};
use clat_engine::{open_tun, Engine, EngineConfig};
use clat_protect::{BindDeviceProtect, MarkProtect, NoProtect, Protector};
use ipnet::Ipv6Net;
use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
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
    #[arg(long, value_name = "PREFIX")]
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
    #[arg(long = "dns", value_name = "ADDR")]
    pub dns: Vec<String>,
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
    #[arg(long)]
    pub no_routes: bool,
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
    /// Set this firewall mark (SO_MARK) on every upstream socket.
    #[arg(long, value_name = "N", conflicts_with = "bind_device")]
    pub mark: Option<u32>,
    /// Bind every upstream socket to this interface (SO_BINDTODEVICE).
    #[arg(long, value_name = "IFACE")]
    pub bind_device: Option<String>,
    /// Control socket for `clat status` (default /run/clat/<tun>.sock).
    #[arg(long, value_name = "PATH")]
    pub control: Option<PathBuf>,
}

/// Default control socket path for a TUN name.
pub fn default_control(tun: &str) -> PathBuf {
    PathBuf::from(format!("/run/clat/{tun}.sock"))
}

/// What `clat run` follows: the prefix in use (written by the prefix
/// monitor's thread) and the upstream resolvers (by the main thread when
/// resolv.conf changes); read by `clat status`.
#[derive(Debug, Clone)]
pub struct RunState {
    pub current: DiscoveredPrefix,
    /// The monitor lost every prefix (e.g. the DNS64 now says "no DNS64"):
    /// the engine keeps the last one until a new one is found.
    pub lost: bool,
    pub upstream_dns: Vec<SocketAddr>,
    /// When `clat run` started (uptime).
    pub started: Instant,
    /// When `current` was last learnt or re-validated (its lifetime counts
    /// from there).
    pub prefix_learnt: Instant,
}

/// Where the prefix comes from: `--pref64`, or a [`PrefixMonitor`] whose
/// changes arrive on the receiver.
pub struct PrefixSeed {
    pub first: DiscoveredPrefix,
    pub monitor: Option<(PrefixMonitor, Receiver<Option<DiscoveredPrefix>>)>,
}

/// `--pref64` wins (explicit configuration first, as DESIGN.md orders the
/// sources); otherwise start the monitor (PREF64 on `--pref64-listen`, then
/// RFC 7050 through `resolvers`) and wait up to `--discover-timeout` for its
/// first prefix. Without one, fail with the reason RFC 7050 gives.
pub fn resolve_prefix(
    args: &Args,
    resolvers: &[SocketAddr],
    protector: &Protector,
) -> Result<PrefixSeed, String> {
    if let Some(p) = args.pref64 {
        return Ok(PrefixSeed {
            first: DiscoveredPrefix {
                prefix: p,
                source: PrefixSource::Config,
                lifetime: Duration::MAX,
            },
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
    .map_err(|e| format!("cannot start prefix discovery: {e}"))?;
    let deadline = Instant::now() + args.discover_timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(Some(first)) => {
                log::info!("NAT64 prefix {first}");
                return Ok(PrefixSeed {
                    first,
                    monitor: Some((monitor, rx)),
                });
            }
            Ok(None) => continue,
            Err(_) => break,
        }
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
    Err(format!(
        "no NAT64 prefix within {}: {why}{ra}; give one with --pref64",
        fmt_duration(args.discover_timeout)
    ))
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
/// there is nothing better to use.
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
                    Some(p) if p.prefix == st.current.prefix => {
                        st.current = p;
                        st.prefix_learnt = Instant::now();
                        st.lost = false;
                    }
                    Some(p) => {
                        log::info!("NAT64 prefix changed: {} -> {p}", st.current.prefix);
                        let e = engine.lock().unwrap_or_else(|e| e.into_inner());
                        match e.set_prefix(p.prefix) {
                            Ok(()) => {
                                st.current = p;
                                st.prefix_learnt = Instant::now();
                                st.lost = false;
                            }
                            Err(err) => log::error!("cannot switch to prefix {p}: {err}"),
                        }
                    }
                    None => {
                        log::warn!(
                            "NAT64 prefix lost; keeping {} until another is found",
                            st.current.prefix
                        );
                        st.lost = true;
                    }
                }
            }
        })
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn has_v4_default() -> bool {
    Command::new("ip")
        .args(["-4", "route", "show", "default"])
        .output()
        .map(|o| !String::from_utf8_lossy(&o.stdout).trim().is_empty())
        .unwrap_or(false)
}

/// Makes sure ping sockets work for our group (per network namespace).
/// Ping sockets need the process's group inside
/// net.ipv4.ping_group_range. Widens it when needed and returns the old
/// value, which is put back at exit.
fn ensure_ping_group() -> Option<String> {
    const P: &str = "/proc/sys/net/ipv4/ping_group_range";
    // SAFETY: getegid has no preconditions.
    let gid = unsafe { libc::getegid() };
    let cur = std::fs::read_to_string(P).unwrap_or_default();
    let v: Vec<u64> = cur
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    if v.len() == 2 && v[0] <= gid as u64 && gid as u64 <= v[1] {
        return None;
    }
    match std::fs::write(P, format!("{} {}", gid, gid.max(1))) {
        Ok(()) => {
            log::info!("set {P} to include gid {gid} (ICMP echo through ping sockets)");
            Some(cur)
        }
        Err(e) => {
            log::warn!("cannot set {P} ({e}): ICMP echo will not work");
            None
        }
    }
}

/// Puts the old ping_group_range back when `clat run` ends, whichever way.
struct PingGroupRestore(Option<String>);

impl Drop for PingGroupRestore {
    fn drop(&mut self) {
        if let Some(v) = self.0.take() {
            let _ = std::fs::write("/proc/sys/net/ipv4/ping_group_range", v.trim());
        }
    }
}

/// A TCP flow holds two descriptors (the accepted socket and the upstream
/// one), a datagram flow one: raise the soft RLIMIT_NOFILE (often 1024) so
/// that `--max-flows` is the limit, not the descriptor table.
fn raise_fd_limit(max_flows: usize) {
    // rlim_t is 32 bits on 32-bit Android (armv7): saturate there too.
    let want = libc::rlim_t::try_from(max_flows)
        .unwrap_or(libc::rlim_t::MAX)
        .saturating_mul(2)
        .saturating_add(256);
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: r is a valid rlimit to fill in / read from.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } != 0 {
        return;
    }
    if r.rlim_cur >= want {
        return;
    }
    let new = libc::rlimit {
        rlim_cur: want.min(r.rlim_max),
        rlim_max: r.rlim_max,
    };
    // SAFETY: as above.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &new) } == 0 {
        log::debug!("RLIMIT_NOFILE {} -> {}", r.rlim_cur, new.rlim_cur);
    }
    if new.rlim_cur < want {
        log::warn!(
            "the descriptor limit ({}) allows about {} TCP flows, fewer than --max-flows {max_flows}",
            new.rlim_cur,
            new.rlim_cur.saturating_sub(256) / 2
        );
    }
}

/// What `clat status` reports (see [`crate::status`]).
pub fn status(engine: &Engine, cfg: &EngineConfig, run: &RunState, tun: &str) -> Status {
    let now = Instant::now();
    let inputs = status::Inputs {
        running: engine.is_running(),
        exit_reason: engine.exit_reason(),
        tun,
        uptime: now.saturating_duration_since(run.started),
        prefix: run.current.prefix,
        source: run.current.source,
        prefix_lost: run.lost,
        lifetime: run.current.lifetime,
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

fn serve_control(
    path: &Path,
    engine: Arc<Mutex<Engine>>,
    cfg: EngineConfig,
    run: Arc<Mutex<RunState>>,
    tun: String,
) -> Result<(), String> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let _ = std::fs::remove_file(path);
    let l =
        UnixListener::bind(path).map_err(|e| format!("control socket {}: {e}", path.display()))?;
    std::thread::Builder::new()
        .name("clat-control".into())
        .spawn(move || {
            for conn in l.incoming() {
                let Ok(mut c) = conn else { continue };
                let _ = c.set_read_timeout(Some(Duration::from_secs(2)));
                let mut line = String::new();
                let _ = BufReader::new(&c).read_line(&mut line);
                let reply = match line.trim() {
                    "status" | "" => {
                        let p = run.lock().unwrap_or_else(|e| e.into_inner()).clone();
                        let e = engine.lock().unwrap_or_else(|e| e.into_inner());
                        status(&e, &cfg, &p, &tun).to_json() + "\n"
                    }
                    other => format!("error unknown request {other:?}\n"),
                };
                let _ = c.write_all(reply.as_bytes());
            }
        })
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// Blocks SIGINT/SIGTERM, SIGUSR1 (raised by the engine watcher when the
/// engine ends on its own) and SIGUSR2 (raised by the resolv.conf watcher)
/// in this thread and the threads it starts, so that the main thread can
/// wait for them with sigtimedwait.
fn block_signals() -> libc::sigset_t {
    // SAFETY: sigset manipulation on a local set, then pthread_sigmask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGUSR1);
        libc::sigaddset(&mut set, libc::SIGUSR2);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

pub fn main(args: Args) -> ExitCode {
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e}");
            // Said once in the journal; on a terminal also when logging is off.
            if !crate::logging::stderr_is_journal() {
                eprintln!("clat run: {e}");
            }
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<(), String> {
    let started = Instant::now();
    let sigs = block_signals();
    let base = u32::from(args.clat_addr);
    let own = ipnet::Ipv4Net::new(Ipv4Addr::from(base & !7), 29).map_err(|e| e.to_string())?;
    let follow_resolv_conf = args.dns.is_empty();
    let resolvers = if follow_resolv_conf {
        upstream_only(file_resolvers(&args.resolv_conf), own)
    } else {
        let given = args
            .dns
            .iter()
            .map(|d| parse_resolver(d))
            .collect::<Result<Vec<_>, _>>()?;
        upstream_only(given, own)
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
    let protector: Protector = match (&args.mark, &args.bind_device) {
        (Some(m), _) => Arc::new(MarkProtect(*m)),
        (None, Some(d)) => Arc::new(BindDeviceProtect(d.clone())),
        _ => Arc::new(NoProtect),
    };
    let seed = resolve_prefix(&args, &resolvers, &protector)?;
    let cfg = EngineConfig {
        clat_v4: args.clat_addr,
        nat_v4: Ipv4Addr::from(base + 1),
        dns_v4: Ipv4Addr::from(base + 2),
        prefix: seed.first.prefix,
        upstream_dns: resolvers,
        mtu: args.mtu,
        max_flows: args.max_flows,
        tcp_established_timeout: args.tcp_est_timeout,
        tcp_transitory_timeout: args.tcp_trans_timeout,
        udp_timeout: args.udp_timeout,
        icmp_timeout: args.icmp_timeout,
        dns_timeout: args.dns_timeout,
        refuse_non_global_wkp: !args.allow_non_global,
        ..Default::default()
    };
    cfg.validate()
        .map_err(|e| format!("invalid configuration: {e}"))?;
    let run_state = Arc::new(Mutex::new(RunState {
        current: seed.first,
        lost: false,
        upstream_dns: cfg.upstream_dns.clone(),
        started,
        prefix_learnt: started,
    }));
    let _ping_group = PingGroupRestore(ensure_ping_group());
    raise_fd_limit(cfg.max_flows);

    let (fd, tun) =
        open_tun(&args.tun).map_err(|e| format!("cannot open TUN {}: {e}", args.tun))?;
    // IPv4-only TUN: without IPv6 on it the kernel sends no router
    // solicitations or MLD reports into it (each would wake the engine).
    let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{tun}/disable_ipv6"), "1");
    ip(&["addr", "add", &format!("{}/29", cfg.clat_v4), "dev", &tun])?;
    ip(&[
        "link",
        "set",
        "dev",
        &tun,
        "mtu",
        &cfg.mtu.to_string(),
        "up",
    ])?;
    let mut route: Option<Vec<String>> = None;
    if !args.no_routes {
        let r: Vec<String> = if has_v4_default() {
            // Native IPv4 exists: stay behind it.
            log::warn!("an IPv4 default route exists; adding ours with metric 2048");
            ["default", "dev", &tun, "metric", "2048"]
                .iter()
                .map(|s| s.to_string())
                .collect()
        } else {
            ["default", "dev", &tun]
                .iter()
                .map(|s| s.to_string())
                .collect()
        };
        let mut a = vec!["route", "add"];
        a.extend(r.iter().map(String::as_str));
        ip(&a)?;
        route = Some(r);
    }
    let engine = Engine::start(fd, cfg.clone(), protector).map_err(|e| format!("engine: {e}"))?;
    let watch = engine.exit_watch();
    std::thread::Builder::new()
        .name("engine-watch".into())
        .spawn(move || {
            watch.wait();
            // SAFETY: kill on our own pid; SIGUSR1 is blocked in every
            // thread, so it stays pending for the main thread's sigtimedwait.
            unsafe { libc::kill(libc::getpid(), libc::SIGUSR1) };
        })
        .map_err(|e| format!("engine watcher: {e}"))?;
    let engine = Arc::new(Mutex::new(engine));
    let control = args
        .control
        .clone()
        .unwrap_or_else(|| default_control(&tun));
    if let Err(e) = serve_control(
        &control,
        engine.clone(),
        cfg.clone(),
        run_state.clone(),
        tun.clone(),
    ) {
        log::warn!("{e}: `clat status` will not work");
    }
    let mut monitor = None;
    if let Some((m, rx)) = seed.monitor {
        match follow_prefix(rx, engine.clone(), run_state.clone()) {
            Ok(t) => monitor = Some((m, t)),
            Err(e) => log::error!("cannot follow prefix changes: {e}"),
        }
    }
    log::info!(
        "clat running on {tun}: {} prefix {} dns {:?}",
        cfg.clat_v4,
        cfg.prefix,
        cfg.upstream_dns
    );
    sd_notify::tell(&format!(
        "READY=1\nSTATUS=translating IPv4 on {tun}, NAT64 prefix {}",
        cfg.prefix
    ));

    if follow_resolv_conf {
        if let Err(e) = resolv_watch::spawn(args.resolv_conf.clone(), libc::SIGUSR2) {
            log::warn!(
                "cannot watch {}: {e}; resolver changes will not be followed",
                args.resolv_conf.display()
            );
        }
    }
    let mut resolvers = cfg.upstream_dns.clone();
    let mut failure = None;
    loop {
        let ts = libc::timespec {
            tv_sec: 5,
            tv_nsec: 0,
        };
        // SAFETY: sigs is an initialised set; a null siginfo is allowed.
        let sig = unsafe { libc::sigtimedwait(&sigs, std::ptr::null_mut(), &ts) };
        if sig == libc::SIGINT || sig == libc::SIGTERM {
            log::info!("signal {sig}: stopping");
            break;
        }
        if sig == libc::SIGUSR2 {
            let now = upstream_only(file_resolvers(&args.resolv_conf), own);
            if now != resolvers {
                log::info!("upstream resolvers changed: {resolvers:?} -> {now:?}");
                if let Err(e) = engine
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .set_upstream_dns(now.clone())
                {
                    log::warn!("cannot give the relay the new resolvers: {e}");
                }
                if let Some((m, _)) = &monitor {
                    m.set_resolvers(now.clone());
                }
                run_state
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .upstream_dns = now.clone();
                resolvers = now;
            }
        }
        let e = engine.lock().unwrap_or_else(|e| e.into_inner());
        if !e.is_running() {
            failure = Some(e.exit_reason().unwrap_or_else(|| "engine stopped".into()));
            break;
        }
    }
    sd_notify::tell("STOPPING=1");
    if let Some((m, t)) = monitor {
        m.stop();
        let _ = t.join();
    }
    if let Some(r) = &route {
        let mut a = vec!["route", "del"];
        a.extend(r.iter().map(String::as_str));
        if let Err(e) = ip(&a) {
            log::debug!("{e}");
        }
    }
    {
        let mut e = engine.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(err) = e.stop() {
            log::warn!("engine stop: {err}");
        }
    }
    // The TUN is not persistent: closing its fd (engine stop) removed it.
    let _ = ip(&["link", "del", "dev", &tun]);
    let _ = std::fs::remove_file(&control);
    match failure {
        Some(f) => Err(format!("engine ended: {f}")),
        None => Ok(()),
    }
}
