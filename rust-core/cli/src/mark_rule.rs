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

/// The keys of an `ip -j rule show` entry that do not narrow what the rule
/// matches (besides `fwmark`/`fwmask`, `src` when it is `all`, and `table`
/// itself): any other key (`not`, `srclen`, `dst`, `iif`, `oif`,
/// `uid_start`, `ipproto`, `sport`, `dport`, `tos`, `l3mdev`,
/// `suppress_prefixlen`, `goto`, `action`, ...) makes the rule unfit, since
/// the engine's sockets would then miss it or not be routed by it.
const NEUTRAL_KEYS: &[&str] = &["priority", "src", "fwmark", "fwmask", "table", "protocol"];

/// The table that `ip -j rule show` output (`rules_json`, one family) sends
/// sockets with mark `mark` to: the first rule, by priority, that
/// - matches the mark (`fwmark`, under `fwmask` when given, as the kernel
///   compares them) and is not negated (`"not": null`, e.g. wg-quick's
///   `not fwmark 51820 lookup 51820`, matches every *other* mark);
/// - has no other selector (see [`NEUTRAL_KEYS`]): source `all` only;
/// - looks up a table other than `local` and `main` (where the CLAT's
///   routes are, so a lookup there loops);
/// - comes before the first rule that looks up `main` (a later one is
///   never reached: `main` routes into the TUN first).
///
/// `Ok(None)` when no rule qualifies.
///
/// Errors: the text is not the JSON array `ip -j rule show` prints, or a
/// mark in it is not a number.
pub fn table_for_mark(rules_json: &str, mark: u32) -> Result<Option<String>> {
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
    let mut by_priority: Vec<&Value> = rules.iter().collect();
    by_priority.sort_by_key(|r| r.get("priority").and_then(Value::as_u64).unwrap_or(0));
    for r in by_priority {
        let table = r.get("table").and_then(Value::as_str);
        if table == Some("main") {
            return Ok(None);
        }
        let Some(fwmark) = hex(r, "fwmark")? else {
            continue;
        };
        let mask = hex(r, "fwmask")?.unwrap_or(u32::MAX);
        let Some(obj) = r.as_object() else { continue };
        let only_mark = obj.keys().all(|k| NEUTRAL_KEYS.contains(&k.as_str()))
            && r.get("src").and_then(Value::as_str).unwrap_or("all") == "all";
        if fwmark & mask == mark & mask && only_mark {
            if let Some(t) = table.filter(|t| *t != "local") {
                return Ok(Some(t.to_string()));
            }
        }
    }
    Ok(None)
}

