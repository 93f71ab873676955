//! The PREF64 Router Advertisement option (RFC 8781 section 4).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |     Type      |    Length     |     Scaled Lifetime     | PLC |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |              Highest 96 bits of the Prefix                    |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//! Type 38, Length 2 (units of 8 octets), lifetime in units of 8 seconds.

use ipnet::Ipv6Net;
use std::net::Ipv6Addr;
use std::time::Duration;

/// ND option type of PREF64.
pub const PREF64_OPTION_TYPE: u8 = 38;
/// The option is always 16 octets (Length field 2).
pub const PREF64_OPTION_LEN: usize = 16;

/// A parsed PREF64 option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pref64 {
    pub prefix: Ipv6Net,
    /// Scaled lifetime times 8 s; zero means "stop using this prefix".
    pub lifetime: Duration,
}

/// Why an option is not a usable PREF64.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Pref64Error {
    #[error("PREF64 option too short: {0} bytes, need 16")]
    Short(usize),
    #[error("not a PREF64 option (type {0})")]
    WrongType(u8),
    #[error("PREF64 option length field is {0}, must be 2")]
    BadLength(u8),
    #[error("PREF64 prefix length code {0} is reserved")]
    BadPlc(u8),
    /// The prefix cannot carry IPv4 addresses: with PLC 0 (/96) the option
    /// carries bits 64-71, which RFC 6052 section 2.2 requires to be zero.
    #[error("PREF64 prefix skipped: {0}")]
    Prefix(clat_xlat::addr6052::PrefixError),
}

/// Prefix length for a Prefix Length Code (RFC 8781 section 4).
pub fn plc_to_len(plc: u8) -> Option<u8> {
    Some(match plc {
        0 => 96,
        1 => 64,
        2 => 56,
        3 => 48,
        4 => 40,
        5 => 32,
        _ => return None,
    })
}

/// Parses one PREF64 option starting at its Type octet. Bits of the prefix
/// beyond the prefix length are ignored (RFC 8781: receivers ignore them),
/// so the returned prefix is always truncated. A prefix that fails the
/// translator's RFC 6052 check ([`clat_xlat::addr6052::validate_prefix`]:
/// a /96 whose bits 64-71 are not zero) is [`Pref64Error::Prefix`], so the
/// listener logs and skips it like any other unusable option.
pub fn parse_pref64(opt: &[u8]) -> Result<Pref64, Pref64Error> {
    if opt.len() < PREF64_OPTION_LEN {
        return Err(Pref64Error::Short(opt.len()));
    }
    if opt[0] != PREF64_OPTION_TYPE {
        return Err(Pref64Error::WrongType(opt[0]));
    }
    if opt[1] != 2 {
        return Err(Pref64Error::BadLength(opt[1]));
    }
    let word = u16::from_be_bytes([opt[2], opt[3]]);
    let plc = (word & 0x7) as u8;
    let scaled = word >> 3;
    let len = plc_to_len(plc).ok_or(Pref64Error::BadPlc(plc))?;
    let mut octets = [0u8; 16];
    octets[..12].copy_from_slice(&opt[4..16]);
    let prefix = Ipv6Net::new(Ipv6Addr::from(octets), len)
        .map_err(|_| Pref64Error::BadPlc(plc))?
        .trunc();
    clat_xlat::addr6052::validate_prefix(&prefix).map_err(Pref64Error::Prefix)?;
    Ok(Pref64 {
        prefix,
        lifetime: Duration::from_secs(u64::from(scaled) * 8),
    })
}

/// Walks a buffer of ND options (as the kernel forwards them) and returns
/// every PREF64 among them, with the errors of malformed PREF64 options.
/// Other option types are skipped; a zero or overlong length ends the walk
/// (RFC 4861 section 4.6: such a packet must be discarded anyway).
pub fn pref64_options(mut opts: &[u8]) -> Vec<Result<Pref64, Pref64Error>> {
    let mut out = Vec::new();
    while opts.len() >= 2 {
        let len = usize::from(opts[1]) * 8;
        if len == 0 || len > opts.len() {
            if opts[0] == PREF64_OPTION_TYPE {
                out.push(Err(Pref64Error::Short(opts.len())));
            }
            break;
        }
        if opts[0] == PREF64_OPTION_TYPE {
            out.push(parse_pref64(&opts[..len]));
        }
        opts = &opts[len..];
    }
    out
}

