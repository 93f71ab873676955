//! ICMPv4 <-> ICMPv6 type, code and pointer tables (RFC 7915 sections 4.2
//! and 5.2) and the Packet Too Big / Fragmentation Needed MTU arithmetic.

use crate::wire::icmp::{
    Icmpv4DstUnreachable, Icmpv4Message, Icmpv4ParamProblem, Icmpv6DstUnreachable, Icmpv6Message,
    Icmpv6ParamProblem,
};

/// What an ICMP message becomes on the other side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mapped {
    /// Echo request or reply: only the type changes, the rest (id, seq,
    /// data) is copied; the checksum can be adjusted incrementally.
    Info { typ: u8, code: u8 },
    /// An error: `info` is the 32-bit "rest of header" of the new message
    /// (MTU or pointer, zero otherwise); the packet inside is translated.
    Error { typ: u8, code: u8, info: Info },
    /// RFC 7915 says "silently drop".
    Drop,
}

/// How to fill the 32-bit field after type/code/checksum of an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Info {
    Zero,
    /// Packet Too Big / Fragmentation Needed: compute the MTU.
    Mtu,
    /// Parameter Problem with this (already translated) pointer.
    Pointer(u8),
}

// The type numbers as `u8` patterns, from the `wire` enums.
pub const ICMP4_ECHO_REPLY: u8 = Icmpv4Message::EchoReply as u8;
pub const ICMP4_DEST_UNREACH: u8 = Icmpv4Message::DstUnreachable as u8;
pub const ICMP4_ECHO_REQUEST: u8 = Icmpv4Message::EchoRequest as u8;
pub const ICMP4_TIME_EXCEEDED: u8 = Icmpv4Message::TimeExceeded as u8;
pub const ICMP4_PARAM_PROBLEM: u8 = Icmpv4Message::ParamProblem as u8;
pub const ICMP6_DEST_UNREACH: u8 = Icmpv6Message::DstUnreachable as u8;
pub const ICMP6_PACKET_TOO_BIG: u8 = Icmpv6Message::PktTooBig as u8;
pub const ICMP6_TIME_EXCEEDED: u8 = Icmpv6Message::TimeExceeded as u8;
pub const ICMP6_PARAM_PROBLEM: u8 = Icmpv6Message::ParamProblem as u8;
pub const ICMP6_ECHO_REQUEST: u8 = Icmpv6Message::EchoRequest as u8;
pub const ICMP6_ECHO_REPLY: u8 = Icmpv6Message::EchoReply as u8;

/// True for ICMPv4 error types (RFC 792, RFC 1812 4.3.2.3: never answer an
/// error with an error). Redirect and Source Quench count as errors.
pub fn is_icmp4_error(typ: u8) -> bool {
    Icmpv4Message::from_type(typ).is_some_and(Icmpv4Message::is_error)
}

/// ICMPv6 error types are 0..=127 (RFC 4443 section 2.1).
pub fn is_icmp6_error(typ: u8) -> bool {
    Icmpv6Message::is_error_type(typ)
}

/// RFC 7915 section 4.2: ICMPv4 -> ICMPv6. `pointer` is the ICMPv4
/// Parameter Problem pointer (byte 4), used only for type 12.
pub fn map_4to6(typ: u8, code: u8, pointer: u8) -> Mapped {
    use Mapped::*;
    match typ {
        ICMP4_ECHO_REQUEST if code == 0 => Info {
            typ: ICMP6_ECHO_REQUEST,
            code: 0,
        },
        ICMP4_ECHO_REPLY if code == 0 => Info {
            typ: ICMP6_ECHO_REPLY,
            code: 0,
        },
        ICMP4_DEST_UNREACH => match code {
            // Net / host unreachable, source route failed, unknown net or
            // host, source host isolated, net/host unreachable for TOS:
            // "Set the Code to 0 (No route to destination)".
            0 | 1 | 5 | 6 | 7 | 8 | 11 | 12 => Error {
                typ: ICMP6_DEST_UNREACH,
                code: Icmpv6DstUnreachable::NoRoute as u8,
                info: self::Info::Zero,
            },
            // Protocol unreachable: Parameter Problem, code 1, pointer to the
            // Next Header field (6).
            2 => Error {
                typ: ICMP6_PARAM_PROBLEM,
                code: Icmpv6ParamProblem::UnrecognizedNextHeader as u8,
                info: self::Info::Pointer(6),
            },
            // Port unreachable.
            3 => Error {
                typ: ICMP6_DEST_UNREACH,
                code: Icmpv6DstUnreachable::PortUnreachable as u8,
                info: self::Info::Zero,
            },
            // Fragmentation needed: Packet Too Big.
            4 => Error {
                typ: ICMP6_PACKET_TOO_BIG,
                code: 0,
                info: self::Info::Mtu,
            },
            // Administratively prohibited (9, 10, 13) and precedence cutoff (15).
            9 | 10 | 13 | 15 => Error {
                typ: ICMP6_DEST_UNREACH,
                code: Icmpv6DstUnreachable::AdminProhibited as u8,
                info: self::Info::Zero,
            },
            // 14 (host precedence violation) and unknown codes: drop.
            _ => Drop,
        },
        ICMP4_TIME_EXCEEDED if code <= 1 => Error {
            typ: ICMP6_TIME_EXCEEDED,
            code,
            info: self::Info::Zero,
        },
        ICMP4_PARAM_PROBLEM => match code {
            // Pointer indicates the error / bad length: translate the pointer.
            0 | 2 => match pointer_4to6(pointer) {
                Some(p) => Error {
                    typ: ICMP6_PARAM_PROBLEM,
                    code: Icmpv6ParamProblem::ErroneousHeaderField as u8,
                    info: self::Info::Pointer(p),
                },
                None => Drop,
            },
            // Missing a required option, and anything else: drop.
            _ => Drop,
        },
        // Timestamp, information, address mask, router advertisement and
        // solicitation (obsoleted or single-hop), redirect, source quench,
        // unknown types: drop.
        _ => Drop,
    }
}

