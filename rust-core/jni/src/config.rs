//! Configuration as Kotlin hands it over, and its checked, typed form.
//!
//! The JNI layer only copies `NativeConfig`'s fields into [`RawConfig`]
//! (strings and ints, exactly as Kotlin had them); everything that can be
//! wrong with them is found here, in plain Rust that is tested without a
//! JVM. Zero in a numeric field means "the engine's default", so Kotlin
//! never duplicates defaults that the engine owns.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};
use std::time::Duration;

use ipnet::Ipv6Net;

/// `NativeConfig`'s fields, unvalidated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawConfig {
    pub clat_address: Option<String>,
    pub nat_address: Option<String>,
    pub dns_relay_address: Option<String>,
    pub prefix: Option<String>,
    pub dns_servers: Vec<String>,
    pub mtu: i32,
    pub max_flows: i32,
    pub udp_timeout_sec: i32,
    pub tcp_established_timeout_sec: i32,
    pub tcp_transitory_timeout_sec: i32,
    pub icmp_timeout_sec: i32,
    pub refuse_non_global_wkp: bool,
}

/// The checked configuration. `None` keeps the engine's default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigSpec {
    pub clat_v4: Option<Ipv4Addr>,
    pub nat_v4: Option<Ipv4Addr>,
    pub dns_v4: Option<Ipv4Addr>,
    pub prefix: Ipv6Net,
    pub upstream_dns: Vec<SocketAddr>,
    pub mtu: Option<u16>,
    pub max_flows: Option<usize>,
    pub udp_timeout: Option<Duration>,
    pub tcp_established_timeout: Option<Duration>,
    pub tcp_transitory_timeout: Option<Duration>,
    pub icmp_timeout: Option<Duration>,
    pub refuse_non_global_wkp: bool,
}

/// Prefix lengths RFC 6052 section 2.2 allows.
pub const RFC6052_LENGTHS: [u8; 6] = [32, 40, 48, 56, 64, 96];

/// Smallest TUN MTU accepted: every IPv4 host must take 576-byte datagrams
/// (RFC 791), and a smaller MTU would only fragment everything.
pub const MIN_MTU: i32 = 576;

/// Default port of a resolver given without one.
pub const DNS_PORT: u16 = 53;

/// Parses and checks every field; the error names the field and the value.
pub fn parse_config(raw: &RawConfig) -> Result<ConfigSpec, String> {
    let prefix = match raw.prefix.as_deref() {
        None => return Err("prefix must be set (e.g. \"64:ff9b::/96\")".into()),
        Some(p) => parse_prefix(p)?,
    };
    let upstream_dns = parse_resolvers(&raw.dns_servers)?;
    let mtu = match raw.mtu {
        0 => None,
        m if (MIN_MTU..=i32::from(u16::MAX)).contains(&m) => Some(m as u16),
        m => {
            return Err(format!(
                "mtu {m} out of range {MIN_MTU}..=65535 (0 = default)"
            ))
        }
    };
    let max_flows = match raw.max_flows {
        0 => None,
        n if n > 0 => Some(n as usize),
        n => return Err(format!("maxFlows {n} must be positive (0 = default)")),
    };
    Ok(ConfigSpec {
        clat_v4: parse_v4("clatAddress", raw.clat_address.as_deref())?,
        nat_v4: parse_v4("natAddress", raw.nat_address.as_deref())?,
        dns_v4: parse_v4("dnsRelayAddress", raw.dns_relay_address.as_deref())?,
        prefix,
        upstream_dns,
        mtu,
        max_flows,
        udp_timeout: seconds("udpTimeoutSec", raw.udp_timeout_sec)?,
        tcp_established_timeout: seconds(
            "tcpEstablishedTimeoutSec",
            raw.tcp_established_timeout_sec,
        )?,
        tcp_transitory_timeout: seconds("tcpTransitoryTimeoutSec", raw.tcp_transitory_timeout_sec)?,
        icmp_timeout: seconds("icmpTimeoutSec", raw.icmp_timeout_sec)?,
        refuse_non_global_wkp: raw.refuse_non_global_wkp,
    })
}

