//! What a translation produces: packets written into a caller-owned
//! [`OutBuf`], and an [`Outcome`] that says where they go or why nothing was
//! produced.

/// IP version of emitted packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpVersion {
    V4,
    V6,
}

/// The result of one translation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// `out` holds one or more packets (more than one when the result was
    /// fragmented) to send on the other side; they are of this IP version.
    /// `Forward(V6)` from `translate_6to4` is a hairpinned packet (RFC 7757
    /// section 4): it goes back out on the IPv6 side.
    Forward(IpVersion),
    /// `out` holds exactly one ICMP error to send back toward the packet's
    /// source, on the side the packet came from (so of the same IP version as
    /// the input).
    Reply(IpVersion),
    /// Nothing to send.
    Drop(DropReason),
}

/// Why a packet was dropped. [`DropReason::as_str`] gives a stable name
/// (used by `clat xlat` and by counters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Shorter than its headers say, or a header field is impossible.
    Malformed,
    /// Not the IP version the entry point expects.
    WrongVersion,
    /// IPv4 header checksum is wrong.
    BadIpv4Checksum,
    /// The ICMP error's checksum is wrong (we recompute it, so we must not
    /// launder a corrupted message).
    BadIcmpChecksum,
    /// The destination has no form on the other side (no EAM, not in pool6).
    UntranslatableDst,
    /// The source has no form on the other side and the packet is not an ICMP
    /// error (RFC 6791 covers only those).
    UntranslatableSrc,
    /// RFC 6052 section 3.1: the Well-Known Prefix carries only global IPv4.
    NonGlobalWkp,
    /// ICMP type or code that RFC 7915 sections 4.2/5.2 say to drop.
    IcmpUntranslatable,
    /// An ICMP error inside an ICMP error (RFC 7915 4.3/5.3).
    IcmpErrorInError,
    /// A fragmented ICMP message: its checksum needs the whole message.
    FragmentedIcmp,
    /// IPv4 UDP with checksum 0 and `amend_udp_zero_checksum` off, or a
    /// fragment of one (the checksum needs the whole datagram; RFC 7915 4.5),
    /// when no ICMPv4 error may be sent about it (otherwise the outcome is
    /// `Reply` with Communication Administratively Prohibited, RFC 7915 4.4).
    UdpZeroChecksum,
    /// IPv6 jumbogram or a result that does not fit in 65535 bytes.
    TooBig,
    /// Too big for the egress MTU, and an ICMP error about it would be an
    /// error about an error.
    TooBigNoReply,
    /// Hop limit / TTL ran out, and no error may be sent about this packet.
    TtlExpired,
    /// An error had to be sent but the translator has no address to send it from.
    NoErrorSource,
    /// The first fragment does not hold the whole transport header.
    TruncatedTransport,
    /// IPv4 unexpired source route option (RFC 7915 4.1), no error allowed.
    SourceRoute,
    /// IPv6 Routing header with Segments Left > 0 (RFC 7915 5.1), no error allowed.
    RoutingHeader,
    /// Hop-by-Hop, Routing or Destination Options after the Fragment header
    /// (RFC 7915 5.1.1 "SHOULD be dropped"), no error allowed (otherwise the
    /// outcome is `Reply` with the RFC 7915 5.4 error).
    ExtensionAfterFragment,
    /// `refuse_4`/`refuse_6`: no ICMP error may be sent about this packet
    /// (an ICMP error or ICMPv6 message, a non-first fragment, a multicast
    /// or broadcast source).
    ErrorNotAllowed,
}

impl DropReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::Malformed => "malformed",
            DropReason::WrongVersion => "wrong-version",
            DropReason::BadIpv4Checksum => "bad-ipv4-checksum",
            DropReason::BadIcmpChecksum => "bad-icmp-checksum",
            DropReason::UntranslatableDst => "untranslatable-destination",
            DropReason::UntranslatableSrc => "untranslatable-source",
            DropReason::NonGlobalWkp => "non-global-with-well-known-prefix",
            DropReason::IcmpUntranslatable => "icmp-untranslatable",
            DropReason::IcmpErrorInError => "icmp-error-in-error",
            DropReason::FragmentedIcmp => "fragmented-icmp",
            DropReason::UdpZeroChecksum => "udp-zero-checksum",
            DropReason::TooBig => "too-big",
            DropReason::TooBigNoReply => "too-big-no-reply",
            DropReason::TtlExpired => "ttl-expired",
            DropReason::NoErrorSource => "no-error-source",
            DropReason::TruncatedTransport => "truncated-transport",
            DropReason::SourceRoute => "source-route",
            DropReason::RoutingHeader => "routing-header",
            DropReason::ExtensionAfterFragment => "extension-after-fragment",
            DropReason::ErrorNotAllowed => "error-not-allowed",
        }
    }
}

impl std::fmt::Display for DropReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Largest number of packets one translation can emit: a 65535-byte IPv6
/// fragment cut for an IPv4 MTU of 68 (48 payload bytes per fragment).
pub const MAX_PACKETS: usize = 1400;
/// Room for all of them with their headers.
const DATA_LEN: usize = 65_575 + MAX_PACKETS * 48;
const SCRATCH_LEN: usize = 65_575 + 48;

/// Caller-owned output buffer, allocated once and reused for every packet:
/// the hot path never allocates. Holds the emitted packets back to back.
pub struct OutBuf {
    pub(crate) data: Box<[u8]>,
    /// Where a packet that must be fragmented is built first.
    pub(crate) scratch: Box<[u8]>,
    spans: Box<[(u32, u32)]>,
    n: usize,
}

impl Default for OutBuf {
    fn default() -> Self {
        Self::new()
    }
}

impl OutBuf {
    /// Allocates about 230 KiB: enough for any result.
    pub fn new() -> Self {
        OutBuf {
            data: vec![0; DATA_LEN].into_boxed_slice(),
            scratch: vec![0; SCRATCH_LEN].into_boxed_slice(),
            spans: vec![(0, 0); MAX_PACKETS].into_boxed_slice(),
            n: 0,
        }
    }

    /// Number of packets held.
    pub fn len(&self) -> usize {
        self.n
    }

    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Packet `i`.
    pub fn get(&self, i: usize) -> Option<&[u8]> {
        if i >= self.n {
            return None;
        }
        let (s, e) = self.spans[i];
        Some(&self.data[s as usize..e as usize])
    }

    /// The packets, in sending order.
    pub fn iter(&self) -> impl Iterator<Item = &[u8]> + '_ {
        self.spans[..self.n]
            .iter()
            .map(move |&(s, e)| &self.data[s as usize..e as usize])
    }

    pub(crate) fn clear(&mut self) {
        self.n = 0;
    }

    /// Records `data[start..end]` as the next packet.
    pub(crate) fn push(&mut self, start: usize, end: usize) {
        debug_assert!(self.n < MAX_PACKETS);
        if self.n < MAX_PACKETS {
            self.spans[self.n] = (start as u32, end as u32);
            self.n += 1;
        }
    }
}
