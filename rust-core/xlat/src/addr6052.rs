//! RFC 6052: IPv4-embedded IPv6 addresses.
//!
//! Section 2.2: the IPv4 address is placed right after the prefix, except
//! that bits 64 to 71 (the "u" octet) are always zero and are skipped. The
//! suffix after the IPv4 address is zero (it SHOULD be; we write zeros and
//! ignore it when extracting).

use ipnet::Ipv6Net;
use std::net::{Ipv4Addr, Ipv6Addr};

/// The Well-Known Prefix 64:ff9b::/96 (RFC 6052 section 2.1).
pub const WELL_KNOWN_PREFIX: Ipv6Addr = Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0);

/// Why a prefix cannot carry IPv4 addresses. This is the one check of an
/// RFC 6052 prefix in the core: the engine, discovery (PREF64 and RFC 7050),
/// the JNI bridge and the `clat` command all refuse a prefix through
/// [`validate_prefix`] or [`parse_prefix`], so they cannot disagree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrefixError {
    /// The text is not an IPv6 prefix in `address/length` form (the text).
    Syntax(String),
    /// RFC 6052 section 2.2 allows only 32, 40, 48, 56, 64 and 96.
    BadLength(u8),
    /// Bits 64-71 must be zero (section 2.2).
    NonZeroU(Ipv6Net),
    /// Bits after the prefix length are set.
    HostBits(Ipv6Net),
}

impl std::fmt::Display for PrefixError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PrefixError::Syntax(s) => {
                write!(f, "{s:?} is not an IPv6 prefix like 2001:db8:64::/96")
            }
            PrefixError::BadLength(l) => write!(
                f,
                "prefix length /{l} is not one of 32, 40, 48, 56, 64, 96 (RFC 6052 section 2.2)"
            ),
            PrefixError::NonZeroU(p) => {
                write!(f, "{p}: bits 64-71 must be zero (RFC 6052 section 2.2)")
            }
            PrefixError::HostBits(p) => write!(
                f,
                "{p}: bits after the prefix length are set (did you mean {}?)",
                p.trunc()
            ),
        }
    }
}
impl std::error::Error for PrefixError {}

/// Checks that `prefix` can be used as an RFC 6052 translation prefix
/// (section 2.2): its length is 32, 40, 48, 56, 64 or 96, no bit past the
/// length is set, and bits 64-71 (the "u" octet, inside the prefix only for
/// /96) are zero. Addresses built with a nonzero u octet could not be mapped
/// back by [`extract`], so replies to them would be dropped.
///
/// Errors: [`PrefixError::BadLength`], [`PrefixError::HostBits`],
/// [`PrefixError::NonZeroU`], checked in that order.
pub fn validate_prefix(prefix: &Ipv6Net) -> Result<(), PrefixError> {
    let len = prefix.prefix_len();
    if !matches!(len, 32 | 40 | 48 | 56 | 64 | 96) {
        return Err(PrefixError::BadLength(len));
    }
    if prefix.addr() != prefix.network() {
        return Err(PrefixError::HostBits(*prefix));
    }
    if prefix.addr().octets()[8] != 0 {
        return Err(PrefixError::NonZeroU(*prefix));
    }
    Ok(())
}

/// Parses `2001:db8:64::/96` (surrounding white space ignored) and checks
/// it with [`validate_prefix`]: the one parser of a NAT64 prefix given as
/// text (`clat run --pref64`, `clat xlat --pool6`, the JNI bridge).
///
/// Errors: [`PrefixError::Syntax`] when the text is no IPv6 prefix, else
/// those of [`validate_prefix`].
pub fn parse_prefix(s: &str) -> Result<Ipv6Net, PrefixError> {
    let net: Ipv6Net = s
        .trim()
        .parse()
        .map_err(|_| PrefixError::Syntax(s.to_string()))?;
    validate_prefix(&net)?;
    Ok(net)
}

/// True for the Well-Known Prefix 64:ff9b::/96.
pub fn is_well_known(prefix: &Ipv6Net) -> bool {
    prefix.prefix_len() == 96 && prefix.network() == WELL_KNOWN_PREFIX
}

