//! What `clat run` changes on the host, each undone by its guard's `Drop`,
//! so that every way out of `clat run` (a signal, an error half-way
//! through start-up, the engine ending) leaves the host as it found it.

use crate::host_cmd::ip;
use anyhow::Result;

/// The TUN's link: deleted on drop. (The TUN is not persistent, so closing
/// its descriptor removes it too; this covers a descriptor some child
/// process may have inherited.)
pub struct TunLink(pub String);

impl Drop for TunLink {
    fn drop(&mut self) {
        let _ = ip(&["link", "del", "dev", &self.0]);
    }
}

/// The IPv4 default route through the TUN, added and withdrawn on demand
/// (`--auto`) and withdrawn on drop.
pub struct Ipv4DefaultRoute {
    tun: String,
    metric: Option<u32>,
    /// 0.0.0.0/1 and 128.0.0.0/1 instead of one default route.
    split: bool,
    /// IPv6's halves, ::/1 and 8000::/1 ([`Ipv4DefaultRoute::split_ipv6`]).
    ipv6: bool,
    installed: bool,
}

impl Ipv4DefaultRoute {
    /// A route not yet installed; `metric` puts it behind a native one.
    pub fn new(tun: &str, metric: Option<u32>) -> Self {
        Ipv4DefaultRoute {
            tun: tun.to_string(),
            metric,
            split: false,
            ipv6: false,
            installed: false,
        }
    }

    /// The default route as its two halves, 0.0.0.0/1 and 128.0.0.0/1
    /// (`clat run --native-ipv4`): longer than any default route, so they
    /// win over the host's native one whatever its metric, and all IPv4
    /// goes through the TUN while the native route stays in place for the
    /// engine's own sockets (bound to the uplink, or marked for a rule
    /// of the user's) and for `--auto` to see. Not installed yet.
    pub fn split(tun: &str) -> Self {
        Ipv4DefaultRoute {
            tun: tun.to_string(),
            metric: None,
            split: true,
            ipv6: false,
            installed: false,
        }
    }

    /// The same guard for IPv6 (`clat run --carry-ipv6`): ::/1 and
    /// 8000::/1 through the TUN, longer than the uplink's IPv6 default
    /// route, which stays for the engine's own sockets. Not installed yet.
    pub fn split_ipv6(tun: &str) -> Self {
        Ipv4DefaultRoute {
            tun: tun.to_string(),
            metric: None,
            split: true,
            ipv6: true,
            installed: false,
        }
    }

    fn specs(&self) -> Vec<Vec<String>> {
        let dests: &[&str] = if self.ipv6 {
            &["::/1", "8000::/1"]
        } else if self.split {
            &["0.0.0.0/1", "128.0.0.0/1"]
        } else {
            &["default"]
        };
        dests
            .iter()
            .map(|d| {
                let mut v = vec![d.to_string(), "dev".into(), self.tun.clone()];
                if let Some(m) = self.metric {
                    v.extend(["metric".to_string(), m.to_string()]);
                }
                v
            })
            .collect()
    }

    /// Adds the route (no-op when it is in place).
    ///
    /// Errors: `ip route add` fails (the message says why); a half added
    /// before is taken away again.
    pub fn install(&mut self) -> Result<()> {
        if self.installed {
            return Ok(());
        }
        let specs = self.specs();
        for (i, spec) in specs.iter().enumerate() {
            let mut a = vec!["route", "add"];
            a.extend(spec.iter().map(String::as_str));
            if let Err(e) = ip(&a) {
                for done in &specs[..i] {
                    let mut d = vec!["route", "del"];
                    d.extend(done.iter().map(String::as_str));
                    let _ = ip(&d);
                }
                return Err(e);
            }
        }
        self.installed = true;
        Ok(())
    }

    /// Withdraws the route (no-op when it is not in place).
    pub fn withdraw(&mut self) {
        if !self.installed {
            return;
        }
        for spec in self.specs() {
            let mut a = vec!["route", "del"];
            a.extend(spec.iter().map(String::as_str));
            if let Err(e) = ip(&a) {
                log::debug!("{e:#}");
            }
        }
        self.installed = false;
    }

    pub fn is_installed(&self) -> bool {
        self.installed
    }
}

impl Drop for Ipv4DefaultRoute {
    fn drop(&mut self) {
        self.withdraw();
    }
}

const PING_GROUP_RANGE: &str = "/proc/sys/net/ipv4/ping_group_range";

/// Ping sockets (ICMP echo) need the process's group inside
/// net.ipv4.ping_group_range (per network namespace). Widens it when
/// needed; the old value is put back on drop.
pub struct PingGroupRange(Option<String>);

impl PingGroupRange {
    pub fn ensure() -> PingGroupRange {
        let gid = crate::sys::egid();
        let cur = std::fs::read_to_string(PING_GROUP_RANGE).unwrap_or_default();
        let v: Vec<u64> = cur
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        if v.len() == 2 && v[0] <= gid as u64 && gid as u64 <= v[1] {
            return PingGroupRange(None);
        }
        match std::fs::write(PING_GROUP_RANGE, format!("{} {}", gid, gid.max(1))) {
            Ok(()) => {
                log::info!(
                    "set {PING_GROUP_RANGE} to include gid {gid} (ICMP echo through ping sockets)"
                );
                PingGroupRange(Some(cur))
            }
            Err(e) => {
                log::warn!("cannot set {PING_GROUP_RANGE} ({e}): ICMP echo will not work");
                PingGroupRange(None)
            }
        }
    }
}

impl Drop for PingGroupRange {
    fn drop(&mut self) {
        if let Some(v) = self.0.take() {
            let _ = std::fs::write(PING_GROUP_RANGE, v.trim());
        }
    }
}

/// A TCP flow holds two descriptors (the accepted socket and the upstream
/// one), a datagram flow one, and the relay's splice pipes at most
/// [`clat_engine::MAX_PIPE_FDS`] more: raise the soft RLIMIT_NOFILE (often
/// 1024) so that `--max-flows` is the limit, not the descriptor table.
/// (Not undone: it dies with the process.)
pub fn raise_fd_limit(max_flows: usize) {
    let spare = 256 + clat_engine::MAX_PIPE_FDS as libc::rlim_t;
    // rlim_t is 32 bits on 32-bit Android (armv7): saturate there too.
    let want = libc::rlim_t::try_from(max_flows)
        .unwrap_or(libc::rlim_t::MAX)
        .saturating_mul(2)
        .saturating_add(spare);
    let Some((cur, max)) = crate::sys::nofile_limit() else {
        return;
    };
    if cur >= want {
        return;
    }
    let new = want.min(max);
    if crate::sys::set_nofile_limit(new, max) {
        log::debug!("RLIMIT_NOFILE {cur} -> {new}");
    }
    if new < want {
        log::warn!(
            "the descriptor limit ({new}) allows about {} TCP flows, fewer than --max-flows {max_flows}",
            new.saturating_sub(spare) / 2
        );
    }
}

/// Interface index of `name`.
///
/// Errors: no such interface.
pub fn if_index(name: &str) -> Result<u32> {
    crate::sys::if_nametoindex(name).map_err(|e| anyhow::anyhow!("no interface {name}: {e}"))
}
