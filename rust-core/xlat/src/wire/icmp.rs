//! ICMPv4 (RFC 792) and ICMPv6 (RFC 4443) message types and codes, and the
//! one builder of ICMP error messages in the core.

use super::{ip_proto, Ipv4Repr, Ipv6Repr};
use crate::checksum;
use std::net::Ipv6Addr;

/// ICMPv4 types the core translates or sends (RFC 792; Source Quench and
/// Redirect only to recognise them as errors, RFC 1812 section 4.3.2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Icmpv4Message {
    EchoReply = 0,
    DstUnreachable = 3,
    SourceQuench = 4,
    Redirect = 5,
    EchoRequest = 8,
    TimeExceeded = 11,
    ParamProblem = 12,
}

impl Icmpv4Message {
    /// The message of type `t`, if it is one of these.
    pub fn from_type(t: u8) -> Option<Icmpv4Message> {
        use Icmpv4Message::*;
        Some(match t {
            0 => EchoReply,
            3 => DstUnreachable,
            4 => SourceQuench,
            5 => Redirect,
            8 => EchoRequest,
            11 => TimeExceeded,
            12 => ParamProblem,
            _ => return None,
        })
    }

    /// An error message: never to be answered with another error (RFC
    /// 1812 section 4.3.2.7).
    pub fn is_error(self) -> bool {
        !matches!(self, Icmpv4Message::EchoReply | Icmpv4Message::EchoRequest)
    }
}

/// ICMPv4 Destination Unreachable codes (RFC 792, RFC 1122 section
/// 3.2.2.1, RFC 1812 section 5.2.7.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Icmpv4DstUnreachable {
    NetUnreachable = 0,
    HostUnreachable = 1,
    ProtoUnreachable = 2,
    PortUnreachable = 3,
    /// Fragmentation Needed and DF set (RFC 1191: Next-Hop MTU in bytes 6-7).
    FragRequired = 4,
    SrcRouteFailed = 5,
    DstNetUnknown = 6,
    DstHostUnknown = 7,
    SrcHostIsolated = 8,
    NetProhibited = 9,
    HostProhibited = 10,
    NetUnreachToS = 11,
    HostUnreachToS = 12,
    /// Communication Administratively Prohibited: RFC 7915 sections 4.4's
    /// default refusal.
    CommProhibited = 13,
    HostPrecedenceViolation = 14,
    PrecedenceCutoff = 15,
}

/// ICMPv4 Time Exceeded codes (RFC 792).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Icmpv4TimeExceeded {
    TtlExpired = 0,
    FragReassembly = 1,
}

/// ICMPv4 Parameter Problem codes (RFC 792, RFC 1108).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Icmpv4ParamProblem {
    /// The pointer (byte 4) indicates the error.
    PointerIndicatesError = 0,
    MissingOption = 1,
    BadLength = 2,
}

/// ICMPv6 types the core translates or sends (RFC 4443).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Icmpv6Message {
    DstUnreachable = 1,
    PktTooBig = 2,
    TimeExceeded = 3,
    ParamProblem = 4,
    EchoRequest = 128,
    EchoReply = 129,
}

impl Icmpv6Message {
    /// Types 0 to 127 are errors (RFC 4443 section 2.1).
    pub fn is_error_type(t: u8) -> bool {
        t < 128
    }
}

/// ICMPv6 Destination Unreachable codes (RFC 4443 section 3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Icmpv6DstUnreachable {
    NoRoute = 0,
    /// Communication with destination administratively prohibited: RFC
    /// 7915 section 5.4's default refusal.
    AdminProhibited = 1,
    BeyondScope = 2,
    AddrUnreachable = 3,
    PortUnreachable = 4,
}

/// ICMPv6 Time Exceeded codes (RFC 4443 section 3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Icmpv6TimeExceeded {
    HopLimitExceeded = 0,
    FragReassembly = 1,
}

/// ICMPv6 Parameter Problem codes (RFC 4443 section 3.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Icmpv6ParamProblem {
    ErroneousHeaderField = 0,
    UnrecognizedNextHeader = 1,
    UnrecognizedOption = 2,
}

/// An ICMPv4 error message: type, code, the four bytes after the checksum
/// (pointer, length, MTU) and the start of the datagram it is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Icmpv4ErrorRepr<'a> {
    pub message: Icmpv4Message,
    pub code: u8,
    pub rest: [u8; 4],
    pub quote: &'a [u8],
}