/// An RFC 6052 NAT64 prefix such as `2001:db8:64::/96`: one of the allowed
/// lengths, no bits set past the length.
pub fn parse_prefix(s: &str) -> Result<Ipv6Net, String> {
    let net: Ipv6Net = s
        .trim()
        .parse()
        .map_err(|_| format!("prefix {s:?} is not an IPv6 prefix like 64:ff9b::/96"))?;
    if !RFC6052_LENGTHS.contains(&net.prefix_len()) {
        return Err(format!(
            "prefix {s:?}: length /{} is not one of RFC 6052's /32 /40 /48 /56 /64 /96",
            net.prefix_len()
        ));
    }
    if net.trunc() != net {
        return Err(format!(
            "prefix {s:?} has bits set past /{} (did you mean {}?)",
            net.prefix_len(),
            net.trunc()
        ));
    }
    if net.prefix_len() == 96 && net.addr().segments()[4] & 0xff00 != 0 {
        // RFC 6052 s2.2: bits 64..71 (the "u" octet) must be zero; only a
        // /96 prefix covers them (shorter ones leave them to the suffix).
        return Err(format!(
            "prefix {s:?}: bits 64-71 must be zero (RFC 6052 s2.2)"
        ));
    }
    Ok(net)
}

/// A resolver: `[2001:db8::53]:53`, `2001:db8::53`, `192.0.2.1:53` or
/// `192.0.2.1` (port 53 when none is given), and link-local IPv6 with its
/// zone: `fe80::1%wlan0`, `fe80::1%3`, `[fe80::1%wlan0]:53`.
///
/// The zone (interface name or index) becomes the `sin6_scope_id` of the
/// socket address: a link-local address means nothing without it, and the
/// kernel refuses to send to one whose scope is 0 (EINVAL). A network whose
/// only resolver is `fe80::1%wlan0` (a home router announcing itself in
/// RDNSS) is common; Android's `Inet6Address.getHostAddress()` spells such
/// a resolver with its zone. A zone on an address that needs none (global
/// unicast) is dropped: the kernel ignores it there, and replies would come
/// back with scope 0.
pub fn parse_resolver(s: &str) -> Result<SocketAddr, String> {
    let bad =
        || format!("DNS server {s:?} is not an address like [2001:db8::53]:53 or 2001:db8::53");
    let t = s.trim();
    let (host, port) = if let Some(inner) = t.strip_prefix('[') {
        let close = inner.find(']').ok_or_else(bad)?;
        let rest = &inner[close + 1..];
        let port = match rest {
            "" => DNS_PORT,
            r => r
                .strip_prefix(':')
                .and_then(|p| p.parse::<u16>().ok())
                .ok_or_else(bad)?,
        };
        (&inner[..close], port)
    } else if t.matches(':').count() == 1 {
        // IPv4 with a port: a bare IPv6 address has at least two colons.
        let (h, p) = t.split_once(':').ok_or_else(bad)?;
        (h, p.parse::<u16>().map_err(|_| bad())?)
    } else {
        (t, DNS_PORT)
    };
    if port == 0 {
        return Err(format!("DNS server {s:?}: port 0 is not a port"));
    }
    let (addr, zone) = match host.split_once('%') {
        Some((a, z)) => (a, Some(z)),
        None => (host, None),
    };
    match addr.parse::<IpAddr>().map_err(|_| bad())? {
        IpAddr::V4(v4) => match zone {
            None => Ok(SocketAddr::new(IpAddr::V4(v4), port)),
            Some(_) => Err(format!("DNS server {s:?}: an IPv4 address has no zone")),
        },
        IpAddr::V6(v6) => {
            let scope = match zone {
                None => 0,
                Some(z) => zone_index(z).map_err(|e| format!("DNS server {s:?}: {e}"))?,
            };
            if !needs_scope(&v6) {
                return Ok(SocketAddr::V6(SocketAddrV6::new(v6, port, 0, 0)));
            }
            if scope == 0 {
                return Err(format!(
                    "DNS server {s:?} is link-local: give its interface, like {v6}%wlan0"
                ));
            }
            Ok(SocketAddr::V6(SocketAddrV6::new(v6, port, 0, scope)))
        }
    }
}