/// Encodes a PREF64 option (for tests and tools). The lifetime is rounded
/// up to a multiple of 8 s and capped at the 13-bit maximum (65528 s).
pub fn encode_pref64(prefix: Ipv6Net, lifetime: Duration) -> Option<[u8; 16]> {
    let plc: u16 = match prefix.prefix_len() {
        96 => 0,
        64 => 1,
        56 => 2,
        48 => 3,
        40 => 4,
        32 => 5,
        _ => return None,
    };
    let scaled = lifetime.as_secs().div_ceil(8).min(0x1fff) as u16;
    let mut o = [0u8; 16];
    o[0] = PREF64_OPTION_TYPE;
    o[1] = 2;
    o[2..4].copy_from_slice(&((scaled << 3) | plc).to_be_bytes());
    o[4..16].copy_from_slice(&prefix.network().octets()[..12]);
    Some(o)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clat_xlat::addr6052::PrefixError;

    /// RFC 8781 wire format written out by hand: 64:ff9b::/96, lifetime
    /// 600 s = 75 * 8 -> scaled 75 = 0b1001011, PLC 0 -> 0x0258.
    #[test]
    fn parses_the_wire_format() {
        let opt = [
            38, 2, 0x02, 0x58, 0x00, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0,
        ];
        let p = parse_pref64(&opt).unwrap();
        assert_eq!(p.prefix, "64:ff9b::/96".parse::<Ipv6Net>().unwrap());
        assert_eq!(p.lifetime, Duration::from_secs(600));
    }

    #[test]
    fn every_plc() {
        // Bits 64-71 zero, so that the /96 is a valid RFC 6052 prefix.
        let base: Ipv6Addr = "2001:db8:1122:3344:66:7788::".parse().unwrap();
        for (plc, len) in [(0u8, 96u8), (1, 64), (2, 56), (3, 48), (4, 40), (5, 32)] {
            let mut opt = [0u8; 16];
            opt[0] = 38;
            opt[1] = 2;
            opt[2..4].copy_from_slice(&((1u16 << 3) | u16::from(plc)).to_be_bytes());
            opt[4..16].copy_from_slice(&base.octets()[..12]);
            let p = parse_pref64(&opt).unwrap();
            assert_eq!(p.prefix.prefix_len(), len);
            assert_eq!(p.prefix, Ipv6Net::new(base, len).unwrap().trunc());
            assert_eq!(p.lifetime, Duration::from_secs(8));
        }
    }

    /// RFC 6052 section 2.2: bits 64-71 of a /96 must be zero. Option
    /// written out by hand: PLC 0, lifetime 8 s (scaled 1), prefix
    /// 2001:db8:0:0:ff00::/96.
    #[test]
    fn a_96_prefix_with_a_nonzero_u_octet_is_skipped_and_said() {
        let bad = [
            38u8, 2, 0x00, 0x08, 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0xff, 0, 0, 0,
        ];
        let e = parse_pref64(&bad).unwrap_err();
        assert!(
            matches!(e, Pref64Error::Prefix(PrefixError::NonZeroU(p)) if p.to_string() == "2001:db8:0:0:ff00::/96"),
            "{e:?}"
        );
        assert!(e.to_string().contains("bits 64-71 must be zero"), "{e}");
        // Among other options: the bad one is reported, the good one kept.
        let good =
            encode_pref64("2001:db8:64::/96".parse().unwrap(), Duration::from_secs(8)).unwrap();
        let mut buf = bad.to_vec();
        buf.extend_from_slice(&good);
        let got = pref64_options(&buf);
        assert_eq!(got.len(), 2);
        assert!(got[0].is_err());
        assert_eq!(
            got[1].as_ref().unwrap().prefix,
            "2001:db8:64::/96".parse::<Ipv6Net>().unwrap()
        );
        // The same bits in a /64 lie past the length and are ignored (RFC 8781).
        let mut short = bad;
        short[3] = 0x09; // PLC 1: /64
        assert_eq!(
            parse_pref64(&short).unwrap().prefix,
            "2001:db8::/64".parse::<Ipv6Net>().unwrap()
        );
    }

    #[test]
    fn reserved_plc_short_and_wrong_options() {
        let mut opt =
            encode_pref64("64:ff9b::/96".parse().unwrap(), Duration::from_secs(80)).unwrap();
        for plc in 6..=7u8 {
            opt[3] = (opt[3] & !7) | plc;
            assert_eq!(parse_pref64(&opt), Err(Pref64Error::BadPlc(plc)));
        }
        assert_eq!(parse_pref64(&opt[..15]), Err(Pref64Error::Short(15)));
        assert_eq!(parse_pref64(&[]), Err(Pref64Error::Short(0)));
        let mut o2 = encode_pref64("64:ff9b::/96".parse().unwrap(), Duration::ZERO).unwrap();
        o2[1] = 3;
        assert_eq!(parse_pref64(&o2), Err(Pref64Error::BadLength(3)));
        o2[0] = 25;
        assert_eq!(parse_pref64(&o2), Err(Pref64Error::WrongType(25)));
    }

    #[test]
    fn maximum_lifetime_and_rounding() {
        let p: Ipv6Net = "2001:db8:64::/96".parse().unwrap();
        let o = encode_pref64(p, Duration::from_secs(1_000_000)).unwrap();
        assert_eq!(
            parse_pref64(&o).unwrap().lifetime,
            Duration::from_secs(65528)
        );
        let o = encode_pref64(p, Duration::from_secs(1)).unwrap();
        assert_eq!(parse_pref64(&o).unwrap().lifetime, Duration::from_secs(8));
        assert!(encode_pref64("2001:db8::/33".parse().unwrap(), Duration::ZERO).is_none());
    }

    #[test]
    fn bits_past_the_length_are_ignored() {
        let mut o =
            encode_pref64("2001:db8::/32".parse().unwrap(), Duration::from_secs(8)).unwrap();
        o[10] = 0xff;
        assert_eq!(
            parse_pref64(&o).unwrap().prefix,
            "2001:db8::/32".parse::<Ipv6Net>().unwrap()
        );
    }

    #[test]
    fn walks_an_option_buffer() {
        let rdnss = [
            25u8, 3, 0, 0, 0, 0, 0, 60, 0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x53,
        ];
        let p = encode_pref64(
            "2001:db8:64::/96".parse().unwrap(),
            Duration::from_secs(600),
        )
        .unwrap();
        let mut buf = rdnss.to_vec();
        buf.extend_from_slice(&p);
        let mut bad = p;
        bad[3] |= 7;
        buf.extend_from_slice(&bad);
        let got = pref64_options(&buf);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].as_ref().unwrap().lifetime, Duration::from_secs(600));
        assert_eq!(got[1], Err(Pref64Error::BadPlc(7)));
        // A truncated PREF64 at the end is reported, not panicked on.
        let got = pref64_options(&p[..10]);
        assert_eq!(got, vec![Err(Pref64Error::Short(10))]);
        // Zero length ends the walk.
        assert!(pref64_options(&[38, 0, 1, 2]).len() == 1);
    }
}

