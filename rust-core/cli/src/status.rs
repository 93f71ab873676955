//! The status of a running `clat run`: one structure ([`Status`]), built by
//! `clat run` from its engine and state, sent over the control socket as
//! JSON, and printed by `clat status` either as that JSON (`--json`) or in a
//! form for people (a short summary in the style of `wg show`, then every
//! field and counter as `key value` lines).
//!
//! The JSON is a stable interface for scripts and monitoring: its schema is
//! documented in `docs/status-json.md`, and [`SCHEMA_VERSION`] changes only
//! when a field is removed or changes meaning (new fields may be added at
//! any time; readers ignore fields they do not know).

use crate::auto_mode::{Activity, ActivityState};
use clat_discovery::{fmt_duration, DiscoveredPrefix, PrefixSource};
use clat_engine::Stats;
use ipnet::Ipv6Net;
use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

/// Version of the JSON schema documented in `docs/status-json.md`.
pub const SCHEMA_VERSION: u32 = 1;

/// Everything `clat status` reports about one instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// [`SCHEMA_VERSION`] of the sender.
    pub schema_version: u32,
    /// Whether the CLAT carries IPv4 now.
    pub state: State,
    /// Why the instance is in this state, when there is more to say than the
    /// state's name (for `stopped`: why the engine ended).
    pub reason: Option<String>,
    /// Whether IPv4 goes through the CLAT now: `active` (its default route
    /// is in place) or `standby` (`clat run --auto` with native IPv4, or
    /// without a NAT64 prefix). Always `active` without `--auto`.
    pub activity: Activity,
    /// Why, e.g. `native IPv4 default route via 192.0.2.1 dev eth0`.
    pub activity_reason: String,
    /// The path new IPv4 flows take: `nat64` (IPv6 to prefix+IPv4) or
    /// `native` (`clat run --native-ipv4` while the host has native IPv4).
    pub ipv4_path: String,
    /// Whether IPv6 from the TUN is carried (`clat run --carry-ipv6`).
    #[serde(default)]
    pub carry_ipv6: bool,
    /// Name of the TUN device.
    pub tun: String,
    /// Seconds since `clat run` started.
    pub uptime_s: u64,
    /// `None` (`null`) only with `--auto` before the first prefix is found.
    pub prefix: Option<PrefixStatus>,
    pub addresses: Addresses,
    /// MTU of the TUN, in bytes.
    pub mtu: u16,
    /// Upstream resolvers of the DNS relay and of RFC 7050 discovery, as
    /// socket addresses (`[2001:db8::53]:53`).
    pub resolvers: Vec<SocketAddr>,
    pub flows: Flows,
    /// Every engine counter (`clat-engine`'s `Stats`), by name, in the
    /// engine's order.
    pub counters: Counters,
}

/// State of the instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// The engine runs: IPv4 through the TUN is translated.
    Running,
    /// The engine ended on its own (for example, the TUN was deleted);
    /// `reason` says why. `clat run` exits right after.
    Stopped,
}

impl State {
    fn as_str(self) -> &'static str {
        match self {
            State::Running => "running",
            State::Stopped => "stopped",
        }
    }
}

/// The NAT64 prefix in use (RFC 6052) and where it comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PrefixStatus {
    pub prefix: Ipv6Net,
    /// `config` (`--pref64`), `pref64` (RFC 8781 Router Advertisement) or
    /// `rfc7050` (DNS64 discovery).
    pub source: String,
    /// `ok`, or `lost` when discovery no longer finds any prefix (the last
    /// one is kept until another is found).
    pub state: String,
    /// Lifetime given by the source when the prefix was last learnt or
    /// re-validated, in seconds (DNS TTL, RA lifetime); `null` for `config`.
    pub lifetime_s: Option<u64>,
    /// Seconds left of that lifetime (0 once it has run out and
    /// re-validation is due); `null` for `config`.
    pub expires_in_s: Option<u64>,
}

/// The addresses of the CLAT's /29 (RFC 7335).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Addresses {
    /// The CLAT address: the apps' IPv4 source (192.0.0.4 by default).
    pub clat: Ipv4Addr,
    /// The internal NAT source the engine's TCP listener sees.
    pub nat: Ipv4Addr,
    /// The DNS relay.
    pub dns: Ipv4Addr,
}

