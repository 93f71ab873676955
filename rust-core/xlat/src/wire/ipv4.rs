//! The IPv4 header (RFC 791 section 3.1).

use super::WireError;
use crate::checksum;
use std::net::Ipv4Addr;

/// An IPv4 header's fields. Options are skipped when parsing and never
/// emitted (neither the translator nor the engine sends any).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Repr {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    /// Protocol (an [`super::ip_proto`] value).
    pub protocol: u8,
    /// Bytes after the header: Total Length minus the header length.
    pub payload_len: u16,
    pub ttl: u8,
    /// Type of Service / Traffic Class byte (DSCP and ECN).
    pub tos: u8,
    /// Identification.
    pub ident: u16,
    pub dont_frag: bool,
    pub more_frags: bool,
    /// Fragment Offset, in 8-byte units.
    pub frag_offset: u16,
}

impl Ipv4Repr {
    /// Length of the header [`emit`](Self::emit) writes.
    pub const HEADER_LEN: usize = 20;

    /// A header with TTL 64, TOS 0, no fragmentation flags: what a host
    /// sends (the engine's packets, the translator's own ICMP errors).
    pub fn new(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, payload_len: u16, ident: u16) -> Self {
        Ipv4Repr {
            src,
            dst,
            protocol,
            payload_len,
            ttl: 64,
            tos: 0,
            ident,
            dont_frag: false,
            more_frags: false,
            frag_offset: 0,
        }
    }

    /// Reads and validates the header at the start of `buf`: version 4,
    /// IHL of at least 5 words, Total Length at least the header and at
    /// most `buf.len()`, a verifying header checksum. Returns the header
    /// and its length in bytes (with options); the datagram is
    /// `buf[..header_len + payload_len]`, bytes after it are not its own.
    ///
    /// Errors: [`WireError::WrongVersion`] (checked first, on any non-empty
    /// `buf`), [`WireError::Truncated`], [`WireError::Malformed`],
    /// [`WireError::BadChecksum`].
    #[inline]
    pub fn parse(buf: &[u8]) -> Result<(Ipv4Repr, usize), WireError> {
        let (repr, ihl, total) = Self::read(buf)?;
        if buf.len() < total {
            return Err(WireError::Truncated);
        }
        if !checksum::verify(&buf[..ihl], 0) {
            return Err(WireError::BadChecksum);
        }
        Ok((repr, ihl))
    }

    /// The same for the copy of a datagram inside an ICMP error (RFC 792):
    /// the header must be whole, but Total Length may exceed what is present
    /// and the checksum is not checked (a router may have changed the TTL).
    #[inline]
    pub fn parse_quoted(buf: &[u8]) -> Result<(Ipv4Repr, usize), WireError> {
        let (repr, ihl, _) = Self::read(buf)?;
        Ok((repr, ihl))
    }

    /// The fields of the header at the start of `buf`, its length and
    /// Total Length; `parse` and `parse_quoted` differ only in what they check
    /// beyond.
    #[inline]
    fn read(buf: &[u8]) -> Result<(Ipv4Repr, usize, usize), WireError> {
        let &b0 = buf.first().ok_or(WireError::Truncated)?;
        if b0 >> 4 != 4 {
            return Err(WireError::WrongVersion);
        }
        if buf.len() < Self::HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let ihl = (b0 & 0xf) as usize * 4;
        let total = u16::from_be_bytes([buf[2], buf[3]]) as usize;
        if ihl < Self::HEADER_LEN || total < ihl {
            return Err(WireError::Malformed);
        }
        if buf.len() < ihl {
            return Err(WireError::Truncated);
        }
        let flags = u16::from_be_bytes([buf[6], buf[7]]);
        let repr = Ipv4Repr {
            src: Ipv4Addr::new(buf[12], buf[13], buf[14], buf[15]),
            dst: Ipv4Addr::new(buf[16], buf[17], buf[18], buf[19]),
            protocol: buf[9],
            payload_len: (total - ihl) as u16,
            ttl: buf[8],
            tos: buf[1],
            ident: u16::from_be_bytes([buf[4], buf[5]]),
            dont_frag: flags & 0x4000 != 0,
            more_frags: flags & 0x2000 != 0,
            frag_offset: flags & 0x1fff,
        };
        Ok((repr, ihl, total))
    }

    /// More Fragments set or a non-zero offset: part of a datagram.
    #[inline]
    pub fn is_fragment(&self) -> bool {
        self.more_frags || self.frag_offset != 0
    }

    /// Total Length of the datagram [`emit`](Self::emit) heads.
    #[inline]
    pub fn total_len(&self) -> usize {
        Self::HEADER_LEN + self.payload_len as usize
    }