/// Byte positions (in the 16-byte address) of the 4 IPv4 octets for each
/// prefix length (RFC 6052 section 2.2, figure 1). `None` for a length that
/// RFC 6052 does not allow.
#[inline]
fn positions(len: u8) -> Option<[usize; 4]> {
    Some(match len {
        32 => [4, 5, 6, 7],
        40 => [5, 6, 7, 9],
        48 => [6, 7, 9, 10],
        56 => [7, 9, 10, 11],
        64 => [9, 10, 11, 12],
        96 => [12, 13, 14, 15],
        _ => return None,
    })
}

/// Embeds `v4` in `prefix` (RFC 6052 section 2.2). The prefix must be valid
/// (see [`validate_prefix`]); for an invalid length, the address is placed as
/// for /96 so that this never panics (the translator validates its config).
#[inline]
pub fn embed(prefix: &Ipv6Net, v4: Ipv4Addr) -> Ipv6Addr {
    let pos = positions(prefix.prefix_len()).unwrap_or([12, 13, 14, 15]);
    // network() zeroes every bit past the prefix length, so the u-octet
    // (bits 64-71) and the suffix are zero as section 2.2 requires.
    let mut o = prefix.network().octets();
    let v = v4.octets();
    for i in 0..4 {
        o[pos[i]] = v[i];
    }
    Ipv6Addr::from(o)
}

/// Extracts the IPv4 address from `v6` if it lies in `prefix` (RFC 6052
/// section 2.3). Returns `None` if it does not, or if its u-octet (bits
/// 64-71) is not zero: such an address was not made by RFC 6052.
#[inline]
pub fn extract(prefix: &Ipv6Net, v6: Ipv6Addr) -> Option<Ipv4Addr> {
    let pos = positions(prefix.prefix_len())?;
    let shift = 128 - prefix.prefix_len() as u32;
    if (u128::from(v6) ^ u128::from(prefix.network())) >> shift != 0 {
        return None;
    }
    let o = v6.octets();
    if o[8] != 0 {
        return None;
    }
    Some(Ipv4Addr::new(o[pos[0]], o[pos[1]], o[pos[2]], o[pos[3]]))
}

/// Non-global IPv4 ranges: the IANA special-purpose registry (RFC 6890)
/// entries whose "Global" flag is false, plus multicast and class E.
/// RFC 6052 section 3.1: the Well-Known Prefix MUST NOT be used with them.
const NON_GLOBAL: &[(u32, u8)] = &[
    (0x0000_0000, 8),  // 0.0.0.0/8 "this network"
    (0x0a00_0000, 8),  // 10.0.0.0/8 private
    (0x6440_0000, 10), // 100.64.0.0/10 shared address space
    (0x7f00_0000, 8),  // 127.0.0.0/8 loopback
    (0xa9fe_0000, 16), // 169.254.0.0/16 link local
    (0xac10_0000, 12), // 172.16.0.0/12 private
    (0xc000_0000, 24), // 192.0.0.0/24 IETF protocol assignments
    (0xc000_0200, 24), // 192.0.2.0/24 TEST-NET-1
    (0xc0a8_0000, 16), // 192.168.0.0/16 private
    (0xc612_0000, 15), // 198.18.0.0/15 benchmarking
    (0xc633_6400, 24), // 198.51.100.0/24 TEST-NET-2
    (0xcb00_7100, 24), // 203.0.113.0/24 TEST-NET-3
    (0xe000_0000, 4),  // 224.0.0.0/4 multicast
    (0xf000_0000, 4),  // 240.0.0.0/4 reserved, includes broadcast
];

