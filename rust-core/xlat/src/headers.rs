//! Minimal, allocation-free views of IPv4 and IPv6 headers, and writers.
//!
//! The translator needs a few fields and exact control over what counts as
//! malformed (a truncated packet inside an ICMP error is fine, an outer one is
//! not), so it reads the fixed headers by hand; the tests check the results
//! with `etherparse` as an independent second parser.

use crate::checksum;
use crate::outcome::DropReason;
use std::net::{Ipv4Addr, Ipv6Addr};

pub const PROTO_HOPOPT: u8 = 0;
pub const PROTO_ICMP: u8 = 1;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;
pub const PROTO_ROUTING: u8 = 43;
pub const PROTO_FRAGMENT: u8 = 44;
pub const PROTO_ICMPV6: u8 = 58;
pub const PROTO_DSTOPTS: u8 = 60;

/// An IPv4 header and what follows it.
#[derive(Debug, Clone, Copy)]
pub struct V4<'a> {
    pub hdr: &'a [u8],
    /// Bytes after the header (trimmed to Total Length; for an inner packet,
    /// whatever part of the payload is present).
    pub payload: &'a [u8],
    pub tos: u8,
    pub total_len: u16,
    pub id: u16,
    pub df: bool,
    pub mf: bool,
    /// Fragment offset in 8-byte units.
    pub frag_off: u16,
    pub ttl: u8,
    pub proto: u8,
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
}

impl V4<'_> {
    pub fn is_fragment(&self) -> bool {
        self.mf || self.frag_off != 0
    }
    /// Length of the transport message the whole datagram carries (what the
    /// pseudo-header counts).
    pub fn upper_len(&self) -> u16 {
        self.total_len.saturating_sub(self.hdr.len() as u16)
    }
}

/// Parses an IPv4 header. `inner`: the packet is a (possibly truncated) copy
/// inside an ICMP error, so Total Length may exceed what is present and the
/// header checksum is not checked.
pub fn parse_v4(pkt: &[u8], inner: bool) -> Result<V4<'_>, DropReason> {
    if pkt.len() < 20 {
        return Err(DropReason::Malformed);
    }
    if pkt[0] >> 4 != 4 {
        return Err(DropReason::WrongVersion);
    }
    let ihl = (pkt[0] & 0xf) as usize * 4;
    let total_len = u16::from_be_bytes([pkt[2], pkt[3]]);
    if ihl < 20 || pkt.len() < ihl || (total_len as usize) < ihl {
        return Err(DropReason::Malformed);
    }
    let end = if inner {
        pkt.len().min(total_len as usize)
    } else {
        if pkt.len() < total_len as usize {
            return Err(DropReason::Malformed);
        }
        if !checksum::verify(&pkt[..ihl], 0) {
            return Err(DropReason::BadIpv4Checksum);
        }
        total_len as usize
    };
    let flags = u16::from_be_bytes([pkt[6], pkt[7]]);
    Ok(V4 {
        hdr: &pkt[..ihl],
        payload: &pkt[ihl..end],
        tos: pkt[1],
        total_len,
        id: u16::from_be_bytes([pkt[4], pkt[5]]),
        df: flags & 0x4000 != 0,
        mf: flags & 0x2000 != 0,
        frag_off: flags & 0x1fff,
        ttl: pkt[8],
        proto: pkt[9],
        src: Ipv4Addr::new(pkt[12], pkt[13], pkt[14], pkt[15]),
        dst: Ipv4Addr::new(pkt[16], pkt[17], pkt[18], pkt[19]),
    })
}

/// RFC 7915 section 4.1: an unexpired Loose or Strict Source Route option
/// means the packet must not be translated. Returns true if one is present.
pub fn has_unexpired_source_route(hdr: &[u8]) -> bool {
    let mut opts = &hdr[20.min(hdr.len())..];
    while let Some(&kind) = opts.first() {
        match kind {
            0 => return false, // end of option list
            1 => opts = &opts[1..],
            _ => {
                if opts.len() < 2 {
                    return false;
                }
                let len = opts[1] as usize;
                if len < 2 || len > opts.len() {
                    return false;
                }
                // LSRR 131, SSRR 137: pointer (byte 2) is 1-based; the route
                // is unexpired while the pointer is within the option.
                if (kind == 131 || kind == 137) && len >= 3 && (opts[2] as usize) <= len {
                    return true;
                }
                opts = &opts[len..];
            }
        }
    }
    false
}

/// An IPv6 Fragment header's contents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frag {
    pub id: u32,
    /// Offset in 8-byte units.
    pub off: u16,
    pub more: bool,
}

/// An IPv6 header, its extension headers, and the upper-layer bytes.
#[derive(Debug, Clone, Copy)]
pub struct V6<'a> {
    /// Header plus extension headers.
    pub hdrs: &'a [u8],
    /// Upper-layer bytes present (after all extension headers; for an inner
    /// packet possibly truncated).
    pub payload: &'a [u8],
    pub tc: u8,
    pub payload_len: u16,
    pub hop: u8,
    /// The upper-layer protocol (after extension headers).
    pub proto: u8,
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    pub frag: Option<Frag>,
    /// Offset (from the start of the IPv6 header) of the Segments Left byte
    /// of a Routing header whose Segments Left is not zero.
    pub unexpired_routing: Option<u32>,
}

impl V6<'_> {
    /// True for a real fragment; an atomic fragment (offset 0, M=0, RFC 6946)
    /// is handled as a whole packet.
    pub fn is_fragment(&self) -> bool {
        matches!(self.frag, Some(f) if f.off != 0 || f.more)
    }
    /// Length of the upper-layer message of this packet as the header claims it.
    pub fn upper_len(&self) -> u16 {
        (self.payload_len as usize + 40).saturating_sub(self.hdrs.len()) as u16
    }
}