impl Icmpv4ErrorRepr<'_> {
    /// RFC 1812 section 4.3.2.3: an ICMPv4 error is at most 576 bytes.
    pub const MAX_PACKET_LEN: usize = 576;

    /// Writes `ip` (protocol and payload length are set here) and the
    /// message into `buf`, quoting as much of `quote` as fits in 576 bytes
    /// and in `buf`. Returns the packet's length. Panics if `buf` is shorter
    /// than 28 bytes.
    pub fn emit(&self, ip: Ipv4Repr, buf: &mut [u8]) -> usize {
        let room = buf.len().min(Self::MAX_PACKET_LEN) - 28;
        let q = self.quote.len().min(room);
        let ip = Ipv4Repr {
            protocol: ip_proto::ICMP,
            payload_len: (8 + q) as u16,
            ..ip
        };
        let n = ip.emit(buf);
        let m = &mut buf[n..n + 8 + q];
        write_error(m, [self.message as u8, self.code], self.rest, self.quote, 0);
        n + m.len()
    }
}

/// An ICMPv6 error message: type, code, the 32 bits after the checksum (MTU,
/// pointer, RFC 4884 length) and the start of the packet it is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Icmpv6ErrorRepr<'a> {
    pub message: Icmpv6Message,
    pub code: u8,
    pub rest: u32,
    pub quote: &'a [u8],
}

impl Icmpv6ErrorRepr<'_> {
    /// RFC 4443 section 2.4 (c): an ICMPv6 error must not exceed the
    /// minimum IPv6 MTU, 1280 bytes.
    pub const MAX_PACKET_LEN: usize = 1280;

    /// Writes `ip` (next header and payload length are set here) and the
    /// message with its checksum into `buf`, quoting as much of `quote` as
    /// fits in 1280 bytes and in `buf`. Returns the packet's length. Panics
    /// if `buf` is shorter than 48 bytes.
    pub fn emit(&self, ip: Ipv6Repr, buf: &mut [u8]) -> usize {
        let room = buf.len().min(Self::MAX_PACKET_LEN) - 48;
        let q = self.quote.len().min(room);
        let ip = Ipv6Repr {
            next_header: ip_proto::ICMPV6,
            payload_len: (8 + q) as u16,
            ..ip
        };
        let n = ip.emit(buf);
        let m = &mut buf[n..n + 8 + q];
        let pseudo = checksum::pseudo_v6(&ip.src, &ip.dst, ip_proto::ICMPV6, m.len() as u32);
        let rest = self.rest.to_be_bytes();
        write_error(m, [self.message as u8, self.code], rest, self.quote, pseudo);
        n + m.len()
    }
}

/// Fills `m` (8 bytes plus the part of `quote` that fits) with an error
/// message: type and code, checksum over `m` and the pseudo-header sum
/// `pseudo` (0 for ICMPv4), `rest`, the quote.
fn write_error(m: &mut [u8], type_code: [u8; 2], rest: [u8; 4], quote: &[u8], pseudo: u32) {
    let q = m.len() - 8;
    m[..2].copy_from_slice(&type_code);
    m[2..4].fill(0);
    m[4..8].copy_from_slice(&rest);
    m[8..].copy_from_slice(&quote[..q]);
    let c = checksum::finish(checksum::sum(m, pseudo));
    m[2..4].copy_from_slice(&c.to_be_bytes());
}

/// Computes and stores the checksum of the ICMPv4 message `msg` (type
/// first, RFC 792: over the whole message, no pseudo-header).
pub fn fill_icmpv4_checksum(msg: &mut [u8]) {
    msg[2..4].fill(0);
    let c = checksum::finish(checksum::sum(msg, 0));
    msg[2..4].copy_from_slice(&c.to_be_bytes());
}

