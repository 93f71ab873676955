//! The Internet checksum (RFC 1071) and its incremental update (RFC 1624).
//!
//! Sums are kept as `u32` partial sums of 16-bit big-endian words; [`fold`]
//! reduces them with end-around carry. A translator mostly changes addresses
//! in the pseudo-header, so transport checksums are patched with [`adjust`]
//! instead of being recomputed over the whole payload (RFC 7915 section 4.5
//! and 5.5 allow either; incremental is cheaper and keeps a bad checksum bad,
//! so corruption is still detected end to end).

use std::net::{Ipv4Addr, Ipv6Addr};

/// Adds the bytes of `data` as big-endian 16-bit words to `acc`. An odd final
/// byte is padded with a zero byte (RFC 1071). Words are summed in a `u64`
/// so that no carry is lost however long the data is.
#[inline]
pub fn sum(data: &[u8], acc: u32) -> u32 {
    let mut s: u64 = acc as u64;
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        s += u16::from_be_bytes([c[0], c[1]]) as u64;
        s += u16::from_be_bytes([c[2], c[3]]) as u64;
        s += u16::from_be_bytes([c[4], c[5]]) as u64;
        s += u16::from_be_bytes([c[6], c[7]]) as u64;
    }
    let rest = chunks.remainder();
    let mut pairs = rest.chunks_exact(2);
    for c in &mut pairs {
        s += u16::from_be_bytes([c[0], c[1]]) as u64;
    }
    if let [b] = pairs.remainder() {
        s += (*b as u64) << 8;
    }
    fold64(s) as u32
}

#[inline]
fn fold64(mut s: u64) -> u16 {
    while s >> 16 != 0 {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

/// Folds a partial sum to 16 bits with end-around carry.
#[inline]
pub fn fold(s: u32) -> u16 {
    fold64(s as u64)
}

/// The checksum field value for a partial sum: the one's complement of the
/// folded sum.
#[inline]
pub fn finish(s: u32) -> u16 {
    !fold(s)
}

/// Partial sum of the IPv4 pseudo-header (RFC 793 / RFC 768).
#[inline]
pub fn pseudo_v4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, len: u16) -> u32 {
    let s = sum(&src.octets(), 0);
    let s = sum(&dst.octets(), s);
    s + proto as u32 + len as u32
}

/// Partial sum of the IPv6 pseudo-header (RFC 8200 section 8.1).
#[inline]
pub fn pseudo_v6(src: &Ipv6Addr, dst: &Ipv6Addr, next: u8, len: u32) -> u32 {
    let s = sum(&src.octets(), 0);
    let s = sum(&dst.octets(), s);
    s + (len >> 16) + (len & 0xffff) + next as u32
}

/// RFC 1624 equation 3: `HC' = ~(~HC + ~m + m')`, generalised to sums:
/// `old` is the partial sum of everything that was removed from the covered
/// data, `new` of everything that was added. Using eqn. 3 (not eqn. 2)
/// avoids producing -0 (0xffff vs 0x0000) wrongly.
#[inline]
pub fn adjust(csum: u16, old: u32, new: u32) -> u16 {
    let s = (!csum) as u64 + (!fold(old)) as u64 + new as u64;
    !fold64(s)
}

/// RFC 1624 incremental update for one 16-bit field that changed from `old`
/// to `new`. Handy for the engine's port and address rewriting.
#[inline]
pub fn update16(csum: u16, old: u16, new: u16) -> u16 {
    adjust(csum, old as u32, new as u32)
}

/// RFC 1624 incremental update when the bytes `old` were replaced by `new`
/// (for example an address). Both must start at the same (even) offset of
/// the covered data; their lengths may differ only if each is a whole number
/// of 16-bit words (an IPv4 address replaced by an IPv6 address in a
/// pseudo-header).
#[inline]
pub fn update(csum: u16, old: &[u8], new: &[u8]) -> u16 {
    adjust(csum, sum(old, 0), sum(new, 0))
}

/// True if data whose checksum field is included sums to the all-ones value,
/// i.e. the checksum is valid.
#[inline]
pub fn verify(data: &[u8], init: u32) -> bool {
    fold(sum(data, init)) == 0xffff
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reference implementation straight from RFC 1071, written separately.
    fn naive(data: &[u8]) -> u16 {
        let mut s: u32 = 0;
        let mut i = 0;
        while i + 1 < data.len() {
            s += ((data[i] as u32) << 8) | data[i + 1] as u32;
            i += 2;
        }
        if i < data.len() {
            s += (data[i] as u32) << 8;
        }
        while s > 0xffff {
            s = (s & 0xffff) + (s >> 16);
        }
        !(s as u16)
    }

    #[test]
    fn rfc1071_example() {
        // RFC 1071 section 3: bytes 00 01 f2 03 f4 f5 f6 f7 sum to 0xddf2.
        let d = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(sum(&d, 0)), 0xddf2);
        assert_eq!(finish(sum(&d, 0)), !0xddf2);
    }

    #[test]
    fn matches_naive_odd_and_even() {
        let data: Vec<u8> = (0..301u32).map(|i| (i * 37 + 11) as u8).collect();
        for n in 0..data.len() {
            assert_eq!(finish(sum(&data[..n], 0)), naive(&data[..n]), "len {n}");
        }
    }

    #[test]
    fn incremental_equals_recompute() {
        let mut data: Vec<u8> = (0..64u32).map(|i| (i * 91 + 3) as u8).collect();
        let c = finish(sum(&data, 0));
        let old = [data[10], data[11], data[12], data[13]];
        data[10..14].copy_from_slice(&[0xff, 0xff, 0x00, 0x00]);
        let c2 = update(c, &old, &data[10..14]);
        assert_eq!(c2, finish(sum(&data, 0)));
        let c3 = update16(c2, 0xffff, 0x1234);
        data[10] = 0x12;
        data[11] = 0x34;
        assert_eq!(c3, finish(sum(&data, 0)));
    }

    #[test]
    fn verify_detects_corruption() {
        let mut d = vec![
            0x45u8, 0, 0, 20, 0, 0, 0x40, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ];
        let c = finish(sum(&d, 0));
        d[10..12].copy_from_slice(&c.to_be_bytes());
        assert!(verify(&d, 0));
        d[8] ^= 1;
        assert!(!verify(&d, 0));
    }
}
