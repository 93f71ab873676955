//! The translator's views of a packet: the IPv4 header (parsed by
//! [`crate::wire::Ipv4Repr`]) or the IPv6 header chain, with the slices of
//! header and upper-layer bytes the translation copies.
//!
//! The translator needs exact control over what counts as malformed (a
//! truncated packet inside an ICMP error is fine, an outer one is not); the
//! tests check the results with `etherparse` as an independent second
//! parser. Packets are written with the `wire` reprs' `emit`.

use crate::outcome::DropReason;
use crate::wire::{Ipv4Repr, WireError};
use std::net::{Ipv4Addr, Ipv6Addr};

pub use crate::wire::ip_proto::{
    DSTOPTS as PROTO_DSTOPTS, FRAGMENT as PROTO_FRAGMENT, HOPOPT as PROTO_HOPOPT,
    ICMP as PROTO_ICMP, ICMPV6 as PROTO_ICMPV6, ROUTING as PROTO_ROUTING, TCP as PROTO_TCP,
    UDP as PROTO_UDP,
};

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

/// Parses an IPv4 header with [`Ipv4Repr`]. `inner`: the packet is a
/// (possibly truncated) copy inside an ICMP error, so Total Length may
/// exceed what is present and the header checksum is not checked.
#[inline]
pub fn parse_v4(pkt: &[u8], inner: bool) -> Result<V4<'_>, DropReason> {
    if pkt.len() < Ipv4Repr::HEADER_LEN {
        return Err(DropReason::Malformed);
    }
    let parsed = if inner {
        Ipv4Repr::parse_quoted(pkt)
    } else {
        Ipv4Repr::parse(pkt)
    };
    let (r, ihl) = parsed.map_err(|e| match e {
        WireError::WrongVersion => DropReason::WrongVersion,
        WireError::BadChecksum => DropReason::BadIpv4Checksum,
        WireError::Truncated | WireError::Malformed => DropReason::Malformed,
    })?;
    let total_len = ihl as u16 + r.payload_len;
    let end = pkt.len().min(total_len as usize);
    Ok(V4 {
        hdr: &pkt[..ihl],
        payload: &pkt[ihl..end],
        tos: r.tos,
        total_len,
        id: r.ident,
        df: r.dont_frag,
        mf: r.more_frags,
        frag_off: r.frag_offset,
        ttl: r.ttl,
        proto: r.protocol,
        src: r.src,
        dst: r.dst,
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
    /// The low-order 16 bits of the Fragment header's Identification: all
    /// that an IPv4 header can carry (RFC 7915 section 5.1.1).
    pub id: u16,
    /// Offset in 8-byte units.
    pub off: u16,
    pub more: bool,
    /// Where the Fragment header starts (from the start of the IPv6
    /// header): the headers before it are the unfragmentable part, its
    /// full 32-bit Identification is at `at + 4` (RFC 8200 section 4.5).
    pub at: usize,
    /// Where the Next Header field naming the Fragment header is (6, or
    /// the first byte of the extension header before it): a reassembler
    /// writes the Fragment header's own Next Header there.
    pub named_at: usize,
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
    /// Where the Next Header field naming `proto` is (6, or the first byte
    /// of the last extension header): the pointer of a Parameter Problem
    /// about it (RFC 4443 section 3.4, code 1).
    pub proto_at: usize,
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    pub frag: Option<Frag>,
    /// Offset (from the start of the IPv6 header) of the Segments Left byte
    /// of a Routing header whose Segments Left is not zero.
    pub unexpired_routing: Option<u32>,
    /// A Hop-by-Hop, Routing or Destination Options header follows the
    /// Fragment header (RFC 7915 section 5.1.1: "SHOULD be dropped").
    pub ext_after_frag: bool,
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
        if payload_len == 0 && pkt[6] == PROTO_HOPOPT {
            // A jumbogram (RFC 2675: Payload Length 0 and a Jumbo Payload
            // option in Hop-by-Hop) cannot become IPv4. Payload Length 0
            // with any other Next Header is an empty packet (for example
            // Next Header 59, "no next header"), translated like any other.
            return Err(DropReason::TooBig);
        }
        if pkt.len() < 40 + payload_len as usize {
            return Err(DropReason::Malformed);
        }
        40 + payload_len as usize
    };
    let pkt = &pkt[..end];
    let mut next = pkt[6];
    let mut next_at = 6usize;
    let mut off = 40usize;
    let mut frag = None;
    let mut unexpired_routing = None;
    let mut ext_after_frag = false;
    loop {
        match next {
            PROTO_HOPOPT | PROTO_ROUTING | PROTO_DSTOPTS => {
                if frag.is_some() {
                    // Walked over like the others, so that an inner packet
                    // still finds its upper layer; the outer one is refused.
                    ext_after_frag = true;
                } else if next == PROTO_HOPOPT && off != 40 {
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
                next_at = off;
                off += len;
            }
            PROTO_FRAGMENT => {
                if pkt.len() < off + 8 || frag.is_some() {
                    return Err(DropReason::Malformed);
                }
                let fo = u16::from_be_bytes([pkt[off + 2], pkt[off + 3]]);
                let f = Frag {
                    id: u16::from_be_bytes([pkt[off + 6], pkt[off + 7]]),
                    off: fo >> 3,
                    more: fo & 1 != 0,
                    at: off,
                    named_at: next_at,
                };
                frag = Some(f);
                next = pkt[off];
                next_at = off;
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
        proto_at: next_at,
        src,
        dst,
        frag,
        unexpired_routing,
        ext_after_frag,
    })
}
