//! Which way an app's IPv4 flow leaves the device (issue 15, item 2): to
//! the NAT64 at prefix+IPv4 (RFC 6052 section 2.2) over IPv6 when the
//! network has no IPv4, or to the IPv4 destination itself when it has.
//! Each flow (TCP flow, UDP mapping, echo mapping) takes the path current
//! when it is created and keeps it for its life; only the upstream
//! address family differs, the rest of the flow's handling is one code.
//!
//! Pure: the decisions (the upstream address of a destination, the app-side
//! source of what comes back, which flows a switch resets) are here and
//! unit-tested; the event loop opens the sockets.

use crate::packet;
use ipnet::Ipv6Net;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

/// The upstream path of IPv4 flows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Ipv4Path {
    /// IPv6 to the NAT64 at prefix+IPv4 (RFC 6052): the CLAT proper, for
    /// networks without IPv4 (RFC 6877).
    #[default]
    Nat64,
    /// IPv4 sockets to the destination itself: the network has IPv4.
    Native,
}

impl Ipv4Path {
    /// The name `clat status` and the logs show: "nat64" or "native".
    pub fn name(self) -> &'static str {
        match self {
            Ipv4Path::Nat64 => "nat64",
            Ipv4Path::Native => "native",
        }
    }

    /// The upstream socket address for the app's IPv4 destination `dst`
    /// on this path: prefix+IPv4 (RFC 6052 section 2.2) on the NAT64
    /// path, `dst` itself on the native path.
    pub fn upstream(self, prefix: &Ipv6Net, dst: SocketAddrV4) -> SocketAddr {
        match self {
            Ipv4Path::Nat64 => SocketAddr::V6(SocketAddrV6::new(
                packet::embed(prefix, *dst.ip()),
                dst.port(),
                0,
                0,
            )),
            Ipv4Path::Native => SocketAddr::V4(dst),
        }
    }

    /// The IPv4 address an upstream `addr` stands for towards the app:
    /// the IPv4 address embedded under `prefix` on the NAT64 path (None
    /// outside the prefix: endpoint-independent filtering still only
    /// takes what the NAT64 sends), the address itself on the native path
    /// (None for an IPv6 address, which a native IPv4 socket never
    /// reports).
    pub fn app_addr(self, prefix: &Ipv6Net, addr: &SocketAddr) -> Option<SocketAddrV4> {
        match (self, addr) {
            (Ipv4Path::Nat64, SocketAddr::V6(a)) => {
                packet::extract(prefix, a.ip()).map(|v4| SocketAddrV4::new(v4, a.port()))
            }
            (Ipv4Path::Native, SocketAddr::V4(a)) => Some(*a),
            _ => None,
        }
    }

    /// Whether a packet to `dst` is refused on this path because the
    /// well-known prefix must not carry non-global IPv4 destinations
    /// (RFC 6052 section 3.1, when `refuse_non_global_wkp`): a rule of
    /// the NAT64 path only; the native path carries what the network does.
    pub fn refuses_non_global(self, prefix: &Ipv6Net, refuse_wkp: bool, dst: Ipv4Addr) -> bool {
        self == Ipv4Path::Nat64
            && refuse_wkp
            && clat_xlat::addr6052::is_well_known(prefix)
            && !packet::is_global_v4(dst)
    }
}

/// Which flows a switch of the current path from `from` to `to` resets.
/// Native -> NAT64 (the network lost IPv4): the native flows, whose
/// packets have nowhere to go any more; apps learn at once (RST,
/// forgotten mappings) and reconnect over the NAT64. NAT64 -> native (IPv4
/// appeared): none, the NAT64 still works and its flows finish there.
/// The same path again: none.
pub fn resets_on_switch(from: Ipv4Path, to: Ipv4Path) -> Option<Ipv4Path> {
    (from == Ipv4Path::Native && to == Ipv4Path::Nat64).then_some(Ipv4Path::Native)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefix() -> Ipv6Net {
        "2001:db8:64::/96".parse().unwrap()
    }

    #[test]
    fn upstream_address_per_path() {
        let dst: SocketAddrV4 = "203.0.113.10:443".parse().unwrap();
        assert_eq!(
            Ipv4Path::Nat64.upstream(&prefix(), dst),
            "[2001:db8:64::cb00:710a]:443"
                .parse::<SocketAddr>()
                .unwrap()
        );
        assert_eq!(
            Ipv4Path::Native.upstream(&prefix(), dst),
            SocketAddr::V4(dst)
        );
        // A /64 prefix puts the address around the u octet (RFC 6052 2.2).
        let p64: Ipv6Net = "2001:db8:1:2::/64".parse().unwrap();
        assert_eq!(
            Ipv4Path::Nat64.upstream(&p64, dst),
            "[2001:db8:1:2:cb:71:a00:0]:443"
                .parse::<SocketAddr>()
                .unwrap()
        );
    }

    #[test]
    fn app_side_source_per_path() {
        let sa = |s: &str| s.parse::<SocketAddr>().unwrap();
        let v4: SocketAddrV4 = "203.0.113.10:53".parse().unwrap();
        assert_eq!(
            Ipv4Path::Nat64.app_addr(&prefix(), &sa("[2001:db8:64::cb00:710a]:53")),
            Some(v4)
        );
        assert_eq!(
            Ipv4Path::Nat64.app_addr(&prefix(), &sa("[2001:db8:65::cb00:710a]:53")),
            None,
            "outside the prefix"
        );
        assert_eq!(
            Ipv4Path::Nat64.app_addr(&prefix(), &sa("203.0.113.10:53")),
            None
        );
        assert_eq!(
            Ipv4Path::Native.app_addr(&prefix(), &sa("203.0.113.10:53")),
            Some(v4)
        );
        // Any IPv4 source on the native path (endpoint-independent
        // filtering, RFC 4787), even one that looks private.
        assert_eq!(
            Ipv4Path::Native.app_addr(&prefix(), &sa("10.1.2.3:9")),
            Some("10.1.2.3:9".parse().unwrap())
        );
        assert_eq!(
            Ipv4Path::Native.app_addr(&prefix(), &sa("[2001:db8:64::cb00:710a]:53")),
            None
        );
    }

    #[test]
    fn non_global_refusal_is_a_nat64_rule_only() {
        let wkp: Ipv6Net = "64:ff9b::/96".parse().unwrap();
        let private = Ipv4Addr::new(10, 0, 0, 1);
        assert!(Ipv4Path::Nat64.refuses_non_global(&wkp, true, private));
        assert!(!Ipv4Path::Nat64.refuses_non_global(&wkp, false, private));
        assert!(!Ipv4Path::Nat64.refuses_non_global(&prefix(), true, private));
        assert!(!Ipv4Path::Nat64.refuses_non_global(&wkp, true, Ipv4Addr::new(8, 8, 8, 8)));
        assert!(!Ipv4Path::Native.refuses_non_global(&wkp, true, private));
    }

    #[test]
    fn only_losing_native_ipv4_resets_flows() {
        use Ipv4Path::*;
        assert_eq!(resets_on_switch(Native, Nat64), Some(Native));
        assert_eq!(resets_on_switch(Nat64, Native), None);
        assert_eq!(resets_on_switch(Nat64, Nat64), None);
        assert_eq!(resets_on_switch(Native, Native), None);
        assert_eq!((Nat64.name(), Native.name()), ("nat64", "native"));
        assert_eq!(Ipv4Path::default(), Nat64);
    }
}
