//! IPv4 -> IPv6 (RFC 7915 section 4).

use crate::checksum;
use crate::fragment::{self, V6_PAYLOAD_AT};
use crate::headers::*;
use crate::icmp_err::{self, ICMP6_ERROR_MAX};
use crate::icmp_map::{self, Info, Mapped};
use crate::outcome::{DropReason, IpVersion, OutBuf, Outcome};
use crate::transport;
use crate::wire::{
    Icmpv4DstUnreachable, Icmpv4ErrorRepr, Icmpv4Message, Icmpv4TimeExceeded, Icmpv6Message,
    Ipv6FragmentRepr, Ipv6Repr,
};
use crate::Translator;
use std::net::Ipv6Addr;

pub(crate) fn translate(t: &Translator, pkt: &[u8], out: &mut OutBuf) -> Outcome {
    out.clear();
    match run(t, pkt, out) {
        Ok(o) => o,
        Err(r) => {
            out.clear();
            Outcome::Drop(r)
        }
    }
}

fn run(t: &Translator, pkt: &[u8], out: &mut OutBuf) -> Result<Outcome, DropReason> {
    let cfg = t.config();
    let ip = parse_v4(pkt, false)?;
    let whole = &pkt[..ip.total_len as usize];
    let first = ip.frag_off == 0;
    let is_icmp_err = ip.proto == PROTO_ICMP
        && first
        && ip
            .payload
            .first()
            .is_some_and(|&ty| icmp_map::is_icmp4_error(ty));
    // RFC 1812 4.3.2.7: no ICMP error about an ICMP error or a non-initial fragment.
    let may_answer = first && !is_icmp_err && icmp_err::v4_answerable(ip.src);

    // RFC 7915 4.1 "Hop Limit": copied from TTL; a translator acting as a
    // router decrements it first and answers Time Exceeded when it runs out.
    let mut ttl = ip.ttl;
    if cfg.decrement_ttl {
        if ttl <= 1 {
            if !may_answer {
                return Err(DropReason::TtlExpired);
            }
            return reply_v4(
                t,
                out,
                &ip,
                Icmpv4Message::TimeExceeded,
                Icmpv4TimeExceeded::TtlExpired as u8,
                [0; 4],
                whole,
            );
        }
        ttl -= 1;
    }
    // RFC 7915 4.1: options are ignored, but an unexpired source route means
    // "discard, and answer Source Route Failed (type 3, code 5)".
    if has_unexpired_source_route(ip.hdr) {
        if !may_answer {
            return Err(DropReason::SourceRoute);
        }
        return reply_v4(
            t,
            out,
            &ip,
            Icmpv4Message::DstUnreachable,
            Icmpv4DstUnreachable::SrcRouteFailed as u8,
            [0; 4],
            whole,
        );
    }
    let dst6 = t.map_4to6(ip.dst)?;
    let src6 = match t.map_4to6(ip.src) {
        Ok(a) => a,
        // RFC 6791 (applied in this direction too): an ICMP error from a router
        // whose address has no IPv6 form gets the pool6791 source.
        Err(_) if is_icmp_err => cfg
            .pool6791_v6
            .or(cfg.self_v6)
            .ok_or(DropReason::UntranslatableSrc)?,
        Err(DropReason::UntranslatableDst) => return Err(DropReason::UntranslatableSrc),
        Err(e) => return Err(e),
    };

    if ip.proto == PROTO_ICMP && ip.is_fragment() {
        // The ICMPv6 checksum covers a pseudo-header with the whole message
        // length, which a stateless translator cannot know for a fragment.
        return Err(DropReason::FragmentedIcmp);
    }
    if is_icmp_err {
        let n = icmp_error(t, &ip, ttl, &src6, &dst6, &mut out.data, false)?;
        out.push(0, n);
        return Ok(Outcome::Forward(IpVersion::V6));
    }

    let is_frag = ip.is_fragment();
    // RFC 7915 4.5: a UDP checksum of zero is computed when configured to
    // and the datagram is whole; otherwise the packet is dropped, and 4.4's
    // Communication Administratively Prohibited tells the source.
    if ip.proto == PROTO_UDP
        && first
        && ip.payload.get(6..8) == Some(&[0, 0])
        && (is_frag || !cfg.amend_udp_zero_checksum)
    {
        if !may_answer {
            return Err(DropReason::UdpZeroChecksum);
        }
        return reply_v4(
            t,
            out,
            &ip,
            Icmpv4Message::DstUnreachable,
            Icmpv4DstUnreachable::CommProhibited as u8,
            [0; 4],
            whole,
        )
        .or(Err(DropReason::UdpZeroChecksum));
    }
    let plen = ip.payload.len();
    let hdr_len = if is_frag { 48 } else { 40 };
    let total6 = hdr_len + plen;
    // RFC 7915 section 4: DF=0 packets are cut to fit the lowest IPv6 MTU
    // (configurable, default 1280). RFC 7915 4.1: "If the DF bit is set and
    // the MTU of the next-hop interface is less than the total length value
    // of the IPv4 packet plus 20", Fragmentation Needed (RFC 1191 path MTU
    // discovery) -- whole packets and fragments alike; the size compared is
    // the packet's as IPv6 without a Fragment header, so that a fragment sent
    // again at the advertised MTU is not refused once more (its Fragment
    // header may make it be cut below).
    let lim = cfg.mtu6.min(cfg.lowest_ipv6_mtu) as usize;
    if ip.df && 40 + plen > cfg.mtu6 as usize {
        if !may_answer {
            return Err(DropReason::TooBigNoReply);
        }
        let mtu = (cfg.mtu6 - 20).to_be_bytes();
        return reply_v4(
            t,
            out,
            &ip,
            Icmpv4Message::DstUnreachable,
            Icmpv4DstUnreachable::FragRequired as u8,
            [0, 0, mtu[0], mtu[1]],
            whole,
        );
    }
    let need_frag = (is_frag || !ip.df) && total6 > lim;
    let next = if ip.proto == PROTO_ICMP {
        PROTO_ICMPV6
    } else {
        ip.proto
    };

    // Build the packet: directly in `data`, or in `scratch` if it must be cut.
    let buf: &mut [u8] = if need_frag {
        &mut out.scratch
    } else {
        &mut out.data
    };
    let pay_at = if need_frag { V6_PAYLOAD_AT } else { hdr_len };
    buf[pay_at..pay_at + plen].copy_from_slice(ip.payload);
    if first {
        fix_transport(&mut buf[pay_at..pay_at + plen], ip.proto, &ip, &src6, &dst6)?;
    }
    Ipv6Repr {
        src: src6,
        dst: dst6,
        next_header: if is_frag { PROTO_FRAGMENT } else { next },
        payload_len: (total6 - 40) as u16,
        hop_limit: ttl,
        traffic_class: ip.tos,
    }
    .emit(buf);
    if need_frag {
        // RFC 7915 4.1: Identification's low 16 bits from IPv4, high bits zero.
        fragment::fragment_v6(
            out,
            plen,
            next,
            ip.id as u32,
            ip.frag_off,
            ip.mf,
            lim as u16,
        );
    } else {
        if is_frag {
            Ipv6FragmentRepr {
                next_header: next,
                offset: ip.frag_off,
                more: ip.mf,
                ident: ip.id as u32,
            }
            .emit(&mut buf[40..48]);
        }
        out.push(0, total6);
    }
    Ok(Outcome::Forward(IpVersion::V6))
}