/// Computes and stores the checksum of the ICMPv6 message `msg` (type
/// first) sent from `src` to `dst`: over the IPv6 pseudo-header and the
/// whole message (RFC 4443 section 2.3).
pub fn fill_icmpv6_checksum(msg: &mut [u8], src: &Ipv6Addr, dst: &Ipv6Addr) {
    msg[2..4].fill(0);
    let pseudo = checksum::pseudo_v6(src, dst, ip_proto::ICMPV6, msg.len() as u32);
    let c = checksum::finish(checksum::sum(msg, pseudo));
    msg[2..4].copy_from_slice(&c.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    /// RFC 792's table of types, written out: 0 Echo Reply, 3 Destination
    /// Unreachable, 4 Source Quench, 5 Redirect, 8 Echo, 11 Time Exceeded,
    /// 12 Parameter Problem. Every other type is none of these.
    #[test]
    fn icmpv4_message_from_type_is_rfc_792s_table() {
        use Icmpv4Message::*;
        let known = [
            (0u8, EchoReply),
            (3, DstUnreachable),
            (4, SourceQuench),
            (5, Redirect),
            (8, EchoRequest),
            (11, TimeExceeded),
            (12, ParamProblem),
        ];
        for t in 0..=255u8 {
            let want = known.iter().find(|(k, _)| *k == t).map(|&(_, m)| m);
            assert_eq!(Icmpv4Message::from_type(t), want, "type {t}");
            if let Some(m) = want {
                assert_eq!(m as u8, t);
            }
        }
    }

    /// The checksum `fill_icmpv4_checksum` stores is the one etherparse
    /// computes for the same Echo Request (RFC 792: over the whole message,
    /// no pseudo-header), whatever was in the field before, and for an odd
    /// length too.
    #[test]
    fn fill_icmpv4_checksum_matches_etherparse() {
        for data in [&b"ping"[..], &b"odd"[..], &[0xffu8; 40][..]] {
            let echo = etherparse::Icmpv4Type::EchoRequest(etherparse::IcmpEchoHeader {
                id: 0x1234,
                seq: 0xfedc,
            });
            let want = etherparse::Icmpv4Header::with_checksum(echo, data).checksum;
            let mut msg = vec![8, 0, 0xab, 0xcd, 0x12, 0x34, 0xfe, 0xdc];
            msg.extend_from_slice(data);
            fill_icmpv4_checksum(&mut msg);
            assert_eq!(u16::from_be_bytes([msg[2], msg[3]]), want, "{data:?}");
            assert_eq!(&msg[4..8], &[0x12, 0x34, 0xfe, 0xdc]);
            assert_eq!(&msg[8..], data);
        }
    }

    #[test]
    fn icmpv4_error_is_at_most_576_bytes_and_verifies() {
        let quote = [0xabu8; 1000];
        let e = Icmpv4ErrorRepr {
            message: Icmpv4Message::DstUnreachable,
            code: Icmpv4DstUnreachable::CommProhibited as u8,
            rest: [0; 4],
            quote: &quote,
        };
        let ip = Ipv4Repr::new(
            Ipv4Addr::new(192, 0, 0, 1),
            Ipv4Addr::new(192, 0, 0, 4),
            0,
            0,
            7,
        );
        let mut buf = [0u8; 2000];
        let n = e.emit(ip, &mut buf);
        assert_eq!(n, 576);
        let s = etherparse::Ipv4Slice::from_slice(&buf[..n]).unwrap();
        let h = s.header().to_header();
        assert_eq!(h.header_checksum, h.calc_header_checksum());
        assert_eq!((h.protocol.0, h.identification, h.time_to_live), (1, 7, 64));
        let m = s.payload().payload;
        assert_eq!(&m[..2], &[3, 13]);
        assert_eq!(crate::checksum::fold(crate::checksum::sum(m, 0)), 0xffff);
        // A short buffer quotes less instead of panicking.
        assert_eq!(e.emit(ip, &mut buf[..100]), 100);
    }

    #[test]
    fn icmpv6_error_is_at_most_1280_bytes_and_verifies() {
        let quote = [0xcdu8; 2000];
        let e = Icmpv6ErrorRepr {
            message: Icmpv6Message::PktTooBig,
            code: 0,
            rest: 1420,
            quote: &quote,
        };
        let ip = Ipv6Repr {
            src: "2001:db8::1".parse().unwrap(),
            dst: "2001:db8::2".parse().unwrap(),
            next_header: 0,
            payload_len: 0,
            hop_limit: 64,
            traffic_class: 0,
        };
        let mut buf = [0u8; 1500];
        let n = e.emit(ip, &mut buf);
        assert_eq!(n, 1280);
        let s = etherparse::Ipv6Slice::from_slice(&buf[..n]).unwrap();
        let m = s.payload().payload;
        assert_eq!(s.header().payload_length(), 1240);
        assert_eq!(&m[..2], &[2, 0]);
        assert_eq!(&m[4..8], &1420u32.to_be_bytes());
        assert_eq!(&m[8..], &quote[..1232]);
        let pseudo = crate::checksum::pseudo_v6(&ip.src, &ip.dst, 58, m.len() as u32);
        assert_eq!(
            crate::checksum::fold(crate::checksum::sum(m, pseudo)),
            0xffff
        );
    }

    #[test]
    fn icmpv6_checksum_matches_etherparse() {
        let src: Ipv6Addr = "2001:db8:2::10".parse().unwrap();
        let dst: Ipv6Addr = "fd9c:7c5a:e1b6:464::1".parse().unwrap();
        // An echo reply, identifier 0x1234, sequence 7, 5 bytes of data.
        let mut msg = [
            129u8, 0, 0xaa, 0xbb, 0x12, 0x34, 0, 7, b'h', b'e', b'l', b'l', b'o',
        ];
        fill_icmpv6_checksum(&mut msg, &src, &dst);
        let h = etherparse::Icmpv6Header::new(etherparse::Icmpv6Type::EchoReply(
            etherparse::IcmpEchoHeader { id: 0x1234, seq: 7 },
        ));
        let want = h
            .icmp_type
            .calc_checksum(src.octets(), dst.octets(), &msg[8..])
            .unwrap();
        assert_eq!(u16::from_be_bytes([msg[2], msg[3]]), want);
    }
}