/// PREF64 prefixes learnt from RAs, each until its lifetime runs out
/// (RFC 8781 section 5: a new RA refreshes the lifetime, lifetime zero
/// withdraws the prefix). Kept in first-arrival order so that the choice
/// does not flap between routers that advertise different prefixes.
#[derive(Debug, Default, Clone)]
pub struct Pref64Table {
    /// (prefix, expiry, lifetime as last advertised)
    entries: Vec<(Ipv6Net, std::time::Instant, Duration)>,
}

impl Pref64Table {
    /// Applies one received option; returns true when the set of prefixes changed.
    pub fn update(&mut self, p: Pref64, now: std::time::Instant) -> bool {
        let pos = self.entries.iter().position(|(n, _, _)| *n == p.prefix);
        match (pos, p.lifetime.is_zero()) {
            (Some(i), true) => {
                self.entries.remove(i);
                true
            }
            (None, true) => false,
            (Some(i), false) => {
                self.entries[i].1 = now + p.lifetime;
                self.entries[i].2 = p.lifetime;
                false
            }
            (None, false) => {
                self.entries.push((p.prefix, now + p.lifetime, p.lifetime));
                true
            }
        }
    }

    /// Drops expired prefixes; returns true when one was dropped.
    pub fn expire(&mut self, now: std::time::Instant) -> bool {
        let before = self.entries.len();
        self.entries.retain(|(_, exp, _)| *exp > now);
        before != self.entries.len()
    }

