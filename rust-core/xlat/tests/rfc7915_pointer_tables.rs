//! The Parameter Problem pointer tables, written out from RFC 7915: figure
//! 3 (section 4.2, IPv4 header byte -> IPv6 header byte) and figure 6
//! (section 5.2, IPv6 -> IPv4). Every byte of each header is checked, so a
//! lost or wrong row fails.

use clat_xlat::icmp_map::{pointer_4to6, pointer_6to4};

#[test]
fn figure_3_ipv4_to_ipv6_pointers() {
    for p in 0..=255u8 {
        let want = match p {
            0 => Some(0),
            1 => Some(1),
            2 | 3 => Some(4),
            8 => Some(7),
            9 => Some(6),
            12..=15 => Some(8),
            16..=19 => Some(24),
            _ => None,
        };
        assert_eq!(pointer_4to6(p), want, "IPv4 pointer {p}");
    }
}

#[test]
fn figure_6_ipv6_to_ipv4_pointers() {
    for p in 0..=300u32 {
        let want = match p {
            0 => Some(0),
            1 => Some(1),
            4 | 5 => Some(2),
            6 => Some(9),
            7 => Some(8),
            8..=23 => Some(12),
            24..=39 => Some(16),
            _ => None,
        };
        assert_eq!(pointer_6to4(p), want, "IPv6 pointer {p}");
    }
    assert_eq!(pointer_6to4(u32::MAX), None);
}
