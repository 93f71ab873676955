//! The IPv6 fixed header (RFC 8200 section 3) and Fragment header (RFC
//! 8200 section 4.5). Reading a whole header chain is the translator's
//! business (`headers::parse_v6`, RFC 7915 section 5.1).

use std::net::Ipv6Addr;

/// The fixed IPv6 header's fields. The Flow Label is always emitted as 0
/// (RFC 7915 section 4.1: "Flow label: 0 (all zero bits)").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6Repr {
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    /// Next Header (an [`super::ip_proto`] value).
    pub next_header: u8,
    /// Payload Length: bytes after the fixed header, extension headers included.
    pub payload_len: u16,
    pub hop_limit: u8,
    pub traffic_class: u8,
}

impl Ipv6Repr {
    /// Length of the header [`emit`](Self::emit) writes.
    pub const HEADER_LEN: usize = 40;

    /// Writes the 40-byte header into `buf[..40]` and returns 40. Panics if
    /// `buf` is shorter.
    #[inline]
    pub fn emit(&self, buf: &mut [u8]) -> usize {
        let h = &mut buf[..Self::HEADER_LEN];
        h[0] = 0x60 | (self.traffic_class >> 4);
        h[1] = self.traffic_class << 4;
        h[2] = 0;
        h[3] = 0;
        h[4..6].copy_from_slice(&self.payload_len.to_be_bytes());
        h[6] = self.next_header;
        h[7] = self.hop_limit;
        h[8..24].copy_from_slice(&self.src.octets());
        h[24..40].copy_from_slice(&self.dst.octets());
        Self::HEADER_LEN
    }
}

/// An IPv6 Fragment header's fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6FragmentRepr {
    pub next_header: u8,
    /// Fragment Offset, in 8-byte units.
    pub offset: u16,
    /// The M flag.
    pub more: bool,
    pub ident: u32,
}

impl Ipv6FragmentRepr {
    pub const HEADER_LEN: usize = 8;

    /// Writes the 8-byte header into `buf[..8]` and returns 8. Panics if
    /// `buf` is shorter.
    #[inline]
    pub fn emit(&self, buf: &mut [u8]) -> usize {
        let h = &mut buf[..Self::HEADER_LEN];
        h[0] = self.next_header;
        h[1] = 0;
        h[2..4].copy_from_slice(&((self.offset << 3) | self.more as u16).to_be_bytes());
        h[4..8].copy_from_slice(&self.ident.to_be_bytes());
        Self::HEADER_LEN
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ip_proto;

    #[test]
    fn emit_reads_back_through_etherparse() {
        let r = Ipv6Repr {
            src: "2001:db8::1".parse().unwrap(),
            dst: "2001:db8::2".parse().unwrap(),
            next_header: ip_proto::FRAGMENT,
            payload_len: 16,
            hop_limit: 7,
            traffic_class: 0xb8,
        };
        let f = Ipv6FragmentRepr {
            next_header: ip_proto::UDP,
            offset: 0x1234,
            more: true,
            ident: 0xdead_beef,
        };
        let mut buf = [0xffu8; 56];
        assert_eq!(r.emit(&mut buf), 40);
        assert_eq!(f.emit(&mut buf[40..]), 8);
        let h = etherparse::Ipv6HeaderSlice::from_slice(&buf)
            .unwrap()
            .to_header();
        assert_eq!(h.source_addr(), r.src);
        assert_eq!(h.destination_addr(), r.dst);
        assert_eq!((h.traffic_class, h.flow_label.value()), (0xb8, 0));
        assert_eq!(
            (h.payload_length, h.hop_limit, h.next_header.0),
            (16, 7, 44)
        );
        let fh = etherparse::Ipv6FragmentHeaderSlice::from_slice(&buf[40..])
            .unwrap()
            .to_header();
        assert_eq!(fh.fragment_offset.value(), 0x1234);
        assert!(fh.more_fragments);
        assert_eq!((fh.identification, fh.next_header.0), (0xdead_beef, 17));
    }
}
