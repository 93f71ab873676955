//! `clat run --mark N`: is there a routing rule that takes the engine's
//! marked sockets around the TUN?
//!
//! The engine's upstream sockets carry mark N (`SO_MARK`) so that a policy
//! routing rule of the user's (`ip rule add fwmark N lookup T`, table T
//! routing through the uplink) keeps them out of the CLAT's own routes.
//! Without one, the sockets of a family whose routes the CLAT sends into
//! its TUN (IPv4 with `--native-ipv4`, IPv6 with `--carry-ipv6`) go back
//! into the TUN and every flow loops. [`check`] looks for such a rule at
//! start, before anything on the host changes; the NAT64 path's IPv6
//! sockets are not at risk without `--carry-ipv6` (no IPv6 route points at
//! the TUN then).

use crate::host_cmd::run_ok;
use anyhow::{bail, Context, Result};
use serde_json::Value;

/// Whether `ip -j rule show` output (`rules_json`) holds a rule that
/// matches packets with mark `mark` (`fwmark`, under `fwmask` when given,
/// as the kernel compares them) and looks them up in a table other than
/// `local` and `main` (where the CLAT's routes are, so a lookup there
/// loops too).
///
/// Errors: the text is not the JSON array `ip -j rule show` prints, or a
/// mark in it is not a number.
pub fn routes_mark_elsewhere(rules_json: &str, mark: u32) -> Result<bool> {
    let v: Value = serde_json::from_str(rules_json).context("not JSON")?;
    let rules = v.as_array().context("not a JSON array of rules")?;
    let hex = |r: &Value, k: &str| -> Result<Option<u32>> {
        let Some(s) = r.get(k).and_then(Value::as_str) else {
            return Ok(None);
        };
        let n = match s.strip_prefix("0x") {
            Some(h) => u32::from_str_radix(h, 16),
            None => s.parse(),
        };
        n.map(Some)
            .with_context(|| format!("{k} {s:?} is not a mark"))
    };
    for r in rules {
        let Some(fwmark) = hex(r, "fwmark")? else {
            continue;
        };
        let mask = hex(r, "fwmask")?.unwrap_or(u32::MAX);
        let table = r.get("table").and_then(Value::as_str);
        if fwmark & mask == mark & mask && table.is_some_and(|t| t != "main" && t != "local") {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Refuses a start with `--mark mark` when IPv4 (`v4`: `--native-ipv4`)
/// or IPv6 (`v6`: `--carry-ipv6`) has no rule for the mark
/// ([`routes_mark_elsewhere`]), saying what to add. Errors also: `ip`
/// cannot be run or its output read.
pub fn check(mark: u32, v4: bool, v6: bool) -> Result<()> {
    let families = [
        (v4, "-4", "IPv4", "--native-ipv4"),
        (v6, "-6", "IPv6", "--carry-ipv6"),
    ];
    for (_, flag, name, option) in families.into_iter().filter(|f| f.0) {
        let json = run_ok(&["ip", "-j", flag, "rule", "show"])?;
        if !routes_mark_elsewhere(&json, mark)? {
            bail!(
                "--mark {mark} with {option}: no {name} routing rule sends mark {mark} to a table \
                 of its own, so the engine's {name} sockets would follow the CLAT's routes back \
                 into the TUN; add one that routes around the TUN, e.g. \
                 `ip {flag} rule add fwmark {mark} lookup 100` with \
                 `ip {flag} route add default via GATEWAY dev UPLINK table 100`, \
                 or use --bind-device UPLINK instead"
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `ip -j rule show` output as iproute2 6.1 prints it (copied from a
    /// run with `ip rule add fwmark 0x64/0xff lookup 7`).
    const RULES: &str = r#"[{"priority":0,"src":"all","table":"local"},{"priority":32765,"src":"all","fwmark":"0x64","fwmask":"0xff","table":"7"},{"priority":32766,"src":"all","table":"main"},{"priority":32767,"src":"all","table":"default"}]"#;

    #[test]
    fn a_rule_for_the_mark_under_its_mask() {
        assert!(routes_mark_elsewhere(RULES, 100).unwrap());
        // 0x164 & 0xff == 0x64.
        assert!(routes_mark_elsewhere(RULES, 0x164).unwrap());
        assert!(!routes_mark_elsewhere(RULES, 101).unwrap());
    }

    #[test]
    fn no_mask_means_every_bit_and_main_or_local_do_not_count() {
        let exact = r#"[{"priority":100,"src":"all","fwmark":"0x64","table":"100"}]"#;
        assert!(routes_mark_elsewhere(exact, 100).unwrap());
        assert!(!routes_mark_elsewhere(exact, 0x164).unwrap());
        for t in ["main", "local"] {
            let r = format!(r#"[{{"priority":100,"src":"all","fwmark":"0x64","table":"{t}"}}]"#);
            assert!(!routes_mark_elsewhere(&r, 100).unwrap(), "{t}");
        }
        let none = r#"[{"priority":0,"src":"all","table":"local"}]"#;
        assert!(!routes_mark_elsewhere(none, 100).unwrap());
        assert!(routes_mark_elsewhere("{}", 1).is_err());
        assert!(routes_mark_elsewhere("nope", 1).is_err());
        let bad = r#"[{"fwmark":"0xzz","table":"7"}]"#;
        assert!(routes_mark_elsewhere(bad, 1).is_err());
    }
}
