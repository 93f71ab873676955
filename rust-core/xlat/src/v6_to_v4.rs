//! IPv6 -> IPv4 (RFC 7915 section 5).

use crate::checksum;
use crate::fragment::{self, V4_PAYLOAD_AT};
use crate::headers::*;
use crate::icmp_err::{self, ICMP4_ERROR_MAX};
use crate::icmp_map::{self, Info, Mapped};
use crate::outcome::{DropReason, IpVersion, OutBuf, Outcome};
use crate::transport;
use crate::wire::{
    Icmpv4Message, Icmpv6DstUnreachable, Icmpv6ErrorRepr, Icmpv6Message, Icmpv6ParamProblem,
    Icmpv6TimeExceeded, Ipv4Repr,
};
use crate::Translator;
use std::net::{Ipv4Addr, Ipv6Addr};

/// RFC 7915 5.1: DF is set only on translated packets larger than this, so
/// that IPv4 routers may fragment the smaller ones (an IPv6 host sends at
/// least 1280 bytes whatever IPv4 path MTU lies behind the translator).
const DF_THRESHOLD: usize = 1260;

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
    let ip = parse_v6(pkt, false)?;
    let whole = &pkt[..40 + ip.payload_len as usize];
    let first = ip.frag.is_none_or(|f| f.off == 0);
    let is_icmp_err = ip.proto == PROTO_ICMPV6
        && first
        && ip
            .payload
            .first()
            .is_some_and(|&ty| icmp_map::is_icmp6_error(ty));
    let may_answer = first && !is_icmp_err && icmp_err::v6_answerable(&ip.src);

    // RFC 7915 5.1 "TTL": copied from Hop Limit, decremented when acting as a router.
    let mut ttl = ip.hop;
    if cfg.decrement_ttl {
        if ttl <= 1 {
            if !may_answer {
                return Err(DropReason::TtlExpired);
            }
            return reply_v6(
                t,
                out,
                &ip,
                Icmpv6Message::TimeExceeded,
                Icmpv6TimeExceeded::HopLimitExceeded as u8,
                0,
                whole,
            );
        }
        ttl -= 1;
    }
    // RFC 7915 5.1.1: an extension header after the Fragment header "SHOULD
    // be dropped"; as for every drop, RFC 7915 5.4's Destination Unreachable,
    // Communication Administratively Prohibited (1/1) tells the source,
    // unless the packet is an ICMPv6 message. Checked before the Routing
    // header's Segments Left: a Routing header after the Fragment header is
    // itself the header out of place.
    if ip.ext_after_frag {
        if !may_answer || ip.proto == PROTO_ICMPV6 {
            return Err(DropReason::ExtensionAfterFragment);
        }
        return reply_v6(
            t,
            out,
            &ip,
            Icmpv6Message::DstUnreachable,
            Icmpv6DstUnreachable::AdminProhibited as u8,
            0,
            whole,
        )
        .or(Err(DropReason::ExtensionAfterFragment));
    }
    // RFC 7915 5.1: a Routing header with Segments Left > 0 is not
    // translated; answer Parameter Problem pointing at Segments Left.
    if let Some(ptr) = ip.unexpired_routing {
        if !may_answer {
            return Err(DropReason::RoutingHeader);
        }
        return reply_v6(
            t,
            out,
            &ip,
            Icmpv6Message::ParamProblem,
            Icmpv6ParamProblem::ErroneousHeaderField as u8,
            ptr,
            whole,
        );
    }
    let (dst4, dst_by_eam) = t.map_6to4_via(ip.dst)?;
    let src4 = match t.map_6to4(ip.src) {
        Ok(a) => a,
        // RFC 6791: ICMPv6 errors from routers whose address has no IPv4
        // form get a source from the RFC 6791 pool (or our own address).
        Err(_) if is_icmp_err => cfg
            .pool6791_v4
            .or(cfg.self_v4)
            .ok_or(DropReason::UntranslatableSrc)?,
        Err(DropReason::UntranslatableDst) => return Err(DropReason::UntranslatableSrc),
        Err(e) => return Err(e),
    };
    if ip.proto == PROTO_ICMPV6 && ip.is_fragment() {
        return Err(DropReason::FragmentedIcmp);
    }
    if let Some(dst6) = hairpin_dst(t, dst_by_eam, dst4) {
        if is_icmp_err {
            return hairpin_icmp_error(t, &ip, ttl, src4, dst4, dst6, out);
        }
        return hairpin(t, &ip, whole, ttl, src4, dst6, out);
    }
    if is_icmp_err {
        let n = icmp_error(t, &ip, ttl, src4, dst4, &mut out.data)?;
        out.push(0, n);
        return Ok(Outcome::Forward(IpVersion::V4));
    }

    let plen = ip.payload.len();
    let total4 = 20 + plen;
    if total4 > 65535 {
        return Err(DropReason::TooBig);
    }
    // RFC 7915 5.1 / 5.1.1: with a Fragment header, DF=0, MF and offset
    // copied, Identification from its low 16 bits. An atomic fragment
    // (offset 0, M=0; RFC 6946, RFC 8021) thus becomes a whole DF=0 packet.
    // Without one, DF is set above 1260 bytes, and the Identification comes
    // from our generator (zero with DF=1: RFC 6864 section 4.1).
    let (df, id, mf, off) = match ip.frag {
        Some(f) => (false, f.id, f.more, f.off),
        None => {
            let df = total4 > DF_THRESHOLD;
            (df, if df { 0 } else { t.next_id() }, false, 0)
        }
    };
    // A real fragment does not fit either: the translator cannot cut it
    // for IPv6 hosts that do path MTU discovery, so it answers like for a
    // whole packet (RFC 7915 section 1.4: "MUST send a Packet Too Big error
    // message or fragment"; RFC 8021: no atomic fragments are asked for).
    if total4 > cfg.mtu4 as usize && (df || ip.is_fragment()) {
        if !may_answer {
            return Err(DropReason::TooBigNoReply);
        }
        // Packet Too Big with the IPv6 MTU that makes the packet fit; never
        // below 1280 (smaller packets get DF=0 and are fragmented below).
        let mtu = (cfg.mtu4 as u32 + 20).max(1280);
        return reply_v6(t, out, &ip, Icmpv6Message::PktTooBig, 0, mtu, whole);
    }
    let need_frag = total4 > cfg.mtu4 as usize;
    let proto = if ip.proto == PROTO_ICMPV6 {
        PROTO_ICMP
    } else {
        ip.proto
    };

    let buf: &mut [u8] = if need_frag {
        &mut out.scratch
    } else {
        &mut out.data
    };
    buf[20..total4].copy_from_slice(ip.payload);
    if first {
        fix_transport(&mut buf[20..total4], &ip, src4, dst4)?;
    }
    if need_frag {
        debug_assert_eq!(V4_PAYLOAD_AT, 20);
        fragment::fragment_v4(
            out, plen, ip.tc, id, ttl, proto, src4, dst4, off, mf, cfg.mtu4,
        );
    } else {
        Ipv4Repr {
            src: src4,
            dst: dst4,
            protocol: proto,
            payload_len: plen as u16,
            ttl,
            tos: ip.tc,
            ident: id,
            dont_frag: df,
            more_frags: mf,
            frag_offset: off,
        }
        .emit(buf);
        out.push(0, total4);
    }
    Ok(Outcome::Forward(IpVersion::V4))
}