/// Refuses a start with `--mark mark` when IPv4 (`v4`: `--native-ipv4`)
/// or IPv6 (`v6`: `--carry-ipv6`) has no rule for the mark
/// ([`table_for_mark`]) or that rule's table has no default route of the
/// family (`ip -j -4|-6 route show table T default`: the marked sockets
/// would find no route there and fall through to `main`), saying what to
/// add. Errors also: `ip` cannot be run or its output read.
pub fn check(mark: u32, v4: bool, v6: bool) -> Result<()> {
    let families = [
        (v4, "-4", "IPv4", "--native-ipv4"),
        (v6, "-6", "IPv6", "--carry-ipv6"),
    ];
    for (_, flag, name, option) in families.into_iter().filter(|f| f.0) {
        let json = run_ok(&["ip", "-j", flag, "rule", "show"])?;
        let Some(table) = table_for_mark(&json, mark)? else {
            bail!(
                "--mark {mark} with {option}: no {name} routing rule sends mark {mark} to a table \
                 of its own (a rule `fwmark {mark}` with no other selector, not negated, before \
                 the rule that looks up main), so the engine's {name} sockets would follow the \
                 CLAT's routes back into the TUN; add one that routes around the TUN, e.g. \
                 `ip {flag} rule add fwmark {mark} lookup 100` with \
                 `ip {flag} route add default via GATEWAY dev UPLINK table 100`, \
                 or use --bind-device UPLINK instead"
            );
        };
        let routes = run_ok(&[
            "ip", "-j", flag, "route", "show", "table", &table, "default",
        ])
        .unwrap_or_default();
        let has_default = serde_json::from_str::<Value>(&routes)
            .ok()
            .and_then(|v| v.as_array().map(|a| !a.is_empty()))
            .unwrap_or(false);
        if !has_default {
            bail!(
                "--mark {mark} with {option}: the {name} rule for mark {mark} looks up table \
                 {table}, which has no {name} default route, so the engine's sockets would fall \
                 through to the CLAT's routes; add one, e.g. \
                 `ip {flag} route add default via GATEWAY dev UPLINK table {table}`"
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `ip -j -4 rule show` output of iproute2 6.1, from a scratch
    /// namespace after `ip rule add not fwmark 51820 lookup 51820 pref 100`
    /// (wg-quick's rule), `fwmark 0x64 lookup 100 pref 101`, and rules for
    /// 0x65.. each with one more selector (`from 192.0.2.0/24`, `iif d0`,
    /// `oif d0`, `uidrange 1000-2000`, `ipproto tcp dport 80 sport 1000`,
    /// `tos 0x10`, `to 198.51.100.0/24`, `suppress_prefixlength 0`,
    /// `l3mdev`, `goto 32766`, `prohibit`), and `fwmark 0x6b lookup 107
    /// pref 40000` (after main).
    const SAMPLE: &str = r#"[{"priority":0,"src":"all","table":"local"},{"priority":100,"not":null,"src":"all","fwmark":"0xca6c","table":"51820"},{"priority":101,"src":"all","fwmark":"0x64","table":"100"},{"priority":102,"src":"192.0.2.0","srclen":24,"fwmark":"0x65","table":"101"},{"priority":103,"src":"all","fwmark":"0x66","iif":"d0","iif_detached":null,"table":"102"},{"priority":104,"src":"all","fwmark":"0x67","oif":"d0","oif_detached":null,"table":"103"},{"priority":105,"src":"all","fwmark":"0x68","uid_start":1000,"uid_end":2000,"table":"104"},{"priority":106,"src":"all","fwmark":"0x69","ipproto":"tcp","sport":1000,"dport":80,"table":"105"},{"priority":107,"src":"all","tos":"0x10","fwmark":"0x6a","table":"106"},{"priority":108,"src":"all","dst":"198.51.100.0","dstlen":24,"fwmark":"0x6c","table":"108"},{"priority":109,"src":"all","fwmark":"0x6d","table":"109","suppress_prefixlen":0},{"priority":110,"src":"all","fwmark":"0x6e","l3mdev":null},{"priority":111,"src":"all","fwmark":"0x6f","goto":32766},{"priority":112,"src":"all","fwmark":"0x70","action":"prohibit"},{"priority":32766,"src":"all","table":"main"},{"priority":32767,"src":"all","table":"default"},{"priority":40000,"src":"all","fwmark":"0x6b","table":"107"}]"#;

    fn table(mark: u32) -> Option<String> {
        table_for_mark(SAMPLE, mark).unwrap()
    }

    #[test]
    fn a_plain_rule_before_main_counts() {
        assert_eq!(table(0x64).as_deref(), Some("100"));
    }

    #[test]
    fn a_negated_rule_does_not_count() {
        // wg-quick: `not fwmark 51820` matches every other mark, and not
        // 51820 itself.
        assert_eq!(table(51820), None);
    }

    #[test]
    fn a_rule_with_another_selector_does_not_count() {
        for (mark, what) in [
            (0x65, "from 192.0.2.0/24"),
            (0x66, "iif"),
            (0x67, "oif"),
            (0x68, "uidrange"),
            (0x69, "ipproto/sport/dport"),
            (0x6a, "tos"),
            (0x6c, "to"),
            (0x6d, "suppress_prefixlength"),
            (0x6e, "l3mdev"),
            (0x6f, "goto"),
            (0x70, "prohibit"),
        ] {
            assert_eq!(table(mark), None, "{what}");
        }
    }

    #[test]
    fn a_rule_after_main_does_not_count() {
        assert_eq!(table(0x6b), None);
    }

    #[test]
    fn the_mask_is_applied_and_no_mask_means_every_bit() {
        // `ip rule add fwmark 0x64/0xff lookup 7` (iproute2 6.1).
        let masked = r#"[{"priority":0,"src":"all","table":"local"},{"priority":32765,"src":"all","fwmark":"0x64","fwmask":"0xff","table":"7"},{"priority":32766,"src":"all","table":"main"},{"priority":32767,"src":"all","table":"default"}]"#;
        assert_eq!(table_for_mark(masked, 100).unwrap().as_deref(), Some("7"));
        // 0x164 & 0xff == 0x64.
        assert_eq!(table_for_mark(masked, 0x164).unwrap().as_deref(), Some("7"));
        assert_eq!(table_for_mark(masked, 101).unwrap(), None);
        assert_eq!(table(0x164), None);
    }

    #[test]
    fn main_or_local_tables_do_not_count() {
        for t in ["main", "local"] {
            let r = format!(r#"[{{"priority":100,"src":"all","fwmark":"0x64","table":"{t}"}}]"#);
            assert_eq!(table_for_mark(&r, 100).unwrap(), None, "{t}");
        }
    }

    #[test]
    fn bad_input_is_an_error() {
        assert!(table_for_mark("{}", 1).is_err());
        assert!(table_for_mark("nope", 1).is_err());
        let bad = r#"[{"fwmark":"0xzz","table":"7"}]"#;
        assert!(table_for_mark(bad, 1).is_err());
    }
}