/// RFC 7915 4.5 / 4.2: fixes the transport checksum of the first fragment (or
/// whole packet) in `pay`, which starts at the transport header.
fn fix_transport(
    pay: &mut [u8],
    proto: u8,
    ip: &V4<'_>,
    src6: &Ipv6Addr,
    dst6: &Ipv6Addr,
) -> Result<(), DropReason> {
    let old = transport::addr_sum(&ip.src.octets(), &ip.dst.octets());
    let new = transport::addr_sum(&src6.octets(), &dst6.octets());
    match proto {
        PROTO_UDP if pay.get(6..8) == Some(&[0, 0]) => {
            // RFC 7915 4.5: IPv6 requires a UDP checksum. Computed here:
            // `run` has already refused a zero checksum it may not amend (a
            // fragment, or amending not configured).
            let init = checksum::pseudo_v6(src6, dst6, PROTO_UDP, pay.len() as u32);
            // A computed 0 is sent as all ones (RFC 768, RFC 8200 8.1).
            let c = match checksum::finish(checksum::sum(pay, init)) {
                0 => 0xffff,
                c => c,
            };
            pay[6..8].copy_from_slice(&c.to_be_bytes());
        }
        PROTO_ICMP => {
            if pay.len() < 8 {
                return Err(DropReason::Malformed);
            }
            match icmp_map::map_4to6(pay[0], pay[1], 0) {
                // RFC 7915 4.2: the ICMPv6 checksum also covers the
                // pseudo-header; adjust for it and the new type.
                Mapped::Info { typ, code } => {
                    let pseudo =
                        checksum::pseudo_v6(src6, dst6, PROTO_ICMPV6, ip.upper_len() as u32);
                    transport::retype_icmp(pay, typ, code, 0, pseudo);
                }
                _ => return Err(DropReason::IcmpUntranslatable),
            }
        }
        // RFC 7915 4.1 / 4.5: other protocols are carried through unchanged.
        _ => transport::readdress(proto, pay, old, new).ok_or(DropReason::TruncatedTransport)?,
    }
    Ok(())
}

