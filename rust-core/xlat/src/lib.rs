//! Stateless IP/ICMP translation (SIIT) with no I/O.
//!
//! - RFC 6052 address embedding ([`addr6052`]), RFC 7757 explicit address
//!   mappings ([`eam`]), RFC 7915 header and ICMP translation in both
//!   directions ([`Translator`]), RFC 6791 sources for ICMP errors from
//!   routers with no address on the other side, RFC 1624 incremental
//!   checksums ([`checksum`]).
//! - The hot path does not allocate: packets are translated into an
//!   [`OutBuf`] that the caller allocates once and reuses, and the result is
//!   an [`Outcome`] (packets to forward, an ICMP error to send back, or a
//!   drop with its [`DropReason`]).
//!
//! Invariants the engine can rely on:
//! - every emitted packet has valid IPv4 header / ICMP / ICMPv6 checksums;
//!   TCP and UDP checksums are adjusted incrementally, so a packet that came
//!   in with a wrong transport checksum leaves with a wrong one (end-to-end
//!   detection is kept);
//! - IPv6 output never exceeds `mtu6` and IPv4 output never exceeds `mtu4`
//!   (DF=1 IPv4 packets that would not fit become `Reply` errors instead);
//! - `Outcome::Forward`/`Reply` always leave at least one packet in the
//!   `OutBuf`, `Drop` leaves none; translation never panics on any input.
//!
//! ```
//! use clat_xlat::{Config, Eam, EamTable, OutBuf, Outcome, IpVersion, Translator};
//! let mut eam = EamTable::new();
//! // The CLAT's IPv4 address maps to one IPv6 address of the host (RFC 7757).
//! eam.insert(Eam::new("192.0.0.4/32".parse().unwrap(), "2001:db8:1::2/128".parse().unwrap()).unwrap()).unwrap();
//! let t = Translator::new(Config {
//!     pool6: Some("64:ff9b::/96".parse().unwrap()),
//!     eam,
//!     ..Config::default()
//! }).unwrap();
//! let mut out = OutBuf::new(); // once; reused for every packet
//! // An ICMP echo request from 192.0.0.4 to 8.8.8.8.
//! let mut pkt = vec![0x45, 0, 0, 28, 0, 1, 0, 0, 64, 1, 0, 0, 192, 0, 0, 4, 8, 8, 8, 8,
//!                    8, 0, 0, 0, 0, 1, 0, 1];
//! let c = clat_xlat::checksum::finish(clat_xlat::checksum::sum(&pkt[..20], 0));
//! pkt[10..12].copy_from_slice(&c.to_be_bytes());
//! let c = clat_xlat::checksum::finish(clat_xlat::checksum::sum(&pkt[20..], 0));
//! pkt[22..24].copy_from_slice(&c.to_be_bytes());
//! assert_eq!(t.translate_4to6(&pkt, &mut out), Outcome::Forward(IpVersion::V6));
//! let v6 = out.get(0).unwrap();
//! assert_eq!(&v6[24..40], &"64:ff9b::808:808".parse::<std::net::Ipv6Addr>().unwrap().octets());
//! ```
//!
//! The crate has no `unsafe` code, and may not get any.

#![forbid(unsafe_code)]

pub mod addr6052;
pub mod checksum;
pub mod config;
pub mod eam;
mod fragment;
pub mod headers;
pub mod icmp_err;
pub mod icmp_map;
pub mod outcome;
mod transport;
mod v4_to_v6;
mod v6_to_v4;
pub mod wire;

pub use addr6052::{embed, extract};
pub use checksum::{update, update16};
pub use config::{Config, ConfigError};
pub use eam::{Eam, EamError, EamTable};
pub use icmp_err::icmp6_error_to_icmp4;
pub use outcome::{DropReason, IpVersion, OutBuf, Outcome};

use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicU32, Ordering};

/// A configured translator. Shareable between threads (`&self` methods);
/// the only mutable state is the IPv4 Identification counter.
#[derive(Debug)]
pub struct Translator {
    cfg: Config,
    wkp: bool,
    id_counter: AtomicU32,
}

