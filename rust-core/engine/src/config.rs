//! Engine configuration and its validation.

use crate::ipv4_path::Ipv4Path;
use ipnet::Ipv6Net;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

/// What the engine needs to run: the one configuration type that every
/// front end fills (`clat run` from its flags, the JNI bridge from
/// Kotlin's `NativeConfig`), so a new option is added here, with its
/// default and its check in [`EngineConfig::validate`]. `Default` gives the
/// documented values; construct with
/// `EngineConfig { prefix, ..Default::default() }`.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// The CLAT address: the apps' source and the TUN's address (192.0.0.4).
    pub clat_v4: Ipv4Addr,
    /// Internal address used as the source of rewritten TCP packets towards
    /// the engine's own listener (192.0.0.5). Must be on-link on the TUN.
    pub nat_v4: Ipv4Addr,
    /// The DNS relay's address (192.0.0.6).
    pub dns_v4: Ipv4Addr,
    /// NAT64 prefix: RFC 6052 section 2.2, checked by the translator's
    /// [`clat_xlat::addr6052::validate_prefix`] (lengths 32/40/48/56/64/96,
    /// no bits past the length, bits 64-71 zero).
    pub prefix: Ipv6Net,
    /// Resolvers of the underlying network, tried in order.
    pub upstream_dns: Vec<SocketAddr>,
    /// TUN MTU (default 1500).
    pub mtu: u16,
    /// Cap on live flows of all protocols together (default 16384: enough for
    /// a phone, bounded memory: worst case ~ 2 x relay_buffer per TCP flow).
    pub max_flows: usize,
    /// Cap on live UDP mappings (default 4096, a quarter of `max_flows`;
    /// the cap in force is the smaller of this and three quarters of
    /// `max_flows`, see [`EngineConfig::datagram_flow_room`]): a flood of
    /// UDP source ports cannot take the table from TCP.
    pub max_udp_flows: usize,
    /// Cap on live ICMP echo mappings (default 1024; the cap in force is
    /// the smaller of this and three quarters of `max_flows`): a flood of
    /// echo identifiers cannot take the table from TCP. TCP's cap is
    /// `max_flows` itself; a full table evicts TCP flows that never
    /// completed before refusing a SYN.
    pub max_icmp_flows: usize,
    /// RFC 5382 / 7857: established TCP idle timeout, at least 2 h 4 min.
    pub tcp_established_timeout: Duration,
    /// RFC 5382 / 7857: transitory TCP (SYN seen, not established; or after
    /// close) timeout, 4 min.
    pub tcp_transitory_timeout: Duration,
    /// UDP mapping idle timeout (RFC 4787 >= 2 min, default 5 min).
    pub udp_timeout: Duration,
    /// ICMP echo mapping idle timeout (RFC 5508: 60 s).
    pub icmp_timeout: Duration,
    /// Refuse non-global IPv4 destinations with the well-known prefix
    /// 64:ff9b::/96 (RFC 6052 section 3.1).
    pub refuse_non_global_wkp: bool,
    /// How long the DNS relay waits for one upstream resolver before trying
    /// the next one (and answering SERVFAIL after the last).
    pub dns_timeout: Duration,
    /// Relay buffer per direction of a TCP flow, in bytes.
    pub relay_buffer: usize,
    /// The upstream path of new IPv4 flows (default [`Ipv4Path::Nat64`]):
    /// prefix+IPv4 over IPv6, or natively where the network has IPv4;
    /// changed at run time with [`crate::Engine::set_ipv4_path`].
    pub ipv4_path: Ipv4Path,
    /// Carry IPv6 packets from the TUN natively to their destination
    /// (issue 15 item 1: an always-on VPN under lockdown routes IPv6 in
    /// too). Default false: IPv6 from the TUN is dropped and counted
    /// (`drop_not_ipv4`).
    pub carry_ipv6: bool,
    /// The apps' IPv6 source on the TUN, and the address the engine's IPv6
    /// listener binds (default `fd9c:7c5a:e1b6:464::1`, in the project's
    /// ULA /64, RFC 4193).
    pub clat_v6: Ipv6Addr,
    /// The IPv6 source of rewritten TCP packets towards the engine's IPv6
    /// listener, as `nat_v4` is for IPv4 (default `fd9c:7c5a:e1b6:464::2`):
    /// on-link on the TUN, the same /64 as `clat_v6`.
    pub nat_v6: Ipv6Addr,
    /// Capacity of the flow-event queue ([`crate::flow_events`]), in events
    /// (at most [`MAX_FLOW_EVENTS`]). Default 0: no events are built and
    /// [`crate::Engine::flow_events`] is `None`.
    pub flow_events: usize,
    /// The TUN was opened with a virtio-net header and offloads
    /// ([`crate::open_tun_offload`] returned `true`): every read and write
    /// carries a `struct virtio_net_hdr`, and TCP crosses the TUN with
    /// partial checksums and in segments of up to 64 KiB (the engine's
    /// `tun_io` module). Default false: a plain TUN, as Android's
    /// VpnService hands over. It must match how the TUN was opened.
    pub tun_vnet_hdr: bool,
    /// Datagrams received per readiness event of one UDP mapping before
    /// the other sockets get their turn (fairness; default 1024, at least
    /// 1 is used). A mapping that still has datagrams waiting is read
    /// again in the next loop turn, without waiting for a new arrival
    /// (the loop's epoll is edge-triggered).
    pub udp_event_budget: usize,
}