/// Parses an IPv6 header and walks Hop-by-Hop, Routing, Destination Options
/// and Fragment headers (RFC 8200 section 4); anything else is the upper
/// layer and is carried through (RFC 7915 section 5.1: other extension
/// headers are not translated). After a non-first fragment's Fragment header
/// only payload follows.
pub fn parse_v6(pkt: &[u8], inner: bool) -> Result<V6<'_>, DropReason> {
    if pkt.len() < 40 {
        return Err(DropReason::Malformed);
    }
    if pkt[0] >> 4 != 6 {
        return Err(DropReason::WrongVersion);
    }
    let payload_len = u16::from_be_bytes([pkt[4], pkt[5]]);
    let end = if inner {
        pkt.len().min(40 + payload_len as usize)
    } else {
        if payload_len == 0 {
            // A jumbogram (RFC 2675) cannot become IPv4.
            return Err(DropReason::TooBig);
        }
        if pkt.len() < 40 + payload_len as usize {
            return Err(DropReason::Malformed);
        }
        40 + payload_len as usize
    };
    let pkt = &pkt[..end];
    let mut next = pkt[6];
    let mut off = 40usize;
    let mut frag = None;
    let mut unexpired_routing = None;
    loop {
        match next {
            PROTO_HOPOPT | PROTO_ROUTING | PROTO_DSTOPTS => {
                if next == PROTO_HOPOPT && off != 40 {
                    // Hop-by-Hop must come first (RFC 8200 section 4.3).
                    return Err(DropReason::Malformed);
                }
                if pkt.len() < off + 8 {
                    return Err(DropReason::Malformed);
                }
                let len = (pkt[off + 1] as usize + 1) * 8;
                if pkt.len() < off + len {
                    return Err(DropReason::Malformed);
                }
                if next == PROTO_ROUTING && pkt[off + 3] != 0 && unexpired_routing.is_none() {
                    unexpired_routing = Some(off as u32 + 3);
                }
                next = pkt[off];
                off += len;
            }
            PROTO_FRAGMENT => {
                if pkt.len() < off + 8 || frag.is_some() {
                    return Err(DropReason::Malformed);
                }
                let fo = u16::from_be_bytes([pkt[off + 2], pkt[off + 3]]);
                let f = Frag {
                    id: u32::from_be_bytes([
                        pkt[off + 4],
                        pkt[off + 5],
                        pkt[off + 6],
                        pkt[off + 7],
                    ]),
                    off: fo >> 3,
                    more: fo & 1 != 0,
                };
                frag = Some(f);
                next = pkt[off];
                off += 8;
                if f.off != 0 {
                    break;
                }
            }
            _ => break,
        }
    }
    let mut a = [0u8; 16];
    a.copy_from_slice(&pkt[8..24]);
    let src = Ipv6Addr::from(a);
    a.copy_from_slice(&pkt[24..40]);
    let dst = Ipv6Addr::from(a);
    Ok(V6 {
        hdrs: &pkt[..off],
        payload: &pkt[off..],
        // Traffic Class: bits 4-11 of the first 16-bit word (RFC 8200 section 3).
        tc: (u16::from_be_bytes([pkt[0], pkt[1]]) >> 4) as u8,
        payload_len,
        hop: pkt[7],
        proto: next,
        src,
        dst,
        frag,
        unexpired_routing,
    })
}

/// Writes a 20-byte IPv4 header with its checksum into `out[..20]`.
#[allow(clippy::too_many_arguments)]
pub fn write_v4(
    out: &mut [u8],
    tos: u8,
    total_len: u16,
    id: u16,
    df: bool,
    mf: bool,
    frag_off: u16,
    ttl: u8,
    proto: u8,
    src: Ipv4Addr,
    dst: Ipv4Addr,
) {
    let h = &mut out[..20];
    h[0] = 0x45;
    h[1] = tos;
    h[2..4].copy_from_slice(&total_len.to_be_bytes());
    h[4..6].copy_from_slice(&id.to_be_bytes());
    let flags = ((df as u16) << 14) | ((mf as u16) << 13) | (frag_off & 0x1fff);
    h[6..8].copy_from_slice(&flags.to_be_bytes());
    h[8] = ttl;
    h[9] = proto;
    h[10] = 0;
    h[11] = 0;
    h[12..16].copy_from_slice(&src.octets());
    h[16..20].copy_from_slice(&dst.octets());
    let c = checksum::finish(checksum::sum(h, 0));
    h[10..12].copy_from_slice(&c.to_be_bytes());
}

/// Writes a 40-byte IPv6 header into `out[..40]`. Flow label is always 0
/// (RFC 7915 section 4.1).
pub fn write_v6(
    out: &mut [u8],
    tc: u8,
    payload_len: u16,
    next: u8,
    hop: u8,
    src: &Ipv6Addr,
    dst: &Ipv6Addr,
) {
    let h = &mut out[..40];
    h[0] = 0x60 | (tc >> 4);
    h[1] = tc << 4;
    h[2] = 0;
    h[3] = 0;
    h[4..6].copy_from_slice(&payload_len.to_be_bytes());
    h[6] = next;
    h[7] = hop;
    h[8..24].copy_from_slice(&src.octets());
    h[24..40].copy_from_slice(&dst.octets());
}

/// Writes an 8-byte Fragment header.
pub fn write_frag(out: &mut [u8], next: u8, off: u16, more: bool, id: u32) {
    out[0] = next;
    out[1] = 0;
    out[2..4].copy_from_slice(&((off << 3) | more as u16).to_be_bytes());
    out[4..8].copy_from_slice(&id.to_be_bytes());
}