/// True if `a` is not a global unicast address (RFC 6052 section 3.1, RFC 6890).
pub fn is_non_global(a: Ipv4Addr) -> bool {
    let x = u32::from(a);
    NON_GLOBAL
        .iter()
        .any(|&(net, len)| (x ^ net) >> (32 - len as u32) == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv6Net {
        s.parse().unwrap()
    }

    /// RFC 6052 section 2.4, table of examples: 192.0.2.33 in each prefix.
    #[test]
    fn rfc6052_section_2_4_examples() {
        let v4 = Ipv4Addr::new(192, 0, 2, 33);
        let table = [
            ("2001:db8::/32", "2001:db8:c000:221::"),
            ("2001:db8:100::/40", "2001:db8:1c0:2:21::"),
            ("2001:db8:122::/48", "2001:db8:122:c000:2:2100::"),
            ("2001:db8:122:300::/56", "2001:db8:122:3c0:0:221::"),
            ("2001:db8:122:344::/64", "2001:db8:122:344:c0:2:2100:0"),
            ("2001:db8:122:344::/96", "2001:db8:122:344::192.0.2.33"),
            ("64:ff9b::/96", "64:ff9b::192.0.2.33"),
        ];
        for (p, want) in table {
            let p = net(p);
            validate_prefix(&p).unwrap();
            let want: Ipv6Addr = want.parse().unwrap();
            assert_eq!(embed(&p, v4), want, "embed in {p}");
            assert_eq!(extract(&p, want), Some(v4), "extract from {p}");
        }
        // Bits set past the prefix length (the u-octet and suffix included)
        // do not leak into the address.
        let p: Ipv6Net = "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff/32".parse().unwrap();
        assert_eq!(
            embed(&p, v4),
            "2001:db8:c000:221::".parse::<Ipv6Addr>().unwrap()
        );
        let p: Ipv6Net = "2001:db8:122:344:ffff:ffff:ffff:ffff/64".parse().unwrap();
        assert_eq!(
            embed(&p, v4),
            "2001:db8:122:344:c0:2:2100:0".parse::<Ipv6Addr>().unwrap()
        );
    }

    #[test]
    fn prefix_validation() {
        assert_eq!(
            validate_prefix(&net("2001:db8::/33")),
            Err(PrefixError::BadLength(33))
        );
        assert!(matches!(
            validate_prefix(&net("2001:db8:0:0:ff00::/96")),
            Err(PrefixError::NonZeroU(_))
        ));
        assert!(matches!(
            validate_prefix(&"2001:db8::1/96".parse().unwrap()),
            Err(PrefixError::HostBits(_))
        ));
        assert!(is_well_known(&net("64:ff9b::/96")));
    }

    /// The text form: every refusal names the rule, RFC 6052 section 2.2.
    #[test]
    fn parse_prefix_refuses_with_the_reason() {
        assert_eq!(
            parse_prefix(" 2001:db8:64::/96 "),
            Ok(net("2001:db8:64::/96"))
        );
        for ok in [
            "64:ff9b::/96",
            "2001:db8::/32",
            "2001:db8:100::/40",
            "2001:db8::/64",
        ] {
            assert_eq!(parse_prefix(ok), Ok(net(ok)), "{ok}");
        }
        for (bad, why) in [
            ("2001:db8:0:0:ff00::/96", "bits 64-71 must be zero"),
            ("2001:db8:0:0:100::/96", "bits 64-71 must be zero"),
            ("2001:db8:64::/95", "is not one of 32, 40, 48, 56, 64, 96"),
            ("2001:db8:64::1/96", "did you mean 2001:db8:64::/96?"),
            ("192.0.2.0/24", "is not an IPv6 prefix"),
            ("2001:db8::", "is not an IPv6 prefix"),
            ("", "is not an IPv6 prefix"),
        ] {
            let e = parse_prefix(bad).unwrap_err().to_string();
            assert!(e.contains(why), "{bad}: {e}");
        }
        assert!(!is_well_known(&net("2001:db8:64::/96")));
    }

    #[test]
    fn extract_refuses_outside_and_u_octet() {
        let p = net("2001:db8:122:344::/64");
        assert_eq!(
            extract(&p, "2001:db8:122:345:c0:2:2100:0".parse().unwrap()),
            None
        );
        assert_eq!(
            extract(&p, "2001:db8:122:344:01c0:2:2100:0".parse().unwrap()),
            None
        );
    }

    #[test]
    fn non_global() {
        for a in [
            "10.1.2.3",
            "192.168.0.1",
            "172.31.255.255",
            "127.0.0.1",
            "192.0.2.1",
            "203.0.113.10",
            "224.0.0.1",
            "255.255.255.255",
            "100.64.0.1",
            "169.254.1.1",
            "0.1.2.3",
            "192.0.0.170",
        ] {
            assert!(is_non_global(a.parse().unwrap()), "{a}");
        }
        for a in [
            "8.8.8.8",
            "1.1.1.1",
            "172.32.0.1",
            "100.128.0.1",
            "192.0.3.1",
            "198.20.0.1",
        ] {
            assert!(!is_non_global(a.parse().unwrap()), "{a}");
        }
    }
}