/// RFC 7915 section 4.2, figure 3: IPv4 header byte -> IPv6 header byte.
pub fn pointer_4to6(p: u8) -> Option<u8> {
    Some(match p {
        0 => 0,        // Version/IHL -> Version/Traffic Class
        1 => 1,        // Type of Service -> Traffic Class
        2 | 3 => 4,    // Total Length -> Payload Length
        8 => 7,        // TTL -> Hop Limit
        9 => 6,        // Protocol -> Next Header
        12..=15 => 8,  // Source Address
        16..=19 => 24, // Destination Address
        // Identification, flags, fragment offset, header checksum, options:
        // no counterpart.
        _ => return None,
    })
}

/// RFC 7915 section 5.2: ICMPv6 -> ICMPv4. `pointer` is the ICMPv6
/// Parameter Problem pointer, used only for type 4.
pub fn map_6to4(typ: u8, code: u8, pointer: u32) -> Mapped {
    use Mapped::*;
    match typ {
        ICMP6_ECHO_REQUEST if code == 0 => Info {
            typ: ICMP4_ECHO_REQUEST,
            code: 0,
        },
        ICMP6_ECHO_REPLY if code == 0 => Info {
            typ: ICMP4_ECHO_REPLY,
            code: 0,
        },
        ICMP6_DEST_UNREACH => match code {
            // No route, beyond scope of source, address unreachable: host unreachable.
            0 | 2 | 3 => Error {
                typ: ICMP4_DEST_UNREACH,
                code: Icmpv4DstUnreachable::HostUnreachable as u8,
                info: self::Info::Zero,
            },
            // Administratively prohibited: code 10.
            1 => Error {
                typ: ICMP4_DEST_UNREACH,
                code: Icmpv4DstUnreachable::HostProhibited as u8,
                info: self::Info::Zero,
            },
            // Port unreachable.
            4 => Error {
                typ: ICMP4_DEST_UNREACH,
                code: Icmpv4DstUnreachable::PortUnreachable as u8,
                info: self::Info::Zero,
            },
            _ => Drop,
        },
        // RFC 4443 section 3.2: the Code is "ignored by the receiver", so a
        // non-zero one does not make the message untranslatable.
        ICMP6_PACKET_TOO_BIG => Error {
            typ: ICMP4_DEST_UNREACH,
            code: Icmpv4DstUnreachable::FragRequired as u8,
            info: self::Info::Mtu,
        },
        ICMP6_TIME_EXCEEDED if code <= 1 => Error {
            typ: ICMP4_TIME_EXCEEDED,
            code,
            info: self::Info::Zero,
        },
        ICMP6_PARAM_PROBLEM => match code {
            // Erroneous header field: Parameter Problem with the pointer translated.
            0 => match pointer_6to4(pointer) {
                Some(p) => Error {
                    typ: ICMP4_PARAM_PROBLEM,
                    code: Icmpv4ParamProblem::PointerIndicatesError as u8,
                    info: self::Info::Pointer(p),
                },
                None => Drop,
            },
            // Unrecognized Next Header: Protocol Unreachable.
            1 => Error {
                typ: ICMP4_DEST_UNREACH,
                code: Icmpv4DstUnreachable::ProtoUnreachable as u8,
                info: self::Info::Zero,
            },
            // Unrecognized IPv6 option, unknown codes: drop.
            _ => Drop,
        },
        // MLD, ND, unknown informational and unknown error types: drop.
        _ => Drop,
    }
}