/// RFC 7915 5.5 / 5.2: fixes the transport checksum of the first fragment
/// (or whole packet).
fn fix_transport(
    pay: &mut [u8],
    ip: &V6<'_>,
    src4: Ipv4Addr,
    dst4: Ipv4Addr,
) -> Result<(), DropReason> {
    let old = transport::addr_sum(&ip.src.octets(), &ip.dst.octets());
    let new = transport::addr_sum(&src4.octets(), &dst4.octets());
    match ip.proto {
        PROTO_ICMPV6 => {
            if pay.len() < 8 {
                return Err(DropReason::Malformed);
            }
            match icmp_map::map_6to4(pay[0], pay[1], 0) {
                // ICMPv4 has no pseudo-header: take it out with the old type.
                Mapped::Info { typ, code } => {
                    let pseudo =
                        checksum::pseudo_v6(&ip.src, &ip.dst, PROTO_ICMPV6, ip.upper_len() as u32);
                    transport::retype_icmp(pay, typ, code, pseudo, 0);
                }
                _ => return Err(DropReason::IcmpUntranslatable),
            }
        }
        // A zero UDP checksum is invalid in IPv6; carried as "no checksum"
        // in IPv4 rather than turned into a wrong one.
        proto => {
            transport::readdress(proto, pay, old, new).ok_or(DropReason::TruncatedTransport)?
        }
    }
    Ok(())
}

