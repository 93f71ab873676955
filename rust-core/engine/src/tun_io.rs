//! The TUN's reads and writes, and the virtio-net header that comes with
//! them when the TUN was opened with offloads
//! ([`crate::sys::open_tun_offload`], `clat run` on Linux).
//!
//! Such a TUN (IFF_VNET_HDR, TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6) puts a
//! `struct virtio_net_hdr` (include/uapi/linux/virtio_net.h, 10 bytes:
//! no `num_buffers`, which only mergeable receive buffers use) before
//! every packet, both ways; the engine sets it little-endian (TUNSETVNETLE).
//! On a read the kernel fills it from the skb (drivers/net/tun.c
//! `tun_put_user` -> include/linux/virtio_net.h `virtio_net_hdr_from_skb`):
//! a TCP segment the stack left for the device to checksum
//! (CHECKSUM_PARTIAL) comes with VIRTIO_NET_HDR_F_NEEDS_CSUM, `csum_start`
//! at the TCP header, `csum_offset` 16, and in the checksum field only the
//! folded pseudo-header sum, not complemented (`__tcp_v4_send_check`,
//! `__tcp_v6_send_check`); a TSO segment of up to 64 KiB also has
//! `gso_type` TCPV4 or TCPV6 and the segment size. On a write the kernel
//! takes such a header back (`tun_get_user` -> `virtio_net_hdr_to_skb`)
//! and gives the packet to its stack as it is: the local TCP socket
//! trusts a partial checksum, so no byte is summed or copied to split it.
//!
//! The engine uses that for its TCP NAT (kernel to kernel, [`crate::nat_tcp`]):
//! it rewrites addresses and ports, updates the partial sum for the
//! addresses (the ports are not in the pseudo-header) and writes the packet
//! back with the header it came with. Every other packet is settled first
//! ([`settle`]): its checksum completed in software, so that the ICMP,
//! fragment and translator paths see what a plain TUN gives, except UDP's,
//! whose payload alone goes on. A GSO
//! packet other than a TCP segment of the NAT path cannot come with these
//! offloads (only TSO is offered, the kernel never makes a SYN a GSO
//! packet); one would be dropped and counted, not segmented. Packets the
//! engine originates go with a zero header: complete checksum, no GSO.
//!
//! The Android descriptor has no header (`Tun::new(fd, false)`, the
//! engine's `tun_vnet_hdr` off), and every packet is as it was.

use crate::packet::checksum;
use crate::stats::Counters;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

/// Bytes of `struct virtio_net_hdr` before each packet on a TUN with
/// offloads (TUNSETVNETHDRSZ).
pub const VNET_HDR_LEN: usize = 10;

/// `flags`: the checksum is partial, to be completed from `csum_start`
/// with the result at `csum_start + csum_offset`.
pub const VIRTIO_NET_HDR_F_NEEDS_CSUM: u8 = 1;
/// `gso_type`: not a GSO packet.
pub const VIRTIO_NET_HDR_GSO_NONE: u8 = 0;
/// `gso_type`: TCP over IPv4, segments of `gso_size` bytes of payload
/// (and TCPV6 = 4; both only passed through by the engine).
#[cfg(test)]
const VIRTIO_NET_HDR_GSO_TCPV4: u8 = 1;
#[cfg(test)]
const VIRTIO_NET_HDR_GSO_TCPV6: u8 = 4;

/// Offset of the checksum field in a TCP header (RFC 9293 section 3.1).
const TCP_CSUM_OFFSET: u16 = 16;
/// A TCP header's flags byte, and its SYN bit.
const TCP_FLAGS_AT: usize = 13;
const TCP_SYN: u8 = 0x02;

/// A `struct virtio_net_hdr` (little-endian 16-bit fields).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VnetHdr {
    pub flags: u8,
    pub gso_type: u8,
    /// Bytes of headers (a hint for the linear part of the skb).
    pub hdr_len: u16,
    /// Payload bytes per segment of a GSO packet.
    pub gso_size: u16,
    /// Where the checksum starts (bytes from the IP header).
    pub csum_start: u16,
    /// Where the result goes, from `csum_start`.
    pub csum_offset: u16,
}