/// The largest flow-event queue `validate` accepts. Each waiting event is
/// a 56-byte slot of the queue (its slots grow to the next power of two of
/// the events waiting), and a start's name, when it has one, a heap string
/// of at most 253 bytes (`dns_names::MAX_NAME_LEN`; about 270 with
/// malloc's overhead): at most about 330 bytes an event, so at most about
/// 350 MB for this many, 60 MB without names.
pub const MAX_FLOW_EVENTS: usize = 1 << 20;

/// The project's ULA /64 for the TUN's IPv6 side (RFC 4193; the Android
/// app's `ClatAddresses.TUN_V6` is its `::1`).
pub const ULA_V6: Ipv6Addr = Ipv6Addr::new(0xfd9c, 0x7c5a, 0xe1b6, 0x464, 0, 0, 0, 0);

/// 64:ff9b::/96 (RFC 6052 section 2.1), checked when compiled.
const WELL_KNOWN_PREFIX: Ipv6Net = Ipv6Net::new_assert(clat_xlat::addr6052::WELL_KNOWN_PREFIX, 96);

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            clat_v4: Ipv4Addr::new(192, 0, 0, 4),
            nat_v4: Ipv4Addr::new(192, 0, 0, 5),
            dns_v4: Ipv4Addr::new(192, 0, 0, 6),
            prefix: WELL_KNOWN_PREFIX,
            upstream_dns: Vec::new(),
            mtu: 1500,
            max_flows: 16384,
            max_udp_flows: 4096,
            max_icmp_flows: 1024,
            tcp_established_timeout: Duration::from_secs(2 * 3600 + 4 * 60),
            tcp_transitory_timeout: Duration::from_secs(240),
            udp_timeout: Duration::from_secs(300),
            icmp_timeout: Duration::from_secs(60),
            refuse_non_global_wkp: true,
            dns_timeout: Duration::from_secs(2),
            relay_buffer: 128 * 1024,
            ipv4_path: Ipv4Path::Nat64,
            carry_ipv6: false,
            clat_v6: Ipv6Addr::from(u128::from(ULA_V6) | 1),
            nat_v6: Ipv6Addr::from(u128::from(ULA_V6) | 2),
            flow_events: 0,
            tun_vnet_hdr: false,
            udp_event_budget: 1024,
        }
    }
}

/// A configuration the engine cannot run with.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("NAT64 prefix {0}")]
    Prefix(clat_xlat::addr6052::PrefixError),
    #[error("clat, nat and dns addresses must be distinct and inside one /29")]
    Addresses,
    #[error("mtu {0} is out of range (576..=65535)")]
    Mtu(u16),
    #[error("max_flows, max_udp_flows and max_icmp_flows must be at least 1")]
    MaxFlows,
    #[error("timeouts must be non-zero and at most 365 days")]
    Timeout,
    #[error("relay_buffer must be between 4 KiB and 16 MiB")]
    RelayBuffer,
    #[error("clat_v6 and nat_v6 must be distinct unicast addresses inside one /64")]
    Addresses6,
    #[error("carrying IPv6 needs an mtu of at least 1280 (RFC 8200 section 5), not {0}")]
    Mtu6(u16),
    #[error("flow_events {0} is above the most the engine queues ({MAX_FLOW_EVENTS})")]
    FlowEvents(usize),
}

