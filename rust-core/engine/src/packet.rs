//! The engine's packets, built and parsed with `clat_xlat::wire` (the one
//! packet layer of the core): the IPv4 view the data path dispatches on,
//! the packets the engine writes to the TUN itself (UDP and echo replies
//! from upstream, RSTs, ACKs, ICMPv4 errors), the TCP reset rule, and the
//! RFC 6052 address mapping.
//!
//! Everything works in place on caller-provided buffers: no allocation.

use clat_xlat::wire::{
    Icmpv4DstUnreachable, Icmpv4ErrorRepr, Icmpv4Message, TcpFlags, TcpRepr, TcpSegment,
    TcpSeqNumber, UdpRepr, WireError,
};
use ipnet::Ipv6Net;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4};

pub use clat_xlat::checksum;
pub use clat_xlat::wire::ip_proto::{ICMP as PROTO_ICMP, TCP as PROTO_TCP, UDP as PROTO_UDP};
pub use clat_xlat::wire::{self, Ipv4Repr};

/// A validated IPv4 header and the length of its header with options:
/// the datagram is `p[..total_len()]`, its payload `p[ihl..total_len()]`.
/// Derefs to the header's fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ip4 {
    pub repr: Ipv4Repr,
    pub ihl: usize,
}

impl std::ops::Deref for Ip4 {
    type Target = Ipv4Repr;
    fn deref(&self) -> &Ipv4Repr {
        &self.repr
    }
}

impl Ip4 {
    /// Total Length: header with options plus payload.
    pub fn total_len(&self) -> usize {
        self.ihl + self.repr.payload_len as usize
    }
}

/// Why a packet from the TUN was not parseable (the two drop counters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    NotIpv4,
    Malformed,
}

/// Validates an IPv4 header (version, lengths, header checksum) with
/// [`Ipv4Repr::parse`].
pub fn parse_ip4(p: &[u8]) -> Result<Ip4, ParseError> {
    match Ipv4Repr::parse(p) {
        Ok((repr, ihl)) => Ok(Ip4 { repr, ihl }),
        Err(WireError::WrongVersion) => Err(ParseError::NotIpv4),
        Err(_) => Err(ParseError::Malformed),
    }
}

/// TTL and TOS of an IPv4 packet the engine writes for a datagram that
/// came from upstream: the hop limit and traffic class it arrived with
/// (RFC 7915 section 5.1), or [`Hop::HOST`]'s when the kernel did not say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hop {
    pub ttl: u8,
    pub tos: u8,
}

impl Hop {
    /// What a host sends: TTL 64, TOS 0.
    pub const HOST: Hop = Hop { ttl: 64, tos: 0 };

    /// From an IPv6 datagram's hop limit and traffic class, each if known.
    pub fn from_ipv6(hop_limit: Option<u8>, tclass: Option<u8>) -> Hop {
        Hop {
            ttl: hop_limit.unwrap_or(Hop::HOST.ttl),
            tos: tclass.unwrap_or(Hop::HOST.tos),
        }
    }

    fn header(self, src: Ipv4Addr, dst: Ipv4Addr, proto: u8, len: u16, ident: u16) -> Ipv4Repr {
        Ipv4Repr {
            ttl: self.ttl,
            tos: self.tos,
            ..Ipv4Repr::new(src, dst, proto, len, ident)
        }
    }
}

/// Heads the `len` payload bytes already at `buf[28..]` with UDP and IPv4
/// headers (Identification `ident`, TTL 64, DF clear) from `src` to `dst`.
/// Returns the packet's length. `buf` holds at least `28 + len` bytes.
pub fn emit_udp4(
    buf: &mut [u8],
    ends: (SocketAddrV4, SocketAddrV4),
    len: usize,
    ident: u16,
) -> usize {
    emit_udp4_hop(buf, ends, len, ident, Hop::HOST)
}

/// [`emit_udp4`] with the TTL and TOS of `hop`.
pub fn emit_udp4_hop(
    buf: &mut [u8],
    (src, dst): (SocketAddrV4, SocketAddrV4),
    len: usize,
    ident: u16,
    hop: Hop,
) -> usize {
    let udp = UdpRepr {
        src_port: src.port(),
        dst_port: dst.port(),
    };
    let n = udp.emit(&mut buf[Ipv4Repr::HEADER_LEN..], *src.ip(), *dst.ip(), len);
    hop.header(*src.ip(), *dst.ip(), PROTO_UDP, n as u16, ident)
        .emit(buf)
        + n
}

/// Heads the ICMPv4 message (`len` bytes, checksum field ignored) already
/// at `buf[20..]` with an IPv4 header from `src` to `dst` (TTL 64) and
/// fills in its checksum. Returns the packet's length.
pub fn emit_icmp4(buf: &mut [u8], src: Ipv4Addr, dst: Ipv4Addr, len: usize, ident: u16) -> usize {
    emit_icmp4_hop(buf, src, dst, len, ident, Hop::HOST)
}

