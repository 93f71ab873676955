//! RFC 7757: the Explicit Address Mapping Table (EAMT).
//!
//! Each entry maps an IPv4 prefix to an IPv6 prefix that leaves at least as
//! many suffix bits; the IPv4 suffix is copied into the leftmost bits of the
//! IPv6 suffix, the bits right of it are zero from IPv4 and ignored towards
//! IPv4 (section 3.2; 198.51.100.0/24 with 2001:db8:1c6:3364::/72 maps
//! 198.51.100.2 to 2001:db8:1c6:3364:2::). Lookups pick
//! the longest matching prefix (section 3.3), and the translator consults the
//! table before the RFC 6052 prefix (section 3.4 / RFC 7915 section 4.1 "the
//! EAMT is consulted first").

use ipnet::{Ipv4Net, Ipv6Net};
use std::net::{Ipv4Addr, Ipv6Addr};

/// One explicit address mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Eam {
    pub v4: Ipv4Net,
    pub v6: Ipv6Net,
}

/// An entry with its prefixes as integers and masks: lookups run per
/// packet, and `ipnet`'s `contains` costs several times more.
#[derive(Debug, Clone, Copy)]
struct Entry {
    eam: Eam,
    net4: u32,
    mask4: u32,
    net6: u128,
    mask6: u128,
    /// IPv6 suffix bits right of the copied IPv4 suffix.
    shift: u32,
}

impl Entry {
    fn new(eam: Eam) -> Entry {
        let bits4 = 32 - eam.v4.prefix_len() as u32;
        let bits6 = 128 - eam.v6.prefix_len() as u32;
        let mask4 = if bits4 >= 32 { 0 } else { u32::MAX << bits4 };
        let mask6 = if bits6 >= 128 { 0 } else { u128::MAX << bits6 };
        Entry {
            eam,
            net4: u32::from(eam.v4.network()),
            mask4,
            net6: u128::from(eam.v6.network()),
            mask6,
            shift: bits6 - bits4,
        }
    }
}

/// Why an EAM entry was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EamError {
    /// RFC 7757 section 3.2: the IPv6 prefix must leave at least as many
    /// suffix bits as the IPv4 prefix (room for the IPv4 suffix).
    SuffixMismatch(Eam),
    /// Bits after the prefix length are set.
    HostBits(Eam),
    /// The same IPv4 or IPv6 prefix is mapped twice, which makes lookups ambiguous.
    Duplicate(Eam),
}

impl std::fmt::Display for EamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EamError::SuffixMismatch(e) => write!(
                f,
                "EAM {}={}: the IPv6 prefix leaves fewer suffix bits than the IPv4 prefix ({} < {} bits; RFC 7757 section 3.2)",
                e.v4,
                e.v6,
                128 - e.v6.prefix_len() as u32,
                32 - e.v4.prefix_len() as u32
            ),
            EamError::HostBits(e) => write!(
                f,
                "EAM {}={}: bits after a prefix length are set",
                e.v4, e.v6
            ),
            EamError::Duplicate(e) => {
                write!(f, "EAM {}={}: a prefix is already mapped", e.v4, e.v6)
            }
        }
    }
}
impl std::error::Error for EamError {}

impl Eam {
    /// Checks the entry (RFC 7757 section 3.2).
    pub fn new(v4: Ipv4Net, v6: Ipv6Net) -> Result<Eam, EamError> {
        let e = Eam { v4, v6 };
        if 128 - (v6.prefix_len() as u32) < 32 - v4.prefix_len() as u32 {
            return Err(EamError::SuffixMismatch(e));
        }
        if v4.addr() != v4.network() || v6.addr() != v6.network() {
            return Err(EamError::HostBits(e));
        }
        Ok(e)
    }
}

/// The table. Entries are kept in two orders (by IPv4 and by IPv6 prefix
/// length, longest first) so that the first hit of a linear scan is the
/// longest match. Tables are small (a CLAT has one or two entries), so a
/// scan beats a trie.
#[derive(Debug, Clone, Default)]
pub struct EamTable {
    by_v4: Vec<Entry>,
    by_v6: Vec<Entry>,
    entries: Vec<Eam>,
}