impl VnetHdr {
    /// The header at the start of `b` (at least [`VNET_HDR_LEN`] bytes).
    pub fn parse(b: &[u8; VNET_HDR_LEN]) -> VnetHdr {
        let le = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
        VnetHdr {
            flags: b[0],
            gso_type: b[1],
            hdr_len: le(2),
            gso_size: le(4),
            csum_start: le(6),
            csum_offset: le(8),
        }
    }

    /// The header's bytes as the kernel reads them.
    pub fn to_bytes(self) -> [u8; VNET_HDR_LEN] {
        let mut b = [0u8; VNET_HDR_LEN];
        b[0] = self.flags;
        b[1] = self.gso_type;
        b[2..4].copy_from_slice(&self.hdr_len.to_le_bytes());
        b[4..6].copy_from_slice(&self.gso_size.to_le_bytes());
        b[6..8].copy_from_slice(&self.csum_start.to_le_bytes());
        b[8..10].copy_from_slice(&self.csum_offset.to_le_bytes());
        b
    }

    pub fn needs_csum(&self) -> bool {
        self.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM != 0
    }

    pub fn is_gso(&self) -> bool {
        self.gso_type != VIRTIO_NET_HDR_GSO_NONE
    }
}

/// Why [`settle`] refused a packet (counted as malformed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SettleError {
    /// `csum_start + csum_offset + 2` is past the packet.
    ChecksumOutside,
    /// A GSO packet that is not a TCP segment the NAT path keeps whole, or
    /// one without a partial checksum: none comes with the offloads the
    /// engine asks for, and it is not segmented in software.
    Gso,
}

/// What [`settle`] needs to know of a TUN packet's upper layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upper {
    /// An unfragmented TCP segment whose header starts at this offset.
    Tcp(usize),
    /// An unfragmented UDP datagram.
    Udp,
    /// Anything else (fragments, ICMP, unknown).
    Other,
}

/// Settles the checksum of packet `p` read with header `hdr` (`None`: a
/// plain TUN, or nothing to settle): returns the header to write the
/// packet back with when `p` is a TCP segment (not a SYN) whose TCP
/// header starts where the partial checksum does, kept so for the NAT
/// path. A UDP datagram's partial checksum is left as it is: only its
/// payload goes on (to a socket, which makes its own), and its header is
/// read only as the quote of an ICMP error, whose checksum no receiver
/// checks (Linux matches the quote to a socket by addresses and ports,
/// net/ipv4/udp.c `__udp4_lib_err`, net/ipv6/udp.c `__udp6_lib_err`): not
/// summing it saves a pass over every datagram. Anything else with a
/// partial checksum is completed in place (as `skb_checksum_help` does:
/// the sum from `csum_start`, the pseudo-header sum already in the field,
/// complemented, 0 sent as 0xffff) and `None` returned. SYNs are completed:
/// one is answered or forwarded at once with a zero header, and a refusal
/// quotes it.
pub fn settle(
    hdr: Option<VnetHdr>,
    p: &mut [u8],
    upper: Upper,
) -> Result<Option<VnetHdr>, SettleError> {
    let Some(h) = hdr else { return Ok(None) };
    if !h.needs_csum() {
        return if h.is_gso() {
            Err(SettleError::Gso)
        } else {
            Ok(None)
        };
    }
    let start = usize::from(h.csum_start);
    let at = start + usize::from(h.csum_offset);
    if at + 2 > p.len() {
        return Err(SettleError::ChecksumOutside);
    }
    let tcp = upper == Upper::Tcp(start)
        && h.csum_offset == TCP_CSUM_OFFSET
        && p.get(start + TCP_FLAGS_AT)
            .is_some_and(|f| f & TCP_SYN == 0);
    if tcp {
        return Ok(Some(h));
    }
    if h.is_gso() {
        return Err(SettleError::Gso);
    }
    if upper == Upper::Udp {
        return Ok(None);
    }
    let c = checksum::finish(checksum::sum(&p[start..], 0));
    let c = if c == 0 { 0xffff } else { c };
    p[at..at + 2].copy_from_slice(&c.to_be_bytes());
    Ok(None)
}