/// Whether an IPv6 address only means something together with an interface
/// (RFC 4007 s6): link-local unicast fe80::/10, and interface- or link-local
/// multicast (ff01::/16, ff02::/16).
pub fn needs_scope(a: &Ipv6Addr) -> bool {
    let s0 = a.segments()[0];
    (s0 & 0xffc0) == 0xfe80 || (s0 & 0xff0f) == 0xff01 || (s0 & 0xff0f) == 0xff02
}

/// An RFC 4007 zone: an interface index (`3`) or name (`wlan0`, looked up
/// with `if_nametoindex`, an ioctl that apps may make).
fn zone_index(zone: &str) -> Result<u32, String> {
    if let Ok(i) = zone.parse::<u32>() {
        return if i == 0 {
            Err("zone 0 names no interface".into())
        } else {
            Ok(i)
        };
    }
    let name = std::ffi::CString::new(zone).map_err(|_| format!("zone {zone:?} is not a name"))?;
    // SAFETY: `name` is a valid NUL-terminated string for the call.
    match unsafe { libc::if_nametoindex(name.as_ptr()) } {
        0 => Err(format!("no interface named {zone:?}")),
        i => Ok(i),
    }
}

/// All resolvers, in order; duplicates are kept out (they would only
/// double the queries).
pub fn parse_resolvers(list: &[String]) -> Result<Vec<SocketAddr>, String> {
    let mut out: Vec<SocketAddr> = Vec::with_capacity(list.len());
    for s in list {
        let sa = parse_resolver(s)?;
        if !out.contains(&sa) {
            out.push(sa);
        }
    }
    Ok(out)
}

fn parse_v4(field: &str, v: Option<&str>) -> Result<Option<Ipv4Addr>, String> {
    match v.map(str::trim) {
        None | Some("") => Ok(None),
        Some(s) => s
            .parse()
            .map(Some)
            .map_err(|_| format!("{field} {s:?} is not an IPv4 address")),
    }
}

