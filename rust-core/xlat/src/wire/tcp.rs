//! The TCP header (RFC 9293 section 3.1) and sequence-number arithmetic.

use super::WireError;
use crate::checksum;
use std::cmp::Ordering;
use std::net::{Ipv4Addr, Ipv6Addr};

/// A TCP sequence or acknowledgment number: arithmetic modulo 2^32 and
/// comparison by serial-number order (RFC 9293 section 3.4, RFC 1982), so
/// that `a + 1 > a` holds across the wrap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TcpSeqNumber(pub u32);

impl std::ops::Add<u32> for TcpSeqNumber {
    type Output = TcpSeqNumber;
    fn add(self, n: u32) -> TcpSeqNumber {
        TcpSeqNumber(self.0.wrapping_add(n))
    }
}

impl std::ops::Sub for TcpSeqNumber {
    /// Signed distance from `rhs` to `self` (valid within 2^31).
    type Output = i32;
    fn sub(self, rhs: TcpSeqNumber) -> i32 {
        self.0.wrapping_sub(rhs.0) as i32
    }
}

impl PartialOrd for TcpSeqNumber {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some((*self - *other).cmp(&0))
    }
}

impl std::fmt::Display for TcpSeqNumber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// The control bits of byte 13 (RFC 9293 section 3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TcpFlags(pub u8);

impl TcpFlags {
    pub const FIN: TcpFlags = TcpFlags(0x01);
    pub const SYN: TcpFlags = TcpFlags(0x02);
    pub const RST: TcpFlags = TcpFlags(0x04);
    pub const PSH: TcpFlags = TcpFlags(0x08);
    pub const ACK: TcpFlags = TcpFlags(0x10);
    pub const URG: TcpFlags = TcpFlags(0x20);

    /// True if any bit of `f` is set.
    pub fn intersects(self, f: TcpFlags) -> bool {
        self.0 & f.0 != 0
    }

    /// The bits of `mask` that are set.
    pub fn masked(self, mask: TcpFlags) -> TcpFlags {
        TcpFlags(self.0 & mask.0)
    }
}

impl std::ops::BitOr for TcpFlags {
    type Output = TcpFlags;
    fn bitor(self, rhs: TcpFlags) -> TcpFlags {
        TcpFlags(self.0 | rhs.0)
    }
}

/// The fixed part of a received TCP segment, read at fixed offsets (no
/// option scan: it is read for every segment the engine's NAT carries).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpSegment {
    pub src_port: u16,
    pub dst_port: u16,
    pub seq: TcpSeqNumber,
    pub ack: TcpSeqNumber,
    pub flags: TcpFlags,
    pub window: u16,
    /// Data Offset in bytes (20 to 60).
    pub header_len: usize,
    /// Bytes after the header.
    pub payload_len: usize,
}

impl TcpSegment {
    /// Reads the header of `buf` (header and payload, nothing after).
    /// Errors: [`WireError::Truncated`] below 20 bytes or when the Data
    /// Offset runs past `buf`, [`WireError::Malformed`] for a Data Offset
    /// below 5 words.
    pub fn parse(buf: &[u8]) -> Result<TcpSegment, WireError> {
        if buf.len() < TcpRepr::HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let doff = (buf[12] >> 4) as usize * 4;
        if doff < TcpRepr::HEADER_LEN {
            return Err(WireError::Malformed);
        }
        if doff > buf.len() {
            return Err(WireError::Truncated);
        }
        let u32_at = |i: usize| u32::from_be_bytes([buf[i], buf[i + 1], buf[i + 2], buf[i + 3]]);
        Ok(TcpSegment {
            src_port: u16::from_be_bytes([buf[0], buf[1]]),
            dst_port: u16::from_be_bytes([buf[2], buf[3]]),
            seq: TcpSeqNumber(u32_at(4)),
            ack: TcpSeqNumber(u32_at(8)),
            flags: TcpFlags(buf[13]),
            window: u16::from_be_bytes([buf[14], buf[15]]),
            header_len: doff,
            payload_len: buf.len() - doff,
        })
    }

    /// Sequence space the segment occupies: its payload, plus one for SYN
    /// and one for FIN (RFC 9293 section 3.4).
    pub fn seq_len(&self) -> u32 {
        self.payload_len as u32
            + self.flags.intersects(TcpFlags::SYN) as u32
            + self.flags.intersects(TcpFlags::FIN) as u32
    }
}

/// A TCP header to emit, with no payload: the segments a host answers with
/// itself (RST, ACK). The only option is Timestamps (RFC 7323 section 3),
/// laid out NOP, NOP, TSopt as RFC 7323 appendix A suggests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpRepr {
    pub src_port: u16,
    pub dst_port: u16,
    pub seq: TcpSeqNumber,
    pub ack: TcpSeqNumber,
    pub flags: TcpFlags,
    pub window: u16,
    /// (TSval, TSecr).
    pub timestamps: Option<(u32, u32)>,
}

impl TcpRepr {
    /// Length of a header without options.
    pub const HEADER_LEN: usize = 20;

