//! Finding NAT64 prefixes inside synthesized AAAA answers (RFC 7050
//! section 3, RFC 8880, address format of RFC 6052 section 2.2).
//!
//! A DNS64 synthesizes `ipv4only.arpa` AAAA records by embedding the
//! well-known IPv4 addresses (WKAs) 192.0.0.170 and 192.0.0.171 into its
//! prefix. We do not know the prefix length in advance, so every RFC 6052
//! length is tried; a length counts only when a WKA sits exactly at that
//! length's position (and the "u" octet, bits 64-71, is zero). A prefix that
//! itself happens to contain the WKA bytes can make one address match at
//! several lengths; RFC 7050 resolves that with the *other* WKA: the right
//! length is the one where both WKAs give the same prefix.

use clat_xlat::addr6052::PrefixError;
use ipnet::Ipv6Net;
use std::net::{Ipv4Addr, Ipv6Addr};

/// The two well-known IPv4 addresses of `ipv4only.arpa` (RFC 7050, RFC 8880).
pub const WKAS: [Ipv4Addr; 2] = [Ipv4Addr::new(192, 0, 0, 170), Ipv4Addr::new(192, 0, 0, 171)];

/// Prefix lengths RFC 6052 section 2.2 allows.
pub const RFC6052_LENGTHS: [u8; 6] = [32, 40, 48, 56, 64, 96];

/// The IPv4 address embedded in `addr` for prefix length `len` (RFC 6052
/// section 2.2), or `None` for a length RFC 6052 does not allow or a
/// non-zero u octet. The bit layout is the translator's (`clat_xlat::extract`).
pub fn embedded_v4(addr: Ipv6Addr, len: u8) -> Option<Ipv4Addr> {
    if !RFC6052_LENGTHS.contains(&len) {
        return None;
    }
    let prefix = Ipv6Net::new(addr, len).ok()?.trunc();
    clat_xlat::extract(&prefix, addr)
}

/// Builds the RFC 6052 address for `v4` under `prefix` (suffix zero), with
/// the translator's `clat_xlat::embed`. Used by the tests and handy for
/// callers that want to show an example.
pub fn synthesize(prefix: Ipv6Net, v4: Ipv4Addr) -> Option<Ipv6Addr> {
    if !RFC6052_LENGTHS.contains(&prefix.prefix_len()) {
        return None;
    }
    Some(clat_xlat::embed(&prefix.trunc(), v4))
}

/// One place where a WKA was found in one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Candidate {
    prefix: Ipv6Net,
    wka: usize,
}

/// The WKA positions of `addr`. A prefix under which it carries a WKA but
/// which RFC 6052 does not allow (a /96 whose bits 64-71 are not zero) is
/// added to `skipped` instead, with the reason (the error names the prefix).
fn candidates(addr: Ipv6Addr, skipped: &mut Vec<PrefixError>) -> Vec<Candidate> {
    let mut out = Vec::new();
    for len in RFC6052_LENGTHS {
        if let Some(v4) = embedded_v4(addr, len) {
            if let Some(wka) = WKAS.iter().position(|w| *w == v4) {
                // Ipv6Net::new only fails for len > 128; trunc zeroes the
                // IPv4 and suffix bits so that equal prefixes compare equal.
                if let Ok(net) = Ipv6Net::new(addr, len) {
                    out.push(Candidate {
                        prefix: net.trunc(),
                        wka,
                    });
                }
            }
        } else if let Some(s) = unusable(addr, len) {
            if !skipped.contains(&s) {
                skipped.push(s);
            }
        }
    }
    out
}

/// `Some` when `addr` would carry a WKA under its prefix of length `len`
/// but that prefix fails the translator's RFC 6052 check
/// ([`clat_xlat::addr6052::validate_prefix`]); only a /96 can, as only a /96
/// covers bits 64-71. Such a synthesis could be used to reach IPv4 hosts,
/// but replies from them could not be mapped back.
fn unusable(addr: Ipv6Addr, len: u8) -> Option<PrefixError> {
    let prefix = Ipv6Net::new(addr, len).ok()?.trunc();
    let why = clat_xlat::addr6052::validate_prefix(&prefix).err()?;
    let mut o = addr.octets();
    o[8] = 0;
    let v4 = embedded_v4(Ipv6Addr::from(o), len)?;
    WKAS.contains(&v4).then_some(why)
}

/// A prefix found in an answer, with the smallest TTL of the records that
/// carried it and which WKAs were seen under it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundPrefix {
    pub prefix: Ipv6Net,
    pub ttl: u32,
    /// `[saw 192.0.0.170, saw 192.0.0.171]`
    pub wkas: [bool; 2],
}

/// Why the answers could not be turned into prefixes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExtractError {
    /// No AAAA record contains a WKA at any RFC 6052 position.
    NoWka,
    /// The answers contradict each other (explained in the string).
    Inconsistent(String),
    /// Every synthesis uses a prefix RFC 6052 does not allow (explained in
    /// the string: the prefix and the rule).
    Unusable(String),
}

