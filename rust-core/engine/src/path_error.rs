//! ICMP errors about the engine's upstream datagrams (from a UDP or ping
//! socket's error queue), turned into the ICMPv4 error the app would have
//! got on an IPv4 path, about the datagram as the app sent it.
//!
//! On the NAT64 path the error is ICMPv6: what a translator on the path
//! does (RFC 7915 section 5.2, with clat-xlat's type and MTU mapping).
//! Its IPv4 source is the reporting node's address when it has an IPv4
//! form under the NAT64 prefix (the destination itself, or an IPv4 router
//! behind the NAT64), and otherwise the dummy address 192.0.0.8 (RFC 7600
//! section 4, the address RFC 6791 asks for): an IPv6 router on the path
//! has no IPv4 address, and claiming the destination's would tell
//! traceroute it had arrived.
//!
//! On the native IPv4 path ([`crate::ipv4_path`]) the error is already
//! ICMPv4: the app gets the same type and code from the same reporter,
//! with Fragmentation Needed's MTU (RFC 1191) and Parameter Problem's
//! pointer kept, only the quoted datagram being the app's own.
//!
//! Errors raised by our own stack (EMSGSIZE for a datagram sent with DF)
//! come from 192.0.0.8 on either path.
//!
//! For a carried IPv6 datagram (`carry_ipv6`, [`to_app6`]) the error is
//! ICMPv6 both ways: the same type, code and field from the same
//! reporter, about the app's own datagram.
//!
//! Pure: the caller reads the error queue and writes the result.

use crate::packet::{self, Ipv4Repr, Ipv6Repr, PROTO_ICMP, PROTO_ICMPV6, PROTO_UDP};
use clat_xlat::wire::{Icmpv4ErrorRepr, Icmpv4Message, Icmpv6ErrorRepr, Icmpv6Message, UdpRepr};
use ipnet::Ipv6Net;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// RFC 7600 section 4: the IPv4 dummy address, source of ICMPv4 errors
/// from nodes without an IPv4 address.
pub const IPV4_DUMMY: Ipv4Addr = Ipv4Addr::new(192, 0, 0, 8);

/// ICMPv6 Packet Too Big (RFC 4443 section 3.2).
pub const ICMP6_PACKET_TOO_BIG: u8 = 2;

/// ICMPv6 Time Exceeded (RFC 4443 section 3.3); code 0: hop limit
/// exceeded in transit.
pub const ICMP6_TIME_EXCEEDED: u8 = 3;

/// ICMPv4 Destination Unreachable, Fragmentation Needed and DF set (RFC
/// 792, RFC 1191): type 3, code 4.
pub const ICMP4_FRAG_NEEDED: (u8, u8) = (3, 4);

/// ICMPv4 Time Exceeded, TTL exceeded in transit (RFC 792): type 11, code 0.
const ICMP4_TTL_EXCEEDED: (u8, u8) = (11, 0);

/// The (type, code) that stands for "too big for the path" in the ICMP
/// family of an upstream datagram to `dest`: Packet Too Big for IPv6,
/// Fragmentation Needed for IPv4. A local EMSGSIZE is given as this.
pub fn too_big(dest: &SocketAddr) -> (u8, u8) {
    if dest.is_ipv6() {
        (ICMP6_PACKET_TOO_BIG, 0)
    } else {
        ICMP4_FRAG_NEEDED
    }
}

/// Which app datagram an upstream datagram carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppDatagram {
    /// UDP from the app's source port.
    Udp { app_port: u16 },
    /// ICMP echo request with the app's identifier.
    Echo { id: u16 },
}

/// One error about an upstream datagram.
#[derive(Debug, Clone, Copy)]
pub struct PathError<'a> {
    /// ICMP type and code, ICMPv6 for an IPv6 `dest` and ICMPv4 for an
    /// IPv4 one (a local EMSGSIZE is given as [`too_big`]).
    pub icmp_type: u8,
    pub icmp_code: u8,
    /// The ICMP message's 32-bit field as the kernel reports it (ee_info):
    /// the MTU for Packet Too Big and Fragmentation Needed (bytes), the
    /// pointer for Parameter Problem.
    pub info: u32,
    /// The node that sent the ICMP error; None for a local error.
    pub reporter: Option<IpAddr>,
    /// The upstream datagram's destination (address and UDP port): under
    /// the NAT64 prefix, or the IPv4 destination itself.
    pub dest: SocketAddr,
    /// The start of the upstream datagram's payload as the kernel returns
    /// it (after the UDP header; for echo, the ICMP echo message).
    pub payload: &'a [u8],
    /// The payload's full length as far as known (at least `payload.len()`).
    pub payload_len: usize,
    /// The app's IPv4 datagram itself, when the error is about the one
    /// being sent (a local EMSGSIZE): quoted as it is, header and 8 bytes.
    pub original: Option<&'a [u8]>,
}