/// Translates an ICMPv6 error and the packet inside it (RFC 7915 5.2, 5.3)
/// into `out`, returning the IPv4 packet's length (at most 576 bytes).
fn icmp_error(
    t: &Translator,
    ip: &V6<'_>,
    ttl: u8,
    src4: Ipv4Addr,
    dst4: Ipv4Addr,
    out: &mut [u8],
) -> Result<usize, DropReason> {
    let cfg = t.config();
    let icmp = ip.payload;
    if icmp.len() < 8 + 40 {
        return Err(DropReason::Malformed);
    }
    if !checksum::verify(
        icmp,
        checksum::pseudo_v6(&ip.src, &ip.dst, PROTO_ICMPV6, icmp.len() as u32),
    ) {
        return Err(DropReason::BadIcmpChecksum);
    }
    let info6 = u32::from_be_bytes([icmp[4], icmp[5], icmp[6], icmp[7]]);
    let (typ, code, info) = match icmp_map::map_6to4(icmp[0], icmp[1], info6) {
        Mapped::Error { typ, code, info } => (typ, code, info),
        _ => return Err(DropReason::IcmpUntranslatable),
    };
    let body = &icmp[8..];
    // RFC 4884: ICMPv6 Destination Unreachable and Time Exceeded carry the
    // original datagram's length in 64-bit words in byte 4.
    let len6 = if icmp[0] == Icmpv6Message::DstUnreachable as u8
        || icmp[0] == Icmpv6Message::TimeExceeded as u8
    {
        icmp[4] as usize * 8
    } else {
        0
    };
    let (orig, mut ext) = if len6 != 0 && len6 + 4 <= body.len() {
        (&body[..len6], Some(&body[len6..]))
    } else {
        (body, None)
    };
    if !matches!(
        Icmpv4Message::from_type(typ),
        Some(
            Icmpv4Message::DstUnreachable
                | Icmpv4Message::TimeExceeded
                | Icmpv4Message::ParamProblem
        )
    ) {
        ext = None;
    }
    let inner = parse_v6(orig, true).map_err(|_| DropReason::Malformed)?;
    let mut inner_len = inner_6to4(t, &inner, &mut out[28..])?;

    let mut len_field = 0u8;
    let total = if let Some(e) = ext {
        let room = (ICMP4_ERROR_MAX - 28).saturating_sub(e.len()) / 4 * 4;
        if room >= 128 {
            let padded = (inner_len.div_ceil(4).max(32) * 4).min(room);
            inner_len = inner_len.min(padded);
            out[28 + inner_len..28 + padded].fill(0);
            out[28 + padded..28 + padded + e.len()].copy_from_slice(e);
            len_field = (padded / 4) as u8;
            28 + padded + e.len()
        } else {
            (28 + inner_len).min(ICMP4_ERROR_MAX)
        }
    } else {
        (28 + inner_len).min(ICMP4_ERROR_MAX)
    };
    let rest: [u8; 4] = match info {
        Info::Zero => [0, len_field, 0, 0],
        Info::Pointer(p) => [p, len_field, 0, 0],
        Info::Mtu => {
            let m =
                icmp_map::mtu_6to4(info6, inner.frag.is_some(), cfg.mtu4, cfg.mtu6).to_be_bytes();
            [0, len_field, m[0], m[1]]
        }
    };
    // RFC 7915 5.1.1: with a Fragment header (an atomic one: fragmented
    // ICMPv6 is dropped above), Identification comes from it.
    let id = match ip.frag {
        Some(f) => f.id,
        None => t.next_id(),
    };
    Ipv4Repr {
        tos: ip.tc,
        ttl,
        ..Ipv4Repr::new(src4, dst4, PROTO_ICMP, (total - 20) as u16, id)
    }
    .emit(out);
    let m = &mut out[20..total];
    m[0] = typ;
    m[1] = code;
    m[2] = 0;
    m[3] = 0;
    m[4..8].copy_from_slice(&rest);
    let c = checksum::finish(checksum::sum(m, 0));
    m[2..4].copy_from_slice(&c.to_be_bytes());
    Ok(total)
}

