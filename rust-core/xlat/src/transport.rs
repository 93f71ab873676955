//! Transport checksums across a translation: the pseudo-header of TCP, UDP
//! and ICMPv6 covers the addresses, so changing them means adjusting the
//! checksum (RFC 7915 sections 4.5 and 5.5, RFC 7757 section 4), done
//! incrementally (RFC 1624) so that a segment that arrived corrupted still
//! fails end to end.

use crate::checksum;
use crate::headers::{PROTO_TCP, PROTO_UDP};

/// Partial sum of a source and a destination address (either version; a
/// fixed size so that the sum is unrolled: it runs for every packet).
#[inline]
pub(crate) fn addr_sum<const N: usize>(src: &[u8; N], dst: &[u8; N]) -> u32 {
    checksum::sum(src, checksum::sum(dst, 0))
}

/// Adjusts the checksum of the TCP or UDP header at the start of `seg` for
/// a pseudo-header whose addresses summed `old` and now sum `new`. A UDP
/// checksum of 0 ("none") stays 0; a computed 0 is sent as 0xffff (RFC
/// 768). Other protocols are left alone. `None` when `seg` is too short to
/// hold the checksum field.
#[inline]
pub(crate) fn readdress(proto: u8, seg: &mut [u8], old: u32, new: u32) -> Option<()> {
    match proto {
        PROTO_TCP => {
            let f = seg.get_mut(16..18)?;
            let c = u16::from_be_bytes([f[0], f[1]]);
            f.copy_from_slice(&checksum::adjust(c, old, new).to_be_bytes());
        }
        PROTO_UDP => {
            let f = seg.get_mut(6..8)?;
            let c = u16::from_be_bytes([f[0], f[1]]);
            if c != 0 {
                let c2 = match checksum::adjust(c, old, new) {
                    0 => 0xffff,
                    c2 => c2,
                };
                f.copy_from_slice(&c2.to_be_bytes());
            }
        }
        _ => {}
    }
    Some(())
}

/// Gives the ICMP message `msg` (at least 4 bytes) type `typ` and code
/// `code` and adjusts its checksum for them and for the pseudo-header it no
/// longer covers (`old_pseudo`) and now covers (`new_pseudo`): ICMPv6 has
/// one (RFC 4443 section 2.3), ICMPv4 none (RFC 7915 sections 4.2 and 5.2).
#[inline]
pub(crate) fn retype_icmp(msg: &mut [u8], typ: u8, code: u8, old_pseudo: u32, new_pseudo: u32) {
    let old = u16::from_be_bytes([msg[0], msg[1]]) as u32 + old_pseudo;
    let new = u16::from_be_bytes([typ, code]) as u32 + new_pseudo;
    let c = u16::from_be_bytes([msg[2], msg[3]]);
    msg[0] = typ;
    msg[1] = code;
    msg[2..4].copy_from_slice(&checksum::adjust(c, old, new).to_be_bytes());
}