impl EamTable {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an entry; refuses one whose IPv4 or IPv6 prefix is already mapped.
    pub fn insert(&mut self, e: Eam) -> Result<(), EamError> {
        if self.entries.iter().any(|x| x.v4 == e.v4 || x.v6 == e.v6) {
            return Err(EamError::Duplicate(e));
        }
        self.entries.push(e);
        self.by_v4.push(Entry::new(e));
        self.by_v4
            .sort_by_key(|x| std::cmp::Reverse(x.eam.v4.prefix_len()));
        self.by_v6.push(Entry::new(e));
        self.by_v6
            .sort_by_key(|x| std::cmp::Reverse(x.eam.v6.prefix_len()));
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entries in insertion order.
    pub fn entries(&self) -> &[Eam] {
        &self.entries
    }

    /// IPv4 -> IPv6 by longest IPv4 prefix match; the suffix is copied to
    /// the leftmost suffix bits of the IPv6 prefix.
    #[inline]
    pub fn map4(&self, a: Ipv4Addr) -> Option<Ipv6Addr> {
        let x = u32::from(a);
        self.by_v4.iter().find(|e| x & e.mask4 == e.net4).map(|e| {
            let suffix = ((x & !e.mask4) as u128).checked_shl(e.shift).unwrap_or(0);
            Ipv6Addr::from(e.net6 | suffix)
        })
    }

    /// IPv6 -> IPv4 by longest IPv6 prefix match; the leftmost suffix bits
    /// are copied, those right of them ignored.
    #[inline]
    pub fn map6(&self, a: Ipv6Addr) -> Option<Ipv4Addr> {
        let x = u128::from(a);
        self.by_v6.iter().find(|e| x & e.mask6 == e.net6).map(|e| {
            let suffix = (x & !e.mask6).checked_shr(e.shift).unwrap_or(0) as u32;
            Ipv4Addr::from(e.net4 | (suffix & !e.mask4))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eam(a: &str, b: &str) -> Eam {
        Eam::new(a.parse().unwrap(), b.parse().unwrap()).unwrap()
    }

    #[test]
    fn rfc7757_example_and_longest_match() {
        let mut t = EamTable::new();
        // RFC 7757 section 3.3 style: a /24 and a more specific /32 inside it.
        t.insert(eam("192.0.2.0/24", "2001:db8:aaaa::/120"))
            .unwrap();
        t.insert(eam("192.0.2.1/32", "2001:db8:bbbb::1/128"))
            .unwrap();
        assert_eq!(
            t.map4("192.0.2.1".parse().unwrap()),
            Some("2001:db8:bbbb::1".parse().unwrap())
        );
        assert_eq!(
            t.map4("192.0.2.77".parse().unwrap()),
            Some("2001:db8:aaaa::4d".parse().unwrap())
        );
        assert_eq!(t.map4("192.0.3.1".parse().unwrap()), None);
        assert_eq!(
            t.map6("2001:db8:bbbb::1".parse().unwrap()),
            Some("192.0.2.1".parse().unwrap())
        );
        assert_eq!(
            t.map6("2001:db8:aaaa::ff".parse().unwrap()),
            Some("192.0.2.255".parse().unwrap())
        );
        assert_eq!(t.map6("2001:db8:aaaa::1:ff".parse().unwrap()), None);
    }

    #[test]
    fn rfc7757_section_3_2_longer_ipv6_suffix() {
        // 8 IPv4 suffix bits, 56 IPv6 suffix bits: the IPv4 suffix fills
        // bits 72..80 of the IPv6 address (written out by hand), the 48 bits
        // right of it are zero one way and ignored the other way.
        let mut t = EamTable::new();
        t.insert(eam("198.51.100.0/24", "2001:db8:1c6:3364::/72"))
            .unwrap();
        assert_eq!(
            t.map4("198.51.100.2".parse().unwrap()),
            Some("2001:db8:1c6:3364:2::".parse().unwrap())
        );
        assert_eq!(
            t.map4("198.51.100.255".parse().unwrap()),
            Some("2001:db8:1c6:3364:ff::".parse().unwrap())
        );
        assert_eq!(
            t.map6("2001:db8:1c6:3364:2::".parse().unwrap()),
            Some("198.51.100.2".parse().unwrap())
        );
        assert_eq!(
            t.map6("2001:db8:1c6:3364:2:0:abcd:1".parse().unwrap()),
            Some("198.51.100.2".parse().unwrap())
        );
        assert_eq!(t.map6("2001:db8:1c6:3365:2::".parse().unwrap()), None);
        // A whole-address IPv4 entry with a /0 IPv6 prefix: nothing to copy.
        let mut t = EamTable::new();
        t.insert(eam("192.0.2.1/32", "::/0")).unwrap();
        assert_eq!(
            t.map4("192.0.2.1".parse().unwrap()),
            Some("::".parse().unwrap())
        );
        assert_eq!(
            t.map6("2001:db8::1".parse().unwrap()),
            Some("192.0.2.1".parse().unwrap())
        );
    }

    #[test]
    fn refuses_bad_entries() {
        // The IPv6 prefix leaves fewer suffix bits (4) than the IPv4 one (8).
        assert!(matches!(
            Eam::new(
                "192.0.2.0/24".parse().unwrap(),
                "2001:db8::/124".parse().unwrap()
            ),
            Err(EamError::SuffixMismatch(_))
        ));
        assert!(matches!(
            Eam::new(
                "192.0.2.1/24".parse().unwrap(),
                "2001:db8::/120".parse().unwrap()
            ),
            Err(EamError::HostBits(_))
        ));
        let mut t = EamTable::new();
        t.insert(eam("192.0.2.0/24", "2001:db8::/120")).unwrap();
        assert!(t.insert(eam("192.0.2.0/24", "2001:db8:1::/120")).is_err());
    }
}
