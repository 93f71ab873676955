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

/// The keys of an `ip -j rule show` entry that do not narrow which sockets
/// the rule matches, besides the mark itself (`fwmark`/`fwmask`), its
/// negation (`not`), `src` when it is `all`, and `suppress_prefixlen`
/// (which narrows the routes taken, not the sockets): a rule with any other
/// key (`srclen`, `dst`, `iif`, `oif`, `uid_start`, `ipproto`, `sport`,
/// `dport`, `tos`, `l3mdev`, `goto`, `action`, ...) may or may not match the
/// engine's sockets, and is passed over.
const NEUTRAL_KEYS: &[&str] = &[
    "priority",
    "src",
    "fwmark",
    "fwmask",
    "not",
    "table",
    "protocol",
    "suppress_prefixlen",
];

/// The tables that `ip -j rule show` output (`rules_json`, one family)
/// looks up for sockets with mark `mark` before they could reach the
/// CLAT's routes, in order, walking the rules by priority as the kernel
/// does (`fib_rules_lookup`: a lookup that finds no route goes on to the
/// next rule, so the first of these tables with a default route is where
/// the sockets go).
/// - A rule matches when its `fwmark` (under `fwmask` when given) equals
///   the mark's, or it has none; `not` inverts that (wg-quick's
///   `not fwmark 51820 lookup 51820` matches every *other* mark).
/// - Rules with another selector ([`NEUTRAL_KEYS`]) are passed over: they
///   may not match the engine's sockets at all.
/// - `local` is passed over (it holds only the host's own addresses), and
///   so is a rule whose `suppress_prefixlen` drops the routes the CLAT
///   adds (its /1 routes: a length of 1 or more), or any default route
///   (a table of the user's then gives the sockets nothing).
/// - A match on `main` (where the CLAT's routes are: the sockets would loop
///   into the TUN there) ends the walk; a match on any other table adds it.
///
/// Errors: the text is not the JSON array `ip -j rule show` prints, or a
/// mark in it is not a number.
pub fn tables_for_mark(rules_json: &str, mark: u32) -> Result<Vec<String>> {
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
    let mut tables = Vec::new();
    for r in by_priority {
        let Some(obj) = r.as_object() else { continue };
        let only_mark = obj.keys().all(|k| NEUTRAL_KEYS.contains(&k.as_str()))
            && r.get("src").and_then(Value::as_str).unwrap_or("all") == "all";
        if !only_mark {
            continue;
        }
        let mark_matches = match hex(r, "fwmark")? {
            Some(fwmark) => {
                let mask = hex(r, "fwmask")?.unwrap_or(u32::MAX);
                fwmark & mask == mark & mask
            }
            None => true,
        };
        if mark_matches == obj.contains_key("not") {
            continue;
        }
        let Some(table) = r.get("table").and_then(Value::as_str) else {
            continue;
        };
        let suppress = r.get("suppress_prefixlen").and_then(Value::as_u64);
        match (table, suppress) {
            ("local", _) => continue,
            // Main without its default routes still has the CLAT's /1s.
            ("main", None | Some(0)) => break,
            ("main", Some(_)) => continue,
            (_, Some(_)) => continue,
            (t, None) => tables.push(t.to_string()),
        }
    }
    Ok(tables)
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
        let tables = tables_for_mark(&json, mark)?;
        if tables.is_empty() {
            bail!(
                "--mark {mark} with {option}: no {name} routing rule sends mark {mark} to a table \
                 of its own (a rule `fwmark {mark}` with no other selector, matching the mark, \
                 before the rule that looks up main), so the engine's {name} sockets would follow \
                 the CLAT's routes back into the TUN; add one that routes around the TUN, e.g. \
                 `ip {flag} rule add fwmark {mark} lookup 100` with \
                 `ip {flag} route add default via GATEWAY dev UPLINK table 100`, \
                 or use --bind-device UPLINK instead"
            );
        }
        let has_default = |table: &str| {
            let routes = run_ok(&["ip", "-j", flag, "route", "show", "table", table, "default"])
                .unwrap_or_default();
            serde_json::from_str::<Value>(&routes)
                .ok()
                .and_then(|v| v.as_array().map(|a| !a.is_empty()))
                .unwrap_or(false)
        };
        if !tables.iter().any(|t| has_default(t)) {
            let which = match tables.as_slice() {
                [t] => format!("the {name} rule for mark {mark} looks up table {t}, which has no"),
                _ => format!(
                    "the {name} rules for mark {mark} look up tables {}, and none has an",
                    tables.join(", ")
                ),
            };
            bail!(
                "--mark {mark} with {option}: {which} {name} default route, so the engine's \
                 sockets would fall through to the CLAT's routes; add one, e.g. \
                 `ip {flag} route add default via GATEWAY dev UPLINK table {}`",
                tables[0]
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `ip -j -4 rule show` output of iproute2 6.1, from a scratch
    /// namespace after `fwmark 0x64 lookup 100 pref 101`, and rules for
    /// 0x65.. each with one more selector (`from 192.0.2.0/24`, `iif d0`,
    /// `oif d0`, `uidrange 1000-2000`, `ipproto tcp dport 80 sport 1000`,
    /// `tos 0x10`, `to 198.51.100.0/24`, `suppress_prefixlength 0`,
    /// `l3mdev`, `goto 32766`, `prohibit`), and `fwmark 0x6b lookup 107
    /// pref 40000` (after main).
    const SAMPLE: &str = r#"[{"priority":0,"src":"all","table":"local"},{"priority":101,"src":"all","fwmark":"0x64","table":"100"},{"priority":102,"src":"192.0.2.0","srclen":24,"fwmark":"0x65","table":"101"},{"priority":103,"src":"all","fwmark":"0x66","iif":"d0","iif_detached":null,"table":"102"},{"priority":104,"src":"all","fwmark":"0x67","oif":"d0","oif_detached":null,"table":"103"},{"priority":105,"src":"all","fwmark":"0x68","uid_start":1000,"uid_end":2000,"table":"104"},{"priority":106,"src":"all","fwmark":"0x69","ipproto":"tcp","sport":1000,"dport":80,"table":"105"},{"priority":107,"src":"all","tos":"0x10","fwmark":"0x6a","table":"106"},{"priority":108,"src":"all","dst":"198.51.100.0","dstlen":24,"fwmark":"0x6c","table":"108"},{"priority":109,"src":"all","fwmark":"0x6d","table":"109","suppress_prefixlen":0},{"priority":110,"src":"all","fwmark":"0x6e","l3mdev":null},{"priority":111,"src":"all","fwmark":"0x6f","goto":32766},{"priority":112,"src":"all","fwmark":"0x70","action":"prohibit"},{"priority":32766,"src":"all","table":"main"},{"priority":32767,"src":"all","table":"default"},{"priority":40000,"src":"all","fwmark":"0x6b","table":"107"}]"#;

    /// wg-quick's rules (`ip -j -4 rule show` shape): `not fwmark 51820
    /// lookup 51820` and `lookup main suppress_prefixlength 0`.
    const WG_QUICK: &str = r#"[{"priority":0,"src":"all","table":"local"},{"priority":32764,"src":"all","table":"main","suppress_prefixlen":0},{"priority":32765,"not":null,"src":"all","fwmark":"0xca6c","table":"51820"},{"priority":32766,"src":"all","table":"main"},{"priority":32767,"src":"all","table":"default"}]"#;

    /// Tailscale's marked-traffic rule `fwmark 0x80000/0xff0000 lookup main`
    /// ahead of a user's `fwmark 100 lookup 100`.
    const TAILSCALE: &str = r#"[{"priority":0,"src":"all","table":"local"},{"priority":5210,"src":"all","fwmark":"0x80000","fwmask":"0xff0000","table":"main"},{"priority":6000,"src":"all","fwmark":"0x64","table":"100"},{"priority":32766,"src":"all","table":"main"},{"priority":32767,"src":"all","table":"default"}]"#;

    /// The first table the walk gives, if any.
    fn table_for_mark(json: &str, mark: u32) -> Result<Option<String>> {
        Ok(tables_for_mark(json, mark)?.into_iter().next())
    }

    fn table(mark: u32) -> Option<String> {
        table_for_mark(SAMPLE, mark).unwrap()
    }

    #[test]
    fn a_plain_rule_before_main_counts() {
        assert_eq!(table(0x64).as_deref(), Some("100"));
    }

    #[test]
    fn the_first_matching_rule_decides_negated_ones_included() {
        // wg-quick's own mark: not caught by `not fwmark`, and main without
        // its default routes still has the CLAT's /1s.
        assert_eq!(table_for_mark(WG_QUICK, 51820).unwrap(), None);
        // Any other mark: `lookup main suppress_prefixlength 0` comes first.
        assert_eq!(table_for_mark(WG_QUICK, 100).unwrap(), None);
        // Without that rule, `not fwmark 51820` takes every other mark.
        let negated = r#"[{"priority":0,"src":"all","table":"local"},{"priority":100,"not":null,"src":"all","fwmark":"0xca6c","table":"51820"},{"priority":101,"src":"all","fwmark":"0x64","table":"100"},{"priority":32766,"src":"all","table":"main"}]"#;
        assert_eq!(
            table_for_mark(negated, 100).unwrap().as_deref(),
            Some("51820")
        );
        assert_eq!(table_for_mark(negated, 51820).unwrap(), None);
    }

    #[test]
    fn a_main_rule_for_other_marks_does_not_end_the_walk() {
        assert_eq!(
            table_for_mark(TAILSCALE, 100).unwrap().as_deref(),
            Some("100")
        );
        assert_eq!(table_for_mark(TAILSCALE, 0x80000).unwrap(), None);
        assert_eq!(table_for_mark(TAILSCALE, 0x180064).unwrap(), None);
        // Main with its /1s suppressed (length 1 and more) is passed over.
        let suppressed = r#"[{"priority":10,"src":"all","table":"main","suppress_prefixlen":1},{"priority":11,"src":"all","fwmark":"0x64","table":"100"},{"priority":32766,"src":"all","table":"main"}]"#;
        assert_eq!(
            table_for_mark(suppressed, 100).unwrap().as_deref(),
            Some("100")
        );
    }

    #[test]
    fn tables_without_a_mark_are_candidates_in_order() {
        // strongSwan's `220: from all lookup 220` (specific routes only)
        // comes first; the check then looks for a default route in each.
        let swan = r#"[{"priority":0,"src":"all","table":"local"},{"priority":220,"src":"all","table":"220"},{"priority":300,"src":"all","fwmark":"0x64","table":"100"},{"priority":32766,"src":"all","table":"main"}]"#;
        assert_eq!(tables_for_mark(swan, 100).unwrap(), ["220", "100"]);
        assert_eq!(tables_for_mark(swan, 101).unwrap(), ["220"]);
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