/// Live flows by protocol and the cap on their total (`--max-flows`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Flows {
    pub tcp: u64,
    pub udp: u64,
    pub icmp: u64,
    pub max: u64,
}

/// Counters by name, kept in the engine's order: a JSON object on the wire.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters(pub Vec<(String, u64)>);

impl Counters {
    /// The value of counter `name` (0 when this engine has no such counter).
    pub fn get(&self, name: &str) -> u64 {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map_or(0, |(_, v)| *v)
    }
}

impl Serialize for Counters {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

impl<'de> Deserialize<'de> for Counters {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Counters;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object of counter names to unsigned integers")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Counters, A::Error> {
                let mut v = Vec::with_capacity(a.size_hint().unwrap_or(0));
                while let Some((k, n)) = a.next_entry::<String, u64>()? {
                    v.push((k, n));
                }
                Ok(Counters(v))
            }
        }
        d.deserialize_map(V)
    }
}

/// What [`Status::collect`] needs from `clat run`, apart from the engine.
pub struct Inputs<'a> {
    pub running: bool,
    pub exit_reason: Option<String>,
    pub activity: ActivityState,
    pub tun: &'a str,
    pub uptime: Duration,
    /// The prefix in use, its source and the lifetime the source gave
    /// (`Duration::MAX` for configuration); `None` before the first one.
    pub prefix: Option<DiscoveredPrefix>,
    pub prefix_lost: bool,
    /// Time since the prefix was last learnt or re-validated.
    pub prefix_age: Duration,
    pub addresses: Addresses,
    pub mtu: u16,
    pub resolvers: Vec<SocketAddr>,
    pub max_flows: usize,
}

impl Status {
    /// Builds the status from `clat run`'s state and a snapshot of the
    /// engine's counters. Pure: no I/O, no clock.
    pub fn collect(i: Inputs<'_>, stats: &Stats) -> Status {
        let counters = Counters(
            stats
                .pairs()
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
        );
        let prefix = i.prefix.map(|p| {
            let forever = p.source == PrefixSource::Config || p.lifetime == Duration::MAX;
            PrefixStatus {
                prefix: p.prefix,
                source: p.source.to_string(),
                state: if i.prefix_lost { "lost" } else { "ok" }.into(),
                lifetime_s: (!forever).then_some(p.lifetime.as_secs()),
                expires_in_s: (!forever).then(|| p.lifetime.saturating_sub(i.prefix_age).as_secs()),
            }
        });
        Status {
            schema_version: SCHEMA_VERSION,
            state: if i.running {
                State::Running
            } else {
                State::Stopped
            },
            reason: i.exit_reason.map(|r| r.replace('\n', " ")),
            activity: i.activity.activity,
            activity_reason: i.activity.reason.replace('\n', " "),
            ipv4_path: if stats.ipv4_path_native == 1 {
                clat_engine::Ipv4Path::Native
            } else {
                clat_engine::Ipv4Path::Nat64
            }
            .name()
            .into(),
            carry_ipv6: stats.ipv6_carried == 1,
            tun: i.tun.to_string(),
            uptime_s: i.uptime.as_secs(),
            prefix,
            addresses: i.addresses,
            mtu: i.mtu,
            resolvers: i.resolvers,
            flows: Flows {
                tcp: stats.flows_tcp,
                udp: stats.flows_udp,
                icmp: stats.flows_icmp,
                max: i.max_flows as u64,
            },
            counters,
        }
    }