/// RFC 7915 section 5.2, figure 6: IPv6 header byte -> IPv4 header byte.
pub fn pointer_6to4(p: u32) -> Option<u8> {
    Some(match p {
        0 => 0,        // Version/Traffic Class -> Version/IHL, Type of Service
        1 => 1,        // Traffic Class/Flow Label -> Type of Service
        4 | 5 => 2,    // Payload Length -> Total Length
        6 => 9,        // Next Header -> Protocol
        7 => 8,        // Hop Limit -> Time to Live
        8..=23 => 12,  // Source Address
        24..=39 => 16, // Destination Address
        // Flow label (2, 3) and anything past the header: no counterpart.
        _ => return None,
    })
}

/// RFC 1191 section 7 plateau table, largest first.
const PLATEAUS: [u16; 11] = [
    65535, 32000, 17914, 8166, 4352, 2002, 1492, 1006, 508, 296, 68,
];

/// RFC 7915 section 4.2, Fragmentation Needed -> Packet Too Big:
/// `min(advertised + 20, mtu6, mtu4 + 20)`. A router that does not implement
/// RFC 1191 sends 0: use the greatest plateau below the offending packet's
/// Total Length (`inner_total_len`). The result is never below 1280: an
/// IPv6 host cannot use less, and since RFC 8021 it must not be told so to
/// make it emit atomic fragments; DF=0 packets of <= 1260 bytes that it then
/// sends are fragmented by IPv4 routers.
pub fn mtu_4to6(advertised: u16, inner_total_len: u16, mtu4: u16, mtu6: u16) -> u32 {
    let adv: u32 = if advertised == 0 {
        PLATEAUS
            .iter()
            .copied()
            .find(|&p| p < inner_total_len)
            .unwrap_or(68) as u32
    } else {
        advertised as u32
    };
    let m = (adv + 20).min(mtu6 as u32).min(mtu4 as u32 + 20);
    m.max(1280)
}

