//! IPv4 / TCP / UDP / ICMP wire helpers: header parsing with validation,
//! RFC 1071 checksums, RFC 1624 incremental updates, packet builders and the
//! RFC 6052 address mapping the engine needs on its hot path.
//!
//! Everything works in place on caller-provided buffers: no allocation.

use ipnet::Ipv6Net;
use std::net::{Ipv4Addr, Ipv6Addr};

pub const PROTO_ICMP: u8 = 1;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;

pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_ACK: u8 = 0x10;

/// One's complement sum of `data` as big-endian 16-bit words (odd tail
/// padded with zero), not folded.
#[inline]
pub fn sum16(data: &[u8]) -> u32 {
    let mut sum: u64 = 0;
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        sum += u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as u64;
    }
    let r = chunks.remainder();
    let mut i = 0;
    while i + 1 < r.len() {
        sum += u16::from_be_bytes([r[i], r[i + 1]]) as u64;
        i += 2;
    }
    if i < r.len() {
        sum += (r[i] as u64) << 8;
    }
    // fold 64 -> 32 keeping the one's complement carries
    while sum > 0xffff_ffff {
        sum = (sum & 0xffff_ffff) + (sum >> 32);
    }
    (sum & 0xffff) as u32 + (sum >> 16) as u32
}

/// Folds a 32-bit one's complement sum to 16 bits.
#[inline]
pub fn fold(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// Internet checksum of `data` plus an initial (pseudo-header) sum.
#[inline]
pub fn checksum(initial: u32, data: &[u8]) -> u16 {
    !fold(initial + sum16(data))
}

/// Sum of the IPv4 pseudo-header.
#[inline]
pub fn pseudo_v4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, len: usize) -> u32 {
    sum16(&src.octets()) + sum16(&dst.octets()) + proto as u32 + len as u32
}

/// RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m'), for 16-bit aligned fields
/// `old` replaced by `new` (same length, even).
#[inline]
pub fn csum_update(old_csum: u16, old: &[u8], new: &[u8]) -> u16 {
    let mut sum = (!old_csum) as u32;
    for w in old.chunks_exact(2) {
        sum += (!u16::from_be_bytes([w[0], w[1]])) as u32;
    }
    for w in new.chunks_exact(2) {
        sum += u16::from_be_bytes([w[0], w[1]]) as u32;
    }
    !fold(sum)
}

/// The parts of a validated IPv4 header the engine uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ip4 {
    pub ihl: usize,
    pub total_len: usize,
    pub proto: u8,
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    /// More-fragments set or a non-zero offset.
    pub fragment: bool,
    pub ttl: u8,
}

/// Why a packet was not parseable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    NotIpv4,
    Malformed,
}

/// Validates an IPv4 header (version, lengths, header checksum).
pub fn parse_ip4(p: &[u8]) -> Result<Ip4, ParseError> {
    if p.is_empty() {
        return Err(ParseError::Malformed);
    }
    if p[0] >> 4 != 4 {
        return Err(ParseError::NotIpv4);
    }
    if p.len() < 20 {
        return Err(ParseError::Malformed);
    }
    let ihl = ((p[0] & 0x0f) as usize) * 4;
    let total_len = u16::from_be_bytes([p[2], p[3]]) as usize;
    if ihl < 20 || total_len < ihl || total_len > p.len() {
        return Err(ParseError::Malformed);
    }
    if fold(sum16(&p[..ihl])) != 0xffff {
        return Err(ParseError::Malformed);
    }
    let frag = u16::from_be_bytes([p[6], p[7]]);
    Ok(Ip4 {
        ihl,
        total_len,
        proto: p[9],
        src: Ipv4Addr::new(p[12], p[13], p[14], p[15]),
        dst: Ipv4Addr::new(p[16], p[17], p[18], p[19]),
        fragment: frag & 0x3fff != 0,
        ttl: p[8],
    })
}

/// Writes a 20-byte IPv4 header (DF clear, TTL 64) with its checksum.
pub fn write_ip4(
    buf: &mut [u8],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    proto: u8,
    total_len: usize,
    id: u16,
) {
    buf[0] = 0x45;
    buf[1] = 0;
    buf[2..4].copy_from_slice(&(total_len as u16).to_be_bytes());
    buf[4..6].copy_from_slice(&id.to_be_bytes());
    buf[6] = 0;
    buf[7] = 0;
    buf[8] = 64;
    buf[9] = proto;
    buf[10] = 0;
    buf[11] = 0;
    buf[12..16].copy_from_slice(&src.octets());
    buf[16..20].copy_from_slice(&dst.octets());
    let c = checksum(0, &buf[..20]);
    buf[10..12].copy_from_slice(&c.to_be_bytes());
}

