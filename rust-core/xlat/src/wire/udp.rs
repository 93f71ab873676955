//! The UDP header (RFC 768).

use crate::checksum;
use std::net::{Ipv4Addr, Ipv6Addr};

/// A UDP header's ports; Length and Checksum follow from the payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpRepr {
    pub src_port: u16,
    pub dst_port: u16,
}

impl UdpRepr {
    pub const HEADER_LEN: usize = 8;

    /// Writes the header into `buf[..8]` for the `payload_len` bytes that
    /// already sit at `buf[8..]`, with the checksum over an IPv4
    /// pseudo-header from `src` to `dst` (a computed 0 is sent as 0xffff,
    /// RFC 768). Returns the datagram's length. Panics if `buf` is shorter
    /// than `8 + payload_len`.
    pub fn emit(&self, buf: &mut [u8], src: Ipv4Addr, dst: Ipv4Addr, payload_len: usize) -> usize {
        let len = Self::HEADER_LEN + payload_len;
        let pseudo = checksum::pseudo_v4(src, dst, super::ip_proto::UDP, len as u16);
        self.emit_with_pseudo(buf, payload_len, pseudo)
    }

    /// [`emit`](Self::emit) with the checksum over an IPv6 pseudo-header
    /// (RFC 8200 section 8.1, where a UDP checksum is mandatory).
    pub fn emit_v6(
        &self,
        buf: &mut [u8],
        src: &Ipv6Addr,
        dst: &Ipv6Addr,
        payload_len: usize,
    ) -> usize {
        let len = Self::HEADER_LEN + payload_len;
        let pseudo = checksum::pseudo_v6(src, dst, super::ip_proto::UDP, len as u32);
        self.emit_with_pseudo(buf, payload_len, pseudo)
    }

    fn emit_with_pseudo(&self, buf: &mut [u8], payload_len: usize, pseudo: u32) -> usize {
        let len = Self::HEADER_LEN + payload_len;
        let u = &mut buf[..len];
        u[0..2].copy_from_slice(&self.src_port.to_be_bytes());
        u[2..4].copy_from_slice(&self.dst_port.to_be_bytes());
        u[4..6].copy_from_slice(&(len as u16).to_be_bytes());
        u[6..8].fill(0);
        let c = match checksum::finish(checksum::sum(u, pseudo)) {
            0 => 0xffff,
            c => c,
        };
        u[6..8].copy_from_slice(&c.to_be_bytes());
        len
    }

    /// The header (without payload) of a datagram of `payload_len` bytes,
    /// as quoted in an ICMP error; the checksum is left 0.
    pub fn emit_quoted(&self, buf: &mut [u8], payload_len: usize) -> usize {
        let u = &mut buf[..Self::HEADER_LEN];
        u[0..2].copy_from_slice(&self.src_port.to_be_bytes());
        u[2..4].copy_from_slice(&self.dst_port.to_be_bytes());
        u[4..6].copy_from_slice(&((Self::HEADER_LEN + payload_len) as u16).to_be_bytes());
        u[6..8].fill(0);
        Self::HEADER_LEN
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The quoted header is the datagram's as the source sent it (RFC 768:
    /// Length counts header and data), read back by etherparse, with the
    /// checksum left 0; nothing past the 8 bytes is touched.
    #[test]
    fn emit_quoted_writes_the_header_of_the_whole_datagram() {
        let r = UdpRepr {
            src_port: 0x0102,
            dst_port: 0x0304,
        };
        for payload_len in [0usize, 100, 1472] {
            let mut buf = [0xeeu8; 12];
            assert_eq!(r.emit_quoted(&mut buf, payload_len), 8);
            let h = etherparse::UdpHeaderSlice::from_slice(&buf)
                .unwrap()
                .to_header();
            assert_eq!(
                (h.source_port, h.destination_port, h.length, h.checksum),
                (0x0102, 0x0304, 8 + payload_len as u16, 0)
            );
            assert_eq!(buf[8..], [0xee; 4]);
        }
    }

    #[test]
    fn checksum_matches_etherparse_for_every_length() {
        let (s, d) = (Ipv4Addr::new(203, 0, 113, 10), Ipv4Addr::new(192, 0, 0, 4));
        let mut buf = [0u8; 1100];
        for len in [0usize, 1, 2, 3, 17, 1000] {
            for (i, b) in buf[8..8 + len].iter_mut().enumerate() {
                *b = (i * 7 + len) as u8;
            }
            let r = UdpRepr {
                src_port: 7,
                dst_port: 40000,
            };
            assert_eq!(r.emit(&mut buf, s, d, len), 8 + len);
            let h = etherparse::UdpHeaderSlice::from_slice(&buf)
                .unwrap()
                .to_header();
            assert_eq!(h.length as usize, 8 + len);
            assert_eq!(
                h.checksum,
                h.calc_checksum_ipv4_raw(s.octets(), d.octets(), &buf[8..8 + len])
                    .unwrap()
            );
        }
    }

    #[test]
    fn ipv6_checksum_matches_etherparse_for_every_length() {
        let s: Ipv6Addr = "2001:db8:2::10".parse().unwrap();
        let d: Ipv6Addr = "fd9c:7c5a:e1b6:464::1".parse().unwrap();
        let mut buf = [0u8; 1100];
        for len in [0usize, 1, 2, 3, 17, 1000] {
            for (i, b) in buf[8..8 + len].iter_mut().enumerate() {
                *b = (i * 11 + len) as u8;
            }
            let r = UdpRepr {
                src_port: 7,
                dst_port: 40000,
            };
            assert_eq!(r.emit_v6(&mut buf, &s, &d, len), 8 + len);
            let h = etherparse::UdpHeaderSlice::from_slice(&buf)
                .unwrap()
                .to_header();
            assert_eq!(
                h.checksum,
                h.calc_checksum_ipv6_raw(s.octets(), d.octets(), &buf[8..8 + len])
                    .unwrap()
            );
        }
    }
}