    /// Length of the header [`emit`](Self::emit) writes: 20, or 32 with
    /// timestamps.
    pub fn header_len(&self) -> usize {
        if self.timestamps.is_some() {
            32
        } else {
            Self::HEADER_LEN
        }
    }

    /// Writes the header into `buf[..header_len()]` with its checksum for an
    /// IPv4 pseudo-header from `src` to `dst`, and returns its length.
    /// Panics if `buf` is shorter.
    pub fn emit(&self, buf: &mut [u8], src: Ipv4Addr, dst: Ipv4Addr) -> usize {
        let len = self.header_len();
        let pseudo = checksum::pseudo_v4(src, dst, super::ip_proto::TCP, len as u16);
        self.emit_with_pseudo(buf, pseudo)
    }

    /// [`emit`](Self::emit) with the checksum over an IPv6 pseudo-header
    /// (RFC 8200 section 8.1) from `src` to `dst`.
    pub fn emit_v6(&self, buf: &mut [u8], src: &Ipv6Addr, dst: &Ipv6Addr) -> usize {
        let len = self.header_len();
        let pseudo = checksum::pseudo_v6(src, dst, super::ip_proto::TCP, len as u32);
        self.emit_with_pseudo(buf, pseudo)
    }

    fn emit_with_pseudo(&self, buf: &mut [u8], pseudo: u32) -> usize {
        let len = self.header_len();
        let t = &mut buf[..len];
        t[0..2].copy_from_slice(&self.src_port.to_be_bytes());
        t[2..4].copy_from_slice(&self.dst_port.to_be_bytes());
        t[4..8].copy_from_slice(&self.seq.0.to_be_bytes());
        t[8..12].copy_from_slice(&self.ack.0.to_be_bytes());
        t[12] = ((len / 4) as u8) << 4;
        t[13] = self.flags.0;
        t[14..16].copy_from_slice(&self.window.to_be_bytes());
        t[16..20].fill(0);
        if let Some((val, ecr)) = self.timestamps {
            // NOP, NOP, kind 8, length 10.
            t[20..24].copy_from_slice(&[1, 1, 8, 10]);
            t[24..28].copy_from_slice(&val.to_be_bytes());
            t[28..32].copy_from_slice(&ecr.to_be_bytes());
        }
        let c = checksum::finish(checksum::sum(t, pseudo));
        t[16..18].copy_from_slice(&c.to_be_bytes());
        len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_numbers_wrap_and_compare_in_serial_order() {
        let a = TcpSeqNumber(0xffff_fff0);
        let b = a + 0x20;
        assert_eq!(b, TcpSeqNumber(0x10));
        assert!(b > a);
        assert!(
            a < TcpSeqNumber(0x7fff_ffef),
            "less than half the space ahead"
        );
        assert!(
            a > TcpSeqNumber(0x7fff_fff1),
            "more than half the space ahead is behind"
        );
        assert_eq!(b - a, 0x20);
        assert_eq!(a - b, -0x20);
        assert_eq!(a.partial_cmp(&a), Some(Ordering::Equal));
    }

    #[test]
    fn emit_reads_back_through_etherparse_and_parse() {
        let (s, d) = (Ipv4Addr::new(203, 0, 113, 10), Ipv4Addr::new(192, 0, 0, 4));
        for ts in [None, Some((7u32, 0xfedc_ba98u32))] {
            let r = TcpRepr {
                src_port: 80,
                dst_port: 40000,
                seq: TcpSeqNumber(0xffff_fff0),
                ack: TcpSeqNumber(12345),
                flags: TcpFlags::ACK | TcpFlags::FIN,
                window: 4096,
                timestamps: ts,
            };
            let mut buf = [0u8; 40];
            let n = r.emit(&mut buf, s, d);
            assert_eq!(n, r.header_len());
            let h = etherparse::TcpHeaderSlice::from_slice(&buf[..n]).unwrap();
            assert_eq!(
                h.checksum(),
                h.to_header()
                    .calc_checksum_ipv4_raw(s.octets(), d.octets(), &[])
                    .unwrap()
            );
            assert!(h.ack() && h.fin() && !h.syn());
            assert_eq!((h.sequence_number(), h.window_size()), (0xffff_fff0, 4096));
            let found = h.options_iterator().find_map(|o| match o {
                Ok(etherparse::TcpOptionElement::Timestamp(v, e)) => Some((v, e)),
                _ => None,
            });
            assert_eq!(found, ts);
            let seg = TcpSegment::parse(&buf[..n]).unwrap();
            assert_eq!((seg.seq, seg.ack, seg.flags), (r.seq, r.ack, r.flags));
            assert_eq!((seg.header_len, seg.payload_len, seg.seq_len()), (n, 0, 1));
        }
    }

    /// An etherparse-built header with every field distinct (so that a byte
    /// read from the wrong offset shows), the flags set by name: RFC 9293
    /// section 3.1 puts them in byte 13, FIN the lowest bit, then SYN, RST,
    /// PSH, ACK, URG.
    #[test]
    fn parse_reads_every_field_of_an_etherparse_header() {
        let mut h = etherparse::TcpHeader::new(0x0102, 0x0304, 0x0506_0708, 0x1112);
        h.acknowledgment_number = 0x090a_0b0c;
        (h.syn, h.ack, h.urg) = (true, true, true);
        h.set_options(&[const { etherparse::TcpOptionElement::Noop }; 4])
            .unwrap();
        let mut buf = h.to_bytes().to_vec();
        assert_eq!(buf.len(), 24);
        buf.extend_from_slice(&[0xaa; 10]);
        let seg = TcpSegment::parse(&buf).unwrap();
        assert_eq!(
            seg,
            TcpSegment {
                src_port: 0x0102,
                dst_port: 0x0304,
                seq: TcpSeqNumber(0x0506_0708),
                ack: TcpSeqNumber(0x090a_0b0c),
                flags: TcpFlags::SYN | TcpFlags::ACK | TcpFlags::URG,
                window: 0x1112,
                header_len: 24,
                payload_len: 10,
            }
        );
        assert!(seg.flags.intersects(TcpFlags::SYN | TcpFlags::FIN));
        assert!(!seg
            .flags
            .intersects(TcpFlags::FIN | TcpFlags::RST | TcpFlags::PSH));
        assert_eq!(
            seg.flags
                .masked(TcpFlags::SYN | TcpFlags::RST | TcpFlags::ACK),
            TcpFlags::SYN | TcpFlags::ACK
        );
        assert_eq!(seg.flags.masked(TcpFlags::FIN), TcpFlags(0));
    }

    /// The flag constants against their RFC 9293 bit values, and `|` as a
    /// set union (a flag or-ed with itself is still set once).
    #[test]
    fn flags_are_the_rfc_9293_bits_and_combine_as_sets() {
        let all = [
            (TcpFlags::FIN, 0x01),
            (TcpFlags::SYN, 0x02),
            (TcpFlags::RST, 0x04),
            (TcpFlags::PSH, 0x08),
            (TcpFlags::ACK, 0x10),
            (TcpFlags::URG, 0x20),
        ];
        for (f, bit) in all {
            assert_eq!(f, TcpFlags(bit));
            assert_eq!(f | f, f);
            assert_eq!(TcpFlags(0x3f).masked(f), f);
            assert!(TcpFlags(0x3f).intersects(f));
            assert!(!TcpFlags(0x3f ^ bit).intersects(f));
        }
        assert_eq!(TcpFlags::SYN | TcpFlags::ACK, TcpFlags(0x12));
        assert_eq!(
            (TcpFlags::SYN | TcpFlags::ACK) | TcpFlags::ACK,
            TcpFlags(0x12)
        );
    }

    /// RFC 9293 section 3.4: SYN and FIN each take one sequence number, the
    /// payload one per byte.
    #[test]
    fn seq_len_counts_payload_syn_and_fin() {
        let mut t = [0u8; 30];
        t[12] = 5 << 4;
        for (flags, want) in [(0x10, 10), (0x12, 11), (0x11, 11), (0x13, 12), (0x04, 10)] {
            t[13] = flags;
            assert_eq!(TcpSegment::parse(&t).unwrap().seq_len(), want, "{flags:#x}");
        }
        t[13] = 0x02;
        assert_eq!(TcpSegment::parse(&t[..20]).unwrap().seq_len(), 1);
    }

    #[test]
    fn sequence_numbers_display_as_decimal() {
        assert_eq!(TcpSeqNumber(4_294_967_295).to_string(), "4294967295");
        assert_eq!(format!("{:>4}", TcpSeqNumber(7)), "   7");
    }

    #[test]
    fn parse_refuses_bad_offsets() {
        let mut t = [0u8; 40];
        t[12] = 10 << 4;
        assert_eq!(TcpSegment::parse(&t).unwrap().payload_len, 0);
        t[12] = 15 << 4;
        assert_eq!(TcpSegment::parse(&t), Err(WireError::Truncated));
        t[12] = 4 << 4;
        assert_eq!(TcpSegment::parse(&t), Err(WireError::Malformed));
        assert_eq!(TcpSegment::parse(&t[..19]), Err(WireError::Truncated));
    }

    #[test]
    fn ipv6_checksum_matches_etherparse() {
        let s: Ipv6Addr = "fd9c:7c5a:e1b6:464::1".parse().unwrap();
        let d: Ipv6Addr = "2001:db8:2::10".parse().unwrap();
        for ts in [None, Some((0x0102_0304, 0x0a0b_0c0d))] {
            let r = TcpRepr {
                src_port: 443,
                dst_port: 50000,
                seq: TcpSeqNumber(0),
                ack: TcpSeqNumber(1001),
                flags: TcpFlags::RST | TcpFlags::ACK,
                window: 0,
                timestamps: ts,
            };
            let mut buf = [0u8; 32];
            let n = r.emit_v6(&mut buf, &s, &d);
            let h = etherparse::TcpHeaderSlice::from_slice(&buf[..n])
                .unwrap()
                .to_header();
            assert_eq!(
                h.checksum,
                h.calc_checksum_ipv6_raw(s.octets(), d.octets(), &[])
                    .unwrap()
            );
            assert!(h.rst && h.ack);
        }
    }
}