/// [`emit_icmp4`] with the TTL and TOS of `hop`.
pub fn emit_icmp4_hop(
    buf: &mut [u8],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    len: usize,
    ident: u16,
    hop: Hop,
) -> usize {
    let h = Ipv4Repr::HEADER_LEN;
    clat_xlat::wire::icmp::fill_icmpv4_checksum(&mut buf[h..h + len]);
    hop.header(src, dst, PROTO_ICMP, len as u16, ident)
        .emit(buf)
        + len
}

/// Writes an IPv4 packet from `src` to `dst` holding the TCP header `tcp`
/// (no payload; Identification 0, TTL 64). Returns the packet's length.
pub fn emit_tcp4(buf: &mut [u8], src: Ipv4Addr, dst: Ipv4Addr, tcp: &TcpRepr) -> usize {
    let n = tcp.emit(&mut buf[Ipv4Repr::HEADER_LEN..], src, dst);
    Ipv4Repr::new(src, dst, PROTO_TCP, n as u16, 0).emit(buf) + n
}

/// The ICMPv4 Destination Unreachable with `code` from `ip`'s destination
/// back to its source, quoting its header and the first 8 bytes of its
/// payload (RFC 792). Returns the packet's length.
pub fn emit_unreachable(
    buf: &mut [u8],
    ip: &Ip4,
    p: &[u8],
    code: Icmpv4DstUnreachable,
    ident: u16,
) -> usize {
    let msg = (Icmpv4Message::DstUnreachable, code as u8);
    emit_error_about(buf, ip, p, msg, ip.dst, ident)
}

/// The ICMPv4 error `(message, code)` from `src` to the source of the
/// packet `ip`/`p`, quoting its header and the first 8 bytes of its
/// payload (RFC 792). Returns the packet's length.
pub fn emit_error_about(
    buf: &mut [u8],
    ip: &Ip4,
    p: &[u8],
    (message, code): (Icmpv4Message, u8),
    src: Ipv4Addr,
    ident: u16,
) -> usize {
    let e = Icmpv4ErrorRepr {
        message,
        code,
        rest: [0; 4],
        quote: &p[..p.len().min(ip.ihl + 8)],
    };
    e.emit(Ipv4Repr::new(src, ip.src, PROTO_ICMP, 0, ident), buf)
}

/// The timestamps option (TSval, TSecr) of the TCP segment `t`, read with
/// etherparse; `None` without one or when the options do not parse. Only
/// needed for the segments the engine answers itself.
pub fn tcp_timestamps(t: &[u8]) -> Option<(u32, u32)> {
    let h = etherparse::TcpHeaderSlice::from_slice(t).ok()?;
    let found = h.options_iterator().find_map(|o| match o {
        Ok(etherparse::TcpOptionElement::Timestamp(val, ecr)) => Some((val, ecr)),
        _ => None,
    });
    found
}

/// The RST a host sends in answer to segment `seg` (RFC 9293 section
/// 3.10.7.1, "reset generation"), from `seg`'s destination back to its
/// source; `None` for a RST or a segment too short to answer.
pub fn emit_rst_for(buf: &mut [u8], ip: &Ip4, seg: &[u8]) -> Option<usize> {
    let s = TcpSegment::parse(seg).ok()?;
    if s.flags.intersects(TcpFlags::RST) {
        return None;
    }
    let (seq, ack, flags) = if s.flags.intersects(TcpFlags::ACK) {
        (s.ack, TcpSeqNumber(0), TcpFlags::RST)
    } else {
        (
            TcpSeqNumber(0),
            s.seq + s.seq_len(),
            TcpFlags::RST | TcpFlags::ACK,
        )
    };
    let rst = TcpRepr {
        src_port: s.dst_port,
        dst_port: s.src_port,
        seq,
        ack,
        flags,
        window: 0,
        timestamps: None,
    };
    Some(emit_tcp4(buf, ip.dst, ip.src, &rst))
}

/// RFC 6052 section 2.2: the IPv6 address for `v4` under `prefix`
/// (clat-xlat's implementation, so the engine and the translator agree).
#[inline]
pub fn embed(prefix: &Ipv6Net, v4: Ipv4Addr) -> Ipv6Addr {
    clat_xlat::addr6052::embed(prefix, v4)
}

/// RFC 6052 section 2.3: the IPv4 address inside `v6`, if `v6` is under
/// `prefix` (and its u-octet is zero).
#[inline]
pub fn extract(prefix: &Ipv6Net, v6: &Ipv6Addr) -> Option<Ipv4Addr> {
    clat_xlat::addr6052::extract(prefix, *v6)
}