/// The IPv4 side of the translation.
#[derive(Debug, Clone, Copy)]
pub struct AppSide {
    pub prefix: Ipv6Net,
    /// The app's (the CLAT's) IPv4 address: destination of the error.
    pub clat_v4: Ipv4Addr,
    /// The TUN MTU: an upper bound for the MTU an error advertises.
    pub mtu4: u16,
}

/// The ICMPv4 source for an error reported by `reporter`: an IPv4
/// reporter itself, an IPv6 one's IPv4 form under `prefix`, else
/// [`IPV4_DUMMY`].
pub fn error_source(prefix: &Ipv6Net, reporter: Option<IpAddr>) -> Ipv4Addr {
    match reporter {
        Some(IpAddr::V4(r)) => r,
        Some(IpAddr::V6(r)) => packet::extract(prefix, &r).unwrap_or(IPV4_DUMMY),
        None => IPV4_DUMMY,
    }
}

/// Writes to `out` the ICMPv4 error (IPv4 header included) that tells the
/// app about `e`, quoting the app's datagram `app` as the app sent it
/// (its addresses, ports or echo identifier and sequence number, DF for
/// Packet Too Big / Fragmentation Needed, TTL 1 for hop limit or TTL
/// exceeded) with IPv4 Identification `ident`. Returns its length, or
/// None when the error has no ICMPv4 counterpart (RFC 7915 section 5.2:
/// e.g. an unknown type; on the native path anything but Destination
/// Unreachable, Time Exceeded and Parameter Problem), an IPv6
/// destination is not under the prefix, or `out` is shorter than 576
/// bytes.
pub fn to_app(
    e: &PathError<'_>,
    app: AppDatagram,
    side: &AppSide,
    ident: u16,
    out: &mut [u8],
) -> Option<usize> {
    let d4 = match e.dest {
        SocketAddr::V6(d) => packet::extract(&side.prefix, d.ip())?,
        SocketAddr::V4(d) => *d.ip(),
    };
    let src = error_source(&side.prefix, e.reporter);
    let v6 = e.dest.is_ipv6();
    let translate = |q: &[u8], out: &mut [u8]| {
        if v6 {
            clat_xlat::icmp6_error_to_icmp4(
                e.icmp_type,
                e.icmp_code,
                e.info,
                q,
                src,
                side.mtu4,
                out,
            )
            .ok()
        } else {
            icmp4_error(e, q, src, side, ident, out)
        }
    };
    if let Some(orig) = e.original {
        return translate(orig, out);
    }
    let mut q = [0u8; Ipv4Repr::HEADER_LEN + 8];
    let h = Ipv4Repr::HEADER_LEN;
    let (proto, l4_len) = match app {
        AppDatagram::Udp { app_port } => {
            let udp = UdpRepr {
                src_port: app_port,
                dst_port: e.dest.port(),
            };
            let n = udp.emit_quoted(&mut q[h..], e.payload_len);
            (PROTO_UDP, n + e.payload_len)
        }
        AppDatagram::Echo { id } => {
            q[h] = Icmpv4Message::EchoRequest as u8;
            q[h + 4..h + 6].copy_from_slice(&id.to_be_bytes());
            if let Some(seq) = e.payload.get(6..8) {
                q[h + 6..h + 8].copy_from_slice(seq);
            }
            (PROTO_ICMP, e.payload_len.max(8))
        }
    };
    let l4_len = u16::try_from(l4_len).unwrap_or(u16::MAX - h as u16);
    // Hop limit (TTL) exceeded in transit: the router quotes the datagram
    // as it received it (RFC 1812 section 4.3.2.3), with hop limit 1,
    // which a translator on the path copies into the quoted TTL.
    // Otherwise the TTL on arrival is unknown; a host's default stands in.
    let (ttl_exceeded, too_big_msg) = if v6 {
        ((ICMP6_TIME_EXCEEDED, 0), (ICMP6_PACKET_TOO_BIG, 0))
    } else {
        (ICMP4_TTL_EXCEEDED, ICMP4_FRAG_NEEDED)
    };
    let msg = (e.icmp_type, e.icmp_code);
    Ipv4Repr {
        dont_frag: msg == too_big_msg || (v6 && e.icmp_type == ICMP6_PACKET_TOO_BIG),
        ttl: if msg == ttl_exceeded { 1 } else { 64 },
        ..Ipv4Repr::new(side.clat_v4, d4, proto, l4_len, ident)
    }
    .emit(&mut q);
    translate(&q, out)
}