    /// The JSON document (one line, no trailing newline).
    pub fn to_json(&self) -> String {
        // Serializing plain data to a String cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Parses a JSON document from `clat run`; an error names what is wrong
    /// (not JSON, a missing field, another schema version).
    pub fn from_json(text: &str) -> Result<Status, String> {
        let v: serde_json::Value =
            serde_json::from_str(text).map_err(|e| format!("not a status document: {e}"))?;
        match v.get("schema_version").and_then(|x| x.as_u64()) {
            Some(n) if n == u64::from(SCHEMA_VERSION) => {}
            Some(n) => {
                return Err(format!(
                    "status schema version {n}, this clat reads {SCHEMA_VERSION}"
                ))
            }
            None => return Err("status document without schema_version".into()),
        }
        // From the text, not from `v`: a `Value`'s objects are sorted by
        // key, and the counters keep the engine's order.
        serde_json::from_str(text).map_err(|e| format!("bad status document: {e}"))
    }

    /// The form for people: a summary in the style of `wg show` (state,
    /// prefix, uptime, flows, bytes each way, the drops that are not zero),
    /// a blank line, then every field and counter as `key value` lines, the
    /// same names as the JSON's (flattened), for `grep` and `awk`.
    pub fn to_human(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "clat: {}", self.tun);
        // Stopped: why the engine ended. Running: active, or standby and
        // why (the reason for being active is in the full list).
        let _ = match (&self.reason, self.state, self.activity) {
            (Some(r), _, _) => writeln!(s, "  state: {} ({r})", self.state.as_str()),
            (None, State::Running, Activity::Standby) => {
                writeln!(s, "  state: running, standby ({})", self.activity_reason)
            }
            (None, State::Running, Activity::Active) if self.ipv4_path == "native" => {
                writeln!(s, "  state: running, active (IPv4 natively)")
            }
            (None, State::Running, Activity::Active) => writeln!(s, "  state: running, active"),
            (None, State::Stopped, _) => writeln!(s, "  state: stopped"),
        };
        match &self.prefix {
            Some(p) => {
                let mut how = p.source.clone();
                if let (Some(l), Some(e)) = (p.lifetime_s, p.expires_in_s) {
                    let _ = write!(
                        how,
                        ", lifetime {}, {} left",
                        human_duration(l),
                        human_duration(e)
                    );
                }
                if p.state != "ok" {
                    let _ = write!(how, ", {}", p.state);
                }
                let _ = writeln!(s, "  prefix: {} ({how})", p.prefix);
            }
            None => {
                let _ = writeln!(s, "  prefix: none yet (discovery goes on)");
            }
        }
        let _ = writeln!(
            s,
            "  address: {} (dns {})",
            self.addresses.clat, self.addresses.dns
        );
        let _ = writeln!(s, "  uptime: {}", human_duration(self.uptime_s));
        let f = &self.flows;
        let _ = writeln!(
            s,
            "  flows: {} tcp, {} udp, {} icmp (max {})",
            f.tcp, f.udp, f.icmp, f.max
        );
        let _ = writeln!(
            s,
            "  transfer: {} received, {} sent",
            human_bytes(self.counters.get("up_rx_bytes")),
            human_bytes(self.counters.get("up_tx_bytes"))
        );
        let drops: Vec<String> = self
            .counters
            .0
            .iter()
            .filter(|(k, v)| k.starts_with("drop_") && *v > 0)
            .map(|(k, v)| format!("{v} {}", &k["drop_".len()..]))
            .collect();
        if !drops.is_empty() {
            let _ = writeln!(s, "  drops: {}", drops.join(", "));
        }
        s.push('\n');
        s.push_str(&self.to_lines());
        s
    }