/// Extracts every distinct prefix from AAAA `(address, ttl)` records, in
/// answer order.
///
/// Rules, in the spirit of RFC 7050 section 3 and RFC 8880:
/// - an address with no WKA at any position is ignored (it is not a
///   synthesis, e.g. a real AAAA someone published);
/// - an address with a WKA under a /96 whose bits 64-71 are not zero (RFC
///   6052 section 2.2) gives no prefix: it is skipped, logged when other
///   prefixes were found, and [`ExtractError::Unusable`] when none was;
/// - an address with a WKA at exactly one position gives that prefix;
/// - an address matching at several positions is resolved by the other
///   WKA: the position whose prefix also appears (alone) for another record
///   carrying the other WKA wins; if that does not single out one position
///   the answer is inconsistent;
/// - a DNS64 synthesizes every A record under every prefix, so all prefixes
///   must have been seen with the same set of WKAs; prefixes that disagree
///   (say P1 only with .170 and P2 only with .171) are inconsistent.
pub fn extract_prefixes(records: &[(Ipv6Addr, u32)]) -> Result<Vec<FoundPrefix>, ExtractError> {
    let mut skipped = Vec::new();
    let per_record: Vec<Vec<Candidate>> = records
        .iter()
        .map(|(a, _)| candidates(*a, &mut skipped))
        .collect();
    let mut found: Vec<FoundPrefix> = Vec::new();
    for (i, cands) in per_record.iter().enumerate() {
        let chosen = match cands.len() {
            0 => continue,
            1 => cands[0],
            _ => disambiguate(i, cands, &per_record).ok_or_else(|| {
                ExtractError::Inconsistent(format!(
                    "{} carries a well-known address at several prefix lengths ({}) and the other \
                     well-known address does not tell which one is right",
                    records[i].0,
                    cands
                        .iter()
                        .map(|c| format!("/{}", c.prefix.prefix_len()))
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })?,
        };
        let ttl = records[i].1;
        match found.iter_mut().find(|f| f.prefix == chosen.prefix) {
            Some(f) => {
                f.ttl = f.ttl.min(ttl);
                f.wkas[chosen.wka] = true;
            }
            None => {
                let mut wkas = [false; 2];
                wkas[chosen.wka] = true;
                found.push(FoundPrefix {
                    prefix: chosen.prefix,
                    ttl,
                    wkas,
                });
            }
        }
    }
    let said: Vec<String> = skipped.iter().map(|why| format!("skipped {why}")).collect();
    if found.is_empty() {
        return Err(if said.is_empty() {
            ExtractError::NoWka
        } else {
            ExtractError::Unusable(said.join("; "))
        });
    }
    for s in &said {
        log::warn!("RFC 7050: {s}");
    }
    if let Some(odd) = found.iter().find(|f| f.wkas != found[0].wkas) {
        return Err(ExtractError::Inconsistent(format!(
            "{} was synthesized from {} but {} from {}: a DNS64 maps every A record under every \
             prefix, so these answers cannot both be right",
            found[0].prefix,
            wka_names(found[0].wkas),
            odd.prefix,
            wka_names(odd.wkas)
        )));
    }
    Ok(found)
}

fn wka_names(w: [bool; 2]) -> String {
    WKAS.iter()
        .zip(w)
        .filter(|(_, seen)| *seen)
        .map(|(a, _)| a.to_string())
        .collect::<Vec<_>>()
        .join(" and ")
}

/// Picks among several positions of record `i` the one confirmed by another
/// record that carries the other WKA under the same prefix.
fn disambiguate(i: usize, cands: &[Candidate], all: &[Vec<Candidate>]) -> Option<Candidate> {
    let confirmed: Vec<Candidate> = cands
        .iter()
        .copied()
        .filter(|c| {
            all.iter().enumerate().any(|(j, other)| {
                j != i && other.iter().any(|o| o.prefix == c.prefix && o.wka != c.wka)
            })
        })
        .collect();
    match confirmed.as_slice() {
        [one] => Some(*one),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv6Net {
        s.parse().unwrap()
    }
    fn a(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    /// RFC 6052 section 2.4 example table, with 192.0.2.33 replaced by the
    /// WKAs: the exact textual forms are checked so that a wrong octet
    /// position fails the test.
    #[test]
    fn rfc6052_style_addresses_for_both_wkas() {
        let table = [
            ("2001:db8::/32", "2001:db8:c000:aa::", "2001:db8:c000:ab::"),
            (
                "2001:db8:100::/40",
                "2001:db8:1c0:0:aa::",
                "2001:db8:1c0:0:ab::",
            ),
            (
                "2001:db8:122::/48",
                "2001:db8:122:c000:0:aa00::",
                "2001:db8:122:c000:0:ab00::",
            ),
            (
                "2001:db8:122:300::/56",
                "2001:db8:122:3c0:0:aa::",
                "2001:db8:122:3c0:0:ab::",
            ),
            (
                "2001:db8:122:344::/64",
                "2001:db8:122:344:c0:0:aa00:0",
                "2001:db8:122:344:c0:0:ab00:0",
            ),
            (
                "2001:db8:122:344::/96",
                "2001:db8:122:344::c000:aa",
                "2001:db8:122:344::c000:ab",
            ),
        ];
        for (p, s170, s171) in table {
            let p = net(p);
            assert_eq!(synthesize(p, WKAS[0]).unwrap(), a(s170), "{p}");
            assert_eq!(synthesize(p, WKAS[1]).unwrap(), a(s171), "{p}");
            let got = extract_prefixes(&[(a(s170), 300), (a(s171), 200)]).unwrap();
            assert_eq!(got.len(), 1, "{p}: {got:?}");
            assert_eq!(got[0].prefix, p);
            assert_eq!(got[0].ttl, 200, "smallest TTL wins");
            assert_eq!(got[0].wkas, [true, true]);
        }
    }

    #[test]
    fn embedded_v4_rejects_nonzero_u_octet_and_bad_lengths() {
        let mut o = a("2001:db8::c000:aa").octets();
        assert_eq!(embedded_v4(Ipv6Addr::from(o), 96), Some(WKAS[0]));
        assert_eq!(embedded_v4(Ipv6Addr::from(o), 33), None);
        o = a("2001:db8:c000:aa::").octets();
        assert_eq!(embedded_v4(Ipv6Addr::from(o), 32), Some(WKAS[0]));
        o[8] = 1;
        assert_eq!(embedded_v4(Ipv6Addr::from(o), 32), None);
    }

    #[test]
    fn a_single_wka_is_enough_rfc7050_before_rfc8880() {
        let got = extract_prefixes(&[(a("64:ff9b::c000:aa"), 60)]).unwrap();
        assert_eq!(got[0].prefix, net("64:ff9b::/96"));
        assert_eq!(got[0].wkas, [true, false]);
    }

    #[test]
    fn several_prefixes_in_answer_order() {
        let p1 = net("2001:db8:64::/96");
        let p2 = net("2001:db8:a00::/40");
        let recs = [
            (synthesize(p1, WKAS[0]).unwrap(), 300),
            (synthesize(p1, WKAS[1]).unwrap(), 300),
            (synthesize(p2, WKAS[0]).unwrap(), 100),
            (synthesize(p2, WKAS[1]).unwrap(), 120),
        ];
        let got = extract_prefixes(&recs).unwrap();
        assert_eq!(
            got.iter().map(|f| f.prefix).collect::<Vec<_>>(),
            vec![p1, p2]
        );
        assert_eq!(got[1].ttl, 100);
        // Reversed order gives reversed result.
        let mut rev = recs;
        rev.reverse();
        let got = extract_prefixes(&rev).unwrap();
        assert_eq!(got[0].prefix, p2);
    }

    #[test]
    fn no_wka_anywhere() {
        assert_eq!(
            extract_prefixes(&[(a("2001:db8::1"), 60)]),
            Err(ExtractError::NoWka)
        );
        assert_eq!(extract_prefixes(&[]), Err(ExtractError::NoWka));
    }

    #[test]
    fn addresses_without_wka_are_ignored_next_to_real_ones() {
        let got = extract_prefixes(&[(a("2001:db8::1"), 60), (a("64:ff9b::c000:ab"), 30)]).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].prefix, net("64:ff9b::/96"));
    }

    #[test]
    fn wka_inside_the_prefix_is_resolved_by_the_other_wka() {
        // A /64 prefix whose bits 32-63 are c000:00aa: the /64 synthesis of
        // .170 also reads as 192.0.0.170 at /32.
        let p = net("2001:db8:c000:aa::/64");
        let s170 = synthesize(p, WKAS[0]).unwrap();
        let s171 = synthesize(p, WKAS[1]).unwrap();
        assert!(
            candidates(s170, &mut Vec::new()).len() >= 2,
            "test needs an ambiguous address"
        );
        let got = extract_prefixes(&[(s170, 60), (s171, 60)]).unwrap();
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].prefix, p);
        // Alone, the ambiguous address cannot be resolved.
        assert!(matches!(
            extract_prefixes(&[(s170, 60)]),
            Err(ExtractError::Inconsistent(_))
        ));
    }

    #[test]
    fn wkas_under_different_prefixes_are_inconsistent() {
        let recs = [
            (synthesize(net("2001:db8:64::/96"), WKAS[0]).unwrap(), 60),
            (synthesize(net("2001:db8:a00::/40"), WKAS[1]).unwrap(), 60),
        ];
        match extract_prefixes(&recs) {
            Err(ExtractError::Inconsistent(msg)) => {
                assert!(msg.contains("2001:db8:64::/96"), "{msg}");
                assert!(msg.contains("192.0.0.171"), "{msg}");
            }
            other => panic!("expected inconsistent, got {other:?}"),
        }
    }

    #[test]
    fn every_length_roundtrips_both_wkas() {
        for len in RFC6052_LENGTHS {
            let p = Ipv6Net::new(a("2001:db8:1234:5600::"), len)
                .unwrap()
                .trunc();
            for w in WKAS {
                let s = synthesize(p, w).unwrap();
                assert_eq!(embedded_v4(s, len), Some(w));
                let got = extract_prefixes(&[(s, 10)]).unwrap();
                assert_eq!(got[0].prefix, p, "len {len}");
            }
        }
    }
}