/// Translates the (possibly truncated) packet inside an ICMPv6 error
/// (RFC 7915 5.3). Its extension headers are dropped; lengths follow what
/// the original claimed.
fn inner_6to4(t: &Translator, inner: &V6<'_>, out: &mut [u8]) -> Result<usize, DropReason> {
    let src4 = t.map_6to4(inner.src)?;
    let dst4 = t.map_6to4(inner.dst)?;
    let n = inner.payload.len();
    if out.len() < 20 + n {
        return Err(DropReason::TooBig);
    }
    out[20..20 + n].copy_from_slice(inner.payload);
    let first = inner.frag.is_none_or(|f| f.off == 0);
    if first {
        let pay = &mut out[20..20 + n];
        let old = transport::addr_sum(&inner.src.octets(), &inner.dst.octets());
        let new = transport::addr_sum(&src4.octets(), &dst4.octets());
        match inner.proto {
            PROTO_ICMPV6 if n >= 4 => {
                if icmp_map::is_icmp6_error(pay[0]) {
                    return Err(DropReason::IcmpErrorInError);
                }
                if let Mapped::Info { typ, code } = icmp_map::map_6to4(pay[0], pay[1], 0) {
                    let len = inner.upper_len() as u32;
                    let pseudo = checksum::pseudo_v6(&inner.src, &inner.dst, PROTO_ICMPV6, len);
                    transport::retype_icmp(pay, typ, code, pseudo, 0);
                }
            }
            // A quoted segment too short for its checksum is quoted as it is.
            proto => {
                let _ = transport::readdress(proto, pay, old, new);
            }
        }
    }
    let total = (20 + inner.upper_len() as usize).min(65535) as u16;
    let (df, id, mf, off) = match inner.frag {
        Some(f) => (false, f.id, f.more, f.off),
        None => (total as usize > DF_THRESHOLD, 0, false, 0),
    };
    let proto = if inner.proto == PROTO_ICMPV6 {
        PROTO_ICMP
    } else {
        inner.proto
    };
    Ipv4Repr {
        src: src4,
        dst: dst4,
        protocol: proto,
        payload_len: total - 20,
        ttl: inner.hop,
        tos: inner.tc,
        ident: id,
        dont_frag: df,
        more_frags: mf,
        frag_offset: off,
    }
    .emit(out);
    Ok(20 + n)
}

/// Sends an ICMPv6 error of the translator's own back to the IPv6 source.
fn reply_v6(
    t: &Translator,
    out: &mut OutBuf,
    ip: &V6<'_>,
    message: Icmpv6Message,
    code: u8,
    rest: u32,
    whole: &[u8],
) -> Result<Outcome, DropReason> {
    let cfg = t.config();
    let src: Ipv6Addr = cfg
        .self_v6
        .or(cfg.pool6791_v6)
        .ok_or(DropReason::NoErrorSource)?;
    let e = Icmpv6ErrorRepr {
        message,
        code,
        rest,
        quote: whole,
    };
    let n = icmp_err::emit_icmp6(&mut out.data, src, ip.src, &e);
    out.push(0, n);
    Ok(Outcome::Reply(IpVersion::V6))
}