/// Completes an IPv4+UDP packet whose payload (`len` bytes) already sits at
/// `buf[28..]`. Returns the packet length.
pub fn finish_udp(
    buf: &mut [u8],
    src: Ipv4Addr,
    sport: u16,
    dst: Ipv4Addr,
    dport: u16,
    len: usize,
    id: u16,
) -> usize {
    let udp_len = 8 + len;
    let total = 20 + udp_len;
    write_ip4(buf, src, dst, PROTO_UDP, total, id);
    let u = &mut buf[20..total];
    u[0..2].copy_from_slice(&sport.to_be_bytes());
    u[2..4].copy_from_slice(&dport.to_be_bytes());
    u[4..6].copy_from_slice(&(udp_len as u16).to_be_bytes());
    u[6] = 0;
    u[7] = 0;
    let mut c = checksum(pseudo_v4(src, dst, PROTO_UDP, udp_len), u);
    if c == 0 {
        c = 0xffff;
    }
    u[6..8].copy_from_slice(&c.to_be_bytes());
    total
}

/// Completes an IPv4+ICMP packet whose ICMP message (header included,
/// `len` bytes, checksum field ignored) already sits at `buf[20..]`.
pub fn finish_icmp(buf: &mut [u8], src: Ipv4Addr, dst: Ipv4Addr, len: usize, id: u16) -> usize {
    let total = 20 + len;
    write_ip4(buf, src, dst, PROTO_ICMP, total, id);
    let m = &mut buf[20..total];
    m[2] = 0;
    m[3] = 0;
    let c = checksum(0, m);
    m[2..4].copy_from_slice(&c.to_be_bytes());
    total
}

/// Builds an ICMPv4 error (type, code, 4 bytes of "rest of header") quoting
/// `quote` (the offending packet: IPv4 header + at least 8 bytes), limited
/// so the whole error stays within 576 bytes (RFC 1812 4.3.2.3).
#[allow(clippy::too_many_arguments)]
pub fn build_icmp_error(
    buf: &mut [u8],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    typ: u8,
    code: u8,
    rest: [u8; 4],
    quote: &[u8],
    id: u16,
) -> usize {
    let q = quote.len().min(576 - 28);
    buf[20] = typ;
    buf[21] = code;
    buf[24..28].copy_from_slice(&rest);
    buf[28..28 + q].copy_from_slice(&quote[..q]);
    finish_icmp(buf, src, dst, 8 + q, id)
}

/// Builds a bare TCP segment (no options, no payload, window 0).
#[allow(clippy::too_many_arguments)]
pub fn build_tcp(
    buf: &mut [u8],
    src: Ipv4Addr,
    sport: u16,
    dst: Ipv4Addr,
    dport: u16,
    seq: u32,
    ack: u32,
    flags: u8,
) -> usize {
    build_tcp_with(buf, (src, sport), (dst, dport), seq, ack, flags, 0, None)
}

/// Builds a TCP segment without payload, with `window` and, when `ts` is
/// given, a timestamps option (RFC 7323: NOP, NOP, kind 8 = TSval, TSecr).
#[allow(clippy::too_many_arguments)]
pub fn build_tcp_with(
    buf: &mut [u8],
    (src, sport): (Ipv4Addr, u16),
    (dst, dport): (Ipv4Addr, u16),
    seq: u32,
    ack: u32,
    flags: u8,
    window: u16,
    ts: Option<(u32, u32)>,
) -> usize {
    let tlen = if ts.is_some() { 32 } else { 20 };
    let total = 20 + tlen;
    write_ip4(buf, src, dst, PROTO_TCP, total, 0);
    let t = &mut buf[20..total];
    t[0..2].copy_from_slice(&sport.to_be_bytes());
    t[2..4].copy_from_slice(&dport.to_be_bytes());
    t[4..8].copy_from_slice(&seq.to_be_bytes());
    t[8..12].copy_from_slice(&ack.to_be_bytes());
    t[12] = ((tlen / 4) as u8) << 4;
    t[13] = flags;
    t[14..16].copy_from_slice(&window.to_be_bytes());
    t[16..20].fill(0);
    if let Some((val, ecr)) = ts {
        t[20..24].copy_from_slice(&[1, 1, 8, 10]);
        t[24..28].copy_from_slice(&val.to_be_bytes());
        t[28..32].copy_from_slice(&ecr.to_be_bytes());
    }
    let c = checksum(pseudo_v4(src, dst, PROTO_TCP, tlen), t);
    t[16..18].copy_from_slice(&c.to_be_bytes());
    total
}

