//! `clat discover`: find the network's NAT64 prefix(es) and print them.
//!
//! One line per prefix, most trusted source first:
//! `2001:db8:64::/96 pref64 lifetime=600s` then `2001:db8:64::/96 rfc7050 ttl=300s`.
//! Exit status 0 when at least one prefix was found, 1 (with the reason on
//! stderr) when none was, 2 for bad arguments.

use clat_discovery::netlink::{if_index, NdUserOptListener};
use clat_discovery::{
    discover_rfc7050, fmt_duration, resolv_conf, DiscoveredPrefix, DiscoveryError, MonitorConfig,
    PrefixMonitor, PrefixSource,
};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct Args {
    /// Resolver to ask for ipv4only.arpa (RFC 7050): ADDR, [ADDR]:PORT or
    /// ADDR:PORT for IPv4; repeat for several (asked in parallel). Default:
    /// the nameservers of /etc/resolv.conf.
    #[arg(long = "dns", value_name = "ADDR", value_parser = crate::args::parse_resolver)]
    pub dns: Vec<SocketAddr>,
    /// How long to wait for answers (and for an RA with --pref64-listen):
    /// e.g. 2s, 500ms, 1m.
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = crate::args::parse_positive_duration)]
    pub timeout: Duration,
    /// Also wait (up to the timeout) for a Router Advertisement carrying
    /// PREF64 (RFC 8781) on this interface. The kernel forwards it only when
    /// the interface accepts RAs (net.ipv6.conf.IFACE.accept_ra).
    #[arg(long, value_name = "IFACE")]
    pub pref64_listen: Option<String>,
    /// Keep running (until killed) with the prefix monitor the CLAT uses:
    /// print a line whenever the selected prefix changes, `none` when it is
    /// lost. RFC 7050 answers are re-validated when their TTL runs out,
    /// PREF64 prefixes expire with their lifetime.
    #[arg(long)]
    pub watch: bool,
    /// With --watch: the shortest wait between two RFC 7050 re-validations,
    /// however small the TTL (RFC 7050 section 5 asks to re-validate at TTL
    /// expiry; this keeps a zero TTL from hammering the resolver).
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = crate::args::parse_positive_duration)]
    pub min_revalidate: Duration,
}

pub fn main(args: Args) -> ExitCode {
    let resolvers = if args.dns.is_empty() {
        resolv_conf::system_resolvers()
    } else {
        args.dns.clone()
    };
    if args.watch {
        return watch(&args, resolvers);
    }
    let deadline = Instant::now() + args.timeout;

    // Subscribe before asking DNS so that an RA arriving meanwhile is kept.
    let listener = match &args.pref64_listen {
        None => None,
        Some(name) => match if_index(name).and_then(|i| NdUserOptListener::open(Some(i))) {
            Ok(l) => Some((name.clone(), l)),
            Err(e) => {
                eprintln!("clat discover: cannot listen for RAs on {name}: {e}");
                return ExitCode::from(1);
            }
        },
    };

    let timeout = args.timeout;
    let dns =
        std::thread::spawn(move || discover_rfc7050(&resolvers, timeout, &clat_protect::NoProtect));

    let mut found: Vec<DiscoveredPrefix> = Vec::new();
    let mut problems: Vec<String> = Vec::new();
    if let Some((name, mut l)) = listener {
        match wait_for_pref64(&mut l, deadline) {
            Ok(Some(p)) => found.push(p),
            Ok(None) => problems.push(format!(
                "no NAT64 prefix: no Router Advertisement with PREF64 on {name} within {}",
                fmt_duration(args.timeout)
            )),
            Err(e) => problems.push(format!("listening for RAs on {name}: {e}")),
        }
    }
    match dns.join() {
        Ok(Ok(v)) => found.extend(v),
        Ok(Err(DiscoveryError::NoResolvers)) if args.pref64_listen.is_some() => {}
        Ok(Err(e)) => problems.push(e.to_string()),
        Err(_) => problems.push("RFC 7050 discovery panicked".into()),
    }

    for p in &found {
        println!("{p}");
    }
    for m in &problems {
        eprintln!("clat discover: {m}");
    }
    if found.is_empty() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// `--watch`: run a [`PrefixMonitor`] and print its changes as they come.
fn watch(args: &Args, resolvers: Vec<SocketAddr>) -> ExitCode {
    let mut cfg = MonitorConfig::new(resolvers, std::sync::Arc::new(clat_protect::NoProtect));
    cfg.pref64_interface = args.pref64_listen.clone();
    cfg.query_timeout = args.timeout;
    cfg.min_revalidate = args.min_revalidate;
    cfg.retry = cfg.retry.min(args.min_revalidate);
    let (tx, rx) = std::sync::mpsc::channel();
    let monitor = match PrefixMonitor::start(
        cfg,
        Box::new(move |p| {
            let _ = tx.send(p);
        }),
    ) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("clat discover: cannot start the prefix monitor: {e}");
            return ExitCode::from(1);
        }
    };
    // The monitor owns the sender; this loop ends only if its thread dies.
    for change in rx {
        match change {
            Some(p) => println!("{p}"),
            None => println!("none"),
        }
    }
    monitor.stop();
    ExitCode::from(1)
}

/// The first PREF64 with a non-zero lifetime before `deadline`.
fn wait_for_pref64(
    l: &mut NdUserOptListener,
    deadline: Instant,
) -> std::io::Result<Option<DiscoveredPrefix>> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(None);
        }
        for ev in l.recv(Some(left))? {
            log::debug!("RA from {:?} on {}: {:?}", ev.router, ev.ifindex, ev.pref64);
            if !ev.pref64.lifetime.is_zero() {
                return Ok(Some(DiscoveredPrefix {
                    prefix: ev.pref64.prefix,
                    source: PrefixSource::Pref64,
                    lifetime: ev.pref64.lifetime,
                }));
            }
        }
    }
}