/// RFC 7915 section 5.2, Packet Too Big -> Fragmentation Needed:
/// `min(advertised - 20, mtu4, mtu6 - 20)`, with 8 more subtracted when the
/// packet in error carried a Fragment header ("taking into account whether or
/// not the packet in error includes a Fragment Header"), clamped to the
/// 16-bit field and to the IPv4 minimum of 68.
pub fn mtu_6to4(advertised: u32, inner_has_frag: bool, mtu4: u16, mtu6: u16) -> u16 {
    let hdr = if inner_has_frag { 28 } else { 20 };
    let m = advertised
        .saturating_sub(hdr)
        .min(mtu4 as u32)
        .min((mtu6 as u32).saturating_sub(20))
        .min(65535);
    m.max(68) as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn section_4_2_table() {
        assert_eq!(map_4to6(8, 0, 0), Mapped::Info { typ: 128, code: 0 });
        assert_eq!(map_4to6(0, 0, 0), Mapped::Info { typ: 129, code: 0 });
        for (code, t6, c6) in [
            (0, 1, 0),
            (1, 1, 0),
            (3, 1, 4),
            (5, 1, 0),
            (9, 1, 1),
            (10, 1, 1),
            (13, 1, 1),
            (15, 1, 1),
            (11, 1, 0),
        ] {
            assert!(
                matches!(map_4to6(3, code, 0), Mapped::Error { typ, code: c, .. } if typ == t6 && c == c6),
                "code {code}"
            );
        }
        assert_eq!(
            map_4to6(3, 2, 0),
            Mapped::Error {
                typ: 4,
                code: 1,
                info: Info::Pointer(6)
            }
        );
        assert_eq!(
            map_4to6(3, 4, 0),
            Mapped::Error {
                typ: 2,
                code: 0,
                info: Info::Mtu
            }
        );
        assert_eq!(map_4to6(3, 14, 0), Mapped::Drop);
        assert_eq!(
            map_4to6(11, 1, 0),
            Mapped::Error {
                typ: 3,
                code: 1,
                info: Info::Zero
            }
        );
        assert_eq!(
            map_4to6(12, 0, 9),
            Mapped::Error {
                typ: 4,
                code: 0,
                info: Info::Pointer(6)
            }
        );
        assert_eq!(map_4to6(12, 0, 5), Mapped::Drop);
        assert_eq!(map_4to6(12, 1, 0), Mapped::Drop);
        for t in [4, 5, 9, 10, 13, 14, 15, 16, 17, 18, 42] {
            assert_eq!(map_4to6(t, 0, 0), Mapped::Drop, "type {t}");
        }
    }

    #[test]
    fn section_5_2_table() {
        assert_eq!(map_6to4(128, 0, 0), Mapped::Info { typ: 8, code: 0 });
        assert_eq!(map_6to4(129, 0, 0), Mapped::Info { typ: 0, code: 0 });
        for (code, c4) in [(0, 1), (1, 10), (2, 1), (3, 1), (4, 3)] {
            assert!(
                matches!(map_6to4(1, code, 0), Mapped::Error { typ: 3, code: c, .. } if c == c4)
            );
        }
        assert_eq!(map_6to4(1, 5, 0), Mapped::Drop);
        assert_eq!(
            map_6to4(2, 0, 0),
            Mapped::Error {
                typ: 3,
                code: 4,
                info: Info::Mtu
            }
        );
        assert_eq!(
            map_6to4(3, 0, 0),
            Mapped::Error {
                typ: 11,
                code: 0,
                info: Info::Zero
            }
        );
        assert_eq!(
            map_6to4(4, 0, 7),
            Mapped::Error {
                typ: 12,
                code: 0,
                info: Info::Pointer(8)
            }
        );
        assert_eq!(
            map_6to4(4, 0, 30),
            Mapped::Error {
                typ: 12,
                code: 0,
                info: Info::Pointer(16)
            }
        );
        assert_eq!(map_6to4(4, 0, 2), Mapped::Drop);
        assert_eq!(
            map_6to4(4, 1, 0),
            Mapped::Error {
                typ: 3,
                code: 2,
                info: Info::Zero
            }
        );
        assert_eq!(map_6to4(4, 2, 0), Mapped::Drop);
        for t in [130, 131, 132, 133, 134, 135, 136, 137, 200, 100] {
            assert_eq!(map_6to4(t, 0, 0), Mapped::Drop, "type {t}");
        }
    }

    /// RFC 792 and RFC 4443 define Echo and Echo Reply with Code 0 only,
    /// and Time Exceeded with Codes 0 and 1; RFC 7915 (4.2, 5.2) says
    /// nothing of other codes. A message with an undefined code is not the
    /// message the RFC translates: dropped, in both directions (a choice,
    /// pinned here; Packet Too Big is the exception, its Code being
    /// ignored by the receiver, RFC 4443 3.2).
    #[test]
    fn undefined_codes_of_echo_and_time_exceeded_are_dropped() {
        for code in [1u8, 7, 255] {
            for t in [ICMP4_ECHO_REQUEST, ICMP4_ECHO_REPLY] {
                assert_eq!(
                    map_4to6(t, code, 0),
                    Mapped::Drop,
                    "v4 type {t} code {code}"
                );
            }
            for t in [ICMP6_ECHO_REQUEST, ICMP6_ECHO_REPLY] {
                assert_eq!(
                    map_6to4(t, code, 0),
                    Mapped::Drop,
                    "v6 type {t} code {code}"
                );
            }
        }
        for code in [2u8, 9] {
            assert_eq!(
                map_4to6(ICMP4_TIME_EXCEEDED, code, 0),
                Mapped::Drop,
                "code {code}"
            );
        }
        assert!(matches!(
            map_4to6(ICMP4_TIME_EXCEEDED, 1, 0),
            Mapped::Error { code: 1, .. }
        ));
    }

    #[test]
    fn mtu_arithmetic() {
        assert_eq!(mtu_4to6(1400, 1500, 1500, 1500), 1420);
        assert_eq!(mtu_4to6(1490, 1500, 1500, 1500), 1500); // capped by mtu6
        assert_eq!(mtu_4to6(1490, 1500, 1400, 1500), 1420); // capped by mtu4 + 20
        assert_eq!(mtu_4to6(576, 1500, 1500, 1500), 1280); // floor
        assert_eq!(mtu_4to6(0, 1500, 9000, 9000), 1492 + 20); // plateau below 1500
                                                              // RFC 1191 section 5: the largest plateau strictly less than the
                                                              // packet's Total Length; a packet of exactly 2002 bytes did not fit.
        assert_eq!(mtu_4to6(0, 2002, 9000, 9000), 1492 + 20);
        assert_eq!(mtu_4to6(0, 2003, 9000, 9000), 2002 + 20);
        assert_eq!(mtu_6to4(1400, false, 1500, 1500), 1380);
        assert_eq!(mtu_6to4(1400, true, 1500, 1500), 1372);
        assert_eq!(mtu_6to4(9000, false, 1500, 1500), 1480);
        assert_eq!(mtu_6to4(9000, false, 1500, 9000), 1500);
        assert_eq!(mtu_6to4(10, false, 1500, 1500), 68);
        assert_eq!(mtu_6to4(u32::MAX, false, 65535, 65535), 65515);
    }
}