/// The sum in a partial checksum field (the pseudo-header's, folded, not
/// complemented) after the bytes `old` of the pseudo-header were replaced
/// by `new` (RFC 1624's update applied to the uncomplemented sum).
pub fn update_partial(field: u16, old: &[u8], new: &[u8]) -> u16 {
    !checksum::update(!field, old, new)
}

/// The engine's TUN: its descriptor and whether packets come and go with
/// a virtio-net header.
#[derive(Debug)]
pub struct Tun {
    fd: OwnedFd,
    vnet_hdr: bool,
}

impl Tun {
    /// A TUN opened with IFF_VNET_HDR and offloads (`vnet_hdr`), or a
    /// plain one (the Android descriptor).
    pub fn new(fd: OwnedFd, vnet_hdr: bool) -> Tun {
        Tun { fd, vnet_hdr }
    }

    pub fn fd(&self) -> &OwnedFd {
        &self.fd
    }

    /// Bytes of header before each packet read: 0 or [`VNET_HDR_LEN`].
    pub fn hdr_len(&self) -> usize {
        if self.vnet_hdr {
            VNET_HDR_LEN
        } else {
            0
        }
    }

    /// Reads one packet into `buf`: the header (`None` on a plain TUN),
    /// and the packet's length, at `buf[self.hdr_len()..]`. Errors: the
    /// kernel's (`WouldBlock` when nothing is queued); `InvalidData` for a
    /// read shorter than the header (a TUN never does that).
    pub fn read(&self, buf: &mut [u8]) -> io::Result<(Option<VnetHdr>, usize)> {
        let n = crate::sys::read_fd(&self.fd, buf)?;
        if !self.vnet_hdr {
            return Ok((None, n));
        }
        let Some(h) = buf
            .first_chunk::<VNET_HDR_LEN>()
            .filter(|_| n >= VNET_HDR_LEN)
        else {
            if n == 0 {
                return Ok((None, 0));
            }
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "TUN read shorter than its virtio-net header",
            ));
        };
        Ok((Some(VnetHdr::parse(h)), n - VNET_HDR_LEN))
    }

    /// Writes packet `pkt`, with `hdr` before it on a TUN with offloads
    /// (`None`: a zero header, the checksum complete; ignored on a plain
    /// TUN, where nothing else can be written), counting it or its drop;
    /// whether it went. The one place the engine writes to its TUN.
    pub fn write(&self, c: &Counters, hdr: Option<&VnetHdr>, pkt: &[u8]) -> bool {
        debug_assert!(hdr.is_none() || self.vnet_hdr, "header on a plain TUN");
        let r = if self.vnet_hdr {
            let h = hdr.copied().unwrap_or_default().to_bytes();
            crate::sys::writev2(&self.fd, &h, pkt).map(|n| n.saturating_sub(VNET_HDR_LEN))
        } else {
            crate::sys::write_fd(&self.fd, pkt)
        };
        match r {
            Ok(n) if n == pkt.len() => {
                Counters::inc(&c.tun_tx_packets);
                Counters::add(&c.tun_tx_bytes, pkt.len() as u64);
                true
            }
            r => {
                log::debug!("TUN write of {} bytes failed: {r:?}", pkt.len());
                Counters::inc(&c.drop_tun_write);
                false
            }
        }
    }
}

impl AsRawFd for Tun {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{NetHeaders, PacketBuilder, PacketHeaders, TransportHeader};

    #[test]
    fn header_bytes_are_little_endian_in_the_kernels_order() {
        // Written out from include/uapi/linux/virtio_net.h: flags,
        // gso_type, hdr_len, gso_size, csum_start, csum_offset.
        let b = [1u8, 4, 0x4a, 0, 0x98, 0xfd, 40, 0, 16, 0];
        let h = VnetHdr::parse(&b);
        assert_eq!(
            h,
            VnetHdr {
                flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
                gso_type: VIRTIO_NET_HDR_GSO_TCPV6,
                hdr_len: 74,
                gso_size: 0xfd98,
                csum_start: 40,
                csum_offset: 16,
            }
        );
        assert!(h.needs_csum() && h.is_gso());
        assert_eq!(h.to_bytes(), b);
        assert_eq!(VnetHdr::default().to_bytes(), [0; VNET_HDR_LEN]);
    }