impl EngineConfig {
    /// Checks the configuration; the engine refuses to start otherwise.
    pub fn validate(&self) -> Result<(), ConfigError> {
        clat_xlat::addr6052::validate_prefix(&self.prefix).map_err(ConfigError::Prefix)?;
        let net = |a: Ipv4Addr| u32::from(a) & !7;
        if self.clat_v4 == self.nat_v4
            || self.clat_v4 == self.dns_v4
            || self.nat_v4 == self.dns_v4
            || net(self.clat_v4) != net(self.nat_v4)
            || net(self.clat_v4) != net(self.dns_v4)
        {
            return Err(ConfigError::Addresses);
        }
        if self.mtu < 576 {
            return Err(ConfigError::Mtu(self.mtu));
        }
        if self.max_flows == 0 || self.max_udp_flows == 0 || self.max_icmp_flows == 0 {
            return Err(ConfigError::MaxFlows);
        }
        if [
            self.tcp_established_timeout,
            self.tcp_transitory_timeout,
            self.udp_timeout,
            self.icmp_timeout,
            self.dns_timeout,
        ]
        .iter()
        .any(|d| d.is_zero() || *d > MAX_TIMEOUT)
        {
            return Err(ConfigError::Timeout);
        }
        if !(4096..=16 << 20).contains(&self.relay_buffer) {
            return Err(ConfigError::RelayBuffer);
        }
        let unicast = |a: &Ipv6Addr| !a.is_unspecified() && !a.is_loopback() && !a.is_multicast();
        let net = |a: &Ipv6Addr| u128::from(*a) >> 64;
        if self.clat_v6 == self.nat_v6
            || !unicast(&self.clat_v6)
            || !unicast(&self.nat_v6)
            || net(&self.clat_v6) != net(&self.nat_v6)
        {
            return Err(ConfigError::Addresses6);
        }
        if self.carry_ipv6 && self.mtu < 1280 {
            return Err(ConfigError::Mtu6(self.mtu));
        }
        if self.flow_events > MAX_FLOW_EVENTS {
            return Err(ConfigError::FlowEvents(self.flow_events));
        }
        Ok(())
    }

    /// How many flows UDP and echo mappings may hold together: all of
    /// `max_flows` but a quarter, which stays TCP's, so that with a small
    /// `max_flows` (the Android setting goes down to 16) a datagram flood
    /// cannot take the whole table either.
    pub fn datagram_flow_room(&self) -> usize {
        self.max_flows - self.max_flows / 4
    }

    /// The UDP mapping cap in force: `min(max_udp_flows, datagram_flow_room())`.
    pub fn udp_flow_cap(&self) -> usize {
        self.max_udp_flows.min(self.datagram_flow_room())
    }

    /// The ICMP echo mapping cap in force: `min(max_icmp_flows, datagram_flow_room())`.
    pub fn icmp_flow_cap(&self) -> usize {
        self.max_icmp_flows.min(self.datagram_flow_room())
    }
}

/// Whether a datagram from `from` is the answer of the resolver
/// `resolver`: same address and port, and for a link-local resolver the same
/// interface. The kernel reports a link-local source with the arriving
/// interface as `sin6_scope_id` and any other source with scope 0
/// (RFC 4007 s6), and never a flow label unless asked (IPV6_FLOWINFO), so
/// the flow label is ignored and the scope compared only where it means
/// something. A link-local resolver is configured with its interface
/// (`fe80::1%wlan0`), so an answer from the same address on another link is
/// not taken for it.
pub fn same_resolver(from: &SocketAddr, resolver: &SocketAddr) -> bool {
    match (from, resolver) {
        (SocketAddr::V4(a), SocketAddr::V4(b)) => a == b,
        (SocketAddr::V6(a), SocketAddr::V6(b)) => {
            a.ip() == b.ip()
                && a.port() == b.port()
                && (!scoped(b.ip()) || a.scope_id() == b.scope_id())
        }
        _ => false,
    }
}

