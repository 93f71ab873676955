//! [`PrefixMonitor`]: keeps the NAT64 prefix current for a running CLAT.
//!
//! One thread. It sleeps in `poll(2)` on a wake-up socket (for `stop`) and,
//! when PREF64 is wanted, the netlink socket, with the time until the next
//! thing due (RFC 7050 re-validation, a PREF64 expiry) as its timeout: no
//! busy polling, and a stop is seen at once (except during a running DNS
//! query, which is bounded by `query_timeout`).
//!
//! RFC 7050 section 5: the prefix is re-validated when the TTL of the
//! answer runs out. The wait is clamped to [`MonitorConfig::min_revalidate`]
//! (a TTL of 0 or 1 s must not make us hammer the resolver) and
//! [`MonitorConfig::max_revalidate`] (a week-long TTL must not make us miss a
//! network change). A definite "no DNS64" answer drops the prefix; a
//! timeout or refusal keeps the last good one (the network most likely still
//! has its NAT64) and retries sooner, backing off.

use crate::pref64::Pref64Table;
use crate::{discover_rfc7050, select_prefix, DiscoveredPrefix, PrefixSource};
use clat_protect::Protector;
use ipnet::Ipv6Net;
use rustix::event::{PollFd, PollFlags, Timespec};
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What the monitor watches.
#[derive(Clone)]
pub struct MonitorConfig {
    /// An explicit prefix: used as is, nothing else is asked.
    pub configured: Option<Ipv6Net>,
    /// Resolvers for RFC 7050 at start ([`PrefixMonitor::set_resolvers`]
    /// replaces them); none: no RFC 7050.
    pub resolvers: Vec<SocketAddr>,
    /// Listen for PREF64 in RAs on this interface (Linux netlink).
    pub pref64_interface: Option<String>,
    /// Deadline of one RFC 7050 round (all resolvers in parallel). Default 2 s.
    pub query_timeout: Duration,
    /// Floor of the re-validation interval. Default 60 s.
    pub min_revalidate: Duration,
    /// Ceiling of the re-validation interval. Default 1 h.
    pub max_revalidate: Duration,
    /// First retry after a failed round; doubles up to `min_revalidate`. Default 5 s.
    pub retry: Duration,
    /// Protects the DNS sockets (see clat-protect).
    pub protector: Protector,
}

impl MonitorConfig {
    /// RFC 7050 through `resolvers` with the default timings.
    pub fn new(resolvers: Vec<SocketAddr>, protector: Protector) -> Self {
        MonitorConfig {
            configured: None,
            resolvers,
            pref64_interface: None,
            query_timeout: Duration::from_secs(2),
            min_revalidate: Duration::from_secs(60),
            max_revalidate: Duration::from_secs(3600),
            retry: Duration::from_secs(5),
            protector,
        }
    }

    /// When to ask again after an answer with this TTL.
    pub fn revalidate_after(&self, ttl: Duration) -> Duration {
        ttl.clamp(
            self.min_revalidate,
            self.max_revalidate.max(self.min_revalidate),
        )
    }
}

type OnChange = Box<dyn FnMut(Option<DiscoveredPrefix>) + Send>;

/// Bytes written to the wake-up socket.
const WAKE_STOP: u8 = 1;
const WAKE_REVALIDATE: u8 = 2;

/// Running prefix discovery; see the module documentation.
pub struct PrefixMonitor {
    current: Arc<Mutex<Option<DiscoveredPrefix>>>,
    /// The RFC 7050 resolvers, replaceable while running.
    resolvers: Arc<Mutex<Vec<SocketAddr>>>,
    wake: UnixStream,
    thread: Option<JoinHandle<()>>,
}

impl PrefixMonitor {
    /// Starts the thread. `on_change` runs on that thread whenever the
    /// selected prefix changes (a new prefix, or `None` when it is lost);
    /// a mere lifetime refresh is not a change.
    ///
    /// Errors: `InvalidInput` when [`MonitorConfig::configured`] fails the
    /// RFC 6052 check ([`clat_xlat::addr6052::validate_prefix`]); the
    /// errors of opening the PREF64 listener.
    pub fn start(cfg: MonitorConfig, on_change: OnChange) -> io::Result<Self> {
        if let Some(p) = &cfg.configured {
            clat_xlat::addr6052::validate_prefix(p)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
        }
        let (wake, wake_rx) = UnixStream::pair()?;
        wake_rx.set_nonblocking(true)?;
        let listener = match &cfg.pref64_interface {
            Some(name) if cfg.configured.is_none() => {
                let idx = crate::netlink::if_index(name)?;
                Some(crate::netlink::NdUserOptListener::open(Some(idx))?)
            }
            _ => None,
        };
        let current = Arc::new(Mutex::new(None));
        let shared = current.clone();
        let resolvers = Arc::new(Mutex::new(cfg.resolvers.clone()));
        let theirs = resolvers.clone();
        let thread = std::thread::Builder::new()
            .name("clat-prefix".into())
            .spawn(move || run(cfg, theirs, on_change, shared, wake_rx, listener))?;
        Ok(PrefixMonitor {
            current,
            resolvers,
            wake,
            thread: Some(thread),
        })
    }

