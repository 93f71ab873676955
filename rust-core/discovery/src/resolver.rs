//! Resolver addresses as people and platforms write them: the one parser
//! of a DNS server's address in the core, used by `clat run --dns`,
//! `clat discover --dns`, resolv.conf `nameserver` lines and the JNI bridge
//! (Kotlin hands over `InetAddress.getHostAddress()` strings).
//!
//! Accepted: `[2001:db8::53]:53`, `[2001:db8::53]`, `2001:db8::53`,
//! `192.0.2.1:53`, `192.0.2.1` (port 53 when none is given), and link-local
//! IPv6 with its zone (RFC 4007 section 11): `fe80::1%wlan0`, `fe80::1%3`,
//! `[fe80::1%wlan0]:53`.
//!
//! The zone (interface name or index) becomes the `sin6_scope_id` of the
//! socket address: a link-local address means nothing without it, and the
//! kernel refuses to send to one whose scope is 0 (EINVAL). A network whose
//! only resolver is `fe80::1%wlan0` (a home router announcing itself in
//! RDNSS) is common; Android's `Inet6Address.getHostAddress()` spells such a
//! resolver with its zone. A zone on an address that needs none (global
//! unicast) is dropped: the kernel ignores it there, and replies would come
//! back with scope 0.

use std::net::{IpAddr, Ipv6Addr, SocketAddr, SocketAddrV6};

/// The DNS port (RFC 1035 section 4.2), used when a resolver has none.
pub const DNS_PORT: u16 = 53;

/// Parses one resolver (forms in the module documentation; white space
/// around it ignored).
///
/// Errors (a message that quotes the text and says what is wrong): not an
/// address, port 0 or not a number, a zone on IPv4, zone 0 or an unknown
/// interface name, a link-local address without a zone.
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
    parse_host(host, port).map_err(|e| match e {
        HostError::Syntax => bad(),
        HostError::Other(why) => format!("DNS server {s:?}: {why}"),
    })
}

/// All resolvers, in order; duplicates are left out (they would only
/// double the queries). The first bad one fails the whole list, with the
/// error of [`parse_resolver`].
pub fn parse_resolvers<S: AsRef<str>>(list: &[S]) -> Result<Vec<SocketAddr>, String> {
    let mut out: Vec<SocketAddr> = Vec::with_capacity(list.len());
    for s in list {
        let sa = parse_resolver(s.as_ref())?;
        if !out.contains(&sa) {
            out.push(sa);
        }
    }
    Ok(out)
}

/// A resolv.conf `nameserver` value: an address with an optional zone and
/// no port (resolv.conf has no port syntax), port 53. Errors as
/// [`parse_resolver`].
pub fn parse_nameserver(s: &str) -> Result<SocketAddr, String> {
    parse_host(s.trim(), DNS_PORT).map_err(|e| match e {
        HostError::Syntax => format!("nameserver {s:?} is not an IP address"),
        HostError::Other(why) => format!("nameserver {s:?}: {why}"),
    })
}

/// Whether an IPv6 address only means something together with an interface
/// (RFC 4007 section 6): link-local unicast fe80::/10, and interface- or
/// link-local multicast (ff01::/16, ff02::/16).
pub fn needs_scope(a: &Ipv6Addr) -> bool {
    let s0 = a.segments()[0];
    (s0 & 0xffc0) == 0xfe80 || (s0 & 0xff0f) == 0xff01 || (s0 & 0xff0f) == 0xff02
}

enum HostError {
    Syntax,
    Other(String),
}

/// `address[%zone]` with the port already split off.
fn parse_host(host: &str, port: u16) -> Result<SocketAddr, HostError> {
    let (addr, zone) = match host.split_once('%') {
        Some((a, z)) => (a, Some(z)),
        None => (host, None),
    };
    match addr.parse::<IpAddr>().map_err(|_| HostError::Syntax)? {
        IpAddr::V4(v4) => match zone {
            None => Ok(SocketAddr::new(IpAddr::V4(v4), port)),
            Some(_) => Err(HostError::Other("an IPv4 address has no zone".into())),
        },
        IpAddr::V6(v6) => {
            let scope = match zone {
                None => 0,
                Some(z) => zone_index(z).map_err(HostError::Other)?,
            };
            if !needs_scope(&v6) {
                return Ok(SocketAddr::V6(SocketAddrV6::new(v6, port, 0, 0)));
            }
            if scope == 0 {
                return Err(HostError::Other(format!(
                    "{v6} is link-local: give its interface, like {v6}%wlan0"
                )));
            }
            Ok(SocketAddr::V6(SocketAddrV6::new(v6, port, 0, scope)))
        }
    }
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
    crate::netlink::if_index(zone).map_err(|_| format!("no interface named {zone:?}"))
}

