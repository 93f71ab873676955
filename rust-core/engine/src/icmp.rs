//! RFC 7915 section 5.2: which ICMPv6 errors become which ICMPv4 errors
//! (for errors read from upstream sockets' error queues).

/// (type, code, rest-of-header) of the ICMPv4 error for an ICMPv6 error of
/// `typ`/`code` with `info` (the MTU for Packet Too Big); `None` when RFC
/// 7915 says to drop it.
pub fn map_icmp6_error(typ: u8, code: u8, info: u32) -> Option<(u8, u8, [u8; 4])> {
    match typ {
        // Destination Unreachable
        1 => {
            let c = match code {
                0 | 2 | 3 => 1, // no route, beyond scope, address unreachable -> host unreachable
                1 => 10,        // administratively prohibited -> host admin prohibited
                4 => 3,         // port unreachable
                _ => return None,
            };
            Some((3, c, [0; 4]))
        }
        // Packet Too Big -> Fragmentation Needed; the IPv4 MTU is 20 bytes
        // less (IPv6 header 40 vs IPv4 20), never below 68 (RFC 791).
        2 => {
            let mtu = info.saturating_sub(20).clamp(68, 0xffff) as u16;
            let m = mtu.to_be_bytes();
            Some((3, 4, [0, 0, m[0], m[1]]))
        }
        // Time Exceeded: same codes
        3 => Some((11, code.min(1), [0; 4])),
        // Parameter Problem, unrecognized Next Header -> protocol unreachable
        4 if code == 1 => Some((3, 2, [0; 4])),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc7915_mapping() {
        assert_eq!(map_icmp6_error(1, 4, 0), Some((3, 3, [0; 4])));
        assert_eq!(map_icmp6_error(1, 0, 0), Some((3, 1, [0; 4])));
        assert_eq!(map_icmp6_error(1, 1, 0), Some((3, 10, [0; 4])));
        assert_eq!(
            map_icmp6_error(2, 0, 1280),
            Some((3, 4, [0, 0, 0x04, 0xec]))
        );
        assert_eq!(map_icmp6_error(2, 0, 10), Some((3, 4, [0, 0, 0, 68])));
        assert_eq!(map_icmp6_error(3, 0, 0), Some((11, 0, [0; 4])));
        assert_eq!(map_icmp6_error(4, 0, 0), None);
        assert_eq!(map_icmp6_error(1, 7, 0), None);
        assert_eq!(map_icmp6_error(128, 0, 0), None);
    }
}