/// RFC 7757 section 4: a packet from an IPv6 host to the pool6 address of
/// an IPv4 address that the EAMT maps back to IPv6 is hairpinned. Returns
/// the EAM destination, or `None` for a packet that goes to IPv4.
fn hairpin_dst(t: &Translator, dst_by_eam: bool, dst4: Ipv4Addr) -> Option<Ipv6Addr> {
    if dst_by_eam {
        return None; // the destination is an EAM address, not a pool6 one
    }
    t.config().eam.map4(dst4)
}

/// Writes a hairpinned packet (RFC 7757 section 4): what translating to
/// IPv4 and back would give, done in one step. The source is the pool6
/// address of its IPv4 form (section 4: "translated using [RFC 6052]"; the
/// destination sees the sender as the address it would itself use for it),
/// the destination its EAM address; the flow label becomes 0 and the hop
/// limit is the translated TTL; extension headers and payload are copied;
/// TCP, UDP and ICMPv6 checksums are adjusted for the new addresses. The packet is as long as it came, so it fits the IPv6 side.
fn hairpin(
    t: &Translator,
    ip: &V6<'_>,
    whole: &[u8],
    hop: u8,
    src4: Ipv4Addr,
    dst6: Ipv6Addr,
    out: &mut OutBuf,
) -> Result<Outcome, DropReason> {
    let src6 = t.embed_pool6(src4)?;
    let buf = &mut out.data[..whole.len()];
    buf.copy_from_slice(whole);
    // Flow label 0, as after the round trip through IPv4 (RFC 7915 4.1).
    buf[1] &= 0xf0;
    buf[2] = 0;
    buf[3] = 0;
    buf[7] = hop;
    buf[8..24].copy_from_slice(&src6.octets());
    buf[24..40].copy_from_slice(&dst6.octets());
    if ip.frag.is_none_or(|f| f.off == 0) {
        let old = transport::addr_sum(&ip.src.octets(), &ip.dst.octets());
        let new = transport::addr_sum(&src6.octets(), &dst6.octets());
        let seg = &mut buf[ip.hdrs.len()..];
        match ip.proto {
            PROTO_ICMPV6 if seg.len() >= 4 => {
                let (typ, code) = (seg[0], seg[1]);
                transport::retype_icmp(seg, typ, code, old, new);
            }
            PROTO_ICMPV6 => return Err(DropReason::TruncatedTransport),
            proto => {
                transport::readdress(proto, seg, old, new).ok_or(DropReason::TruncatedTransport)?
            }
        }
    }
    out.push(0, whole.len());
    Ok(Outcome::Forward(IpVersion::V6))
}

/// Hairpins an ICMPv6 error (RFC 7757 section 4): the packet inside it
/// needs its addresses mapped back too, so it takes the full way, to an
/// ICMPv4 error in `out.scratch` and from there back to IPv6 in
/// `out.data`, the source (and the inner destination) by pool6.
fn hairpin_icmp_error(
    t: &Translator,
    ip: &V6<'_>,
    ttl: u8,
    src4: Ipv4Addr,
    dst4: Ipv4Addr,
    dst6: Ipv6Addr,
    out: &mut OutBuf,
) -> Result<Outcome, DropReason> {
    let n4 = icmp_error(t, ip, ttl, src4, dst4, &mut out.scratch)?;
    let ip4 = parse_v4(&out.scratch[..n4], false)?;
    let src6 = t.embed_pool6(src4)?;
    let n6 = crate::v4_to_v6::icmp_error(t, &ip4, ttl, &src6, &dst6, &mut out.data, true)?;
    out.push(0, n6);
    Ok(Outcome::Forward(IpVersion::V6))
}
