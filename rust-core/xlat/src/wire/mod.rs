//! The packet layer of the whole core: typed IPv4, IPv6, TCP, UDP and ICMP
//! headers that the translator and the engine both parse and build packets
//! with, so that there is one implementation of each header, checksum and
//! ICMP code.
//!
//! The model is smoltcp's `wire` module. A `…Repr` is a header's fields as
//! plain values: `parse` reads and validates one from a byte slice (no
//! allocation, never a panic, an error for bad input), `emit` writes one
//! into the caller's buffer and returns how many bytes it wrote.
//!
//! The buffer contract (smoltcp's `check_len`): `parse` checks the length of
//! what it is given and answers [`WireError::Truncated`] when it is short;
//! `emit` does not check, and panics when the buffer is shorter than the
//! documented length (`HEADER_LEN`, `buffer_len()`). Callers size their
//! buffers once (the translator's `OutBuf`, the engine's 64 KiB packet
//! buffer), so an emit into a short buffer is a bug, not bad input.
//!
//! Checksums are RFC 1071 sums from [`crate::checksum`]; ICMP types and
//! codes are the enums of [`icmp`], whose RFC 7915 mapping is
//! [`crate::icmp_map`].

pub mod icmp;
pub mod ipv4;
pub mod ipv6;
pub mod tcp;
pub mod udp;

pub use icmp::{
    Icmpv4DstUnreachable, Icmpv4ErrorRepr, Icmpv4Message, Icmpv4ParamProblem, Icmpv4TimeExceeded,
    Icmpv6DstUnreachable, Icmpv6ErrorRepr, Icmpv6Message, Icmpv6ParamProblem, Icmpv6TimeExceeded,
};
pub use ipv4::Ipv4Repr;
pub use ipv6::{Ipv6FragmentRepr, Ipv6Repr};
pub use tcp::{TcpFlags, TcpRepr, TcpSegment, TcpSeqNumber};
pub use udp::UdpRepr;

/// IP protocol numbers (IANA "Assigned Internet Protocol Numbers"); the
/// same registry names IPv4 Protocol and IPv6 Next Header values.
pub mod ip_proto {
    /// IPv6 Hop-by-Hop Options (RFC 8200 section 4.3).
    pub const HOPOPT: u8 = 0;
    pub const ICMP: u8 = 1;
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
    /// IPv6 Routing header (RFC 8200 section 4.4).
    pub const ROUTING: u8 = 43;
    /// IPv6 Fragment header (RFC 8200 section 4.5).
    pub const FRAGMENT: u8 = 44;
    pub const ICMPV6: u8 = 58;
    /// IPv6 No Next Header (RFC 8200 section 4.7).
    pub const NO_NEXT_HEADER: u8 = 59;
    /// IPv6 Destination Options (RFC 8200 section 4.6).
    pub const DSTOPTS: u8 = 60;
}

/// Why bytes do not parse as a header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireError {
    /// Shorter than the header, or than the length it declares.
    Truncated,
    /// The version nibble is not the one the parser reads.
    WrongVersion,
    /// A length or offset field is impossible (IHL below 5, Total Length
    /// below the header, TCP data offset below 5 or past the segment).
    Malformed,
    /// The IPv4 header checksum does not verify.
    BadChecksum,
}

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            WireError::Truncated => "truncated",
            WireError::WrongVersion => "wrong IP version",
            WireError::Malformed => "malformed header",
            WireError::BadChecksum => "bad header checksum",
        })
    }
}

impl std::error::Error for WireError {}

#[cfg(test)]
mod tests {
    use super::WireError;

    /// Each error says in words what is wrong (the words reach logs and
    /// the engine's error messages), through `Display` and as a
    /// `std::error::Error`.
    #[test]
    fn wire_errors_display_their_own_message() {
        let all = [
            (WireError::Truncated, "truncated"),
            (WireError::WrongVersion, "wrong IP version"),
            (WireError::Malformed, "malformed header"),
            (WireError::BadChecksum, "bad header checksum"),
        ];
        for (e, text) in all {
            assert_eq!(e.to_string(), text);
            let as_error: &dyn std::error::Error = &e;
            assert_eq!(as_error.to_string(), text);
        }
    }
}