/// The IPv6 side of a carried IPv6 datagram's error (`carry_ipv6`).
#[derive(Debug, Clone, Copy)]
pub struct AppSide6 {
    /// The app's address on the TUN: source of its datagrams, destination
    /// of the error.
    pub clat_v6: Ipv6Addr,
    /// Source of an error without a reporter (our own EMSGSIZE): the
    /// engine's internal address on the TUN, the app's first hop.
    pub nat_v6: Ipv6Addr,
    /// The TUN MTU: an upper bound for the MTU a Packet Too Big advertises.
    pub mtu: u16,
}

/// Writes to `out` the ICMPv6 error (IPv6 header included) that tells the
/// app about `e`, an ICMPv6 error about an IPv6 datagram the engine carried
/// for it (or a local EMSGSIZE given as Packet Too Big): the same type,
/// code and 32-bit field (a Packet Too Big's MTU at most the TUN's, RFC
/// 4443 section 3.2), from the node that reported it (else `nat_v6`),
/// quoting the app's datagram as the app sent it (addresses, ports or
/// echo identifier and sequence, and as much payload as the kernel
/// returned; hop limit 1 for Time Exceeded, as the expiring router
/// received it) or `e.original` when the error is about the datagram
/// being sent. Returns its length; None for an ICMPv6 type that is not an
/// error about the datagram (RFC 4443 types 1 to 4), or when `out` is
/// shorter than 1280 bytes.
pub fn to_app6(
    e: &PathError<'_>,
    app: AppDatagram,
    side: &AppSide6,
    out: &mut [u8],
) -> Option<usize> {
    let SocketAddr::V6(dest) = e.dest else {
        return None;
    };
    if !(1..=4).contains(&e.icmp_type) || out.len() < Icmpv6ErrorRepr::MAX_PACKET_LEN {
        return None;
    }
    let message = match e.icmp_type {
        1 => Icmpv6Message::DstUnreachable,
        2 => Icmpv6Message::PktTooBig,
        3 => Icmpv6Message::TimeExceeded,
        _ => Icmpv6Message::ParamProblem,
    };
    let rest = if message == Icmpv6Message::PktTooBig {
        e.info.min(u32::from(side.mtu))
    } else if message == Icmpv6Message::ParamProblem {
        e.info
    } else {
        0
    };
    let src = match e.reporter {
        Some(IpAddr::V6(r)) => r,
        _ => side.nat_v6,
    };
    let hdr = Ipv6Repr {
        src,
        dst: side.clat_v6,
        next_header: 0,
        payload_len: 0,
        hop_limit: 64,
        traffic_class: 0,
    };
    if let Some(orig) = e.original {
        let err = Icmpv6ErrorRepr {
            message,
            code: e.icmp_code,
            rest,
            quote: orig,
        };
        return Some(err.emit(hdr, out));
    }
    let mut q = [0u8; Icmpv6ErrorRepr::MAX_PACKET_LEN];
    let h = Ipv6Repr::HEADER_LEN;
    // The app's upper layer: the UDP header and the payload the kernel
    // returned; or the echo message as sent, with the app's identifier
    // in place of the ping socket's.
    let (proto, at, l4_len) = match app {
        AppDatagram::Udp { app_port } => {
            let udp = UdpRepr {
                src_port: app_port,
                dst_port: dest.port(),
            };
            let n = udp.emit_quoted(&mut q[h..], e.payload_len);
            (PROTO_UDP, h + n, n + e.payload_len)
        }
        AppDatagram::Echo { .. } => (PROTO_ICMPV6, h, e.payload_len.max(8)),
    };
    let n = e.payload.len().min(q.len() - at);
    q[at..at + n].copy_from_slice(&e.payload[..n]);
    let qlen = (at + n).max(h + 8);
    if let AppDatagram::Echo { id } = app {
        q[h] = Icmpv6Message::EchoRequest as u8;
        q[h + 4..h + 6].copy_from_slice(&id.to_be_bytes());
    }
    Ipv6Repr {
        src: side.clat_v6,
        dst: *dest.ip(),
        next_header: proto,
        payload_len: u16::try_from(l4_len).unwrap_or(u16::MAX),
        hop_limit: if message == Icmpv6Message::TimeExceeded {
            1
        } else {
            64
        },
        traffic_class: 0,
    }
    .emit(&mut q);
    let err = Icmpv6ErrorRepr {
        message,
        code: e.icmp_code,
        rest,
        quote: &q[..qlen],
    };
    Some(err.emit(hdr, out))
}

