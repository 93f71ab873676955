//! The engine's packets, built and parsed with `clat_xlat::wire` (the one
//! packet layer of the core): the IPv4 view the data path dispatches on,
//! the packets the engine writes to the TUN itself (UDP and echo replies
//! from upstream, RSTs, ACKs, ICMPv4 errors), the TCP reset rule, and the
//! RFC 6052 address mapping.
//!
//! Everything works in place on caller-provided buffers: no allocation.

use clat_xlat::wire::{
    Icmpv4DstUnreachable, Icmpv4ErrorRepr, Icmpv4Message, Icmpv6DstUnreachable, Icmpv6ErrorRepr,
    Icmpv6Message, TcpFlags, TcpRepr, TcpSegment, TcpSeqNumber, UdpRepr, WireError,
};
use ipnet::Ipv6Net;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};

pub use clat_xlat::checksum;
pub use clat_xlat::wire::ip_proto::{
    ICMP as PROTO_ICMP, ICMPV6 as PROTO_ICMPV6, TCP as PROTO_TCP, UDP as PROTO_UDP,
};
pub use clat_xlat::wire::{self, Ipv4Repr, Ipv6Repr};

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

/// Why a packet from the TUN was not parseable (each has its drop
/// counter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    /// [`parse_ip4`] was given something else (`drop_not_ipv4`).
    NotIpv4,
    /// Shorter than its headers say, a bad header checksum or an
    /// impossible field (`drop_malformed`).
    Malformed,
    /// An IPv6 fragment (offset or M set; RFC 8200 section 4.5): read it
    /// with [`parse_fragment6`] and reassemble it (`crate::frag`). An
    /// atomic fragment (offset 0, M clear, RFC 6946) is a whole packet and
    /// is carried as one.
    Fragment,
    /// A Routing header with Segments Left above 0 (RFC 8200 section 4.4):
    /// the packet's destination is not its final one, and a host that is
    /// not that node has no business carrying it (`drop_malformed`).
    UnexpiredRouting,
}

/// What the data path reads of an IP header of either family: addresses,
/// where the upper layer starts and which it is. The TCP, UDP and echo
/// handling is written once against this; only parsing and emitting the
/// headers differ per family.
pub trait IpView {
    fn src_ip(&self) -> IpAddr;
    fn dst_ip(&self) -> IpAddr;
    /// Offset of the upper-layer header (TCP, UDP, ICMP) in the packet.
    fn upper_offset(&self) -> usize;
    /// The upper-layer protocol (IPv4 Protocol, or IPv6 Next Header after
    /// the extension headers).
    fn upper_proto(&self) -> u8;
    /// Length of the whole packet (its header's length fields).
    fn packet_len(&self) -> usize;
}

impl IpView for Ip4 {
    fn src_ip(&self) -> IpAddr {
        IpAddr::V4(self.repr.src)
    }
    fn dst_ip(&self) -> IpAddr {
        IpAddr::V4(self.repr.dst)
    }
    fn upper_offset(&self) -> usize {
        self.ihl
    }
    fn upper_proto(&self) -> u8 {
        self.repr.protocol
    }
    fn packet_len(&self) -> usize {
        self.total_len()
    }
}

/// A validated IP header of either family: what the TCP path takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpHdr {
    V4(Ip4),
    V6(Ip6),
}

impl IpView for IpHdr {
    fn src_ip(&self) -> IpAddr {
        match self {
            IpHdr::V4(i) => i.src_ip(),
            IpHdr::V6(i) => i.src_ip(),
        }
    }
    fn dst_ip(&self) -> IpAddr {
        match self {
            IpHdr::V4(i) => i.dst_ip(),
            IpHdr::V6(i) => i.dst_ip(),
        }
    }
    fn upper_offset(&self) -> usize {
        match self {
            IpHdr::V4(i) => i.upper_offset(),
            IpHdr::V6(i) => i.upper_offset(),
        }
    }
    fn upper_proto(&self) -> u8 {
        match self {
            IpHdr::V4(i) => i.upper_proto(),
            IpHdr::V6(i) => i.upper_proto(),
        }
    }
    fn packet_len(&self) -> usize {
        match self {
            IpHdr::V4(i) => i.packet_len(),
            IpHdr::V6(i) => i.packet_len(),
        }
    }
}