    /// Every field as `key value` lines (the full list after the summary).
    fn to_lines(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "state {}", self.state.as_str());
        if let Some(r) = &self.reason {
            let _ = writeln!(s, "reason {r}");
        }
        let _ = writeln!(s, "activity {}", self.activity.as_str());
        let _ = writeln!(s, "activity_reason {}", self.activity_reason);
        let _ = writeln!(s, "ipv4_path {}", self.ipv4_path);
        let carry = if self.carry_ipv6 { "yes" } else { "no" };
        let _ = writeln!(s, "carry_ipv6 {carry}");
        let _ = writeln!(s, "tun {}", self.tun);
        let _ = writeln!(s, "uptime {}s", self.uptime_s);
        match &self.prefix {
            Some(p) => {
                let _ = writeln!(s, "prefix {}", p.prefix);
                let _ = writeln!(s, "prefix_source {}", p.source);
                let _ = writeln!(s, "prefix_state {}", p.state);
                if let (Some(l), Some(e)) = (p.lifetime_s, p.expires_in_s) {
                    let _ = writeln!(
                        s,
                        "prefix_lifetime {}",
                        fmt_duration(Duration::from_secs(l))
                    );
                    let _ = writeln!(
                        s,
                        "prefix_expires_in {}",
                        fmt_duration(Duration::from_secs(e))
                    );
                }
            }
            None => s.push_str("prefix -\nprefix_source -\nprefix_state none\n"),
        }
        let a = &self.addresses;
        let _ = writeln!(s, "clat_v4 {}\nnat_v4 {}\ndns_v4 {}", a.clat, a.nat, a.dns);
        let _ = writeln!(s, "mtu {}", self.mtu);
        let dns: Vec<String> = self.resolvers.iter().map(|a| a.to_string()).collect();
        let _ = writeln!(
            s,
            "upstream_dns {}",
            if dns.is_empty() {
                "-".into()
            } else {
                dns.join(",")
            }
        );
        let _ = writeln!(s, "max_flows {}", self.flows.max);
        for (k, v) in &self.counters.0 {
            let _ = writeln!(s, "{k} {v}");
        }
        s
    }
}

/// `3d 4h`, `1h 2m`, `5m 3s`, `42s`: the two largest units, as `wg show`
/// prints ages.
fn human_duration(secs: u64) -> String {
    let parts = [
        (secs / 86_400, "d"),
        (secs % 86_400 / 3_600, "h"),
        (secs % 3_600 / 60, "m"),
        (secs % 60, "s"),
    ];
    let shown: Vec<String> = parts
        .iter()
        .skip_while(|(v, _)| *v == 0)
        .take(2)
        .filter(|(v, _)| *v > 0)
        .map(|(v, u)| format!("{v}{u}"))
        .collect();
    if shown.is_empty() {
        "0s".into()
    } else {
        shown.join(" ")
    }
}

