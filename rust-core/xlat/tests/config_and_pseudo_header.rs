//! `Config::validate` at each limit (RFC 791's 68-byte IPv4 minimum, RFC
//! 8200 section 5's 1280-byte IPv6 minimum, RFC 6052 section 2.2 prefixes)
//! and the IPv4 pseudo-header sum (RFC 768, RFC 793 section 3.1) against
//! words written out by hand. Found missing by `cargo mutants -p clat-xlat`.

mod common;
use clat_xlat::addr6052::PrefixError;
use clat_xlat::checksum::{finish, fold, pseudo_v4, pseudo_v6, sum};
use clat_xlat::{Config, ConfigError, Translator};
use common::*;

#[test]
fn config_accepts_the_minimum_mtus() {
    let cfg = Config {
        pool6: Some("2001:db8:64::/96".parse().unwrap()),
        mtu4: 68,
        mtu6: 1280,
        lowest_ipv6_mtu: 1280,
        ..Config::default()
    };
    assert_eq!(cfg.validate(), Ok(()));
    assert!(Translator::new(cfg).is_ok());
}

#[test]
fn config_refuses_mtus_below_the_minimums() {
    let cases = [
        (
            Config {
                mtu4: 67,
                ..Config::default()
            },
            ConfigError::Mtu4(67),
            "mtu4 67 is below the IPv4 minimum of 68",
        ),
        (
            Config {
                mtu6: 1279,
                ..Config::default()
            },
            ConfigError::Mtu6(1279),
            "mtu6 1279 is below the IPv6 minimum of 1280",
        ),
        (
            Config {
                lowest_ipv6_mtu: 1279,
                ..Config::default()
            },
            ConfigError::LowestIpv6Mtu(1279),
            "lowest IPv6 MTU 1279 is below the IPv6 minimum of 1280",
        ),
    ];
    for (cfg, err, msg) in cases {
        assert_eq!(cfg.validate(), Err(err.clone()));
        assert_eq!(err.to_string(), msg);
        assert_eq!(Translator::new(cfg).unwrap_err(), err);
    }
}

/// RFC 6052 section 2.2: only /32, /40, /48, /56, /64 and /96, with bits
/// 64-71 zero; Translator::new refuses anything else.
#[test]
fn config_refuses_a_pool6_rfc6052_cannot_use() {
    let bad = Config {
        pool6: Some("2001:db8::/33".parse().unwrap()),
        ..Config::default()
    };
    let err = ConfigError::Prefix(PrefixError::BadLength(33));
    assert_eq!(bad.validate(), Err(err.clone()));
    assert_eq!(
        err.to_string(),
        "pool6: prefix length /33 is not one of 32, 40, 48, 56, 64, 96 (RFC 6052 section 2.2)"
    );
    assert_eq!(Translator::new(bad).unwrap_err(), err);
    let u = Config {
        pool6: Some("2001:db8:0:0:ff00::/96".parse().unwrap()),
        ..Config::default()
    };
    assert!(matches!(
        u.validate(),
        Err(ConfigError::Prefix(PrefixError::NonZeroU(_)))
    ));
}

/// RFC 768 / RFC 793 section 3.1: the pseudo-header is source, destination,
/// a zero byte, the protocol and the length. For 192.0.2.1 -> 198.51.100.2,
/// UDP, length 0x1234, the 16-bit words are c000 0201 c633 6402 0011 1234,
/// which add up to 0x1_fe7b and fold to 0xfe7c.
#[test]
fn rfc768_ipv4_pseudo_header_sum() {
    let (s, d) = (a4("192.0.2.1"), a4("198.51.100.2"));
    assert_eq!(fold(pseudo_v4(s, d, 17, 0x1234)), 0xfe7c);
    // A whole UDP datagram: the checksum with our pseudo-header sum equals
    // the naive one over the pseudo-header bytes (common::pseudo4).
    let mut u = udp(1234, 53, b"pseudo", &|l| pseudo4(s, d, 17, l));
    let want = u16::from_be_bytes([u[6], u[7]]);
    u[6..8].copy_from_slice(&[0, 0]);
    assert_eq!(finish(sum(&u, pseudo_v4(s, d, 17, u.len() as u16))), want);
    // Addresses whose words carry: ffff ffff ffff fffe 0006 ffff.
    let (s, d) = (a4("255.255.255.255"), a4("255.255.255.254"));
    let words = 0xffffu32 * 3 + 0xfffe + 0x0006 + 0xffff;
    let mut w = words;
    while w > 0xffff {
        w = (w & 0xffff) + (w >> 16);
    }
    assert_eq!(fold(pseudo_v4(s, d, 6, 0xffff)), w as u16);
}

/// RFC 8200 section 8.1: a 32-bit upper-layer length, then three zero
/// bytes and the next header. A length above 65535 (a jumbogram's)
/// contributes both of its 16-bit halves.
#[test]
fn rfc8200_ipv6_pseudo_header_sum() {
    let (s, d) = (a6("2001:db8::1"), a6("2001:db8::2"));
    let bytes = pseudo6(s, d, 58, 0x0001_0002);
    assert_eq!(
        fold(pseudo_v6(&s, &d, 58, 0x0001_0002)),
        naive_sum(&[&bytes])
    );
    let bytes = pseudo6(s, d, 17, 8);
    assert_eq!(fold(pseudo_v6(&s, &d, 17, 8)), naive_sum(&[&bytes]));
}