/// Translates an ICMPv4 error and the packet inside it (RFC 7915 4.2, 4.3)
/// into `out`, returning the IPv6 packet's length. `hairpin`: the error is
/// on its way back to IPv6 (RFC 7757 section 4; see `inner_4to6`).
pub(crate) fn icmp_error(
    t: &Translator,
    ip: &V4<'_>,
    ttl: u8,
    src6: &Ipv6Addr,
    dst6: &Ipv6Addr,
    out: &mut [u8],
    hairpin: bool,
) -> Result<usize, DropReason> {
    let cfg = t.config();
    let icmp = ip.payload;
    if icmp.len() < 8 + 20 {
        return Err(DropReason::Malformed);
    }
    if !checksum::verify(icmp, 0) {
        return Err(DropReason::BadIcmpChecksum);
    }
    let (typ, code, info) = match icmp_map::map_4to6(icmp[0], icmp[1], icmp[4]) {
        Mapped::Error { typ, code, info } => (typ, code, info),
        _ => return Err(DropReason::IcmpUntranslatable),
    };
    let body = &icmp[8..];
    // RFC 4884: a non-zero length (byte 5, 32-bit words) on Destination
    // Unreachable, Time Exceeded and Parameter Problem marks an extension
    // structure after the padded original datagram. A length that does not
    // fit means "no extension" (RFC 4884 section 5.3 compatibility).
    let len4 = icmp[5] as usize * 4;
    let (orig, mut ext) = if len4 != 0 && len4 + 4 <= body.len() {
        (&body[..len4], Some(&body[len4..]))
    } else {
        (body, None)
    };
    // RFC 4884 exists for ICMPv6 Destination Unreachable and Time Exceeded only.
    if typ != Icmpv6Message::DstUnreachable as u8 && typ != Icmpv6Message::TimeExceeded as u8 {
        ext = None;
    }
    let inner = parse_v4(orig, true).map_err(|_| DropReason::Malformed)?;
    let orig_used = &orig[..orig.len().min(inner.total_len as usize)];
    let inner = parse_v4(orig_used, true).map_err(|_| DropReason::Malformed)?;
    let mut inner_len = inner_4to6(t, &inner, &mut out[48..], hairpin)?;

    let mut total = 48 + inner_len;
    let mut len_field = 0u8;
    if let Some(e) = ext {
        // Pad the original datagram to a multiple of 8, at least 128 bytes
        // (RFC 4884 section 5.1), leaving room for the extension.
        let room = (ICMP6_ERROR_MAX - 48).saturating_sub(e.len()) / 8 * 8;
        if room >= 128 {
            // RFC 4884 section 5.1: the field is whole 64-bit words, at least
            // 128 bytes. The translated datagram (20 bytes longer than the
            // 32-bit-word IPv4 one, its IPv4 padding left out) is cut to whole
            // words -- the original datagram may be truncated anyway -- and
            // only padded with zeros up to the 128-byte minimum.
            inner_len = inner_len.min(room);
            if inner_len >= 128 {
                inner_len = inner_len / 8 * 8;
            }
            let padded = inner_len.max(128);
            out[48 + inner_len..48 + padded].fill(0);
            out[48 + padded..48 + padded + e.len()].copy_from_slice(e);
            total = 48 + padded + e.len();
            len_field = (padded / 8) as u8;
        } else {
            // The extension cannot fit: send the error without it.
            total = (48 + inner_len).min(ICMP6_ERROR_MAX);
        }
    } else {
        total = total.min(ICMP6_ERROR_MAX);
    }
    let rest: u32 = match info {
        Info::Zero => (len_field as u32) << 24,
        Info::Pointer(p) => p as u32,
        Info::Mtu => icmp_map::mtu_4to6(
            u16::from_be_bytes([icmp[6], icmp[7]]),
            inner.total_len,
            cfg.mtu4,
            cfg.mtu6,
        ),
    };
    Ipv6Repr {
        src: *src6,
        dst: *dst6,
        next_header: PROTO_ICMPV6,
        payload_len: (total - 40) as u16,
        hop_limit: ttl,
        traffic_class: ip.tos,
    }
    .emit(out);
    let m = &mut out[40..total];
    m[0] = typ;
    m[1] = code;
    m[2] = 0;
    m[3] = 0;
    m[4..8].copy_from_slice(&rest.to_be_bytes());
    let c = checksum::finish(checksum::sum(
        m,
        checksum::pseudo_v6(src6, dst6, PROTO_ICMPV6, m.len() as u32),
    ));
    m[2..4].copy_from_slice(&c.to_be_bytes());
    Ok(total)
}