    /// Writes the 20-byte header with its checksum into `buf[..20]` and
    /// returns 20. Panics if `buf` is shorter.
    #[inline]
    pub fn emit(&self, buf: &mut [u8]) -> usize {
        let h = &mut buf[..Self::HEADER_LEN];
        h[0] = 0x45;
        h[1] = self.tos;
        h[2..4].copy_from_slice(&(self.total_len() as u16).to_be_bytes());
        h[4..6].copy_from_slice(&self.ident.to_be_bytes());
        let flags = ((self.dont_frag as u16) << 14)
            | ((self.more_frags as u16) << 13)
            | (self.frag_offset & 0x1fff);
        h[6..8].copy_from_slice(&flags.to_be_bytes());
        h[8] = self.ttl;
        h[9] = self.protocol;
        h[10..12].fill(0);
        h[12..16].copy_from_slice(&self.src.octets());
        h[16..20].copy_from_slice(&self.dst.octets());
        let c = checksum::finish(checksum::sum(h, 0));
        h[10..12].copy_from_slice(&c.to_be_bytes());
        Self::HEADER_LEN
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emit_reads_back_through_etherparse_and_parse() {
        let r = Ipv4Repr {
            src: Ipv4Addr::new(192, 0, 2, 1),
            dst: Ipv4Addr::new(198, 51, 100, 7),
            protocol: 17,
            payload_len: 12,
            ttl: 9,
            tos: 0xb8,
            ident: 0xbeef,
            dont_frag: false,
            more_frags: true,
            frag_offset: 0x1abc,
        };
        let mut buf = [0u8; 32];
        assert_eq!(r.emit(&mut buf), 20);
        let h = etherparse::Ipv4HeaderSlice::from_slice(&buf)
            .unwrap()
            .to_header();
        assert_eq!(h.header_checksum, h.calc_header_checksum());
        assert_eq!(
            (h.total_len, h.identification, h.time_to_live),
            (32, 0xbeef, 9)
        );
        assert!(h.more_fragments && !h.dont_fragment);
        assert_eq!(h.fragment_offset.value(), 0x1abc);
        assert_eq!(h.protocol.0, 17);
        assert_eq!(Ipv4Repr::parse(&buf), Ok((r, 20)));
    }

    /// RFC 791: a datagram is a fragment when More Fragments is set or its
    /// Fragment Offset is not zero; Don't Fragment plays no part. The
    /// headers are etherparse's, and so is the answer it is checked against.
    #[test]
    fn is_fragment_agrees_with_etherparse() {
        for (df, mf, off) in [
            (false, false, 0),
            (true, false, 0),
            (false, true, 0),
            (true, true, 0),
            (false, false, 1),
            (false, false, 0x1fff),
            (false, true, 185),
        ] {
            let mut h = etherparse::Ipv4Header::new(
                0,
                64,
                etherparse::IpNumber::UDP,
                [192, 0, 2, 1],
                [198, 51, 100, 2],
            )
            .unwrap();
            h.dont_fragment = df;
            h.more_fragments = mf;
            h.fragment_offset = etherparse::IpFragOffset::try_new(off).unwrap();
            h.header_checksum = h.calc_header_checksum();
            let (r, _) = Ipv4Repr::parse(&h.to_bytes()).unwrap();
            assert_eq!((r.dont_frag, r.more_frags, r.frag_offset), (df, mf, off));
            assert_eq!(
                r.is_fragment(),
                h.is_fragmenting_payload(),
                "DF {df} MF {mf} offset {off}"
            );
        }
    }

    #[test]
    fn parse_refuses_bad_headers() {
        let mut buf = [0u8; 28];
        Ipv4Repr::new(Ipv4Addr::LOCALHOST, Ipv4Addr::LOCALHOST, 1, 8, 0).emit(&mut buf);
        assert_eq!(Ipv4Repr::parse(&[]), Err(WireError::Truncated));
        assert_eq!(Ipv4Repr::parse(&[0x60; 40]), Err(WireError::WrongVersion));
        assert_eq!(Ipv4Repr::parse(&buf[..19]), Err(WireError::Truncated));
        assert_eq!(Ipv4Repr::parse(&buf[..27]), Err(WireError::Truncated));
        assert!(Ipv4Repr::parse_quoted(&buf[..27]).is_ok());
        let mut bad = buf;
        bad[10] ^= 1;
        assert_eq!(Ipv4Repr::parse(&bad), Err(WireError::BadChecksum));
        let mut bad = buf;
        bad[0] = 0x44;
        assert_eq!(Ipv4Repr::parse(&bad), Err(WireError::Malformed));
        let mut bad = buf;
        bad[2..4].copy_from_slice(&19u16.to_be_bytes());
        assert_eq!(Ipv4Repr::parse(&bad), Err(WireError::Malformed));
    }
}