    /// The one's complement sum of 16-bit words, written separately from
    /// the crate's (RFC 1071 section 4.1's loop).
    fn ones_sum(words: &[u8]) -> u16 {
        let mut s: u32 = 0;
        for c in words.chunks(2) {
            s += u32::from(c[0]) << 8 | u32::from(*c.get(1).unwrap_or(&0));
        }
        while s > 0xffff {
            s = (s & 0xffff) + (s >> 16);
        }
        s as u16
    }

    /// An IPv4 TCP (or UDP) packet built by etherparse, with its transport
    /// checksum replaced by the partial one a Linux sender leaves for the
    /// device: the folded IPv4 pseudo-header sum, by hand.
    fn partial4(tcp: bool, syn: bool, len: usize) -> (Vec<u8>, VnetHdr) {
        let payload: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
        let b = PacketBuilder::ipv4([192, 0, 0, 4], [203, 0, 113, 9], 64);
        let mut out = Vec::new();
        if tcp {
            let b = b.tcp(40000, 443, 1, 65535);
            let b = if syn { b.syn() } else { b.ack(5) };
            b.write(&mut out, &payload).unwrap();
        } else {
            b.udp(40000, 53).write(&mut out, &payload).unwrap();
        }
        let l4 = (out.len() - 20) as u16;
        let mut pseudo = vec![192, 0, 0, 4, 203, 0, 113, 9, 0, if tcp { 6 } else { 17 }];
        pseudo.extend_from_slice(&l4.to_be_bytes());
        let at = if tcp { 36 } else { 26 };
        out[at..at + 2].copy_from_slice(&ones_sum(&pseudo).to_be_bytes());
        let h = VnetHdr {
            flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
            csum_start: 20,
            csum_offset: if tcp { 16 } else { 6 },
            ..Default::default()
        };
        (out, h)
    }

    fn valid_transport_checksum(p: &[u8]) -> bool {
        let h = PacketHeaders::from_ip_slice(p).unwrap();
        let NetHeaders::Ipv4(ip, _) = h.net.unwrap() else {
            panic!()
        };
        match h.transport.unwrap() {
            TransportHeader::Tcp(t) => {
                t.checksum == t.calc_checksum_ipv4(&ip, h.payload.slice()).unwrap()
            }
            TransportHeader::Udp(u) => {
                u.checksum == u.calc_checksum_ipv4(&ip, h.payload.slice()).unwrap()
            }
            _ => panic!(),
        }
    }

    #[test]
    fn a_tcp_segment_keeps_its_partial_checksum_and_header() {
        let (mut p, h) = partial4(true, false, 1000);
        let before = p.clone();
        assert!(!valid_transport_checksum(&p));
        assert_eq!(settle(Some(h), &mut p, Upper::Tcp(20)), Ok(Some(h)));
        assert_eq!(p, before, "left as it came");
        let gso = VnetHdr {
            gso_type: VIRTIO_NET_HDR_GSO_TCPV4,
            gso_size: 500,
            ..h
        };
        assert_eq!(settle(Some(gso), &mut p, Upper::Tcp(20)), Ok(Some(gso)));
    }