    /// The prefix in use now, if any.
    pub fn current(&self) -> Option<DiscoveredPrefix> {
        *self.current.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Asks the resolvers again now, whatever the TTL says: for when the
    /// underlying network changed (a new network has its own DNS64, maybe
    /// with another prefix). Does not wait for the answer.
    pub fn revalidate_now(&self) {
        let _ = (&self.wake).write_all(&[WAKE_REVALIDATE]);
    }

    /// Replaces the resolvers that RFC 7050 asks (the network's resolvers
    /// changed) and asks the new ones at once.
    pub fn set_resolvers(&self, resolvers: Vec<SocketAddr>) {
        *self.resolvers.lock().unwrap_or_else(|e| e.into_inner()) = resolvers;
        self.revalidate_now();
    }

    /// Stops the thread and waits for it.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(t) = self.thread.take() {
            let _ = self.wake.write_all(&[WAKE_STOP]);
            if t.join().is_err() {
                log::error!("prefix monitor thread panicked");
            }
        }
    }
}

impl Drop for PrefixMonitor {
    fn drop(&mut self) {
        self.shutdown();
    }
}

struct Rfc7050State {
    prefixes: Vec<DiscoveredPrefix>,
    next: Instant,
    backoff: Duration,
}

fn run(
    cfg: MonitorConfig,
    resolvers: Arc<Mutex<Vec<SocketAddr>>>,
    mut on_change: OnChange,
    shared: Arc<Mutex<Option<DiscoveredPrefix>>>,
    mut wake: UnixStream,
    mut listener: Option<crate::netlink::NdUserOptListener>,
) {
    let mut pref64 = Pref64Table::default();
    let mut rfc = Rfc7050State {
        prefixes: Vec::new(),
        next: Instant::now(),
        backoff: cfg.retry,
    };
    let mut selected: Option<DiscoveredPrefix> = None;
    let mut first = true;
    loop {
        let now = Instant::now();
        let asked = resolvers.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let use_rfc7050 = cfg.configured.is_none() && !asked.is_empty();
        if use_rfc7050 && now >= rfc.next {
            revalidate(&cfg, &asked, &mut rfc);
        } else if !use_rfc7050 {
            rfc.prefixes.clear();
        }
        let now = Instant::now();
        pref64.expire(now);

        let mut cands = Vec::new();
        if let Some(p) = cfg.configured {
            cands.push(DiscoveredPrefix {
                prefix: p,
                source: PrefixSource::Config,
                lifetime: Duration::MAX,
            });
        }
        cands.extend(pref64.current(now));
        cands.extend(rfc.prefixes.iter().copied());
        let choice = select_prefix(&cands);
        *shared.lock().unwrap_or_else(|e| e.into_inner()) = choice;
        if first || choice.map(|c| c.prefix) != selected.map(|c| c.prefix) {
            if !(first && choice.is_none()) {
                match &choice {
                    Some(c) => log::info!("NAT64 prefix: {c}"),
                    None => log::warn!("NAT64 prefix lost"),
                }
                on_change(choice);
            }
            first = false;
        }
        selected = choice;

        // Sleep until the next thing is due.
        let mut due: Option<Instant> = pref64.next_expiry();
        if use_rfc7050 {
            due = Some(due.map_or(rfc.next, |d| d.min(rfc.next)));
        }
        let timeout = due.map(|d| d.saturating_duration_since(Instant::now()));
        match wait(&wake, listener.as_ref(), timeout) {
            Ok((true, _)) => {
                let mut b = [0u8; 16];
                let n = wake.read(&mut b).unwrap_or(0);
                // EOF (the monitor handle is gone) or a stop request.
                if n == 0 || b[..n].contains(&WAKE_STOP) {
                    return;
                }
                rfc.next = Instant::now();
                rfc.backoff = cfg.retry;
            }
            Ok((false, true)) => {
                if let Some(l) = listener.as_mut() {
                    match l.recv(Some(Duration::ZERO)) {
                        Ok(events) => {
                            let now = Instant::now();
                            for e in events {
                                log::debug!(
                                    "PREF64 {} lifetime {:?} from {:?}",
                                    e.pref64.prefix,
                                    e.pref64.lifetime,
                                    e.router
                                );
                                pref64.update(e.pref64, now);
                            }
                        }
                        Err(e) => {
                            log::error!("PREF64 listener failed, RAs are no longer followed: {e}");
                            listener = None;
                        }
                    }
                }
            }
            Ok((false, false)) => {}
            Err(e) => {
                log::error!("prefix monitor: poll failed: {e}");
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    }
}

fn revalidate(cfg: &MonitorConfig, resolvers: &[SocketAddr], st: &mut Rfc7050State) {
    match discover_rfc7050(resolvers, cfg.query_timeout, &*cfg.protector) {
        Ok(found) => {
            let ttl = found.iter().map(|p| p.lifetime).min().unwrap_or_default();
            st.next = Instant::now() + cfg.revalidate_after(ttl);
            st.prefixes = found;
            st.backoff = cfg.retry;
        }
        Err(e) => {
            if e.is_definite() {
                log::warn!("{e}");
                st.prefixes.clear();
                st.next = Instant::now() + cfg.min_revalidate;
            } else {
                log::warn!(
                    "{e} (keeping the last prefix, retrying in {:?})",
                    st.backoff
                );
                st.next = Instant::now() + st.backoff;
                st.backoff = (st.backoff * 2).min(cfg.min_revalidate.max(cfg.retry));
            }
        }
    }
}

/// poll on the wake socket and the optional netlink socket:
/// (stop requested, netlink readable).
/// Waits until the wake-up socket or the netlink socket is readable, or
/// `timeout` (None: forever) runs out; which of the two is ready.
fn wait(
    wake: &UnixStream,
    nl: Option<&crate::netlink::NdUserOptListener>,
    timeout: Option<Duration>,
) -> io::Result<(bool, bool)> {
    let mut fds = vec![PollFd::new(wake, PollFlags::IN)];
    if let Some(l) = nl {
        fds.push(PollFd::new(l, PollFlags::IN));
    }
    // Round up to the millisecond: waking a hair early would only loop once more.
    let t = timeout.map(|t| {
        let ms =
            Duration::from_millis(u64::try_from(t.as_micros().div_ceil(1000)).unwrap_or(u64::MAX));
        Timespec::try_from(ms).unwrap_or(Timespec {
            tv_sec: i64::MAX,
            tv_nsec: 0,
        })
    });
    match rustix::event::poll(&mut fds, t.as_ref()) {
        Ok(_) => {}
        Err(rustix::io::Errno::INTR) => return Ok((false, false)),
        Err(e) => return Err(e.into()),
    }
    let ready = |i: usize| fds.get(i).is_some_and(|p| !p.revents().is_empty());
    Ok((ready(0), ready(1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revalidation_interval_is_clamped() {
        let cfg = MonitorConfig::new(vec![], Arc::new(clat_protect::NoProtect));
        assert_eq!(
            cfg.revalidate_after(Duration::ZERO),
            Duration::from_secs(60)
        );
        assert_eq!(
            cfg.revalidate_after(Duration::from_secs(300)),
            Duration::from_secs(300)
        );
        assert_eq!(
            cfg.revalidate_after(Duration::from_secs(86400 * 7)),
            Duration::from_secs(3600)
        );
    }

    #[test]
    fn configured_prefix_is_reported_once_and_stop_is_prompt() {
        let mut cfg = MonitorConfig::new(
            vec!["[::1]:9".parse().unwrap()],
            Arc::new(clat_protect::NoProtect),
        );
        cfg.configured = Some("64:ff9b::/96".parse().unwrap());
        let (tx, rx) = std::sync::mpsc::channel();
        let m = PrefixMonitor::start(cfg, Box::new(move |p| tx.send(p).unwrap())).unwrap();
        let got = rx.recv_timeout(Duration::from_secs(5)).unwrap().unwrap();
        assert_eq!(got.source, PrefixSource::Config);
        assert_eq!(m.current(), Some(got));
        let t = Instant::now();
        m.stop();
        assert!(
            t.elapsed() < Duration::from_secs(1),
            "stop took {:?}",
            t.elapsed()
        );
        assert!(rx.try_recv().is_err(), "no second callback");
    }

    #[test]
    fn a_configured_prefix_that_rfc_6052_forbids_is_refused_at_start() {
        let mut cfg = MonitorConfig::new(vec![], Arc::new(clat_protect::NoProtect));
        cfg.configured = Some("2001:db8:0:0:ff00::/96".parse().unwrap());
        let e = PrefixMonitor::start(cfg, Box::new(|_| {}))
            .err()
            .expect("refused");
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        assert!(e.to_string().contains("bits 64-71"), "{e}");
    }
}