/// A validated IPv6 packet from the TUN (RFC 8200): the fixed header's
/// fields and where the upper layer starts after Hop-by-Hop, Destination
/// Options, expired Routing and atomic Fragment headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ip6 {
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    /// The upper-layer protocol (Next Header of the last extension header).
    pub proto: u8,
    pub hop_limit: u8,
    pub traffic_class: u8,
    /// Bytes of the fixed header and the extension headers: the upper
    /// layer is `p[hdr_len..total_len]`.
    pub hdr_len: usize,
    /// Where the Next Header field naming `proto` is: the pointer of a
    /// Parameter Problem about it (RFC 4443 section 3.4).
    pub proto_at: usize,
    /// 40 plus Payload Length.
    pub total_len: usize,
}

impl IpView for Ip6 {
    fn src_ip(&self) -> IpAddr {
        IpAddr::V6(self.src)
    }
    fn dst_ip(&self) -> IpAddr {
        IpAddr::V6(self.dst)
    }
    fn upper_offset(&self) -> usize {
        self.hdr_len
    }
    fn upper_proto(&self) -> u8 {
        self.proto
    }
    fn packet_len(&self) -> usize {
        self.total_len
    }
}

/// Validates an IPv6 packet (version, Payload Length within `p`) and walks
/// its extension headers with the translator's walker
/// (`clat_xlat::headers::parse_v6`, one implementation of RFC 8200
/// section 4's chain): errors are [`ParseError::Malformed`] (also for a
/// jumbogram, which no TUN carries), [`ParseError::Fragment`],
/// [`ParseError::UnexpiredRouting`]; a version other than 6 is
/// [`ParseError::Malformed`] too (the caller dispatches on the version).
pub fn parse_ip6(p: &[u8]) -> Result<Ip6, ParseError> {
    let v = clat_xlat::headers::parse_v6(p, false).map_err(|_| ParseError::Malformed)?;
    if v.is_fragment() {
        return Err(ParseError::Fragment);
    }
    if v.unexpired_routing.is_some() {
        return Err(ParseError::UnexpiredRouting);
    }
    Ok(Ip6 {
        src: v.src,
        dst: v.dst,
        proto: v.proto,
        hop_limit: v.hop,
        traffic_class: v.tc,
        hdr_len: v.hdrs.len(),
        proto_at: v.proto_at,
        total_len: 40 + v.payload_len as usize,
    })
}

/// An IPv6 fragment from the TUN (RFC 8200 section 4.5), as its
/// reassembly needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fragment6<'a> {
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    /// The Fragment header's 32-bit Identification.
    pub ident: u32,
    /// Where `data` starts in the fragmentable part, in bytes.
    pub offset: usize,
    /// The M flag: more fragments follow.
    pub more: bool,
    /// The unfragmentable part: the fixed header and the extension headers
    /// before the Fragment header.
    pub unfragmentable: &'a [u8],
    /// Where in `unfragmentable` the Next Header field naming the Fragment
    /// header is.
    pub named_at: usize,
    /// The Fragment header's Next Header: what the fragmentable part starts
    /// with (meaningful in the first fragment).
    pub next_header: u8,
    /// This fragment's bytes of the fragmentable part.
    pub data: &'a [u8],
}