#[cfg(test)]
mod tests {

    /// RFC 4007 section 6 and RFC 4291 section 2.7: link-local unicast
    /// (fe80::/10) and multicast of interface-local (1) or link-local (2)
    /// scope, whatever the flags nibble, need a zone; nothing else does.
    #[test]
    fn which_addresses_need_a_zone() {
        let a = |s: &str| s.parse::<Ipv6Addr>().unwrap();
        for s in [
            "fe80::1", "febf::1", "ff01::1", "ff02::1", "ff12::1", "ff32::fb",
        ] {
            assert!(needs_scope(&a(s)), "{s}");
        }
        for s in [
            "fec0::1",
            "ff05::1",
            "ff0e::1",
            "ff03::1",
            "2001:db8::1",
            "fd00::1",
            "::1",
        ] {
            assert!(!needs_scope(&a(s)), "{s}");
        }
    }
    use super::*;

    #[test]
    fn the_usual_spellings() {
        let v6: SocketAddr = "[2001:db8:1::53]:53".parse().unwrap();
        assert_eq!(parse_resolver("[2001:db8:1::53]:53").unwrap(), v6);
        assert_eq!(parse_resolver("2001:db8:1::53").unwrap(), v6);
        assert_eq!(parse_resolver("[2001:db8:1::53]").unwrap(), v6);
        assert_eq!(
            parse_resolver(" 192.0.2.1 ").unwrap(),
            "192.0.2.1:53".parse().unwrap()
        );
        assert_eq!(parse_resolver("192.0.2.53:5353").unwrap().port(), 5353);
        assert_eq!(
            parse_resolver("[::1]:5353").unwrap(),
            "[::1]:5353".parse().unwrap()
        );
        for bad in ["dns.example", "nope", "", "[::1", "[::1]x", "192.0.2.1:x"] {
            let e = parse_resolver(bad).unwrap_err();
            assert!(e.contains("is not an address"), "{bad}: {e}");
        }
    }

    /// Port 0 addresses no socket (RFC 6335 section 6: reserved); the CLI
    /// used to take it and the JNI bridge refused it.
    #[test]
    fn port_0_is_refused_in_every_form() {
        for s in ["[::1]:0", "192.0.2.1:0", "[fe80::1%lo]:0"] {
            let e = parse_resolver(s).unwrap_err();
            assert!(e.contains("port 0"), "{s}: {e}");
        }
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
        assert!(parse_resolver("ff02::fb")
            .unwrap_err()
            .contains("link-local"));
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
    fn duplicates_are_dropped_in_order_by_name_and_index_alike() {
        let lo = zone_index("lo").unwrap();
        let l = [
            "2001:db8::1".to_string(),
            "fe80::1%lo".into(),
            "192.0.2.1".into(),
            "[2001:db8::1]:53".into(),
            format!("[fe80::1%{lo}]:53"),
        ];
        assert_eq!(
            parse_resolvers(&l).unwrap(),
            vec![
                "[2001:db8::1]:53".parse().unwrap(),
                SocketAddr::V6(SocketAddrV6::new("fe80::1".parse().unwrap(), 53, 0, lo)),
                "192.0.2.1:53".parse().unwrap()
            ]
        );
        let e = parse_resolvers(&["2001:db8::1", "bogus"]).unwrap_err();
        assert!(e.contains("\"bogus\""), "{e}");
    }

    #[test]
    fn nameserver_values_have_no_port() {
        assert_eq!(
            parse_nameserver("2001:db8::53").unwrap(),
            "[2001:db8::53]:53".parse().unwrap()
        );
        assert_eq!(
            parse_nameserver("fe80::1%7").unwrap().to_string(),
            "[fe80::1%7]:53"
        );
        assert!(parse_nameserver("192.0.2.1:53").is_err());
        assert!(parse_nameserver("[2001:db8::53]").is_err());
        assert!(parse_nameserver("fe80::1")
            .unwrap_err()
            .contains("link-local"));
    }
}