/// The ICMPv4 error of the native path `e` again, from `src` to the app,
/// quoting `q` (the app's datagram): Destination Unreachable (with the
/// next-hop MTU of Fragmentation Needed, at most the TUN's), Time
/// Exceeded, Parameter Problem (with its pointer); None for other types
/// and when `out` is shorter than 576 bytes.
fn icmp4_error(
    e: &PathError<'_>,
    q: &[u8],
    src: Ipv4Addr,
    side: &AppSide,
    ident: u16,
    out: &mut [u8],
) -> Option<usize> {
    if out.len() < Icmpv4ErrorRepr::MAX_PACKET_LEN {
        return None;
    }
    let message = match e.icmp_type {
        3 => Icmpv4Message::DstUnreachable,
        11 => Icmpv4Message::TimeExceeded,
        12 => Icmpv4Message::ParamProblem,
        _ => return None,
    };
    let rest = match (e.icmp_type, e.icmp_code) {
        ICMP4_FRAG_NEEDED => {
            let mtu = u16::try_from(e.info).unwrap_or(u16::MAX).min(side.mtu4);
            let b = mtu.to_be_bytes();
            [0, 0, b[0], b[1]]
        }
        (12, _) => [u8::try_from(e.info).unwrap_or(0), 0, 0, 0],
        _ => [0; 4],
    };
    let err = Icmpv4ErrorRepr {
        message,
        code: e.icmp_code,
        rest,
        quote: q,
    };
    Some(err.emit(Ipv4Repr::new(src, side.clat_v4, PROTO_ICMP, 0, ident), out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{Icmpv4Type, PacketHeaders, TransportHeader};
    use std::net::SocketAddrV6;

    fn side() -> AppSide {
        AppSide {
            prefix: "2001:db8:64::/96".parse().unwrap(),
            clat_v4: Ipv4Addr::new(192, 0, 0, 4),
            mtu4: 65000,
        }
    }

    fn dest(port: u16) -> SocketAddr {
        SocketAddr::V6(SocketAddrV6::new(
            "2001:db8:64::cb00:710a".parse().unwrap(),
            port,
            0,
            0,
        ))
    }

    /// The error's IPv4 header, its ICMPv4 type and the quoted datagram's
    /// headers, each parsed by etherparse.
    fn parse(p: &[u8]) -> (etherparse::Ipv4Header, Icmpv4Type, Vec<u8>) {
        let h = PacketHeaders::from_ip_slice(p).unwrap();
        let Some(etherparse::NetHeaders::Ipv4(ip, _)) = h.net else {
            panic!("not IPv4")
        };
        let Some(TransportHeader::Icmpv4(icmp)) = h.transport else {
            panic!("not ICMPv4")
        };
        assert_eq!(
            icmp.checksum,
            icmp.icmp_type.calc_checksum(h.payload.slice())
        );
        (ip, icmp.icmp_type, h.payload.slice().to_vec())
    }

    #[test]
    fn time_exceeded_from_an_ipv6_router_comes_from_the_dummy_address() {
        // traceroute's first probe: UDP 40000 -> 203.0.113.10:33434, hop
        // limit 1, answered by the IPv6 router 2001:db8:1::1.
        let e = PathError {
            icmp_type: 3,
            icmp_code: 0,
            info: 0,
            reporter: Some("2001:db8:1::1".parse().unwrap()),
            dest: dest(33434),
            payload: &[0; 32],
            payload_len: 32,
            original: None,
        };
        let mut out = [0u8; 600];
        let app = AppDatagram::Udp { app_port: 40000 };
        let n = to_app(&e, app, &side(), 9, &mut out).unwrap();
        let (ip, t, quote) = parse(&out[..n]);
        assert_eq!(ip.source, [192, 0, 0, 8]);
        assert_eq!(ip.destination, [192, 0, 0, 4]);
        assert_eq!(
            t,
            Icmpv4Type::TimeExceeded(etherparse::icmpv4::TimeExceededCode::TtlExceededInTransit)
        );
        // The quote: IPv4 192.0.0.4 -> 203.0.113.10, UDP 40000 -> 33434,
        // length 8 + 32.
        let q = etherparse::Ipv4HeaderSlice::from_slice(&quote).unwrap();
        assert_eq!(
            (q.source(), q.destination()),
            ([192, 0, 0, 4], [203, 0, 113, 10])
        );
        assert_eq!(q.protocol(), etherparse::IpNumber::UDP);
        assert_eq!(&quote[20..26], &[0x9c, 0x40, 0x82, 0x9a, 0, 40]);
        // The router quotes the datagram as it received it (RFC 1812
        // section 4.3.2.3): with the hop limit it expired at, 1, as a
        // translator on the path would copy into the quoted TTL.
        assert_eq!(q.ttl(), 1);
    }

    #[test]
    fn error_from_an_ipv4_node_behind_the_nat64_comes_from_its_address() {
        let e = PathError {
            icmp_type: 1,
            icmp_code: 4, // port unreachable
            info: 0,
            reporter: Some("2001:db8:64::cb00:710a".parse().unwrap()),
            dest: dest(9),
            payload: b"x",
            payload_len: 1,
            original: None,
        };
        let mut out = [0u8; 600];
        let n = to_app(&e, AppDatagram::Udp { app_port: 5 }, &side(), 1, &mut out).unwrap();
        let (ip, t, _) = parse(&out[..n]);
        assert_eq!(ip.source, [203, 0, 113, 10]);
        assert_eq!(
            t,
            Icmpv4Type::DestinationUnreachable(etherparse::icmpv4::DestUnreachableHeader::Port)
        );
    }

    #[test]
    fn packet_too_big_becomes_fragmentation_needed_with_the_mtu_minus_20() {
        // A local EMSGSIZE on a 1500-byte link, as the caller gives it.
        let e = PathError {
            icmp_type: ICMP6_PACKET_TOO_BIG,
            icmp_code: 0,
            info: 1500,
            reporter: None,
            dest: dest(7),
            payload: &[0; 64],
            payload_len: 1472,
            original: None,
        };
        let mut out = [0u8; 600];
        let n = to_app(&e, AppDatagram::Udp { app_port: 5 }, &side(), 1, &mut out).unwrap();
        let (ip, t, quote) = parse(&out[..n]);
        assert_eq!(ip.source, [192, 0, 0, 8]);
        assert_eq!(
            t,
            Icmpv4Type::DestinationUnreachable(
                etherparse::icmpv4::DestUnreachableHeader::FragmentationNeeded {
                    next_hop_mtu: 1480
                }
            )
        );
        let q = etherparse::Ipv4HeaderSlice::from_slice(&quote).unwrap();
        assert!(q.dont_fragment());
        assert_eq!(q.total_len(), 20 + 8 + 1472);
    }

    #[test]
    fn local_emsgsize_quotes_the_apps_own_datagram() {
        // The app's DF datagram, built with etherparse: 192.0.0.4:5 ->
        // 203.0.113.10:7, TTL 3, TOS 0xb8, Identification 0x1234.
        let b = etherparse::PacketBuilder::ipv4([192, 0, 0, 4], [203, 0, 113, 10], 3).udp(5, 7);
        let payload = [9u8; 1472];
        let mut app = Vec::new();
        b.write(&mut app, &payload).unwrap();
        let mut h = etherparse::Ipv4Header::from_slice(&app).unwrap().0;
        h.identification = 0x1234;
        h.dont_fragment = true;
        h.dscp = etherparse::IpDscp::try_new(0xb8 >> 2).unwrap();
        h.header_checksum = h.calc_header_checksum();
        app[..20].copy_from_slice(&h.to_bytes());
        let e = PathError {
            icmp_type: ICMP6_PACKET_TOO_BIG,
            icmp_code: 0,
            info: 1500,
            reporter: None,
            dest: dest(7),
            payload: &[],
            payload_len: 0,
            original: Some(&app),
        };
        let mut out = [0u8; 600];
        let n = to_app(&e, AppDatagram::Udp { app_port: 5 }, &side(), 1, &mut out).unwrap();
        let (ip, _, quote) = parse(&out[..n]);
        assert_eq!(ip.source, [192, 0, 0, 8]);
        assert_eq!(&quote[..28], &app[..28]);
        assert_eq!(&out[24..28], &[0, 0, 0x05, 0xc8], "next-hop MTU 1480");
    }

    #[test]
    fn echo_error_quotes_the_apps_identifier_and_sequence() {
        // The ICMPv6 echo request as sent (the kernel's own identifier 0x1234).
        let sent = [128, 0, 0xab, 0xcd, 0x12, 0x34, 0x00, 0x05, 1, 2, 3, 4];
        let e = PathError {
            icmp_type: 3,
            icmp_code: 0,
            info: 0,
            reporter: Some("2001:db8:1::1".parse().unwrap()),
            dest: dest(0),
            payload: &sent,
            payload_len: sent.len(),
            original: None,
        };
        let mut out = [0u8; 600];
        let n = to_app(&e, AppDatagram::Echo { id: 0x4242 }, &side(), 1, &mut out).unwrap();
        let (ip, _, quote) = parse(&out[..n]);
        assert_eq!(ip.source, [192, 0, 0, 8]);
        assert_eq!(quote[9], 1, "quoted protocol ICMP");
        assert_eq!(&quote[20..21], &[8], "echo request");
        assert_eq!(&quote[24..28], &[0x42, 0x42, 0x00, 0x05]);
    }

    #[test]
    fn destination_outside_the_prefix_or_unknown_type_gives_nothing() {
        let mut e = PathError {
            icmp_type: 3,
            icmp_code: 0,
            info: 0,
            reporter: None,
            dest: "[2001:db8:1::9]:1".parse().unwrap(),
            payload: &[],
            payload_len: 0,
            original: None,
        };
        let mut out = [0u8; 600];
        let app = AppDatagram::Udp { app_port: 5 };
        assert_eq!(to_app(&e, app, &side(), 1, &mut out), None);
        e.dest = dest(1);
        e.icmp_type = 200;
        assert_eq!(to_app(&e, app, &side(), 1, &mut out), None);
    }

    fn native(port: u16) -> SocketAddr {
        SocketAddr::from(([203, 0, 113, 10], port))
    }

    #[test]
    fn native_time_exceeded_comes_from_the_ipv4_router_as_it_was() {
        // traceroute over the native path: UDP 40000 -> 203.0.113.10:33434,
        // TTL 1, answered by the IPv4 router 198.51.100.1 with 11/0.
        let e = PathError {
            icmp_type: 11,
            icmp_code: 0,
            info: 0,
            reporter: Some("198.51.100.1".parse().unwrap()),
            dest: native(33434),
            payload: &[0; 32],
            payload_len: 32,
            original: None,
        };
        let mut out = [0u8; 600];
        let app = AppDatagram::Udp { app_port: 40000 };
        let n = to_app(&e, app, &side(), 9, &mut out).unwrap();
        let (ip, t, quote) = parse(&out[..n]);
        assert_eq!(ip.source, [198, 51, 100, 1]);
        assert_eq!(ip.destination, [192, 0, 0, 4]);
        assert_eq!(
            t,
            Icmpv4Type::TimeExceeded(etherparse::icmpv4::TimeExceededCode::TtlExceededInTransit)
        );
        let q = etherparse::Ipv4HeaderSlice::from_slice(&quote).unwrap();
        assert_eq!(
            (q.source(), q.destination(), q.ttl()),
            ([192, 0, 0, 4], [203, 0, 113, 10], 1)
        );
        assert_eq!(&quote[20..26], &[0x9c, 0x40, 0x82, 0x9a, 0, 40]);
    }

    #[test]
    fn native_fragmentation_needed_keeps_the_mtu_capped_by_the_tun() {
        let mut e = PathError {
            icmp_type: 3,
            icmp_code: 4,
            info: 1400,
            reporter: Some("198.51.100.1".parse().unwrap()),
            dest: native(7),
            payload: &[0; 64],
            payload_len: 1472,
            original: None,
        };
        let mut out = [0u8; 600];
        let app = AppDatagram::Udp { app_port: 5 };
        let n = to_app(&e, app, &side(), 1, &mut out).unwrap();
        let (ip, t, quote) = parse(&out[..n]);
        assert_eq!(ip.source, [198, 51, 100, 1]);
        assert_eq!(
            t,
            Icmpv4Type::DestinationUnreachable(
                etherparse::icmpv4::DestUnreachableHeader::FragmentationNeeded {
                    next_hop_mtu: 1400
                }
            )
        );
        let q = etherparse::Ipv4HeaderSlice::from_slice(&quote).unwrap();
        assert!(q.dont_fragment());
        assert_eq!(q.total_len(), 20 + 8 + 1472);
        // A local EMSGSIZE (no reporter) over a larger MTU than the TUN's.
        e.reporter = None;
        e.info = 9000;
        let s = AppSide {
            mtu4: 1500,
            ..side()
        };
        let n = to_app(&e, app, &s, 1, &mut out).unwrap();
        let (ip, t, _) = parse(&out[..n]);
        assert_eq!(ip.source, [192, 0, 0, 8]);
        assert_eq!(
            t,
            Icmpv4Type::DestinationUnreachable(
                etherparse::icmpv4::DestUnreachableHeader::FragmentationNeeded {
                    next_hop_mtu: 1500
                }
            )
        );
        assert_eq!(too_big(&e.dest), (3, 4));
        assert_eq!(too_big(&dest(7)), (2, 0));
    }

    #[test]
    fn native_errors_keep_type_code_and_pointer_and_quote_the_echo() {
        let sent = [8, 0, 0xab, 0xcd, 0x12, 0x34, 0x00, 0x05, 1, 2, 3, 4];
        let mut e = PathError {
            icmp_type: 3,
            icmp_code: 13, // communication administratively prohibited
            info: 0,
            reporter: Some("203.0.113.10".parse().unwrap()),
            dest: native(0),
            payload: &sent,
            payload_len: sent.len(),
            original: None,
        };
        let mut out = [0u8; 600];
        let app = AppDatagram::Echo { id: 0x4242 };
        let n = to_app(&e, app, &side(), 1, &mut out).unwrap();
        let (ip, _, quote) = parse(&out[..n]);
        assert_eq!(ip.source, [203, 0, 113, 10]);
        assert_eq!((out[20], out[21]), (3, 13));
        assert_eq!(quote[9], 1, "quoted protocol ICMP");
        assert_eq!(&quote[20..21], &[8], "echo request");
        assert_eq!(&quote[24..28], &[0x42, 0x42, 0x00, 0x05]);
        // Parameter Problem keeps its pointer.
        e.icmp_type = 12;
        e.icmp_code = 0;
        e.info = 9;
        let n = to_app(&e, app, &side(), 1, &mut out).unwrap();
        assert_eq!(n, 20 + 8 + 28);
        assert_eq!((out[20], out[21], out[24]), (12, 0, 9));
        // Types without an app-side meaning (a redirect) give nothing.
        e.icmp_type = 5;
        assert_eq!(to_app(&e, app, &side(), 1, &mut out), None);
        // A reporter under the prefix means nothing special natively: an
        // IPv6 reporter of a native error stands for its IPv4 form or the
        // dummy, as on the NAT64 path.
        assert_eq!(
            error_source(&side().prefix, Some("2001:db8:1::1".parse().unwrap())),
            IPV4_DUMMY
        );
    }

    // ---- carried IPv6 datagrams (to_app6): expected bytes by etherparse

    fn side6() -> AppSide6 {
        AppSide6 {
            clat_v6: "fd9c:7c5a:e1b6:464::1".parse().unwrap(),
            nat_v6: "fd9c:7c5a:e1b6:464::2".parse().unwrap(),
            mtu: 1500,
        }
    }

    /// The ICMPv6 error `(type, code, rest)` from `src` to the app quoting
    /// the app's UDP datagram to `[2001:db8:2::10]:53` from port 40000 with
    /// `payload` (hop limit `hop`), both built by etherparse.
    fn udp6_error(src: &str, t: u8, code: u8, rest: u32, hop: u8, payload: &[u8]) -> Vec<u8> {
        let app: std::net::Ipv6Addr = "fd9c:7c5a:e1b6:464::1".parse().unwrap();
        let dst: std::net::Ipv6Addr = "2001:db8:2::10".parse().unwrap();
        let mut quote = Vec::new();
        etherparse::PacketBuilder::ipv6(app.octets(), dst.octets(), hop)
            .udp(40000, 53)
            .write(&mut quote, payload)
            .unwrap();
        // A quoted UDP header has no checksum (emit_quoted leaves it 0).
        quote[46..48].fill(0);
        let mut out = Vec::new();
        let s: std::net::Ipv6Addr = src.parse().unwrap();
        etherparse::PacketBuilder::ipv6(s.octets(), app.octets(), 64)
            .icmpv6_raw(t, code, rest.to_be_bytes())
            .write(&mut out, &quote)
            .unwrap();
        out
    }

    #[test]
    fn ipv6_errors_go_back_as_they_came_about_the_apps_datagram() {
        let dest: SocketAddr = "[2001:db8:2::10]:53".parse().unwrap();
        let payload = b"a query of twenty-six bytes";
        let router = "2001:db8:1::1";
        let mut out = [0u8; 1500];
        for (t, code, info, hop, rest) in [
            (1u8, 4u8, 0u32, 64u8, 0u32), // port unreachable
            (3, 0, 0, 1, 0),              // hop limit exceeded: quoted hop limit 1
            (2, 0, 1400, 64, 1400),       // Packet Too Big with its MTU
            (2, 0, 9000, 64, 1500),       // ... never above the TUN's
            (4, 0, 42, 64, 42),           // Parameter Problem's pointer
        ] {
            let e = PathError {
                icmp_type: t,
                icmp_code: code,
                info,
                reporter: Some(router.parse().unwrap()),
                dest,
                payload,
                payload_len: payload.len(),
                original: None,
            };
            let n = to_app6(&e, AppDatagram::Udp { app_port: 40000 }, &side6(), &mut out).unwrap();
            let want = udp6_error(router, t, code, rest, hop, payload);
            assert_eq!(&out[..n], &want[..], "type {t} code {code}");
        }
        // No reporter (our own EMSGSIZE): from the engine's NAT address.
        let e = PathError {
            icmp_type: 2,
            icmp_code: 0,
            info: 1280,
            reporter: None,
            dest,
            payload,
            payload_len: payload.len(),
            original: None,
        };
        let n = to_app6(&e, AppDatagram::Udp { app_port: 40000 }, &side6(), &mut out).unwrap();
        let want = udp6_error("fd9c:7c5a:e1b6:464::2", 2, 0, 1280, 64, payload);
        assert_eq!(&out[..n], &want[..]);
        // Not an error type: nothing.
        let e = PathError {
            icmp_type: 128,
            ..e
        };
        assert_eq!(
            to_app6(&e, AppDatagram::Udp { app_port: 1 }, &side6(), &mut out),
            None
        );
    }

    #[test]
    fn an_ipv6_echo_error_quotes_the_apps_identifier() {
        // The ping socket's request as the kernel returns it: its own
        // identifier 0x7777, sequence 5, data.
        let sent = [
            128u8, 0, 0xab, 0xcd, 0x77, 0x77, 0, 5, b'p', b'i', b'n', b'g',
        ];
        let e = PathError {
            icmp_type: 3,
            icmp_code: 0,
            info: 0,
            reporter: Some("2001:db8:1::1".parse().unwrap()),
            dest: "[2001:db8:2::10]:0".parse().unwrap(),
            payload: &sent,
            payload_len: sent.len(),
            original: None,
        };
        let mut out = [0u8; 1500];
        let n = to_app6(&e, AppDatagram::Echo { id: 0x1234 }, &side6(), &mut out).unwrap();
        let h = etherparse::Ipv6HeaderSlice::from_slice(&out[..n]).unwrap();
        assert_eq!(h.source_addr().to_string(), "2001:db8:1::1");
        let q = &out[48..n];
        let qh = etherparse::Ipv6HeaderSlice::from_slice(q).unwrap();
        assert_eq!(
            (qh.hop_limit(), qh.next_header().0, qh.payload_length()),
            (1, 58, 12)
        );
        assert_eq!(
            &q[40..],
            &[128, 0, 0xab, 0xcd, 0x12, 0x34, 0, 5, b'p', b'i', b'n', b'g']
        );
        assert_eq!(&out[40..42], &[3, 0]);
    }
}