fn seconds(field: &str, v: i32) -> Result<Option<Duration>, String> {
    match v {
        0 => Ok(None),
        s if s > 0 => Ok(Some(Duration::from_secs(s as u64))),
        s => Err(format!("{field} {s} must be positive (0 = default)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lab() -> RawConfig {
        RawConfig {
            prefix: Some("2001:db8:64::/96".into()),
            dns_servers: vec!["[2001:db8:1::53]:53".into()],
            refuse_non_global_wkp: true,
            ..RawConfig::default()
        }
    }

    #[test]
    fn the_lab_config_parses_with_defaults_left_open() {
        let c = parse_config(&lab()).unwrap();
        assert_eq!(c.prefix, "2001:db8:64::/96".parse::<Ipv6Net>().unwrap());
        assert_eq!(c.upstream_dns, vec!["[2001:db8:1::53]:53".parse().unwrap()]);
        assert_eq!((c.mtu, c.max_flows, c.udp_timeout), (None, None, None));
        assert_eq!(c.clat_v4, None);
        assert!(c.refuse_non_global_wkp);
    }

    #[test]
    fn explicit_values_are_carried_over() {
        let raw = RawConfig {
            clat_address: Some("192.0.0.4".into()),
            nat_address: Some("192.0.0.5".into()),
            dns_relay_address: Some("192.0.0.6".into()),
            mtu: 1400,
            max_flows: 1000,
            udp_timeout_sec: 30,
            tcp_established_timeout_sec: 7200,
            tcp_transitory_timeout_sec: 240,
            icmp_timeout_sec: 60,
            ..lab()
        };
        let c = parse_config(&raw).unwrap();
        assert_eq!(c.clat_v4, Some(Ipv4Addr::new(192, 0, 0, 4)));
        assert_eq!(c.nat_v4, Some(Ipv4Addr::new(192, 0, 0, 5)));
        assert_eq!(c.dns_v4, Some(Ipv4Addr::new(192, 0, 0, 6)));
        assert_eq!(c.mtu, Some(1400));
        assert_eq!(c.max_flows, Some(1000));
        assert_eq!(c.udp_timeout, Some(Duration::from_secs(30)));
        assert_eq!(c.tcp_established_timeout, Some(Duration::from_secs(7200)));
        assert_eq!(c.tcp_transitory_timeout, Some(Duration::from_secs(240)));
        assert_eq!(c.icmp_timeout, Some(Duration::from_secs(60)));
    }

    #[test]
    fn missing_or_bad_prefixes_are_rejected_with_the_reason() {
        let e = parse_config(&RawConfig {
            prefix: None,
            ..lab()
        })
        .unwrap_err();
        assert!(e.contains("prefix must be set"), "{e}");
        for (p, why) in [
            ("2001:db8:64::/95", "RFC 6052"),
            ("2001:db8:64::1/96", "bits set past"),
            ("192.0.2.0/24", "not an IPv6 prefix"),
            ("nonsense", "not an IPv6 prefix"),
            ("2001:db8:0:0:ff00::/96", "bits 64-71"),
        ] {
            let e = parse_config(&RawConfig {
                prefix: Some(p.into()),
                ..lab()
            })
            .unwrap_err();
            assert!(e.contains(why), "{p}: {e}");
        }
        for ok in [
            "64:ff9b::/96",
            "2001:db8::/32",
            "2001:db8:100::/40",
            "2001:db8::/64",
        ] {
            assert!(parse_prefix(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn resolvers_accept_the_usual_spellings() {
        let v6: SocketAddr = "[2001:db8:1::53]:53".parse().unwrap();
        assert_eq!(parse_resolver("[2001:db8:1::53]:53").unwrap(), v6);
        assert_eq!(parse_resolver("2001:db8:1::53").unwrap(), v6);
        assert_eq!(parse_resolver("[2001:db8:1::53]").unwrap(), v6);
        assert_eq!(
            parse_resolver(" 192.0.2.1 ").unwrap(),
            "192.0.2.1:53".parse().unwrap()
        );
        assert_eq!(
            parse_resolver("[::1]:5353").unwrap(),
            "[::1]:5353".parse().unwrap()
        );
        assert!(parse_resolver("dns.example").is_err());
        assert!(parse_resolver("[::1]:0").unwrap_err().contains("port 0"));
        assert!(parse_resolver("").is_err());
    }

    #[test]
    fn link_local_resolvers_keep_their_zone_as_scope_id() {
        // "lo" exists on every Linux host and on Android, index 1 in practice.
        let lo = zone_index("lo").unwrap();
        for s in [
            "fe80::1%lo",
            "[fe80::1%lo]:53",
            &format!("fe80::1%{lo}"),
            &format!("[fe80::1%{lo}]:53"),
        ] {
            match parse_resolver(s).unwrap() {
                SocketAddr::V6(a) => {
                    assert_eq!(*a.ip(), "fe80::1".parse::<Ipv6Addr>().unwrap(), "{s}");
                    assert_eq!((a.port(), a.scope_id()), (53, lo), "{s}");
                }
                other => panic!("{s}: {other}"),
            }
        }
        assert_eq!(parse_resolver("[fe80::1%lo]:5353").unwrap().port(), 5353);
        // Java's long form, as Inet6Address.getHostAddress() gives it on a JVM.
        assert_eq!(
            parse_resolver("fe80:0:0:0:0:0:0:1%lo").unwrap(),
            parse_resolver("fe80::1%lo").unwrap()
        );
    }

    #[test]
    fn link_local_resolvers_without_a_usable_zone_are_refused_with_the_reason() {
        let e = parse_resolver("fe80::1").unwrap_err();
        assert!(e.contains("link-local") && e.contains("%wlan0"), "{e}");
        let e = parse_resolver("fe80::1%no-such-if0").unwrap_err();
        assert!(e.contains("no interface named"), "{e}");
        assert!(parse_resolver("fe80::1%0").unwrap_err().contains("zone 0"));
        assert!(parse_resolver("192.0.2.1%lo")
            .unwrap_err()
            .contains("no zone"));
        assert!(parse_resolver("[fe80::1%lo]:0")
            .unwrap_err()
            .contains("port 0"));
        assert!(parse_resolver("[fe80::1%lo").is_err());
    }

    #[test]
    fn a_zone_on_a_global_address_is_dropped() {
        // The kernel ignores it there, and answers come back with scope 0.
        assert_eq!(
            parse_resolver("2001:db8::53%lo").unwrap(),
            "[2001:db8::53]:53".parse().unwrap()
        );
    }

    #[test]
    fn the_same_link_local_resolver_by_name_and_index_is_one() {
        let lo = zone_index("lo").unwrap();
        let l = vec![
            "fe80::1%lo".to_string(),
            format!("[fe80::1%{lo}]:53"),
            "2001:db8::1".into(),
        ];
        assert_eq!(parse_resolvers(&l).unwrap().len(), 2);
    }

    #[test]
    fn duplicate_resolvers_are_dropped_in_order() {
        let l = vec![
            "2001:db8::1".to_string(),
            "192.0.2.1".into(),
            "[2001:db8::1]:53".into(),
        ];
        let r = parse_resolvers(&l).unwrap();
        assert_eq!(
            r,
            vec![
                "[2001:db8::1]:53".parse().unwrap(),
                "192.0.2.1:53".parse().unwrap()
            ]
        );
    }

    #[test]
    fn a_bad_resolver_fails_the_whole_config() {
        let raw = RawConfig {
            dns_servers: vec!["[2001:db8:1::53]:53".into(), "bogus".into()],
            ..lab()
        };
        assert!(parse_config(&raw).unwrap_err().contains("\"bogus\""));
    }

    #[test]
    fn numeric_fields_reject_negative_and_out_of_range_values() {
        let cases: [(RawConfig, &str); 7] = [
            (RawConfig { mtu: 100, ..lab() }, "mtu 100"),
            (
                RawConfig {
                    mtu: 70000,
                    ..lab()
                },
                "mtu 70000",
            ),
            (RawConfig { mtu: -1, ..lab() }, "mtu -1"),
            (
                RawConfig {
                    max_flows: -3,
                    ..lab()
                },
                "maxFlows -3",
            ),
            (
                RawConfig {
                    udp_timeout_sec: -1,
                    ..lab()
                },
                "udpTimeoutSec",
            ),
            (
                RawConfig {
                    tcp_established_timeout_sec: -9,
                    ..lab()
                },
                "tcpEstablishedTimeoutSec",
            ),
            (
                RawConfig {
                    icmp_timeout_sec: -2,
                    ..lab()
                },
                "icmpTimeoutSec",
            ),
        ];
        for (raw, want) in cases {
            let e = parse_config(&raw).unwrap_err();
            assert!(e.contains(want), "want {want:?} in {e:?}");
        }
        assert_eq!(
            parse_config(&RawConfig { mtu: 576, ..lab() }).unwrap().mtu,
            Some(576)
        );
        assert_eq!(
            parse_config(&RawConfig {
                mtu: 65535,
                ..lab()
            })
            .unwrap()
            .mtu,
            Some(65535)
        );
    }

    #[test]
    fn bad_v4_addresses_name_the_field() {
        let e = parse_config(&RawConfig {
            clat_address: Some("192.0.0.300".into()),
            ..lab()
        })
        .unwrap_err();
        assert!(e.starts_with("clatAddress"), "{e}");
        let e = parse_config(&RawConfig {
            dns_relay_address: Some("::1".into()),
            ..lab()
        })
        .unwrap_err();
        assert!(e.starts_with("dnsRelayAddress"), "{e}");
        // Empty means "default", like null.
        let c = parse_config(&RawConfig {
            nat_address: Some(" ".into()),
            ..lab()
        })
        .unwrap();
        assert_eq!(c.nat_v4, None);
    }
}