/// The fields of a TCP segment that the local leg's NAT looks at beyond
/// its ports (read for every segment: fixed offsets only, no option scan).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpSeg {
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    /// Payload length (bytes after the TCP header).
    pub payload: usize,
}

/// Reads a TCP header (`t` = header and payload); `None` when it is shorter
/// than 20 bytes or its data offset does not fit.
pub fn tcp_seg(t: &[u8]) -> Option<TcpSeg> {
    if t.len() < 20 {
        return None;
    }
    let doff = ((t[12] >> 4) as usize) * 4;
    if doff < 20 || doff > t.len() {
        return None;
    }
    Some(TcpSeg {
        seq: u32::from_be_bytes([t[4], t[5], t[6], t[7]]),
        ack: u32::from_be_bytes([t[8], t[9], t[10], t[11]]),
        flags: t[13],
        payload: t.len() - doff,
    })
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

/// The RST a host sends in answer to segment `seg` (RFC 793 "reset
/// generation"), from `seg`'s destination back to its source.
pub fn build_rst_for(buf: &mut [u8], ip: &Ip4, seg: &[u8]) -> Option<usize> {
    if seg.len() < 20 {
        return None;
    }
    let flags = seg[13];
    if flags & TCP_RST != 0 {
        return None;
    }
    let sport = u16::from_be_bytes([seg[0], seg[1]]);
    let dport = u16::from_be_bytes([seg[2], seg[3]]);
    let seq = u32::from_be_bytes([seg[4], seg[5], seg[6], seg[7]]);
    let ack = u32::from_be_bytes([seg[8], seg[9], seg[10], seg[11]]);
    let doff = ((seg[12] >> 4) as usize) * 4;
    let data_len = seg.len().saturating_sub(doff) as u32;
    if flags & TCP_ACK != 0 {
        Some(build_tcp(
            buf, ip.dst, dport, ip.src, sport, ack, 0, TCP_RST,
        ))
    } else {
        let seg_len = data_len + (flags & TCP_SYN != 0) as u32 + (flags & TCP_FIN != 0) as u32;
        Some(build_tcp(
            buf,
            ip.dst,
            dport,
            ip.src,
            sport,
            0,
            seq.wrapping_add(seg_len),
            TCP_RST | TCP_ACK,
        ))
    }
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

/// The well-known prefix 64:ff9b::/96.
pub fn is_wkp(p: &Ipv6Net) -> bool {
    p.prefix_len() == 96 && p.network() == Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{PacketHeaders, TransportHeader};

    fn a(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn tcp_with_timestamps_reads_back_through_etherparse_and_tcp_seg() {
        let mut buf = [0u8; 64];
        for ts in [None, Some((7u32, 0xfedc_ba98u32))] {
            let n = build_tcp_with(
                &mut buf,
                (a("203.0.113.10"), 80),
                (a("192.0.0.4"), 40000),
                0xffff_fff0,
                12345,
                TCP_ACK,
                4096,
                ts,
            );
            let h = PacketHeaders::from_ip_slice(&buf[..n]).unwrap();
            let ip = match h.net.unwrap() {
                etherparse::NetHeaders::Ipv4(ip, _) => ip,
                _ => panic!(),
            };
            assert_eq!(ip.header_checksum, ip.calc_header_checksum());
            let Some(TransportHeader::Tcp(t)) = h.transport else {
                panic!()
            };
            assert_eq!(t.checksum, t.calc_checksum_ipv4(&ip, &[]).unwrap());
            assert_eq!((t.window_size, t.ack, t.fin), (4096, true, false));
            let seg = tcp_seg(&buf[20..n]).unwrap();
            assert_eq!(
                seg,
                TcpSeg {
                    seq: 0xffff_fff0,
                    ack: 12345,
                    flags: TCP_ACK,
                    payload: 0,
                }
            );
            assert_eq!(tcp_timestamps(&buf[20..n]), ts);
        }
    }

    #[test]
    fn tcp_seg_and_timestamps_survive_bad_options_and_offsets() {
        let mut t = [0u8; 40];
        t[12] = 10 << 4;
        // MSS, then an option whose length runs past the header
        t[20..24].copy_from_slice(&[2, 4, 5, 0xb4]);
        t[24..26].copy_from_slice(&[8, 30]);
        assert_eq!(tcp_seg(&t).unwrap().payload, 0);
        assert_eq!(tcp_timestamps(&t), None);
        t[24..26].copy_from_slice(&[8, 0]); // zero length: stop, no loop
        assert_eq!(tcp_timestamps(&t), None);
        t[12] = 15 << 4; // data offset beyond the segment
        assert_eq!(tcp_seg(&t), None);
        assert_eq!(tcp_timestamps(&t), None);
        t[12] = 4 << 4;
        assert_eq!(tcp_seg(&t), None);
        assert_eq!(tcp_seg(&t[..19]), None);
    }

    #[test]
    fn udp_builder_checksums_match_etherparse() {
        let mut buf = [0u8; 2000];
        for len in [0usize, 1, 2, 3, 17, 1000, 1472] {
            for (i, b) in buf[28..28 + len].iter_mut().enumerate() {
                *b = (i * 7 + len) as u8;
            }
            let n = finish_udp(
                &mut buf,
                a("203.0.113.10"),
                7,
                a("192.0.0.4"),
                40000,
                len,
                9,
            );
            let h = PacketHeaders::from_ip_slice(&buf[..n]).unwrap();
            let ip = match h.net.unwrap() {
                etherparse::NetHeaders::Ipv4(ip, _) => ip,
                _ => panic!("not v4"),
            };
            assert_eq!(ip.header_checksum, ip.calc_header_checksum());
            match h.transport.unwrap() {
                TransportHeader::Udp(u) => {
                    assert_eq!(u.checksum, u.calc_checksum_ipv4(&ip, &buf[28..n]).unwrap());
                    assert_eq!(u.length as usize, 8 + len);
                }
                _ => panic!("not udp"),
            }
            assert!(parse_ip4(&buf[..n]).is_ok());
        }
    }

    #[test]
    fn rst_for_syn_acks_the_syn() {
        let mut syn = [0u8; 40];
        build_tcp(
            &mut syn,
            a("192.0.0.4"),
            5555,
            a("8.8.8.8"),
            80,
            1000,
            0,
            TCP_SYN,
        );
        let ip = parse_ip4(&syn).unwrap();
        let mut out = [0u8; 64];
        let n = build_rst_for(&mut out, &ip, &syn[20..]).unwrap();
        let h = PacketHeaders::from_ip_slice(&out[..n]).unwrap();
        let ipv4 = match h.net.unwrap() {
            etherparse::NetHeaders::Ipv4(ip, _) => ip,
            _ => panic!(),
        };
        assert_eq!(ipv4.source, [8, 8, 8, 8]);
        match h.transport.unwrap() {
            TransportHeader::Tcp(t) => {
                assert!(t.rst && t.ack);
                assert_eq!(t.acknowledgment_number, 1001);
                assert_eq!(t.destination_port, 5555);
                assert_eq!(t.checksum, t.calc_checksum_ipv4(&ipv4, &[]).unwrap());
            }
            _ => panic!(),
        }
    }

    #[test]
    fn icmp_error_checksum_is_valid() {
        let mut quote = [0u8; 40];
        build_tcp(
            &mut quote,
            a("192.0.0.4"),
            1,
            a("10.0.0.1"),
            2,
            3,
            4,
            TCP_SYN,
        );
        let mut buf = [0u8; 600];
        let n = build_icmp_error(
            &mut buf,
            a("10.0.0.1"),
            a("192.0.0.4"),
            3,
            13,
            [0; 4],
            &quote,
            1,
        );
        assert_eq!(n, 20 + 8 + 40);
        assert_eq!(checksum(0, &buf[20..n]), 0);
        assert!(parse_ip4(&buf[..n]).is_ok());
    }

    #[test]
    fn incremental_update_equals_recompute() {
        let mut p = [0u8; 40];
        build_tcp(
            &mut p,
            a("192.0.0.4"),
            1234,
            a("203.0.113.10"),
            80,
            77,
            88,
            TCP_ACK,
        );
        let old = p[12..20].to_vec();
        p[12..16].copy_from_slice(&[192, 0, 0, 5]);
        p[16..20].copy_from_slice(&[192, 0, 0, 4]);
        let c = csum_update(u16::from_be_bytes([p[10], p[11]]), &old, &p[12..20]);
        p[10..12].copy_from_slice(&c.to_be_bytes());
        assert_eq!(fold(sum16(&p[..20])), 0xffff);
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
        assert!(is_wkp(&"64:ff9b::/96".parse().unwrap()));
        assert!(!is_wkp(&"2001:db8:64::/96".parse().unwrap()));
    }

    #[test]
    fn parse_rejects_garbage() {
        assert_eq!(parse_ip4(&[]), Err(ParseError::Malformed));
        assert_eq!(parse_ip4(&[0x60; 40]), Err(ParseError::NotIpv4));
        let mut p = [0u8; 40];
        build_tcp(&mut p, a("192.0.0.4"), 1, a("1.1.1.1"), 2, 0, 0, TCP_SYN);
        p[10] ^= 1;
        assert_eq!(parse_ip4(&p), Err(ParseError::Malformed));
        assert_eq!(parse_ip4(&p[..30]), Err(ParseError::Malformed));
    }
}
