//! Fragmenting a translated packet that exceeds the egress MTU.
//!
//! The whole translated packet is first built in `OutBuf::scratch`; these
//! functions cut it into `OutBuf::data`. Fragment payloads are multiples of
//! 8 bytes except the last (RFC 791, RFC 8200 section 4.5). Offsets are
//! relative to the original datagram, so an already fragmented packet is
//! cut further with the same Identification (RFC 7915 section 4.1: "fragment
//! ... so that the resulting IPv6 packets (with Fragment Header added to
//! each fragment) are less than or equal to" the MTU).

use crate::headers::PROTO_FRAGMENT;
use crate::outcome::OutBuf;
use crate::wire::{Ipv4Repr, Ipv6FragmentRepr};
use std::net::Ipv4Addr;

/// Where the payload of a packet to be cut into IPv6 fragments starts in
/// scratch: the 40-byte header template, then 8 bytes reserved for the
/// Fragment header.
pub const V6_PAYLOAD_AT: usize = 48;
/// The same for IPv4: a 20-byte header (the translator never emits options).
pub const V4_PAYLOAD_AT: usize = 20;

/// Cuts `scratch[48..48 + plen]` into IPv6 fragments of at most `mtu` bytes.
/// `scratch[..40]` is the IPv6 header template (payload length and next
/// header are rewritten per fragment). `base_off` (8-byte units) and
/// `more` describe the input if it was already a fragment.
pub fn fragment_v6(
    out: &mut OutBuf,
    plen: usize,
    next: u8,
    id: u32,
    base_off: u16,
    more: bool,
    mtu: u16,
) {
    let chunk_max = ((mtu as usize - 48) / 8) * 8;
    let mut done = 0usize;
    let mut pos = 0usize;
    while done < plen {
        let chunk = chunk_max.min(plen - done);
        let last = done + chunk == plen;
        let len = 48 + chunk;
        {
            let (data, scratch) = (&mut out.data, &out.scratch);
            let d = &mut data[pos..pos + len];
            d[..40].copy_from_slice(&scratch[..40]);
            d[4..6].copy_from_slice(&((8 + chunk) as u16).to_be_bytes());
            d[6] = PROTO_FRAGMENT;
            let off = base_off + (done / 8) as u16;
            Ipv6FragmentRepr {
                next_header: next,
                offset: off,
                more: more || !last,
                ident: id,
            }
            .emit(&mut d[40..48]);
            d[48..].copy_from_slice(&scratch[V6_PAYLOAD_AT + done..V6_PAYLOAD_AT + done + chunk]);
        }
        out.push(pos, pos + len);
        pos += len;
        done += chunk;
    }
}

/// Cuts `scratch[20..20 + plen]` into IPv4 fragments of at most `mtu` bytes,
/// each with a fresh header (RFC 791 fragmentation; DF is 0 by definition).
#[allow(clippy::too_many_arguments)]
pub fn fragment_v4(
    out: &mut OutBuf,
    plen: usize,
    tos: u8,
    id: u16,
    ttl: u8,
    proto: u8,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    base_off: u16,
    more: bool,
    mtu: u16,
) {
    let chunk_max = ((mtu as usize - 20) / 8) * 8;
    let mut done = 0usize;
    let mut pos = 0usize;
    while done < plen {
        let chunk = chunk_max.min(plen - done);
        let last = done + chunk == plen;
        let len = 20 + chunk;
        {
            let (data, scratch) = (&mut out.data, &out.scratch);
            let d = &mut data[pos..pos + len];
            let off = base_off + (done / 8) as u16;
            Ipv4Repr {
                src,
                dst,
                protocol: proto,
                payload_len: chunk as u16,
                ttl,
                tos,
                ident: id,
                dont_frag: false,
                more_frags: more || !last,
                frag_offset: off,
            }
            .emit(d);
            d[20..].copy_from_slice(&scratch[V4_PAYLOAD_AT + done..V4_PAYLOAD_AT + done + chunk]);
        }
        out.push(pos, pos + len);
        pos += len;
        done += chunk;
    }
}
