//! ICMP errors the translator originates itself (Time Exceeded, Packet Too
//! Big, Fragmentation Needed, Source Route Failed, Parameter Problem), and the
//! engine's helper that turns an ICMPv6 error into an ICMPv4 one.
//!
//! Size limits: an ICMPv4 error carries as much of the offending packet as
//! fits in 576 bytes (RFC 1812 section 4.3.2.3), an ICMPv6 error as much as
//! fits in 1280 bytes (RFC 4443 section 2.4 (c)).

use crate::headers::{parse_v4, PROTO_ICMP};
use crate::icmp_map::{self, Info, Mapped};
use crate::outcome::DropReason;
use crate::wire::{Icmpv4ErrorRepr, Icmpv4Message, Icmpv6ErrorRepr, Ipv4Repr, Ipv6Repr};
use std::net::{Ipv4Addr, Ipv6Addr};

/// Largest ICMPv4 error we emit.
pub const ICMP4_ERROR_MAX: usize = Icmpv4ErrorRepr::MAX_PACKET_LEN;
/// Largest ICMPv6 error we emit.
pub const ICMP6_ERROR_MAX: usize = Icmpv6ErrorRepr::MAX_PACKET_LEN;

/// True if an ICMPv4 error may be sent to `a` (RFC 1812 section 4.3.2.7:
/// not to broadcast, multicast, unspecified or loopback sources).
pub fn v4_answerable(a: Ipv4Addr) -> bool {
    !(a.is_broadcast() || a.is_multicast() || a.is_unspecified() || a.is_loopback())
}

/// True if an ICMPv6 error may be sent to `a` (RFC 4443 section 2.4 (e)).
pub fn v6_answerable(a: &Ipv6Addr) -> bool {
    !(a.is_multicast() || a.is_unspecified())
}

/// The ICMPv4 error the translator sends from `src` to `dst` (TTL 64,
/// Identification 0: at most 576 bytes, it is not fragmented on any IPv4
/// link). `message`/`code`/`rest`/`quote` as in [`Icmpv4ErrorRepr`]; `out`
/// holds at least 576 bytes. Returns the packet's length.
pub fn emit_icmp4(out: &mut [u8], src: Ipv4Addr, dst: Ipv4Addr, e: &Icmpv4ErrorRepr<'_>) -> usize {
    e.emit(Ipv4Repr::new(src, dst, PROTO_ICMP, 0, 0), out)
}

/// The ICMPv6 error the translator sends from `src` to `dst` (hop limit
/// 64); `out` holds at least 1280 bytes. Returns the packet's length.
pub fn emit_icmp6(out: &mut [u8], src: Ipv6Addr, dst: Ipv6Addr, e: &Icmpv6ErrorRepr<'_>) -> usize {
    let ip = Ipv6Repr {
        src,
        dst,
        next_header: 0,
        payload_len: 0,
        hop_limit: 64,
        traffic_class: 0,
    };
    e.emit(ip, out)
}

/// For the engine: it sent `orig_v4`'s payload over an IPv6 socket on the
/// app's behalf and got an ICMPv6 error back (IPV6_RECVERR). This builds the
/// ICMPv4 error the app should see, as if a translator on the path had
/// translated the ICMPv6 error (RFC 7915 section 5.2).
///
/// - `icmp6_type`, `icmp6_code`, `icmp6_info`: from the ICMPv6 error
///   (`sock_extended_err.ee_type/ee_code/ee_info`; `ee_info` is the MTU for
///   Packet Too Big and the pointer for Parameter Problem).
/// - `orig_v4`: the IPv4 packet the app sent (at least its header; more of
///   it is quoted, up to 576 bytes in all). Its source becomes the
///   destination of the error.
/// - `src`: the error's IPv4 source (the remote host's IPv4 address, or an
///   RFC 6791 address when the ICMPv6 error came from a router with no IPv4
///   form).
/// - `max_mtu4`: the largest MTU worth reporting (the TUN MTU); a Packet Too
///   Big MTU becomes `min(mtu - 20, max_mtu4)`, at least 68.
/// - `out`: at least 576 bytes.
///
/// Returns the length written, or why no ICMPv4 error exists for it (RFC 7915
/// says drop, `orig_v4` is not IPv4, or it was an ICMP error itself).
pub fn icmp6_error_to_icmp4(
    icmp6_type: u8,
    icmp6_code: u8,
    icmp6_info: u32,
    orig_v4: &[u8],
    src: Ipv4Addr,
    max_mtu4: u16,
    out: &mut [u8],
) -> Result<usize, DropReason> {
    let orig = parse_v4(orig_v4, true)?;
    if orig.proto == PROTO_ICMP && orig.frag_off == 0 {
        if let Some(&t) = orig.payload.first() {
            if icmp_map::is_icmp4_error(t) {
                return Err(DropReason::IcmpErrorInError);
            }
        }
    }
    if out.len() < ICMP4_ERROR_MAX {
        return Err(DropReason::TooBig);
    }
    let (typ, code, info) = match icmp_map::map_6to4(icmp6_type, icmp6_code, icmp6_info) {
        Mapped::Error { typ, code, info } => (typ, code, info),
        _ => return Err(DropReason::IcmpUntranslatable),
    };
    let message = Icmpv4Message::from_type(typ).ok_or(DropReason::IcmpUntranslatable)?;
    let rest = match info {
        Info::Zero => [0; 4],
        Info::Pointer(p) => [p, 0, 0, 0],
        Info::Mtu => {
            let m = icmp_map::mtu_6to4(icmp6_info, false, max_mtu4, u16::MAX);
            let b = m.to_be_bytes();
            [0, 0, b[0], b[1]]
        }
    };
    let quoted = &orig_v4[..orig_v4.len().min(orig.total_len as usize)];
    let e = Icmpv4ErrorRepr {
        message,
        code,
        rest,
        quote: quoted,
    };
    Ok(emit_icmp4(out, src, orig.src, &e))
}
