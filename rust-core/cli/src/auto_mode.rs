//! When the CLAT carries IPv4 (`clat run --auto`), decided apart from I/O.
//!
//! As NetworkManager's `ipv4.clat auto` and Android's clatd: a CLAT is for
//! hosts without IPv4 of their own. With `--auto`, `clat run` is active
//! (its IPv4 default route through the TUN) only while the host has no
//! native IPv4 default route (its own aside) and a NAT64 prefix is known;
//! otherwise it stands by, TUN and engine kept so that it comes back at once.
//!
//! With `--native-ipv4` as well it never steps aside for native IPv4: it
//! stays active and its IPv4 flows leave natively (the engine's
//! [`Ipv4Path::Native`]) while the host has a native IPv4 default route,
//! and through the NAT64 when it has none (issue 15: an always-on CLAT
//! that never takes connectivity away).

use crate::route_watch::DefaultRoute;
use clat_engine::Ipv4Path;
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
/// route (`None`: the host has none besides the CLAT's), the NAT64 prefix
/// in use (`None`: lost or not known) and whether IPv4 flows may leave
/// natively (`--native-ipv4`): the activity and the engine's IPv4 path.
pub fn decide(
    native: Option<&DefaultRoute>,
    prefix: Option<&Ipv6Net>,
    native_ipv4: bool,
) -> (ActivityState, Ipv4Path) {
    let state = |activity, reason| ActivityState { activity, reason };
    match (native, prefix) {
        (Some(r), _) if native_ipv4 => (
            state(
                Activity::Active,
                format!(
                    "native IPv4 default route {}; IPv4 flows leave natively",
                    r.describe()
                ),
            ),
            Ipv4Path::Native,
        ),
        (Some(r), _) => (
            state(
                Activity::Standby,
                format!("native IPv4 default route {}", r.describe()),
            ),
            Ipv4Path::Nat64,
        ),
        (None, None) => (
            state(Activity::Standby, "no NAT64 prefix known".into()),
            Ipv4Path::Nat64,
        ),
        (None, Some(p)) => (
            state(
                Activity::Active,
                format!("no native IPv4 default route; NAT64 prefix {p}"),
            ),
            Ipv4Path::Nat64,
        ),
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
        let (s, path) = decide(Some(&native), Some(&p), false);
        assert_eq!((s.activity, path), (Activity::Standby, Ipv4Path::Nat64));
        assert_eq!(
            s.reason,
            "native IPv4 default route via 192.0.2.201 multipath"
        );
        assert_eq!(
            decide(Some(&native), None, false).0.activity,
            Activity::Standby
        );
        let (s, _) = decide(None, None, false);
        assert_eq!(
            (s.activity, s.reason.as_str()),
            (Activity::Standby, "no NAT64 prefix known")
        );
        let (s, path) = decide(None, Some(&p), false);
        assert_eq!((s.activity, path), (Activity::Active, Ipv4Path::Nat64));
        assert!(s.reason.contains("2001:db8:64::/96"), "{}", s.reason);
        assert_eq!(always().activity, Activity::Active);
        assert_eq!(Activity::Standby.as_str(), "standby");
    }

    #[test]
    fn with_native_ipv4_it_stays_active_and_follows_the_native_route() {
        let p: Ipv6Net = "2001:db8:64::/96".parse().unwrap();
        let native = DefaultRoute {
            oif: None,
            gateway: Some(Ipv4Addr::new(192, 0, 2, 201)),
            metric: 0,
        };
        // Native IPv4, with or without a NAT64 prefix: active, native.
        for prefix in [Some(&p), None] {
            let (s, path) = decide(Some(&native), prefix, true);
            assert_eq!((s.activity, path), (Activity::Active, Ipv4Path::Native));
            assert_eq!(
                s.reason,
                "native IPv4 default route via 192.0.2.201 multipath; IPv4 flows leave natively"
            );
        }
        // No native IPv4: the NAT64 as without the option.
        let (s, path) = decide(None, Some(&p), true);
        assert_eq!((s.activity, path), (Activity::Active, Ipv4Path::Nat64));
        let (s, path) = decide(None, None, true);
        assert_eq!((s.activity, path), (Activity::Standby, Ipv4Path::Nat64));
    }
}