/// Link-local unicast (fe80::/10): an address that names a host only
/// together with an interface.
fn scoped(a: &Ipv6Addr) -> bool {
    (a.segments()[0] & 0xffc0) == 0xfe80
}

/// Upper bound of every timeout. Deadlines are `Instant + timeout`, which
/// panics on overflow (a `--udp-timeout 4000000000000000h` made the engine
/// thread panic on the first UDP packet); a year is far beyond any useful
/// idle timeout and far below any overflow.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(365 * 24 * 3600);

#[cfg(test)]
mod tests {
    use super::*;
    use clat_xlat::addr6052::PrefixError;
    use std::net::SocketAddrV6;

    #[test]
    fn datagram_caps_leave_tcp_a_quarter_of_the_table() {
        let cfg = |max_flows| EngineConfig {
            max_flows,
            ..EngineConfig::default()
        };
        let c = cfg(16384);
        assert_eq!(
            (c.datagram_flow_room(), c.udp_flow_cap(), c.icmp_flow_cap()),
            (12288, 4096, 1024)
        );
        // The Android setting's minimum: the configured caps are above
        // the room, so the room decides.
        let c = cfg(16);
        assert_eq!(
            (c.datagram_flow_room(), c.udp_flow_cap(), c.icmp_flow_cap()),
            (12, 12, 12)
        );
        let c = cfg(2);
        assert_eq!((c.datagram_flow_room(), c.udp_flow_cap()), (2, 2));
        assert_eq!(cfg(1).datagram_flow_room(), 1);
    }

    #[test]
    fn answers_of_link_local_resolvers_match_on_their_interface_only() {
        let sa = |s: &str| s.parse::<SocketAddr>().unwrap();
        let r = sa("[fe80::1%3]:53");
        assert!(same_resolver(&sa("[fe80::1%3]:53"), &r));
        assert!(!same_resolver(&sa("[fe80::1%4]:53"), &r), "other link");
        assert!(!same_resolver(&sa("[fe80::1%3]:5353"), &r), "other port");
        assert!(!same_resolver(&sa("[fe80::2%3]:53"), &r), "other host");
        // A flow label in the source does not matter.
        let mut labelled = SocketAddrV6::new("fe80::1".parse().unwrap(), 53, 7, 3);
        assert!(same_resolver(&SocketAddr::V6(labelled), &r));
        labelled.set_scope_id(0);
        assert!(!same_resolver(&SocketAddr::V6(labelled), &r));
        // Global and IPv4 resolvers: address and port.
        assert!(same_resolver(
            &sa("[2001:db8::53]:53"),
            &sa("[2001:db8::53]:53")
        ));
        assert!(same_resolver(&sa("192.0.2.1:53"), &sa("192.0.2.1:53")));
        assert!(!same_resolver(
            &sa("192.0.2.1:53"),
            &sa("[::ffff:192.0.2.1]:53")
        ));
    }

    #[test]
    fn default_is_valid_and_bad_values_are_refused() {
        assert_eq!(EngineConfig::default().validate(), Ok(()));
        let c = EngineConfig {
            prefix: "2001:db8::/80".parse().unwrap(),
            ..Default::default()
        };
        assert_eq!(
            c.validate(),
            Err(ConfigError::Prefix(PrefixError::BadLength(80)))
        );
        // RFC 6052 section 2.2: bits 64-71 of a /96 must be zero; `clat run
        // --pref64 2001:db8:0:0:ff00::/96` used to get through.
        let c = EngineConfig {
            prefix: "2001:db8:0:0:ff00::/96".parse().unwrap(),
            ..Default::default()
        };
        let e = c.validate().unwrap_err();
        assert!(
            matches!(e, ConfigError::Prefix(PrefixError::NonZeroU(_))),
            "{e:?}"
        );
        assert!(e.to_string().contains("bits 64-71 must be zero"), "{e}");
        let c = EngineConfig {
            nat_v4: Ipv4Addr::new(10, 0, 0, 5),
            ..Default::default()
        };
        assert_eq!(c.validate(), Err(ConfigError::Addresses));
        let c = EngineConfig {
            udp_timeout: Duration::ZERO,
            ..Default::default()
        };
        assert_eq!(c.validate(), Err(ConfigError::Timeout));
        for c in [
            EngineConfig {
                max_udp_flows: 0,
                ..Default::default()
            },
            EngineConfig {
                max_icmp_flows: 0,
                ..Default::default()
            },
        ] {
            assert_eq!(c.validate(), Err(ConfigError::MaxFlows));
        }
    }

