//! Parsers of the argument forms that several subcommands share: durations
//! (`2h4m`, `500ms`), resolver addresses (`2001:db8::53`, `[v6]:port`,
//! `v4:port`, `fe80::1%eth0`) and NAT64 prefixes. Resolvers and prefixes
//! are read by the same code as in the JNI bridge.

use ipnet::Ipv6Net;
use std::net::SocketAddr;
use std::time::Duration;

/// Parses `2h4m`, `5m`, `30s`, `500ms` or a plain number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if let Ok(n) = s.parse::<u64>() {
        return Ok(Duration::from_secs(n));
    }
    let mut total = Duration::ZERO;
    let mut num = String::new();
    let mut chars = s.chars().peekable();
    let mut any = false;
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            continue;
        }
        let mut unit = c.to_string();
        while let Some(&n) = chars.peek() {
            if n.is_ascii_alphabetic() {
                unit.push(n);
                chars.next();
            } else {
                break;
            }
        }
        let v: f64 = num.parse().map_err(|_| format!("bad duration {s:?}"))?;
        num.clear();
        let secs = match unit.as_str() {
            "ms" => v / 1000.0,
            "s" => v,
            "m" => v * 60.0,
            "h" => v * 3600.0,
            "d" => v * 86400.0,
            _ => return Err(format!("bad unit {unit:?} in {s:?} (use ms, s, m, h, d)")),
        };
        // Absurd values (1e30h) are an error, not a panic.
        total = Duration::try_from_secs_f64(secs)
            .ok()
            .and_then(|d| total.checked_add(d))
            .ok_or_else(|| format!("duration {s:?} is too large"))?;
        any = true;
    }
    if !num.is_empty() || !any {
        return Err(format!("bad duration {s:?} (e.g. 2s, 500ms, 5m, 2h4m)"));
    }
    Ok(total)
}

/// A resolver address (`--dns`): the core's one resolver parser,
/// [`clat_discovery::resolver::parse_resolver`], which the JNI bridge uses
/// too (`2001:db8::53`, `[2001:db8::53]:5353`, `192.0.2.1:53`,
/// `fe80::1%eth0`; port 0 and link-local without a zone refused).
pub fn parse_resolver(s: &str) -> Result<SocketAddr, String> {
    clat_discovery::resolver::parse_resolver(s)
}

/// A NAT64 prefix (`--pref64`, `--pool6`): the translator's RFC 6052
/// check, [`clat_xlat::addr6052::parse_prefix`], which the engine,
/// discovery and the JNI bridge use too.
pub fn parse_prefix(s: &str) -> Result<Ipv6Net, String> {
    clat_xlat::addr6052::parse_prefix(s).map_err(|e| e.to_string())
}

/// A duration that must be more than zero (timeouts).
pub fn parse_positive_duration(s: &str) -> Result<Duration, String> {
    match parse_duration(s)? {
        d if d.is_zero() => Err(format!("{s:?}: must be more than zero")),
        d => Ok(d),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2h4m"), Ok(Duration::from_secs(7440)));
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("5m3").is_err());
        assert!(parse_positive_duration("0s").is_err());
        assert!(parse_duration("99999999999999999999999h").is_err());
        assert!(parse_duration("1e400s").is_err());
        assert_eq!(parse_positive_duration("10"), Ok(Duration::from_secs(10)));
    }

    /// `--dns` takes what the JNI bridge takes (one parser, tested in
    /// clat-discovery): here, only the cases where the two used to differ.
    #[test]
    fn resolvers_as_the_jni_bridge_reads_them() {
        assert!(parse_resolver("[2001:db8::53]:0")
            .unwrap_err()
            .contains("port 0"));
        assert!(parse_resolver("fe80::1")
            .unwrap_err()
            .contains("link-local"));
        assert_eq!(parse_resolver("[fe80::1%lo]:5353").unwrap().port(), 5353);
        assert_eq!(
            parse_resolver("192.0.2.53").unwrap(),
            "192.0.2.53:53".parse().unwrap()
        );
    }

    #[test]
    fn prefixes() {
        assert_eq!(
            parse_prefix("2001:db8:64::/96"),
            Ok("2001:db8:64::/96".parse().unwrap())
        );
        let e = parse_prefix("2001:db8:0:0:ff00::/96").unwrap_err();
        assert!(
            e.contains("bits 64-71 must be zero (RFC 6052 section 2.2)"),
            "{e}"
        );
    }
}