/// Global unicast (RFC 6890): what a WKP NAT64 may carry (RFC 6052 s3.1).
#[inline]
pub fn is_global_v4(a: Ipv4Addr) -> bool {
    !clat_xlat::addr6052::is_non_global(a)
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{PacketHeaders, TransportHeader};

    fn a(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    fn syn(buf: &mut [u8], src: (&str, u16), dst: (&str, u16), seq: u32) -> usize {
        let t = TcpRepr {
            src_port: src.1,
            dst_port: dst.1,
            seq: TcpSeqNumber(seq),
            ack: TcpSeqNumber(0),
            flags: TcpFlags::SYN,
            window: 0,
            timestamps: None,
        };
        emit_tcp4(buf, a(src.0), a(dst.0), &t)
    }

    fn v4(h: &PacketHeaders<'_>) -> etherparse::Ipv4Header {
        match h.net.clone().unwrap() {
            etherparse::NetHeaders::Ipv4(ip, _) => ip,
            _ => panic!("not IPv4"),
        }
    }

    #[test]
    fn udp_packets_checksum_like_etherparse() {
        let mut buf = [0u8; 2000];
        for len in [0usize, 1, 2, 3, 17, 1000, 1472] {
            for (i, b) in buf[28..28 + len].iter_mut().enumerate() {
                *b = (i * 7 + len) as u8;
            }
            let ends = (
                SocketAddrV4::new(a("203.0.113.10"), 7),
                SocketAddrV4::new(a("192.0.0.4"), 40000),
            );
            let n = emit_udp4(&mut buf, ends, len, 9);
            let h = PacketHeaders::from_ip_slice(&buf[..n]).unwrap();
            let ip = v4(&h);
            assert_eq!(ip.header_checksum, ip.calc_header_checksum());
            assert_eq!((ip.identification, ip.time_to_live), (9, 64));
            match h.transport.unwrap() {
                TransportHeader::Udp(u) => {
                    assert_eq!(u.checksum, u.calc_checksum_ipv4(&ip, &buf[28..n]).unwrap());
                    assert_eq!(u.length as usize, 8 + len);
                }
                _ => panic!("not udp"),
            }
            assert_eq!(parse_ip4(&buf[..n]).unwrap().total_len(), n);
        }
    }

    #[test]
    fn rst_for_syn_acks_the_syn_and_for_ack_takes_its_number() {
        let mut seg = [0u8; 40];
        syn(&mut seg, ("192.0.0.4", 5555), ("8.8.8.8", 80), 1000);
        let ip = parse_ip4(&seg).unwrap();
        let mut out = [0u8; 64];
        let n = emit_rst_for(&mut out, &ip, &seg[20..]).unwrap();
        let h = PacketHeaders::from_ip_slice(&out[..n]).unwrap();
        let ipv4 = v4(&h);
        assert_eq!(ipv4.source, [8, 8, 8, 8]);
        let Some(TransportHeader::Tcp(t)) = h.transport else {
            panic!()
        };
        assert!(t.rst && t.ack);
        assert_eq!((t.sequence_number, t.acknowledgment_number), (0, 1001));
        assert_eq!(t.destination_port, 5555);
        assert_eq!(t.checksum, t.calc_checksum_ipv4(&ipv4, &[]).unwrap());
        // An ACK is answered by a RST with its acknowledgment number.
        seg[20 + 13] = TcpFlags::ACK.0;
        seg[28..32].copy_from_slice(&77u32.to_be_bytes());
        let n = emit_rst_for(&mut out, &ip, &seg[20..]).unwrap();
        let h = PacketHeaders::from_ip_slice(&out[..n]).unwrap();
        let Some(TransportHeader::Tcp(t)) = h.transport else {
            panic!()
        };
        assert!(t.rst && !t.ack);
        assert_eq!(t.sequence_number, 77);
        // A RST is never answered.
        seg[20 + 13] = TcpFlags::RST.0;
        assert_eq!(emit_rst_for(&mut out, &ip, &seg[20..]), None);
    }

    #[test]
    fn unreachable_quotes_header_and_8_bytes() {
        let mut quote = [0u8; 40];
        syn(&mut quote, ("192.0.0.4", 1), ("10.0.0.1", 2), 3);
        let ip = parse_ip4(&quote).unwrap();
        let mut buf = [0u8; 600];
        let n = emit_unreachable(
            &mut buf,
            &ip,
            &quote,
            Icmpv4DstUnreachable::CommProhibited,
            1,
        );
        assert_eq!(n, 20 + 8 + 28);
        let out = parse_ip4(&buf[..n]).unwrap();
        assert_eq!((out.src, out.dst), (a("10.0.0.1"), a("192.0.0.4")));
        assert!(checksum::verify(&buf[20..n], 0));
        assert_eq!(&buf[20..22], &[3, 13]);
        assert_eq!(&buf[28..n], &quote[..28]);
    }

    #[test]
    fn hop_sets_ttl_and_tos_of_udp_and_icmp() {
        let mut buf = [0u8; 64];
        let ends = (
            SocketAddrV4::new(a("203.0.113.10"), 7),
            SocketAddrV4::new(a("192.0.0.4"), 40000),
        );
        let hop = Hop::from_ipv6(Some(61), Some(0xb9));
        let n = emit_udp4_hop(&mut buf, ends, 4, 3, hop);
        let ip = v4(&PacketHeaders::from_ip_slice(&buf[..n]).unwrap());
        assert_eq!(
            (ip.time_to_live, ip.dscp.value(), ip.ecn.value()),
            (61, 46, 1)
        );
        assert_eq!(ip.header_checksum, ip.calc_header_checksum());
        let n = emit_icmp4_hop(&mut buf, a("203.0.113.10"), a("192.0.0.4"), 8, 5, hop);
        let ip = v4(&PacketHeaders::from_ip_slice(&buf[..n]).unwrap());
        assert_eq!(
            (ip.time_to_live, ip.dscp.value(), ip.ecn.value()),
            (61, 46, 1)
        );
        assert_eq!(Hop::from_ipv6(None, None), Hop::HOST);
    }

    #[test]
    fn time_exceeded_comes_from_the_given_source() {
        let mut quote = [0u8; 40];
        syn(&mut quote, ("192.0.0.4", 1), ("10.0.0.1", 2), 3);
        let ip = parse_ip4(&quote).unwrap();
        let mut buf = [0u8; 600];
        let msg = (Icmpv4Message::TimeExceeded, 0);
        let n = emit_error_about(&mut buf, &ip, &quote, msg, a("192.0.0.8"), 1);
        let out = parse_ip4(&buf[..n]).unwrap();
        assert_eq!((out.src, out.dst), (a("192.0.0.8"), a("192.0.0.4")));
        assert_eq!(&buf[20..22], &[11, 0]);
        assert!(checksum::verify(&buf[20..n], 0));
        assert_eq!(&buf[28..n], &quote[..28]);
    }

    #[test]
    fn echo_reply_checksum_verifies() {
        let mut buf = [0u8; 64];
        buf[20..32].copy_from_slice(&[0, 0, 0xff, 0xff, 0, 7, 0, 1, b'p', b'o', b'n', b'g']);
        let n = emit_icmp4(&mut buf, a("203.0.113.10"), a("192.0.0.4"), 12, 5);
        assert_eq!(n, 32);
        assert!(checksum::verify(&buf[20..n], 0));
        assert_eq!(parse_ip4(&buf[..n]).unwrap().protocol, PROTO_ICMP);
    }

    #[test]
    fn rfc6052_embed_extract_all_lengths() {
        // RFC 6052 section 2.4 table.
        let v4 = a("192.0.2.33");
        for (p, want) in [
            ("2001:db8::/32", "2001:db8:c000:221::"),
            ("2001:db8:100::/40", "2001:db8:1c0:2:21::"),
            ("2001:db8:122::/48", "2001:db8:122:c000:2:2100::"),
            ("2001:db8:122:300::/56", "2001:db8:122:3c0:0:221::"),
            ("2001:db8:122:344::/64", "2001:db8:122:344:c0:2:2100:0"),
            ("2001:db8:122:344::/96", "2001:db8:122:344::192.0.2.33"),
        ] {
            let net: Ipv6Net = p.parse().unwrap();
            let v6 = embed(&net, v4);
            assert_eq!(v6, want.parse::<Ipv6Addr>().unwrap(), "{p}");
            assert_eq!(extract(&net, &v6), Some(v4));
        }
        let net: Ipv6Net = "2001:db8:64::/96".parse().unwrap();
        assert_eq!(extract(&net, &"2001:db8:65::1".parse().unwrap()), None);
    }

    #[test]
    fn global_classification() {
        assert!(is_global_v4(a("8.8.8.8")));
        for s in [
            "10.1.1.1",
            "192.168.0.1",
            "127.0.0.1",
            "203.0.113.10",
            "100.64.0.1",
            "224.0.0.1",
            "169.254.1.1",
        ] {
            assert!(!is_global_v4(a(s)), "{s}");
        }
    }

    #[test]
    fn parse_rejects_garbage() {
        assert_eq!(parse_ip4(&[]), Err(ParseError::Malformed));
        assert_eq!(parse_ip4(&[0x60; 40]), Err(ParseError::NotIpv4));
        let mut p = [0u8; 40];
        syn(&mut p, ("192.0.0.4", 1), ("1.1.1.1", 2), 0);
        p[10] ^= 1;
        assert_eq!(parse_ip4(&p), Err(ParseError::Malformed));
        assert_eq!(parse_ip4(&p[..30]), Err(ParseError::Malformed));
    }
}
