//! When the CLAT carries IPv4 (`clat run --auto`), decided apart from I/O.
//!
//! As NetworkManager's `ipv4.clat auto` and Android's clatd: a CLAT is for
//! hosts without IPv4 of their own. With `--auto`, `clat run` is active
//! (its IPv4 default route through the TUN) only while the host has no
//! native IPv4 default route (its own aside) and a NAT64 prefix is known;
//! otherwise it stands by, TUN and engine kept so that it comes back at once.

use crate::route_watch::DefaultRoute;
use ipnet::Ipv6Net;

/// Whether the CLAT's default route is in place (`activity` in `clat
/// status --json`: `"active"` or `"standby"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activity {
    /// IPv4 goes through the CLAT.
    Active,
    /// The CLAT's route is withdrawn (native IPv4, or no NAT64 prefix).
    Standby,
}

impl Activity {
    /// The word `clat status` prints (`activity active|standby`).
    pub fn as_str(self) -> &'static str {
        match self {
            Activity::Active => "active",
            Activity::Standby => "standby",
        }
    }
}

/// An activity and why, as `clat status` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivityState {
    pub activity: Activity,
    pub reason: String,
}

/// What `clat run --auto` should be doing, given the native IPv4 default
/// route (`None`: the host has none besides the CLAT's) and the NAT64
/// prefix in use (`None`: lost or not known).
pub fn decide(native: Option<&DefaultRoute>, prefix: Option<&Ipv6Net>) -> ActivityState {
    match (native, prefix) {
        (Some(r), _) => ActivityState {
            activity: Activity::Standby,
            reason: format!("native IPv4 default route {}", r.describe()),
        },
        (None, None) => ActivityState {
            activity: Activity::Standby,
            reason: "no NAT64 prefix known".into(),
        },
        (None, Some(p)) => ActivityState {
            activity: Activity::Active,
            reason: format!("no native IPv4 default route; NAT64 prefix {p}"),
        },
    }
}

/// Without `--auto`: always active.
pub fn always() -> ActivityState {
    ActivityState {
        activity: Activity::Active,
        reason: "always on (started without --auto)".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn stands_by_for_native_ipv4_or_without_a_prefix() {
        let p: Ipv6Net = "2001:db8:64::/96".parse().unwrap();
        let native = DefaultRoute {
            oif: None,
            gateway: Some(Ipv4Addr::new(192, 0, 2, 201)),
            metric: 0,
        };
        let s = decide(Some(&native), Some(&p));
        assert_eq!(s.activity, Activity::Standby);
        assert_eq!(
            s.reason,
            "native IPv4 default route via 192.0.2.201 multipath"
        );
        assert_eq!(decide(Some(&native), None).activity, Activity::Standby);
        let s = decide(None, None);
        assert_eq!(
            (s.activity, s.reason.as_str()),
            (Activity::Standby, "no NAT64 prefix known")
        );
        let s = decide(None, Some(&p));
        assert_eq!(s.activity, Activity::Active);
        assert!(s.reason.contains("2001:db8:64::/96"), "{}", s.reason);
        assert_eq!(always().activity, Activity::Active);
        assert_eq!(Activity::Standby.as_str(), "standby");
    }
}