    #[test]
    fn other_packets_get_their_checksum_completed() {
        // A SYN, a TCP segment the caller did not find at csum_start (a
        // fragment, say), and UDP the caller did not call UDP: completed
        // in software.
        for (tcp, syn, upper) in [
            (true, true, Upper::Tcp(20)),
            (true, false, Upper::Other),
            (false, false, Upper::Other),
        ] {
            let (mut p, h) = partial4(tcp, syn, 333);
            assert!(!valid_transport_checksum(&p));
            assert_eq!(settle(Some(h), &mut p, upper), Ok(None));
            assert!(valid_transport_checksum(&p), "tcp {tcp} syn {syn}");
        }
        // UDP: left partial (no consumer of its checksum), nothing kept.
        let (mut p, h) = partial4(false, false, 333);
        let before = p.clone();
        assert_eq!(settle(Some(h), &mut p, Upper::Udp), Ok(None));
        assert_eq!(p, before);
        // Without NEEDS_CSUM, or without a header: untouched.
        let (mut p, _) = partial4(false, false, 10);
        let before = p.clone();
        assert_eq!(
            settle(Some(VnetHdr::default()), &mut p, Upper::Other),
            Ok(None)
        );
        assert_eq!(settle(None, &mut p, Upper::Other), Ok(None));
        assert_eq!(p, before);
    }

    #[test]
    fn a_udp_checksum_that_completes_to_zero_is_sent_as_all_ones() {
        // A UDP header and a 2-byte payload whose words sum to 0xffff with
        // the field at 0 (no pseudo-header, checksum from byte 0): 0x0800
        // + 0x0800 (ports) + 0x000a (length) + 0xeff5 (payload) = 0xffff,
        // whose complement 0 UDP sends as 0xffff (RFC 768).
        let mut p = vec![0x08, 0x00, 0x08, 0x00, 0x00, 0x0a, 0x00, 0x00, 0xef, 0xf5];
        assert_eq!(ones_sum(&p), 0xffff);
        let h = VnetHdr {
            flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
            csum_start: 0,
            csum_offset: 6,
            ..Default::default()
        };
        assert_eq!(settle(Some(h), &mut p, Upper::Other), Ok(None));
        assert_eq!(&p[6..8], &[0xff, 0xff]);
    }

    #[test]
    fn bad_headers_are_refused() {
        let (mut p, h) = partial4(false, false, 4);
        let outside = VnetHdr {
            csum_start: p.len() as u16 - 1,
            ..h
        };
        assert_eq!(
            settle(Some(outside), &mut p, Upper::Other),
            Err(SettleError::ChecksumOutside)
        );
        // GSO on UDP, GSO on a TCP SYN, GSO without a partial checksum.
        let gso = VnetHdr {
            gso_type: VIRTIO_NET_HDR_GSO_TCPV4,
            gso_size: 100,
            ..h
        };
        assert_eq!(settle(Some(gso), &mut p, Upper::Udp), Err(SettleError::Gso));
        let (mut syn, h) = partial4(true, true, 0);
        let gso_syn = VnetHdr {
            gso_type: VIRTIO_NET_HDR_GSO_TCPV4,
            gso_size: 100,
            ..h
        };
        assert_eq!(
            settle(Some(gso_syn), &mut syn, Upper::Tcp(20)),
            Err(SettleError::Gso)
        );
        let no_csum = VnetHdr {
            gso_type: VIRTIO_NET_HDR_GSO_TCPV4,
            ..Default::default()
        };
        assert_eq!(
            settle(Some(no_csum), &mut p, Upper::Tcp(20)),
            Err(SettleError::Gso)
        );
    }

    #[test]
    fn partial_update_is_the_pseudo_header_sum_of_the_new_addresses() {
        // Hand-derived: the partial field for 192.0.0.4 -> 203.0.113.9,
        // TCP, length 40, then the addresses replaced by 192.0.0.5 ->
        // 192.0.0.4; the result must be the folded pseudo-header sum of
        // the new addresses, computed from scratch.
        let pseudo = |s: [u8; 4], d: [u8; 4]| {
            let mut b = s.to_vec();
            b.extend_from_slice(&d);
            b.extend_from_slice(&[0, 6, 0, 40]);
            ones_sum(&b)
        };
        let old = [192, 0, 0, 4, 203, 0, 113, 9];
        let new = [192, 0, 0, 5, 192, 0, 0, 4];
        let field = pseudo([192, 0, 0, 4], [203, 0, 113, 9]);
        assert_eq!(
            update_partial(field, &old, &new),
            pseudo([192, 0, 0, 5], [192, 0, 0, 4])
        );
    }
}