/// Reads an IPv6 fragment ([`parse_ip6`] said [`ParseError::Fragment`])
/// with the translator's extension-header walker. Errors:
/// [`ParseError::Malformed`] as for [`parse_ip6`], and for a packet that
/// is not a fragment (an atomic fragment is a whole packet, RFC 6946).
pub fn parse_fragment6(p: &[u8]) -> Result<Fragment6<'_>, ParseError> {
    let v = clat_xlat::headers::parse_v6(p, false).map_err(|_| ParseError::Malformed)?;
    let f = match v.frag {
        Some(f) if v.is_fragment() => f,
        _ => return Err(ParseError::Malformed),
    };
    let end = 40 + v.payload_len as usize;
    let id = &p[f.at + 4..f.at + 8];
    Ok(Fragment6 {
        src: v.src,
        dst: v.dst,
        ident: u32::from_be_bytes([id[0], id[1], id[2], id[3]]),
        offset: usize::from(f.off) * 8,
        more: f.more,
        unfragmentable: &p[..f.at],
        named_at: f.named_at,
        next_header: p[f.at],
        data: &p[f.at + 8..end],
    })
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

    /// The IPv6 header with this hop limit (`ttl`) and traffic class
    /// (`tos`) for `len` payload bytes.
    fn header6(self, src: Ipv6Addr, dst: Ipv6Addr, next_header: u8, len: usize) -> Ipv6Repr {
        Ipv6Repr {
            src,
            dst,
            next_header,
            payload_len: len as u16,
            hop_limit: self.ttl,
            traffic_class: self.tos,
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

/// Heads the `len` payload bytes already at `buf[48..]` with UDP and IPv6
/// headers from `src` to `dst`, hop limit and traffic class from `hop`
/// (its `ttl` and `tos`), the UDP checksum over the IPv6 pseudo-header
/// (mandatory, RFC 8200 section 8.1). Returns the packet's length. `buf`
/// holds at least `48 + len` bytes.
pub fn emit_udp6_hop(
    buf: &mut [u8],
    (src, dst): (SocketAddrV6, SocketAddrV6),
    len: usize,
    hop: Hop,
) -> usize {
    let udp = UdpRepr {
        src_port: src.port(),
        dst_port: dst.port(),
    };
    let n = udp.emit_v6(&mut buf[Ipv6Repr::HEADER_LEN..], src.ip(), dst.ip(), len);
    hop.header6(*src.ip(), *dst.ip(), PROTO_UDP, n).emit(buf) + n
}

/// Heads the ICMPv6 message (`len` bytes, checksum field ignored) already
/// at `buf[40..]` with an IPv6 header from `src` to `dst` (hop limit and
/// traffic class from `hop`) and fills in its checksum (RFC 4443 section
/// 2.3). Returns the packet's length.
pub fn emit_icmp6_hop(buf: &mut [u8], src: Ipv6Addr, dst: Ipv6Addr, len: usize, hop: Hop) -> usize {
    let h = Ipv6Repr::HEADER_LEN;
    clat_xlat::wire::icmp::fill_icmpv6_checksum(&mut buf[h..h + len], &src, &dst);
    hop.header6(src, dst, PROTO_ICMPV6, len).emit(buf) + len
}

/// Writes an IPv6 packet from `src` to `dst` holding the TCP header `tcp`
/// (no payload; hop limit 64). Returns the packet's length.
pub fn emit_tcp6(buf: &mut [u8], src: Ipv6Addr, dst: Ipv6Addr, tcp: &TcpRepr) -> usize {
    let n = tcp.emit_v6(&mut buf[Ipv6Repr::HEADER_LEN..], &src, &dst);
    Hop::HOST.header6(src, dst, PROTO_TCP, n).emit(buf) + n
}

/// The ICMPv6 error `(message, code, rest)` (`rest`: the 32 bits after the
/// checksum: MTU of a Packet Too Big, pointer of a Parameter Problem, else
/// 0) from `src` to the source of the packet `ip`/`p`, quoting as much of
/// it as fits in 1280 bytes (RFC 4443 section 2.4 (c)); hop limit 64.
/// Returns the packet's length (at most 1280 and `buf.len()`, which is at
/// least 48).
pub fn emit_error6_about(
    buf: &mut [u8],
    ip: &Ip6,
    p: &[u8],
    (message, code, rest): (Icmpv6Message, u8, u32),
    src: Ipv6Addr,
) -> usize {
    let e = Icmpv6ErrorRepr {
        message,
        code,
        rest,
        quote: &p[..p.len().min(ip.total_len)],
    };
    e.emit(Hop::HOST.header6(src, ip.src, PROTO_ICMPV6, 0), buf)
}

/// The ICMPv6 Destination Unreachable with `code` (RFC 4443 section 3.1)
/// from `ip`'s destination back to its source, quoting the packet.
pub fn emit_unreachable6(buf: &mut [u8], ip: &Ip6, p: &[u8], code: Icmpv6DstUnreachable) -> usize {
    let msg = (Icmpv6Message::DstUnreachable, code as u8, 0);
    emit_error6_about(buf, ip, p, msg, ip.dst)
}

/// Writes a TCP header with no payload from `src` to `dst` in the family
/// of the two addresses; `None` when they are of different families.
pub fn emit_tcp(buf: &mut [u8], src: IpAddr, dst: IpAddr, tcp: &TcpRepr) -> Option<usize> {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => Some(emit_tcp4(buf, s, d, tcp)),
        (IpAddr::V6(s), IpAddr::V6(d)) => Some(emit_tcp6(buf, s, d, tcp)),
        _ => None,
    }
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
/// source, in `ip`'s family; `None` for a RST or a segment too short to
/// answer.
pub fn emit_rst_for(buf: &mut [u8], ip: &impl IpView, seg: &[u8]) -> Option<usize> {
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
    emit_tcp(buf, ip.dst_ip(), ip.src_ip(), &rst)
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
/// Whether an IPv6 destination from the TUN is carried upstream (after the
/// NAT address, which is the listener's): not the TUN's own /64 (around
/// `clat_v6`), not unspecified, loopback or link-local, and not an
/// IPv4-mapped address (RFC 4291 2.5.5.2: never on the wire; an upstream
/// IPv6 socket, dual-stack by default, would reach that IPv4 address
/// itself, loopback included, past the IPv4 path and its rules).
pub fn carried_ipv6_destination(dst: Ipv6Addr, clat_v6: Ipv6Addr) -> bool {
    u128::from(dst) >> 64 != u128::from(clat_v6) >> 64
        && !dst.is_unspecified()
        && !dst.is_loopback()
        && !dst.is_unicast_link_local()
        && dst.to_ipv4_mapped().is_none()
}

/// Whether a destination that is not carried
/// ([`carried_ipv6_destination`]) would be a node on the TUN's own link:
/// inside its /64 but not `clat_v6` itself, or link-local. No such node
/// exists, so the answer is the one a host gives when address resolution
/// fails on a link (RFC 4443 section 3.1, code 3, Address Unreachable):
/// not code 0 (no route), since the destination is on-link and has a
/// route; not a RST, which would say that the node exists and refused.
pub fn on_tun_link(dst: Ipv6Addr, clat_v6: Ipv6Addr) -> bool {
    let same64 = u128::from(dst) >> 64 == u128::from(clat_v6) >> 64;
    (same64 && dst != clat_v6) || dst.is_unicast_link_local()
}

pub fn is_global_v4(a: Ipv4Addr) -> bool {
    !clat_xlat::addr6052::is_non_global(a)
}

#[cfg(test)]
mod tests {

    #[test]
    fn which_ipv6_destinations_are_carried() {
        let clat: Ipv6Addr = "fd9c:7c5a:e1b6:464::1".parse().unwrap();
        let yes = ["2001:db8:2::10", "fd00::1", "2001:db8::ffff:7f00:1"];
        let no = [
            "fd9c:7c5a:e1b6:464::9",
            "fd9c:7c5a:e1b6:464:ffff::1",
            "::",
            "::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:203.0.113.10",
        ];
        for d in yes {
            assert!(carried_ipv6_destination(d.parse().unwrap(), clat), "{d}");
        }
        for d in no {
            assert!(!carried_ipv6_destination(d.parse().unwrap(), clat), "{d}");
        }
        // Of those, the TUN link's own (answered with Address Unreachable).
        let link = [
            "fd9c:7c5a:e1b6:464::9",
            "fd9c:7c5a:e1b6:464:ffff::1",
            "fe80::1",
        ];
        for d in no {
            let want = link.contains(&d);
            assert_eq!(on_tun_link(d.parse().unwrap(), clat), want, "{d}");
        }
        assert!(!on_tun_link(clat, clat), "the app's own address");
    }
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

    // ---- IPv6 (issue 15 item 1): expected bytes built by etherparse ----

    use etherparse::{
        IpHeaders, IpNumber, Ipv6Extensions, Ipv6FlowLabel, Ipv6Header, Ipv6RawExtHeader,
        Ipv6RoutingExtensions, PacketBuilder,
    };

    const APP: &str = "fd9c:7c5a:e1b6:464::1";
    const SRV: &str = "2001:db8:2::10";

    fn a6(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    fn v6_header(src: &str, dst: &str, hop: u8, tclass: u8) -> Ipv6Header {
        Ipv6Header {
            traffic_class: tclass,
            flow_label: Ipv6FlowLabel::ZERO,
            payload_length: 0,
            next_header: IpNumber(0),
            hop_limit: hop,
            source: a6(src).octets(),
            destination: a6(dst).octets(),
        }
    }

    /// Options of 6 bytes: one PadN option (type 1, length 4).
    fn padn() -> Ipv6RawExtHeader {
        Ipv6RawExtHeader::new_raw(IpNumber(0), &[1, 4, 0, 0, 0, 0]).unwrap()
    }

    /// A type 0 Routing header (RFC 8200 section 4.4) with `left` segments
    /// left and one address.
    fn routing(left: u8) -> Ipv6RoutingExtensions {
        let mut payload = [0u8; 22];
        payload[1] = left;
        payload[6..22].copy_from_slice(&a6(SRV).octets());
        Ipv6RoutingExtensions {
            routing: Ipv6RawExtHeader::new_raw(IpNumber(0), &payload).unwrap(),
            final_destination_options: None,
        }
    }

    fn udp6_with(exts: Ipv6Extensions, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        PacketBuilder::ip(IpHeaders::Ipv6(v6_header(APP, SRV, 64, 0), exts))
            .udp(40000, 53)
            .write(&mut out, payload)
            .unwrap();
        out
    }

    #[test]
    fn ipv6_parse_finds_the_upper_layer_after_extension_headers() {
        let data = b"query";
        let plain = udp6_with(Ipv6Extensions::default(), data);
        let ip = parse_ip6(&plain).unwrap();
        assert_eq!((ip.src, ip.dst), (a6(APP), a6(SRV)));
        assert_eq!((ip.proto, ip.hdr_len, ip.total_len), (PROTO_UDP, 40, 53));
        assert_eq!((ip.hop_limit, ip.traffic_class), (64, 0));
        let exts = Ipv6Extensions {
            hop_by_hop_options: Some(padn()),
            destination_options: Some(padn()),
            routing: Some(routing(0)),
            ..Default::default()
        };
        let p = udp6_with(exts, data);
        let ip = parse_ip6(&p).unwrap();
        // 8 (Hop-by-Hop) + 8 (Destination Options) + 24 (Routing).
        assert_eq!((ip.proto, ip.hdr_len), (PROTO_UDP, 80));
        assert_eq!(ip.total_len, p.len());
        assert_eq!(ip.upper_offset(), ip.hdr_len);
        assert_eq!(&p[ip.hdr_len + 8..], data);
        // Trailing bytes past Payload Length are not the packet's.
        let mut longer = plain.clone();
        longer.extend_from_slice(&[0; 9]);
        assert_eq!(parse_ip6(&longer).unwrap().packet_len(), 53);
    }

    #[test]
    fn ipv6_parse_refuses_fragments_unexpired_routing_and_truncation() {
        let exts = Ipv6Extensions {
            routing: Some(routing(1)),
            ..Default::default()
        };
        assert_eq!(
            parse_ip6(&udp6_with(exts, b"x")),
            Err(ParseError::UnexpiredRouting)
        );
        for (offset, more, want) in [
            (0u16, true, Err(ParseError::Fragment)),
            (16, false, Err(ParseError::Fragment)),
        ] {
            let exts = Ipv6Extensions {
                fragment: Some(etherparse::Ipv6FragmentHeader::new(
                    IpNumber(0),
                    etherparse::IpFragOffset::try_new(offset).unwrap(),
                    more,
                    7,
                )),
                ..Default::default()
            };
            assert_eq!(parse_ip6(&udp6_with(exts, b"x")), want, "{offset} {more}");
        }
        // An atomic fragment (RFC 6946) is a whole packet.
        let exts = Ipv6Extensions {
            fragment: Some(etherparse::Ipv6FragmentHeader::new(
                IpNumber(0),
                etherparse::IpFragOffset::ZERO,
                false,
                7,
            )),
            ..Default::default()
        };
        let ip = parse_ip6(&udp6_with(exts, b"x")).unwrap();
        assert_eq!((ip.proto, ip.hdr_len), (PROTO_UDP, 48));
        let p = udp6_with(Ipv6Extensions::default(), b"abc");
        assert_eq!(parse_ip6(&p[..p.len() - 1]), Err(ParseError::Malformed));
        assert_eq!(parse_ip6(&p[..39]), Err(ParseError::Malformed));
        let exts = Ipv6Extensions {
            hop_by_hop_options: Some(padn()),
            ..Default::default()
        };
        let mut cut = udp6_with(exts, b"");
        cut[5] = 4; // Payload Length 4: the Hop-by-Hop header does not fit.
        assert_eq!(parse_ip6(&cut[..44]), Err(ParseError::Malformed));
        let mut v4 = [0u8; 40];
        v4[0] = 0x45;
        assert_eq!(parse_ip6(&v4), Err(ParseError::Malformed));
    }

    #[test]
    fn ipv6_udp_with_hop_limit_and_traffic_class_is_etherparses_bytes() {
        for len in [0usize, 1, 7, 1000] {
            let data: Vec<u8> = (0..len).map(|i| (i * 13 + 5) as u8).collect();
            let mut want = Vec::new();
            PacketBuilder::ip(IpHeaders::Ipv6(
                v6_header(SRV, APP, 61, 0xb9),
                Default::default(),
            ))
            .udp(53, 40000)
            .write(&mut want, &data)
            .unwrap();
            let mut buf = vec![0u8; 48 + len];
            buf[48..].copy_from_slice(&data);
            let ends = (
                SocketAddrV6::new(a6(SRV), 53, 0, 0),
                SocketAddrV6::new(a6(APP), 40000, 0, 0),
            );
            let hop = Hop::from_ipv6(Some(61), Some(0xb9));
            let n = emit_udp6_hop(&mut buf, ends, len, hop);
            assert_eq!(&buf[..n], &want[..], "len {len}");
        }
    }

    #[test]
    fn ipv6_echo_reply_is_etherparses_bytes() {
        let data = b"ping payload 123";
        let mut want = Vec::new();
        PacketBuilder::ip(IpHeaders::Ipv6(
            v6_header(SRV, APP, 57, 0x20),
            Default::default(),
        ))
        .icmpv6_echo_reply(0x1234, 9)
        .write(&mut want, data)
        .unwrap();
        let mut buf = [0xeeu8; 100];
        buf[40..48].copy_from_slice(&[129, 0, 0xff, 0xff, 0x12, 0x34, 0, 9]);
        buf[48..48 + data.len()].copy_from_slice(data);
        let hop = Hop::from_ipv6(Some(57), Some(0x20));
        let n = emit_icmp6_hop(&mut buf, a6(SRV), a6(APP), 8 + data.len(), hop);
        assert_eq!(&buf[..n], &want[..]);
    }

    /// The app's IPv6 SYN, built by etherparse.
    fn syn6(isn: u32) -> Vec<u8> {
        let mut out = Vec::new();
        PacketBuilder::ipv6(a6(APP).octets(), a6(SRV).octets(), 64)
            .tcp(50000, 443, isn, 64240)
            .syn()
            .write(&mut out, &[])
            .unwrap();
        out
    }

    #[test]
    fn ipv6_rst_for_syn_is_etherparses_bytes() {
        let syn = syn6(1000);
        let ip = parse_ip6(&syn).unwrap();
        assert_eq!(ip.proto, PROTO_TCP);
        let mut out = [0u8; 100];
        let n = emit_rst_for(&mut out, &ip, &syn[ip.hdr_len..]).unwrap();
        let mut want = Vec::new();
        PacketBuilder::ipv6(a6(SRV).octets(), a6(APP).octets(), 64)
            .tcp(443, 50000, 0, 0)
            .rst()
            .ack(1001)
            .write(&mut want, &[])
            .unwrap();
        assert_eq!(&out[..n], &want[..]);
        // An ACK is answered by a bare RST with its acknowledgment number.
        let mut ack = Vec::new();
        PacketBuilder::ipv6(a6(APP).octets(), a6(SRV).octets(), 64)
            .tcp(50000, 443, 5, 100)
            .ack(77)
            .write(&mut ack, b"data")
            .unwrap();
        let ip = parse_ip6(&ack).unwrap();
        let n = emit_rst_for(&mut out, &ip, &ack[ip.hdr_len..]).unwrap();
        let mut want = Vec::new();
        PacketBuilder::ipv6(a6(SRV).octets(), a6(APP).octets(), 64)
            .tcp(443, 50000, 77, 0)
            .rst()
            .write(&mut want, &[])
            .unwrap();
        assert_eq!(&out[..n], &want[..]);
    }

    /// The ICMPv6 error `(type, code, rest)` from `src` to the app quoting
    /// `quote`, built by etherparse.
    fn icmp6_error(src: &str, t: u8, code: u8, rest: u32, quote: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        PacketBuilder::ipv6(a6(src).octets(), a6(APP).octets(), 64)
            .icmpv6_raw(t, code, rest.to_be_bytes())
            .write(&mut out, quote)
            .unwrap();
        out
    }

    #[test]
    fn ipv6_errors_are_etherparses_bytes() {
        let syn = syn6(3);
        let ip = parse_ip6(&syn).unwrap();
        let mut buf = [0u8; 1500];
        for (code, c) in [
            (Icmpv6DstUnreachable::NoRoute, 0),
            (Icmpv6DstUnreachable::AdminProhibited, 1),
            (Icmpv6DstUnreachable::AddrUnreachable, 3),
            (Icmpv6DstUnreachable::PortUnreachable, 4),
        ] {
            let n = emit_unreachable6(&mut buf, &ip, &syn, code);
            assert_eq!(&buf[..n], &icmp6_error(SRV, 1, c, 0, &syn)[..], "{code:?}");
        }
        let router = "2001:db8:1::1";
        let msg = (Icmpv6Message::TimeExceeded, 0, 0);
        let n = emit_error6_about(&mut buf, &ip, &syn, msg, a6(router));
        assert_eq!(&buf[..n], &icmp6_error(router, 3, 0, 0, &syn)[..]);
        // Packet Too Big quoting a datagram larger than an error may be:
        // as much as fits in 1280 bytes (RFC 4443 section 2.4 (c)).
        let big = udp6_with(Ipv6Extensions::default(), &[0x5a; 1400]);
        let ip = parse_ip6(&big).unwrap();
        let msg = (Icmpv6Message::PktTooBig, 0, 1280);
        let n = emit_error6_about(&mut buf, &ip, &big, msg, a6(router));
        assert_eq!(n, 1280);
        assert_eq!(
            &buf[..n],
            &icmp6_error(router, 2, 0, 1280, &big[..1232])[..]
        );
    }
}
