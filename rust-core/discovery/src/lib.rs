//! NAT64 prefix discovery for the CLAT.
//!
//! Sources, in the order the CLAT trusts them (see [`select_prefix`]):
//! 1. explicit configuration;
//! 2. PREF64 in Router Advertisements (RFC 8781): [`pref64`] parses the
//!    option, [`netlink`] receives it from the Linux kernel;
//! 3. RFC 7050 with RFC 8880: [`discover_rfc7050`] asks the network's
//!    resolvers for `ipv4only.arpa` AAAA and [`extract`] finds every prefix
//!    in the synthesized answers.
//!
//! [`PrefixMonitor`] keeps the choice current: it re-validates RFC 7050
//! answers when their TTL runs out, expires PREF64 prefixes with their
//! lifetime, and calls back when the selected prefix changes.
//!
//! Every prefix, whatever its source, passes the translator's RFC 6052
//! check (`clat_xlat::addr6052::validate_prefix`); one that fails is
//! skipped and said (a log line, or the error of the discovery).
//!
//! `unsafe` is denied in the crate except in [`netlink`].

#![deny(unsafe_code)]

use ipnet::Ipv6Net;
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

pub mod extract;
pub mod monitor;
pub mod netlink;
pub mod pref64;
pub mod resolv_conf;
pub mod resolver;
pub mod rfc7050;
pub mod select;

pub use monitor::{MonitorConfig, PrefixMonitor};
pub use rfc7050::discover_rfc7050;
pub use select::select_prefix;

/// Where a prefix came from; the order of the variants is the order of trust.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PrefixSource {
    Config,
    Pref64,
    Rfc7050,
}

impl fmt::Display for PrefixSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PrefixSource::Config => "config",
            PrefixSource::Pref64 => "pref64",
            PrefixSource::Rfc7050 => "rfc7050",
        })
    }
}

/// A NAT64 prefix and how long it may be used without re-checking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiscoveredPrefix {
    pub prefix: Ipv6Net,
    pub source: PrefixSource,
    /// The DNS TTL (RFC 7050), the RA lifetime (PREF64) or [`Duration::MAX`]
    /// for configuration, counted from when the prefix was learnt.
    pub lifetime: Duration,
}

impl fmt::Display for DiscoveredPrefix {
    /// `2001:db8:64::/96 rfc7050 ttl=300s`: one line as `clat discover` prints it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.source {
            PrefixSource::Rfc7050 => "ttl",
            _ => "lifetime",
        };
        if self.lifetime == Duration::MAX {
            write!(f, "{} {} {}=forever", self.prefix, self.source, what)
        } else {
            write!(
                f,
                "{} {} {}={}",
                self.prefix,
                self.source,
                what,
                fmt_duration(self.lifetime)
            )
        }
    }
}

/// Why no prefix came out of RFC 7050 discovery. The messages are meant to
/// be shown to users as they are.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DiscoveryError {
    #[error("no NAT64 prefix: no resolver to ask")]
    NoResolvers,
    /// The resolver answered, and the answer says there is no DNS64.
    #[error("no NAT64 prefix: resolver {resolver} answered ipv4only.arpa without a DNS64 synthesis ({why})")]
    NoDns64 { resolver: SocketAddr, why: String },
    /// Nobody answered before the deadline.
    #[error("no NAT64 prefix: no answer from {} within {}", fmt_addrs(.resolvers), fmt_duration(*.timeout))]
    Timeout {
        resolvers: Vec<SocketAddr>,
        timeout: Duration,
    },
    /// The answer contradicts itself (see [`extract::extract_prefixes`]).
    #[error("no NAT64 prefix: inconsistent answer from {resolver}: {detail}")]
    Inconsistent {
        resolver: SocketAddr,
        detail: String,
    },
    /// Every synthesis in the answer uses a prefix that RFC 6052 does not
    /// allow (a /96 with bits 64-71 set): the prefixes are skipped, since
    /// replies through them could not be mapped back.
    #[error("no NAT64 prefix: resolver {resolver} synthesized only under prefixes RFC 6052 does not allow: {detail}")]
    UnusablePrefix {
        resolver: SocketAddr,
        detail: String,
    },
    /// The resolver could not be asked or gave an unusable answer
    /// (connection refused, SERVFAIL, malformed message...).
    #[error("no NAT64 prefix: resolver {resolver}: {detail}")]
    Failed {
        resolver: SocketAddr,
        detail: String,
    },
}

impl DiscoveryError {
    /// True when the network said "no DNS64" rather than failing to answer:
    /// a monitor drops the prefix on this, but keeps it on a timeout.
    pub fn is_definite(&self) -> bool {
        matches!(
            self,
            DiscoveryError::NoDns64 { .. }
                | DiscoveryError::Inconsistent { .. }
                | DiscoveryError::UnusablePrefix { .. }
        )
    }
}

fn fmt_addrs(a: &[SocketAddr]) -> String {
    a.iter()
        .map(|s| s.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// `2s`, `1500ms`: whole seconds as seconds, anything else in (whole)
/// milliseconds.
pub fn fmt_duration(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_the_cli_line() {
        let p = DiscoveredPrefix {
            prefix: "2001:db8:64::/96".parse().unwrap(),
            source: PrefixSource::Rfc7050,
            lifetime: Duration::from_secs(300),
        };
        assert_eq!(p.to_string(), "2001:db8:64::/96 rfc7050 ttl=300s");
        let q = DiscoveredPrefix {
            source: PrefixSource::Pref64,
            lifetime: Duration::from_millis(1500),
            ..p
        };
        assert_eq!(q.to_string(), "2001:db8:64::/96 pref64 lifetime=1500ms");
    }

    #[test]
    fn error_messages_name_the_resolver() {
        let e = DiscoveryError::Timeout {
            resolvers: vec!["[2001:db8:1::53]:53".parse().unwrap()],
            timeout: Duration::from_secs(2),
        };
        assert_eq!(
            e.to_string(),
            "no NAT64 prefix: no answer from [2001:db8:1::53]:53 within 2s"
        );
        assert!(!e.is_definite());
    }
}