/// Translates the (possibly truncated) packet inside an ICMPv4 error
/// (RFC 7915 4.3): same address mapping, TTL copied, lengths as the
/// original claimed, transport checksum adjusted if present.
fn inner_4to6(
    t: &Translator,
    inner: &V4<'_>,
    out: &mut [u8],
    hairpin: bool,
) -> Result<usize, DropReason> {
    let src6 = t.map_4to6(inner.src)?;
    // Hairpinned (RFC 7757 section 4): the inner destination is the outer
    // source's counterpart, mapped by pool6 like it.
    let dst6 = if hairpin {
        t.embed_pool6(inner.dst)?
    } else {
        t.map_4to6(inner.dst)?
    };
    let is_frag = inner.is_fragment();
    let hdr = if is_frag { 48 } else { 40 };
    let next = if inner.proto == PROTO_ICMP {
        PROTO_ICMPV6
    } else {
        inner.proto
    };
    let n = inner.payload.len();
    if out.len() < hdr + n {
        return Err(DropReason::TooBig);
    }
    out[hdr..hdr + n].copy_from_slice(inner.payload);
    if inner.frag_off == 0 {
        let pay = &mut out[hdr..hdr + n];
        let old = transport::addr_sum(&inner.src.octets(), &inner.dst.octets());
        let new = transport::addr_sum(&src6.octets(), &dst6.octets());
        match inner.proto {
            PROTO_ICMP if n >= 4 => {
                if icmp_map::is_icmp4_error(pay[0]) {
                    return Err(DropReason::IcmpErrorInError);
                }
                if let Mapped::Info { typ, code } = icmp_map::map_4to6(pay[0], pay[1], 0) {
                    let pseudo =
                        checksum::pseudo_v6(&src6, &dst6, PROTO_ICMPV6, inner.upper_len() as u32);
                    transport::retype_icmp(pay, typ, code, 0, pseudo);
                }
            }
            // A quoted segment too short for its checksum is quoted as it is.
            proto => {
                let _ = transport::readdress(proto, pay, old, new);
            }
        }
    }
    let plen = inner.upper_len() as usize + hdr - 40;
    Ipv6Repr {
        src: src6,
        dst: dst6,
        next_header: if is_frag { PROTO_FRAGMENT } else { next },
        payload_len: plen as u16,
        hop_limit: inner.ttl,
        traffic_class: inner.tos,
    }
    .emit(out);
    if is_frag {
        Ipv6FragmentRepr {
            next_header: next,
            offset: inner.frag_off,
            more: inner.mf,
            ident: inner.id as u32,
        }
        .emit(&mut out[40..48]);
    }
    Ok(hdr + n)
}

/// Sends an ICMPv4 error of the translator's own back to the IPv4 source.
fn reply_v4(
    t: &Translator,
    out: &mut OutBuf,
    ip: &V4<'_>,
    message: Icmpv4Message,
    code: u8,
    rest: [u8; 4],
    whole: &[u8],
) -> Result<Outcome, DropReason> {
    let cfg = t.config();
    let src = cfg
        .self_v4
        .or(cfg.pool6791_v4)
        .ok_or(DropReason::NoErrorSource)?;
    let e = Icmpv4ErrorRepr {
        message,
        code,
        rest,
        quote: whole,
    };
    let n = icmp_err::emit_icmp4(&mut out.data, src, ip.src, &e);
    out.push(0, n);
    Ok(Outcome::Reply(IpVersion::V4))
}
