//! Configuration as Kotlin hands it over, and the engine's configuration
//! made from it.
//!
//! The JNI layer only copies `NativeConfig`'s fields into [`RawConfig`]
//! (strings and ints, exactly as Kotlin had them); [`parse_config`] fills
//! the engine's one configuration type, [`EngineConfig`], with them and
//! checks the result with the engine's own validation. Values that `clat
//! run` takes too are read by the same parsers: the prefix by the
//! translator's RFC 6052 check ([`clat_xlat::addr6052::parse_prefix`]), the
//! resolvers by [`clat_discovery::resolver`]. Zero in a numeric field means
//! "the engine's default", so Kotlin never duplicates defaults that the
//! engine owns. Plain Rust, tested without a JVM.

use std::net::Ipv4Addr;
use std::time::Duration;

use clat_engine::{EngineConfig, Ipv4Path};
use ipnet::Ipv6Net;

pub use clat_discovery::resolver::{parse_resolver, parse_resolvers};

/// `NativeConfig`'s fields, unvalidated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawConfig {
    pub clat_address: Option<String>,
    pub nat_address: Option<String>,
    pub dns_relay_address: Option<String>,
    pub prefix: Option<String>,
    pub dns_servers: Vec<String>,
    pub mtu: i32,
    pub max_flows: i32,
    pub udp_timeout_sec: i32,
    pub tcp_established_timeout_sec: i32,
    pub tcp_transitory_timeout_sec: i32,
    pub icmp_timeout_sec: i32,
    pub refuse_non_global_wkp: bool,
    /// IPv4 flows leave natively from the start (`ipv4Native`).
    pub ipv4_native: bool,
    /// IPv6 from the TUN is carried (`carryIpv6`).
    pub carry_ipv6: bool,
    /// Capacity of the flow-event queue (`flowEvents`), 0 = no events.
    pub flow_events: i32,
}

/// The engine's IPv4 path for Kotlin's `ipv4Native` flag (of
/// `NativeConfig` and `ClatNative.setIpv4Path`).
pub fn ipv4_path(native: bool) -> Ipv4Path {
    if native {
        Ipv4Path::Native
    } else {
        Ipv4Path::Nat64
    }
}

/// Smallest TUN MTU accepted: every IPv4 host must take 576-byte datagrams
/// (RFC 791), and a smaller MTU would only fragment everything.
pub const MIN_MTU: i32 = 576;

/// The engine's configuration: its defaults, overridden by every field
/// Kotlin set, then [`EngineConfig::validate`]. The error names the field
/// and the value (for the engine's own checks, the rule broken).
pub fn parse_config(raw: &RawConfig) -> Result<EngineConfig, String> {
    let mut c = EngineConfig {
        prefix: match raw.prefix.as_deref() {
            None => return Err("prefix must be set (e.g. \"64:ff9b::/96\")".into()),
            Some(p) => parse_prefix(p)?,
        },
        upstream_dns: parse_resolvers(&raw.dns_servers)?,
        refuse_non_global_wkp: raw.refuse_non_global_wkp,
        ipv4_path: ipv4_path(raw.ipv4_native),
        carry_ipv6: raw.carry_ipv6,
        ..EngineConfig::default()
    };
    if let Some(v) = parse_v4("clatAddress", raw.clat_address.as_deref())? {
        c.clat_v4 = v;
    }
    if let Some(v) = parse_v4("natAddress", raw.nat_address.as_deref())? {
        c.nat_v4 = v;
    }
    if let Some(v) = parse_v4("dnsRelayAddress", raw.dns_relay_address.as_deref())? {
        c.dns_v4 = v;
    }
    match raw.mtu {
        0 => {}
        m if (MIN_MTU..=i32::from(u16::MAX)).contains(&m) => c.mtu = m as u16,
        m => {
            return Err(format!(
                "mtu {m} out of range {MIN_MTU}..=65535 (0 = default)"
            ))
        }
    }
    match raw.max_flows {
        0 => {}
        n if n > 0 => c.max_flows = n as usize,
        n => return Err(format!("maxFlows {n} must be positive (0 = default)")),
    }
    // 0 is the engine's default too: no queue, no event built.
    c.flow_events = usize::try_from(raw.flow_events).map_err(|_| {
        format!(
            "flowEvents {} must not be negative (0 = no flow events)",
            raw.flow_events
        )
    })?;
    for (field, secs, slot) in [
        ("udpTimeoutSec", raw.udp_timeout_sec, &mut c.udp_timeout),
        (
            "tcpEstablishedTimeoutSec",
            raw.tcp_established_timeout_sec,
            &mut c.tcp_established_timeout,
        ),
        (
            "tcpTransitoryTimeoutSec",
            raw.tcp_transitory_timeout_sec,
            &mut c.tcp_transitory_timeout,
        ),
        ("icmpTimeoutSec", raw.icmp_timeout_sec, &mut c.icmp_timeout),
    ] {
        if let Some(d) = seconds(field, secs)? {
            *slot = d;
        }
    }
    c.validate().map_err(|e| e.to_string())?;
    Ok(c)
}