    /// The live prefixes with the lifetime of their last RA (counted from
    /// that RA, like an RFC 7050 TTL is counted from the answer).
    pub fn current(&self, now: std::time::Instant) -> Vec<crate::DiscoveredPrefix> {
        self.entries
            .iter()
            .filter(|(_, exp, _)| *exp > now)
            .map(|(n, _, lifetime)| crate::DiscoveredPrefix {
                prefix: *n,
                source: crate::PrefixSource::Pref64,
                lifetime: *lifetime,
            })
            .collect()
    }

    /// When the next prefix runs out.
    pub fn next_expiry(&self) -> Option<std::time::Instant> {
        self.entries.iter().map(|(_, e, _)| *e).min()
    }
}

#[cfg(test)]
mod table_tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn lifetimes_refresh_expire_and_withdraw() {
        let t0 = Instant::now();
        let a: Ipv6Net = "2001:db8:64::/96".parse().unwrap();
        let b: Ipv6Net = "2001:db8:a00::/40".parse().unwrap();
        let mut t = Pref64Table::default();
        assert!(t.update(
            Pref64 {
                prefix: a,
                lifetime: Duration::from_secs(16)
            },
            t0
        ));
        assert!(t.update(
            Pref64 {
                prefix: b,
                lifetime: Duration::from_secs(8)
            },
            t0
        ));
        assert_eq!(t.next_expiry(), Some(t0 + Duration::from_secs(8)));
        let cur = t.current(t0 + Duration::from_secs(2));
        assert_eq!(cur.len(), 2);
        assert_eq!(cur[0].prefix, a, "first arrival first");
        assert_eq!(cur[0].lifetime, Duration::from_secs(16));
        // Refresh a at t0+10: lives until t0+26.
        assert!(!t.update(
            Pref64 {
                prefix: a,
                lifetime: Duration::from_secs(16)
            },
            t0 + Duration::from_secs(10)
        ));
        assert_eq!(
            t.current(t0 + Duration::from_secs(10))[0].lifetime,
            Duration::from_secs(16)
        );
        assert!(t.expire(t0 + Duration::from_secs(9)), "b ran out");
        assert_eq!(t.current(t0 + Duration::from_secs(20)).len(), 1);
        assert!(!t.expire(t0 + Duration::from_secs(20)));
        assert!(t.expire(t0 + Duration::from_secs(26)));
        assert!(t.current(t0 + Duration::from_secs(26)).is_empty());
        // Withdrawal by lifetime zero.
        t.update(
            Pref64 {
                prefix: a,
                lifetime: Duration::from_secs(16),
            },
            t0,
        );
        assert!(t.update(
            Pref64 {
                prefix: a,
                lifetime: Duration::ZERO
            },
            t0
        ));
        assert!(t.current(t0).is_empty());
        assert!(!t.update(
            Pref64 {
                prefix: b,
                lifetime: Duration::ZERO
            },
            t0
        ));
    }
}