/// `512 B`, `1.50 KiB`, `3.20 MiB`, ...: binary units, as `wg show` prints
/// transfer.
fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < UNITS.len() {
        v /= 1024.0;
        i += 1;
    }
    format!("{v:.2} {}", UNITS[i])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample() -> Status {
        let stats = Stats {
            flows_tcp: 3,
            flows_udp: 1,
            up_rx_bytes: 3 * 1024 * 1024 / 2,
            up_tx_bytes: 512,
            drop_non_global: 2,
            drop_malformed: 1,
            ..Stats::default()
        };
        Status::collect(
            Inputs {
                running: true,
                exit_reason: None,
                activity: ActivityState {
                    activity: Activity::Active,
                    reason: "no native IPv4 default route; NAT64 prefix 2001:db8:64::/96".into(),
                },
                tun: "clat0",
                uptime: Duration::from_secs(3723),
                prefix: Some(DiscoveredPrefix {
                    prefix: "2001:db8:64::/96".parse().unwrap(),
                    source: PrefixSource::Rfc7050,
                    lifetime: Duration::from_secs(300),
                }),
                prefix_lost: false,
                prefix_age: Duration::from_millis(60_500),
                addresses: Addresses {
                    clat: Ipv4Addr::new(192, 0, 0, 4),
                    nat: Ipv4Addr::new(192, 0, 0, 5),
                    dns: Ipv4Addr::new(192, 0, 0, 6),
                },
                mtu: 65000,
                resolvers: vec!["[2001:db8:1::53]:53".parse().unwrap()],
                max_flows: 16384,
            },
            &stats,
        )
    }

    /// The documented schema (docs/status-json.md), written out by hand.
    #[test]
    fn json_has_the_documented_shape() {
        let v: serde_json::Value = serde_json::from_str(&sample().to_json()).unwrap();
        let mut top = v.as_object().unwrap().clone();
        let counters = top.remove("counters").unwrap();
        assert_eq!(
            serde_json::Value::Object(top),
            json!({
                "schema_version": 1,
                "state": "running",
                "reason": null,
                "activity": "active",
                "activity_reason": "no native IPv4 default route; NAT64 prefix 2001:db8:64::/96",
                "ipv4_path": "nat64",
                "carry_ipv6": false,
                "tun": "clat0",
                "uptime_s": 3723,
                "prefix": {
                    "prefix": "2001:db8:64::/96",
                    "source": "rfc7050",
                    "state": "ok",
                    "lifetime_s": 300,
                    "expires_in_s": 239
                },
                "addresses": {"clat": "192.0.0.4", "nat": "192.0.0.5", "dns": "192.0.0.6"},
                "mtu": 65000,
                "resolvers": ["[2001:db8:1::53]:53"],
                "flows": {"tcp": 3, "udp": 1, "icmp": 0, "max": 16384}
            })
        );
        let c = counters.as_object().unwrap();
        assert_eq!(c["up_rx_bytes"], json!(1572864));
        assert_eq!(c["drop_non_global"], json!(2));
        assert_eq!(c["flows_icmp"], json!(0));
        // Every engine counter, in the engine's order.
        let names: Vec<&str> = Stats::default().pairs().iter().map(|p| p.0).collect();
        assert_eq!(c.len(), names.len());
        let text = sample().to_json();
        let pos: Vec<usize> = names
            .iter()
            .map(|n| text.find(&format!("\"{n}\":")).unwrap())
            .collect();
        assert!(pos.windows(2).all(|w| w[0] < w[1]), "counters out of order");
    }

    #[test]
    fn config_prefix_has_no_lifetime_and_stopped_has_a_reason() {
        let mut s = sample();
        s.prefix = Status::collect(
            Inputs {
                running: false,
                exit_reason: Some("TUN gone:\nread error".into()),
                activity: crate::auto_mode::always(),
                tun: "clat0",
                uptime: Duration::ZERO,
                prefix: Some(DiscoveredPrefix {
                    prefix: "64:ff9b::/96".parse().unwrap(),
                    source: PrefixSource::Config,
                    lifetime: Duration::MAX,
                }),
                prefix_lost: false,
                prefix_age: Duration::from_secs(10),
                addresses: s.addresses.clone(),
                mtu: 1500,
                resolvers: vec![],
                max_flows: 1,
            },
            &Stats::default(),
        )
        .prefix;
        let v: serde_json::Value = serde_json::from_str(&s.to_json()).unwrap();
        assert_eq!(v["prefix"]["lifetime_s"], serde_json::Value::Null);
        assert_eq!(v["prefix"]["expires_in_s"], serde_json::Value::Null);
        assert_eq!(v["prefix"]["source"], "config");
        let stopped = Status::collect(
            Inputs {
                running: false,
                exit_reason: Some("TUN gone:\nread error".into()),
                activity: crate::auto_mode::always(),
                tun: "t",
                uptime: Duration::ZERO,
                prefix: Some(DiscoveredPrefix {
                    prefix: "64:ff9b::/96".parse().unwrap(),
                    source: PrefixSource::Config,
                    lifetime: Duration::MAX,
                }),
                prefix_lost: true,
                prefix_age: Duration::ZERO,
                addresses: s.addresses.clone(),
                mtu: 1500,
                resolvers: vec![],
                max_flows: 1,
            },
            &Stats::default(),
        );
        let v: serde_json::Value = serde_json::from_str(&stopped.to_json()).unwrap();
        assert_eq!(v["state"], "stopped");
        assert_eq!(v["reason"], "TUN gone: read error");
        assert_eq!(v["prefix"]["state"], "lost");
    }

    #[test]
    fn json_round_trips_and_bad_documents_are_errors() {
        let s = sample();
        assert_eq!(Status::from_json(&s.to_json()).unwrap(), s);
        // Fields a newer sender adds are ignored.
        let newer = s.to_json().replacen('{', r#"{"future_field":{"x":1},"#, 1);
        assert_eq!(Status::from_json(&newer).unwrap(), s);
        let mut v: serde_json::Value = serde_json::from_str(&s.to_json()).unwrap();
        let e = Status::from_json("state running\n").unwrap_err();
        assert!(e.contains("not a status document"), "{e}");
        v["schema_version"] = json!(2);
        let e = Status::from_json(&v.to_string()).unwrap_err();
        assert!(e.contains("version 2"), "{e}");
        let e = Status::from_json(r#"{"schema_version":1,"state":"running"}"#).unwrap_err();
        assert!(e.contains("missing field"), "{e}");
        let e = Status::from_json(r#"{"tun":"x"}"#).unwrap_err();
        assert!(e.contains("without schema_version"), "{e}");
    }

    #[test]
    fn human_form_leads_with_a_summary() {
        let h = sample().to_human();
        let (summary, lines) = h.split_once("\n\n").unwrap();
        assert_eq!(
            summary,
            "clat: clat0\n\
             \x20 state: running, active\n\
             \x20 prefix: 2001:db8:64::/96 (rfc7050, lifetime 5m, 3m 59s left)\n\
             \x20 address: 192.0.0.4 (dns 192.0.0.6)\n\
             \x20 uptime: 1h 2m\n\
             \x20 flows: 3 tcp, 1 udp, 0 icmp (max 16384)\n\
             \x20 transfer: 1.50 MiB received, 512 B sent\n\
             \x20 drops: 1 malformed, 2 non_global"
        );
        for want in [
            "state running\n",
            "activity active\n",
            "activity_reason no native IPv4 default route; NAT64 prefix 2001:db8:64::/96\n",
            "prefix 2001:db8:64::/96\n",
            "prefix_source rfc7050\n",
            "prefix_lifetime 300s\n",
            "prefix_expires_in 239s\n",
            "upstream_dns [2001:db8:1::53]:53\n",
            "mtu 65000\n",
            "flows_tcp 3\n",
            "drop_fragment 0\n",
        ] {
            assert!(lines.contains(want), "{want:?} missing from\n{lines}");
        }
        // No drops, no drops line.
        let mut quiet = sample();
        quiet.counters = Counters(vec![("drop_malformed".into(), 0)]);
        assert!(!quiet.to_human().contains("drops:"));
    }

    /// `clat run --auto` standing by before any prefix is known: `prefix`
    /// is null, the summary says standby and why, the lines say `prefix -`.
    #[test]
    fn standby_without_a_prefix() {
        let s = Status::collect(
            Inputs {
                running: true,
                exit_reason: None,
                activity: ActivityState {
                    activity: Activity::Standby,
                    reason: "no NAT64 prefix known".into(),
                },
                tun: "clat0",
                uptime: Duration::from_secs(5),
                prefix: None,
                prefix_lost: false,
                prefix_age: Duration::ZERO,
                addresses: sample().addresses,
                mtu: 65000,
                resolvers: vec![],
                max_flows: 16384,
            },
            &Stats::default(),
        );
        let v: serde_json::Value = serde_json::from_str(&s.to_json()).unwrap();
        assert_eq!(v["prefix"], serde_json::Value::Null);
        assert_eq!(v["activity"], "standby");
        assert_eq!(v["activity_reason"], "no NAT64 prefix known");
        assert_eq!(Status::from_json(&s.to_json()).unwrap(), s);
        let h = s.to_human();
        let (summary, lines) = h.split_once("\n\n").unwrap();
        let head: Vec<&str> = summary.lines().collect();
        assert_eq!(
            head[1..3],
            [
                "  state: running, standby (no NAT64 prefix known)",
                "  prefix: none yet (discovery goes on)"
            ]
        );
        for want in [
            "activity standby\n",
            "prefix -\n",
            "prefix_source -\n",
            "prefix_state none\n",
        ] {
            assert!(lines.contains(want), "{want:?} missing from\n{lines}");
        }
        assert!(!lines.contains("prefix_lifetime"), "{lines}");
    }

    #[test]
    fn human_units() {
        assert_eq!(human_duration(0), "0s");
        assert_eq!(human_duration(42), "42s");
        assert_eq!(human_duration(303), "5m 3s");
        assert_eq!(human_duration(3600), "1h");
        assert_eq!(human_duration(90_061), "1d 1h");
        assert_eq!(human_duration(86_460), "1d");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.50 KiB");
        assert_eq!(human_bytes(5 << 30), "5.00 GiB");
        assert_eq!(human_bytes(u64::MAX), "16384.00 PiB");
    }
}