    #[test]
    fn ipv6_addresses_are_distinct_unicast_in_one_64() {
        let d = EngineConfig::default();
        assert_eq!(
            d.clat_v6,
            "fd9c:7c5a:e1b6:464::1".parse::<Ipv6Addr>().unwrap()
        );
        assert_eq!(
            d.nat_v6,
            "fd9c:7c5a:e1b6:464::2".parse::<Ipv6Addr>().unwrap()
        );
        assert!(!d.carry_ipv6);
        let with = |clat: &str, nat: &str| EngineConfig {
            clat_v6: clat.parse().unwrap(),
            nat_v6: nat.parse().unwrap(),
            ..Default::default()
        };
        // IPv6 needs links of 1280 bytes at least (RFC 8200 section 5).
        let small = |carry_ipv6| EngineConfig {
            mtu: 1279,
            carry_ipv6,
            ..Default::default()
        };
        assert_eq!(small(true).validate(), Err(ConfigError::Mtu6(1279)));
        assert_eq!(small(false).validate(), Ok(()));
        // Flow events: off by default, bounded when on.
        assert_eq!(d.flow_events, 0);
        let events = |flow_events| EngineConfig {
            flow_events,
            ..Default::default()
        };
        assert_eq!(events(MAX_FLOW_EVENTS).validate(), Ok(()));
        assert_eq!(
            events(MAX_FLOW_EVENTS + 1).validate(),
            Err(ConfigError::FlowEvents(MAX_FLOW_EVENTS + 1))
        );
        // Any unicast /64 will do, not only a ULA.
        assert_eq!(with("2001:db8:9::1", "2001:db8:9::ffff").validate(), Ok(()));
        for (clat, nat) in [
            ("fd9c:7c5a:e1b6:464::1", "fd9c:7c5a:e1b6:464::1"),
            ("fd9c:7c5a:e1b6:464::1", "fd9c:7c5a:e1b6:465::2"),
            ("::", "::2"),
            ("::1", "::2"),
            ("ff02::1", "ff02::2"),
        ] {
            assert_eq!(
                with(clat, nat).validate(),
                Err(ConfigError::Addresses6),
                "{clat} {nat}"
            );
        }
    }

    #[test]
    fn protocol_caps_never_exceed_the_total() {
        let c = EngineConfig::default();
        assert_eq!((c.udp_flow_cap(), c.icmp_flow_cap()), (4096, 1024));
        let c = EngineConfig {
            max_flows: 100,
            ..Default::default()
        };
        assert_eq!((c.udp_flow_cap(), c.icmp_flow_cap()), (75, 75));
    }

    #[test]
    fn huge_timeouts_are_refused_not_overflowed() {
        // Regression: these passed validation and the engine thread then
        // panicked computing `Instant::now() + timeout` for the first flow.
        let huge = Duration::from_secs(4_000_000_000_000_000 * 3600);
        for c in [
            EngineConfig {
                udp_timeout: huge,
                ..Default::default()
            },
            EngineConfig {
                icmp_timeout: Duration::MAX,
                ..Default::default()
            },
            EngineConfig {
                tcp_established_timeout: MAX_TIMEOUT + Duration::from_secs(1),
                ..Default::default()
            },
            EngineConfig {
                tcp_transitory_timeout: huge,
                ..Default::default()
            },
            EngineConfig {
                dns_timeout: huge,
                ..Default::default()
            },
        ] {
            assert_eq!(c.validate(), Err(ConfigError::Timeout));
        }
        let c = EngineConfig {
            udp_timeout: MAX_TIMEOUT,
            ..Default::default()
        };
        assert_eq!(c.validate(), Ok(()));
        assert!(std::time::Instant::now().checked_add(MAX_TIMEOUT).is_some());
    }
}