impl Translator {
    /// Validates `cfg` and builds the translator.
    pub fn new(cfg: Config) -> Result<Translator, ConfigError> {
        cfg.validate()?;
        let wkp = cfg.pool6.as_ref().is_some_and(addr6052::is_well_known);
        Ok(Translator {
            id_counter: AtomicU32::new(cfg.frag_id_seed),
            cfg,
            wkp,
        })
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Translates an IPv4 packet (starting at its header) to IPv6.
    pub fn translate_4to6(&self, pkt: &[u8], out: &mut OutBuf) -> Outcome {
        v4_to_v6::translate(self, pkt, out)
    }

    /// Translates an IPv6 packet (starting at its header) to IPv4.
    pub fn translate_6to4(&self, pkt: &[u8], out: &mut OutBuf) -> Outcome {
        v6_to_v4::translate(self, pkt, out)
    }

    /// Dispatches on the version nibble.
    pub fn translate(&self, pkt: &[u8], out: &mut OutBuf) -> Outcome {
        match pkt.first().map(|b| b >> 4) {
            Some(4) => self.translate_4to6(pkt, out),
            Some(6) => self.translate_6to4(pkt, out),
            _ => {
                out.clear();
                Outcome::Drop(DropReason::WrongVersion)
            }
        }
    }

    /// RFC 7915 section 4.4: after `translate_4to6` dropped `pkt` (for
    /// example [`DropReason::UntranslatableDst`] or
    /// [`DropReason::NonGlobalWkp`]), the translator SHOULD be able to answer
    /// with ICMPv4 Destination Unreachable, Communication Administratively
    /// Prohibited (type 3, code 13). This builds that answer into `out`
    /// (`Outcome::Reply(V4)`), or says why none may be sent (the packet is an
    /// ICMP error, a non-first fragment, from a broadcast source, or no
    /// `self_v4` is configured). Separate from `translate_4to6` so that the
    /// caller decides, and counts, which drops are answered.
    pub fn refuse_4(&self, pkt: &[u8], out: &mut OutBuf) -> Outcome {
        out.clear();
        let ip = match headers::parse_v4(pkt, true) {
            Ok(ip) => ip,
            Err(r) => return Outcome::Drop(r),
        };
        let is_err = ip.proto == headers::PROTO_ICMP
            && ip
                .payload
                .first()
                .is_some_and(|&t| icmp_map::is_icmp4_error(t));
        if ip.frag_off != 0 || is_err || !icmp_err::v4_answerable(ip.src) {
            return Outcome::Drop(DropReason::ErrorNotAllowed);
        }
        let Some(src) = self.cfg.self_v4.or(self.cfg.pool6791_v4) else {
            return Outcome::Drop(DropReason::NoErrorSource);
        };
        let quoted = &pkt[..pkt.len().min(ip.total_len as usize)];
        let e = wire::Icmpv4ErrorRepr {
            message: wire::Icmpv4Message::DstUnreachable,
            code: wire::Icmpv4DstUnreachable::CommProhibited as u8,
            rest: [0; 4],
            quote: quoted,
        };
        let n = icmp_err::emit_icmp4(&mut out.data, src, ip.src, &e);
        out.push(0, n);
        Outcome::Reply(IpVersion::V4)
    }

    /// RFC 7915 section 5.4: the same for a packet `translate_6to4` dropped:
    /// ICMPv6 Destination Unreachable, Communication with Destination
    /// Administratively Prohibited (type 1, code 1), unless the packet is an
    /// ICMPv6 message (the RFC exempts them all) or no `self_v6` is set.
    pub fn refuse_6(&self, pkt: &[u8], out: &mut OutBuf) -> Outcome {
        out.clear();
        let ip = match headers::parse_v6(pkt, true) {
            Ok(ip) => ip,
            Err(r) => return Outcome::Drop(r),
        };
        if ip.proto == headers::PROTO_ICMPV6
            || ip.frag.is_some_and(|f| f.off != 0)
            || !icmp_err::v6_answerable(&ip.src)
        {
            return Outcome::Drop(DropReason::ErrorNotAllowed);
        }
        let Some(src) = self.cfg.self_v6.or(self.cfg.pool6791_v6) else {
            return Outcome::Drop(DropReason::NoErrorSource);
        };
        let quoted = &pkt[..pkt.len().min(40 + ip.payload_len as usize)];
        let e = wire::Icmpv6ErrorRepr {
            message: wire::Icmpv6Message::DstUnreachable,
            code: wire::Icmpv6DstUnreachable::AdminProhibited as u8,
            rest: 0,
            quote: quoted,
        };
        let n = icmp_err::emit_icmp6(&mut out.data, src, ip.src, &e);
        out.push(0, n);
        Outcome::Reply(IpVersion::V6)
    }

    /// IPv4 address -> IPv6: the EAMT first (RFC 7757), then pool6 (RFC
    /// 6052), refusing non-global addresses with the Well-Known Prefix.
    pub fn map_4to6(&self, a: Ipv4Addr) -> Result<Ipv6Addr, DropReason> {
        if let Some(v6) = self.cfg.eam.map4(a) {
            return Ok(v6);
        }
        let p = self
            .cfg
            .pool6
            .as_ref()
            .ok_or(DropReason::UntranslatableDst)?;
        if self.wkp && self.cfg.refuse_non_global_wkp && addr6052::is_non_global(a) {
            return Err(DropReason::NonGlobalWkp);
        }
        Ok(addr6052::embed(p, a))
    }

    /// IPv4 address -> IPv6 by pool6 alone (RFC 6052), as hairpinning
    /// (RFC 7757 section 4) maps the sources it sends back.
    pub(crate) fn embed_pool6(&self, a: Ipv4Addr) -> Result<Ipv6Addr, DropReason> {
        let p = self
            .cfg
            .pool6
            .as_ref()
            .ok_or(DropReason::UntranslatableSrc)?;
        Ok(addr6052::embed(p, a))
    }

    /// IPv6 address -> IPv4: the EAMT first, then pool6.
    pub fn map_6to4(&self, a: Ipv6Addr) -> Result<Ipv4Addr, DropReason> {
        self.map_6to4_via(a).map(|(v4, _)| v4)
    }

    /// [`Self::map_6to4`], and whether the EAMT gave the address (`false`:
    /// pool6 did), which decides hairpinning (RFC 7757 section 4).
    pub(crate) fn map_6to4_via(&self, a: Ipv6Addr) -> Result<(Ipv4Addr, bool), DropReason> {
        if let Some(v4) = self.cfg.eam.map6(a) {
            return Ok((v4, true));
        }
        let p = self
            .cfg
            .pool6
            .as_ref()
            .ok_or(DropReason::UntranslatableDst)?;
        let v4 = addr6052::extract(p, a).ok_or(DropReason::UntranslatableDst)?;
        if self.wkp && self.cfg.refuse_non_global_wkp && addr6052::is_non_global(v4) {
            return Err(DropReason::NonGlobalWkp);
        }
        Ok((v4, false))
    }

    /// Next IPv4 Identification for a packet that had no Fragment header
    /// (RFC 7915 5.1). A counter multiplied by an odd constant: a
    /// bijection modulo 2^16, so values never repeat within 65536 packets
    /// and do not simply count up (RFC 7739 asks for unpredictable ones; the
    /// seed shifts the sequence).
    pub(crate) fn next_id(&self) -> u16 {
        let n = self.id_counter.fetch_add(1, Ordering::Relaxed);
        (n.wrapping_mul(0x9E37_79B9) as u16) ^ ((self.cfg.frag_id_seed >> 16) as u16)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn translator(seed: u32) -> Translator {
        Translator::new(Config {
            pool6: Some("2001:db8:64::/96".parse().unwrap()),
            frag_id_seed: seed,
            ..Config::default()
        })
        .unwrap()
    }

    /// RFC 7915 section 5.1 Identifications: no value repeats within 65536
    /// packets whatever the seed (RFC 6864 section 4.1 asks for no reuse
    /// within the maximum datagram lifetime).
    #[test]
    fn identifications_do_not_repeat_within_65536_packets() {
        for seed in [0, 0x5555_0001, 0xffff_ffff, 0x8000_7fff] {
            let t = translator(seed);
            let mut seen = vec![false; 1 << 16];
            for i in 0..(1u32 << 16) {
                let id = t.next_id();
                assert!(
                    !seen[id as usize],
                    "seed {seed:#x}: {id} repeats at packet {i}"
                );
                seen[id as usize] = true;
            }
        }
    }

    /// The whole seed shifts the sequence (RFC 7739 asks for Identifications
    /// that are hard to predict): seeds that differ only in their high half
    /// give different sequences.
    #[test]
    fn the_seeds_high_half_shifts_the_sequence() {
        let (a, b) = (translator(0x0001_0007), translator(0x8001_0007));
        let xs: Vec<u16> = (0..4).map(|_| a.next_id()).collect();
        let ys: Vec<u16> = (0..4).map(|_| b.next_id()).collect();
        for (x, y) in xs.iter().zip(&ys) {
            assert_eq!(x ^ y, 0x8001 ^ 0x0001, "{xs:?} {ys:?}");
        }
    }
}