/// A NAT64 prefix such as `2001:db8:64::/96`, checked as RFC 6052 section
/// 2.2 requires ([`clat_xlat::addr6052::parse_prefix`]); the error quotes
/// the text and names the rule.
pub fn parse_prefix(s: &str) -> Result<Ipv6Net, String> {
    clat_xlat::addr6052::parse_prefix(s).map_err(|e| format!("prefix {e}"))
}

fn parse_v4(field: &str, v: Option<&str>) -> Result<Option<Ipv4Addr>, String> {
    match v.map(str::trim) {
        None | Some("") => Ok(None),
        Some(s) => s
            .parse()
            .map(Some)
            .map_err(|_| format!("{field} {s:?} is not an IPv4 address")),
    }
}

fn seconds(field: &str, v: i32) -> Result<Option<Duration>, String> {
    match v {
        0 => Ok(None),
        s if s > 0 => Ok(Some(Duration::from_secs(s as u64))),
        s => Err(format!("{field} {s} must be positive (0 = default)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lab() -> RawConfig {
        RawConfig {
            prefix: Some("2001:db8:64::/96".into()),
            dns_servers: vec!["[2001:db8:1::53]:53".into()],
            refuse_non_global_wkp: true,
            ..RawConfig::default()
        }
    }

    #[test]
    fn the_lab_config_keeps_the_engine_defaults_where_nothing_was_set() {
        let c = parse_config(&lab()).unwrap();
        let d = EngineConfig::default();
        assert_eq!(c.prefix, "2001:db8:64::/96".parse::<Ipv6Net>().unwrap());
        assert_eq!(c.upstream_dns, vec!["[2001:db8:1::53]:53".parse().unwrap()]);
        assert_eq!((c.mtu, c.max_flows), (d.mtu, d.max_flows));
        assert_eq!(
            (c.clat_v4, c.nat_v4, c.dns_v4),
            (d.clat_v4, d.nat_v4, d.dns_v4)
        );
        assert_eq!(c.udp_timeout, d.udp_timeout);
        assert_eq!(c.tcp_established_timeout, d.tcp_established_timeout);
        assert_eq!(c.tcp_transitory_timeout, d.tcp_transitory_timeout);
        assert_eq!(c.icmp_timeout, d.icmp_timeout);
        assert!(c.refuse_non_global_wkp);
        assert_eq!(c.ipv4_path, Ipv4Path::Nat64);
        let native = RawConfig {
            ipv4_native: true,
            ..lab()
        };
        assert_eq!(parse_config(&native).unwrap().ipv4_path, Ipv4Path::Native);
        assert!(!c.carry_ipv6);
        let carry = RawConfig {
            carry_ipv6: true,
            ..lab()
        };
        assert!(parse_config(&carry).unwrap().carry_ipv6);
        assert!(
            !parse_config(&RawConfig {
                refuse_non_global_wkp: false,
                ..lab()
            })
            .unwrap()
            .refuse_non_global_wkp
        );
    }

    #[test]
    fn explicit_values_are_carried_over() {
        // The Android app picks internal addresses apart from clatd's
        // (InternalAddressPicker): .3, .2, .1.
        let raw = RawConfig {
            clat_address: Some("192.0.0.3".into()),
            nat_address: Some("192.0.0.2".into()),
            dns_relay_address: Some("192.0.0.1".into()),
            mtu: 1400,
            max_flows: 1000,
            udp_timeout_sec: 30,
            tcp_established_timeout_sec: 7200,
            tcp_transitory_timeout_sec: 240,
            icmp_timeout_sec: 61,
            ..lab()
        };
        let c = parse_config(&raw).unwrap();
        assert_eq!(c.clat_v4, Ipv4Addr::new(192, 0, 0, 3));
        assert_eq!(c.nat_v4, Ipv4Addr::new(192, 0, 0, 2));
        assert_eq!(c.dns_v4, Ipv4Addr::new(192, 0, 0, 1));
        assert_eq!(c.mtu, 1400);
        assert_eq!(c.max_flows, 1000);
        assert_eq!(c.udp_timeout, Duration::from_secs(30));
        assert_eq!(c.tcp_established_timeout, Duration::from_secs(7200));
        assert_eq!(c.tcp_transitory_timeout, Duration::from_secs(240));
        assert_eq!(c.icmp_timeout, Duration::from_secs(61));
    }

    #[test]
    fn flow_events_is_the_queue_capacity_and_zero_means_none() {
        assert_eq!(parse_config(&lab()).unwrap().flow_events, 0);
        let c = parse_config(&RawConfig {
            flow_events: 4096,
            ..lab()
        })
        .unwrap();
        assert_eq!(c.flow_events, 4096);
        let e = parse_config(&RawConfig {
            flow_events: -1,
            ..lab()
        })
        .unwrap_err();
        assert!(e.starts_with("flowEvents -1"), "{e}");
        // Above the engine's bound: its own validation says so.
        let e = parse_config(&RawConfig {
            flow_events: i32::MAX,
            ..lab()
        })
        .unwrap_err();
        assert!(e.contains("flow_events"), "{e}");
    }

    #[test]
    fn the_engine_s_own_checks_apply() {
        // Outside the CLAT's /29 the engine refuses the NAT address (it must be on-link).
        let e = parse_config(&RawConfig {
            nat_address: Some("192.0.0.9".into()),
            ..lab()
        })
        .unwrap_err();
        assert!(e.contains("inside one /29"), "{e}");
    }

    #[test]
    fn missing_or_bad_prefixes_are_rejected_with_the_reason() {
        let e = parse_config(&RawConfig {
            prefix: None,
            ..lab()
        })
        .unwrap_err();
        assert!(e.contains("prefix must be set"), "{e}");
        for (p, why) in [
            ("2001:db8:64::/95", "RFC 6052"),
            ("2001:db8:64::1/96", "did you mean 2001:db8:64::/96"),
            ("192.0.2.0/24", "not an IPv6 prefix"),
            ("nonsense", "not an IPv6 prefix"),
            // RFC 6052 section 2.2: the check the translator, the engine,
            // discovery and `clat run --pref64` make too.
            ("2001:db8:0:0:ff00::/96", "bits 64-71 must be zero"),
        ] {
            let e = parse_config(&RawConfig {
                prefix: Some(p.into()),
                ..lab()
            })
            .unwrap_err();
            assert!(e.starts_with("prefix ") && e.contains(why), "{p}: {e}");
        }
        for ok in [
            "64:ff9b::/96",
            "2001:db8::/32",
            "2001:db8:100::/40",
            "2001:db8::/64",
        ] {
            assert!(parse_prefix(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn a_bad_resolver_fails_the_whole_config() {
        for (dns, why) in [("bogus", "\"bogus\""), ("[2001:db8::53]:0", "port 0")] {
            let raw = RawConfig {
                dns_servers: vec!["[2001:db8:1::53]:53".into(), dns.into()],
                ..lab()
            };
            let e = parse_config(&raw).unwrap_err();
            assert!(e.contains(why), "{dns}: {e}");
        }
    }

    #[test]
    fn numeric_fields_reject_negative_and_out_of_range_values() {
        let cases: [(RawConfig, &str); 7] = [
            (RawConfig { mtu: 100, ..lab() }, "mtu 100"),
            (
                RawConfig {
                    mtu: 70000,
                    ..lab()
                },
                "mtu 70000",
            ),
            (RawConfig { mtu: -1, ..lab() }, "mtu -1"),
            (
                RawConfig {
                    max_flows: -3,
                    ..lab()
                },
                "maxFlows -3",
            ),
            (
                RawConfig {
                    udp_timeout_sec: -1,
                    ..lab()
                },
                "udpTimeoutSec",
            ),
            (
                RawConfig {
                    tcp_established_timeout_sec: -9,
                    ..lab()
                },
                "tcpEstablishedTimeoutSec",
            ),
            (
                RawConfig {
                    icmp_timeout_sec: -2,
                    ..lab()
                },
                "icmpTimeoutSec",
            ),
        ];
        for (raw, want) in cases {
            let e = parse_config(&raw).unwrap_err();
            assert!(e.contains(want), "want {want:?} in {e:?}");
        }
        assert_eq!(
            parse_config(&RawConfig { mtu: 576, ..lab() }).unwrap().mtu,
            576
        );
        assert_eq!(
            parse_config(&RawConfig {
                mtu: 65535,
                ..lab()
            })
            .unwrap()
            .mtu,
            65535
        );
    }

    #[test]
    fn bad_v4_addresses_name_the_field() {
        let e = parse_config(&RawConfig {
            clat_address: Some("192.0.0.300".into()),
            ..lab()
        })
        .unwrap_err();
        assert!(e.starts_with("clatAddress"), "{e}");
        let e = parse_config(&RawConfig {
            dns_relay_address: Some("::1".into()),
            ..lab()
        })
        .unwrap_err();
        assert!(e.starts_with("dnsRelayAddress"), "{e}");
        // Empty means "default", like null.
        let c = parse_config(&RawConfig {
            nat_address: Some(" ".into()),
            ..lab()
        })
        .unwrap();
        assert_eq!(c.nat_v4, EngineConfig::default().nat_v4);
    }
}
