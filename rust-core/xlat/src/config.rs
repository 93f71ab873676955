//! Translator configuration and its validation.

use crate::addr6052::{self, PrefixError};
use crate::eam::EamTable;
use ipnet::Ipv6Net;
use std::net::{Ipv4Addr, Ipv6Addr};

/// Smallest IPv4 MTU (RFC 791).
pub const MIN_MTU4: u16 = 68;
/// Smallest IPv6 MTU (RFC 8200 section 5).
pub const MIN_MTU6: u16 = 1280;

/// Everything a [`crate::Translator`] needs. `Default` gives: no pool6, an
/// empty EAMT, no RFC 6791 pool, no own addresses, MTUs 1500/1500, lowest
/// IPv6 MTU 1280, no TTL decrement, drop IPv4 UDP with checksum 0, refuse
/// non-global IPv4 with the Well-Known Prefix.
#[derive(Debug, Clone)]
pub struct Config {
    /// RFC 6052 prefix (pool6). `None`: only the EAMT translates addresses.
    pub pool6: Option<Ipv6Net>,
    /// RFC 7757 explicit mappings, consulted before pool6.
    pub eam: EamTable,
    /// RFC 6791: source of translated ICMPv4 errors whose IPv6 source has no
    /// IPv4 form. Falls back to `self_v4`.
    pub pool6791_v4: Option<Ipv4Addr>,
    /// The same for translated ICMPv6 errors. Falls back to `self_v6`.
    pub pool6791_v6: Option<Ipv6Addr>,
    /// Source of ICMPv4 errors the translator originates (Time Exceeded,
    /// Fragmentation Needed, Source Route Failed). Falls back to `pool6791_v4`.
    pub self_v4: Option<Ipv4Addr>,
    /// Source of ICMPv6 errors the translator originates. Falls back to `pool6791_v6`.
    pub self_v6: Option<Ipv6Addr>,
    /// Egress MTU on the IPv4 side (>= 68).
    pub mtu4: u16,
    /// Egress MTU on the IPv6 side (>= 1280).
    pub mtu6: u16,
    /// RFC 7915 section 4: IPv4 packets with DF=0 are fragmented so that the
    /// IPv6 packets fit this size (the smallest path MTU assumed on the IPv6
    /// side; 1280 unless the operator knows better).
    pub lowest_ipv6_mtu: u16,
    /// Act as a router: decrement TTL / hop limit and answer Time Exceeded.
    pub decrement_ttl: bool,
    /// RFC 7915 section 4.5: compute a checksum for unfragmented IPv4 UDP
    /// with checksum 0 instead of dropping it.
    pub amend_udp_zero_checksum: bool,
    /// RFC 6052 section 3.1: with 64:ff9b::/96, refuse non-global IPv4.
    pub refuse_non_global_wkp: bool,
    /// Seed of the IPv4 Identification generator used for IPv6 packets that
    /// have no Fragment header (RFC 7915 section 5.1). Set it randomly in
    /// production; a fixed seed gives reproducible output for tests.
    pub frag_id_seed: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            pool6: None,
            eam: EamTable::new(),
            pool6791_v4: None,
            pool6791_v6: None,
            self_v4: None,
            self_v6: None,
            mtu4: 1500,
            mtu6: 1500,
            lowest_ipv6_mtu: 1280,
            decrement_ttl: false,
            amend_udp_zero_checksum: false,
            refuse_non_global_wkp: true,
            frag_id_seed: 0,
        }
    }
}

/// A configuration that cannot work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    Prefix(PrefixError),
    Mtu4(u16),
    Mtu6(u16),
    LowestIpv6Mtu(u16),
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConfigError::Prefix(e) => write!(f, "pool6: {e}"),
            ConfigError::Mtu4(m) => write!(f, "mtu4 {m} is below the IPv4 minimum of {MIN_MTU4}"),
            ConfigError::Mtu6(m) => write!(f, "mtu6 {m} is below the IPv6 minimum of {MIN_MTU6}"),
            ConfigError::LowestIpv6Mtu(m) => {
                write!(
                    f,
                    "lowest IPv6 MTU {m} is below the IPv6 minimum of {MIN_MTU6}"
                )
            }
        }
    }
}
impl std::error::Error for ConfigError {}

impl Config {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(p) = &self.pool6 {
            addr6052::validate_prefix(p).map_err(ConfigError::Prefix)?;
        }
        if self.mtu4 < MIN_MTU4 {
            return Err(ConfigError::Mtu4(self.mtu4));
        }
        if self.mtu6 < MIN_MTU6 {
            return Err(ConfigError::Mtu6(self.mtu6));
        }
        if self.lowest_ipv6_mtu < MIN_MTU6 {
            return Err(ConfigError::LowestIpv6Mtu(self.lowest_ipv6_mtu));
        }
        Ok(())
    }
}
