//! Opening the host firewall for the CLAT's own TUN, and only for it.
//!
//! When [`crate::listener_probe`] finds the path from the TUN to the
//! engine's listener closed, this module finds the rulesets that can drop
//! it on the INPUT hook and, with `--firewall auto`, inserts at the head of
//! each one accept rule for exactly that path ([`ListenerPath`]: TCP that
//! comes in on the TUN from the internal NAT source to the CLAT address),
//! tagged with a comment naming this instance; [`Openings`] removes exactly
//! those rules when `clat run` ends, after checking that each one is still
//! its own (a firewall reloaded meanwhile may have reused a rule handle).
//!
//! Nothing wider: everything else that comes in on the TUN stays under the
//! host's own rules. The apps' traffic comes back as replies to their own
//! connections (conntrack ESTABLISHED/RELATED, which any stateful firewall
//! accepts), while UDP from an endpoint an app never talked to (the engine
//! filters endpoint-independently, RFC 4787) is a new inbound flow that the
//! host's policy may drop, as it would on a native IPv4 path.
//!
//! - firewalld, when it runs: a rich rule (source NAT address, destination
//!   CLAT address, protocol tcp, accept) in the zone of the TUN (the default
//!   zone when the TUN has none), at run time only (firewalld rewrites its
//!   own nftables table on reload, so its table is left to it; rich rules
//!   have no interface match, so the rule names both addresses, which only
//!   the TUN's own traffic carries);
//! - nftables: every base chain on the `input` hook of family `ip` or
//!   `inet` (IPv4; `ip6` or `inet` for IPv6) whose policy is drop or that
//!   has a drop or reject rule (an accept in one base chain does not spare
//!   the packet the others);
//! - iptables-nft (`ip filter INPUT` in nftables) and iptables-legacy, and
//!   for IPv6 ip6tables-nft (`ip6 filter INPUT`) and ip6tables-legacy: a
//!   rule at the head of INPUT when the policy is DROP or a rule drops or
//!   rejects. An nftables `ip`/`ip6` table named `filter` is left to
//!   iptables-nft/ip6tables-nft only for the chain `INPUT`, and only when
//!   that tool read it; any other chain there (say a hand-written `input`)
//!   is opened with nft.
//!
//! Which families are looked at is the caller's: those whose probe found
//! the path closed ([`Family`]; IPv6 only with `--carry-ipv6`).
//!
//! What cannot be opened is reported with the exact command that opens it.

use crate::host_cmd::{self, run, run_ok};
use anyhow::{Context, Result};
use serde_json::Value;
use std::fmt;
use std::net::IpAddr;

/// The path the engine's listener needs through the INPUT hook of one
/// family: TCP from the internal NAT source (`nat`, .5 of the /29 for
/// IPv4) to the CLAT address (`clat`), any port (the listener's port is
/// the kernel's choice), coming in on the TUN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenerPath {
    pub family: Family,
    pub nat: IpAddr,
    pub clat: IpAddr,
}

impl ListenerPath {
    /// nft's address keyword for this family.
    fn nft_proto(&self) -> &'static str {
        match self.family {
            Family::V4 => "ip",
            Family::V6 => "ip6",
        }
    }

    /// The nft rule's match and verdict: `iifname "TUN" ip saddr NAT ip
    /// daddr CLAT meta l4proto tcp accept`.
    pub fn nft_rule(&self, tun: &str) -> String {
        let p = self.nft_proto();
        format!(
            "iifname \"{tun}\" {p} saddr {} {p} daddr {} meta l4proto tcp accept",
            self.nat, self.clat
        )
    }

    /// The iptables rule's match (without chain, comment and target).
    fn iptables_match(&self, tun: &str) -> Vec<String> {
        [
            "-i",
            tun,
            "-s",
            &self.nat.to_string(),
            "-d",
            &self.clat.to_string(),
            "-p",
            "tcp",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    /// firewalld's rich rule.
    pub fn rich_rule(&self) -> String {
        let fam = match self.family {
            Family::V4 => "ipv4",
            Family::V6 => "ipv6",
        };
        format!(
            "rule family=\"{fam}\" source address=\"{}\" destination address=\"{}\" protocol value=\"tcp\" accept",
            self.nat, self.clat
        )
    }
}

/// `--firewall`: what `clat run` does about a host firewall.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum FirewallMode {
    /// Check the path to the listener; when a firewall closes it, open it
    /// for this TUN only and remove that again at exit.
    Auto,
    /// Check, and when a firewall closes the path stop with the command
    /// that opens it; change nothing.
    Check,
    /// Neither check nor change anything.
    Off,
}

/// The address family of the path to the listener that a ruleset filters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    /// The nftables families whose input hook sees this family's packets.
    fn nft_families(self) -> [&'static str; 2] {
        match self {
            Family::V4 => ["ip", "inet"],
            Family::V6 => ["ip6", "inet"],
        }
    }

    /// The iptables tools of this family, nft back end first, and the
    /// `/proc` file that lists the legacy back end's tables (listing a
    /// table that does not exist would load x_tables modules for nothing).
    fn iptables(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Family::V4 => (
                "iptables-nft",
                "iptables-legacy",
                "/proc/net/ip_tables_names",
            ),
            Family::V6 => (
                "ip6tables-nft",
                "ip6tables-legacy",
                "/proc/net/ip6_tables_names",
            ),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        }
    }
}

/// Whether the legacy iptables back end listed in `names` (a `/proc/net`
/// file) has a filter table.
fn legacy_filter_exists(names: &str) -> bool {
    std::fs::read_to_string(names)
        .unwrap_or_default()
        .lines()
        .any(|l| l.trim() == "filter")
}

/// A ruleset that can drop the TUN's packets on INPUT, and how to open it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Blocker {
    /// firewalld runs (its own nftables table is left to it).
    Firewalld,
    /// An nftables base chain on the input hook.
    Nft {
        family: String,
        table: String,
        chain: String,
        why: String,
    },
    /// The INPUT chain of an iptables back end (`iptables-nft` or
    /// `iptables-legacy`).
    Iptables { tool: &'static str, why: String },
}

impl fmt::Display for Blocker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Blocker::Firewalld => write!(f, "firewalld"),
            Blocker::Nft {
                family,
                table,
                chain,
                why,
            } => write!(f, "nftables chain {family} {table} {chain} ({why})"),
            Blocker::Iptables { tool, why } => write!(f, "{tool} INPUT ({why})"),
        }
    }
}

impl Blocker {
    /// The paths of `paths` that this ruleset sees.
    fn paths<'a>(&self, paths: &'a [ListenerPath]) -> Vec<&'a ListenerPath> {
        paths
            .iter()
            .filter(|p| match self {
                Blocker::Firewalld => true,
                Blocker::Nft { family, .. } => p.family.nft_families().contains(&family.as_str()),
                Blocker::Iptables { tool, .. } => p.family == tool_family(tool),
            })
            .collect()
    }

    /// The commands that open it for `paths` on `tun`, as a user would
    /// type them, joined with ` && `.
    pub fn fix_command(&self, tun: &str, paths: &[ListenerPath]) -> String {
        let cmds: Vec<String> = self
            .paths(paths)
            .into_iter()
            .map(|p| match self {
                Blocker::Firewalld => format!("firewall-cmd --add-rich-rule='{}'", p.rich_rule()),
                Blocker::Nft {
                    family,
                    table,
                    chain,
                    ..
                } => format!(
                    "nft insert rule {family} {table} {chain} {}",
                    p.nft_rule(tun)
                ),
                Blocker::Iptables { tool, .. } => {
                    format!(
                        "{tool} -I INPUT {} -j ACCEPT",
                        p.iptables_match(tun).join(" ")
                    )
                }
            })
            .collect();
        cmds.join(" && ")
    }
}

/// The family an iptables tool filters.
fn tool_family(tool: &str) -> Family {
    if tool.starts_with("ip6") {
        Family::V6
    } else {
        Family::V4
    }
}

/// Whether an nftables input chain is iptables-nft's or ip6tables-nft's
/// own and was read by that tool (`read_v4`: `iptables-nft -S INPUT`
/// succeeded; `read_v6`: the same for ip6tables-nft), so that it is opened
/// through the tool rather than with nft. A chain of another name in a
/// table `filter` (written by hand), or one the tool could not read (not
/// installed, or a table it calls incompatible), is nft's.
pub fn left_to_iptables_nft(
    family: &str,
    table: &str,
    chain: &str,
    read_v4: bool,
    read_v6: bool,
) -> bool {
    table == "filter"
        && chain == "INPUT"
        && match family {
            "ip" => read_v4,
            "ip6" => read_v6,
            _ => false,
        }
}

/// Finds what may drop packets of `families` that come in on `tun` (see
/// the module documentation). Tools that are not installed are skipped.
pub fn find_blockers(families: &[Family]) -> Vec<Blocker> {
    let mut found = Vec::new();
    let firewalld = firewalld_running();
    if firewalld {
        found.push(Blocker::Firewalld);
    }
    // The iptables tools first: which of the nft back ends read INPUT
    // decides which nftables chains are theirs.
    let mut iptables = Vec::new();
    let (mut read_v4, mut read_v6) = (false, false);
    for fam in families {
        let (nft_tool, legacy_tool, legacy_names) = fam.iptables();
        // The nft back end: listing its table does not create it. The
        // legacy one only when its filter table exists.
        let tools = [
            Some(nft_tool),
            legacy_filter_exists(legacy_names).then_some(legacy_tool),
        ];
        for tool in tools.into_iter().flatten() {
            let Ok(o) = run(&[tool, "-S", "INPUT"]) else {
                continue;
            };
            if !o.success {
                continue;
            }
            if tool == "iptables-nft" {
                read_v4 = true;
            } else if tool == "ip6tables-nft" {
                read_v6 = true;
            }
            if let Some(why) = iptables_blocks(&o.stdout) {
                iptables.push(Blocker::Iptables { tool, why });
            }
        }
    }
    if let Ok(o) = run(&["nft", "-j", "list", "ruleset"]) {
        if o.success {
            match nft_blocking_chains(&o.stdout, families) {
                Ok(chains) => {
                    for b in chains {
                        let Blocker::Nft {
                            family,
                            table,
                            chain,
                            ..
                        } = &b
                        else {
                            continue;
                        };
                        if left_to_iptables_nft(family, table, chain, read_v4, read_v6) {
                            continue;
                        }
                        if firewalld && family == "inet" && table == "firewalld" {
                            continue;
                        }
                        found.push(b);
                    }
                }
                Err(e) => log::warn!("cannot read the nftables ruleset: {e:#}"),
            }
        }
    }
    found.extend(iptables);
    found
}

fn firewalld_running() -> bool {
    host_cmd::find("firewall-cmd").is_some()
        && run(&["firewall-cmd", "--state"])
            .map(|o| o.success && o.stdout.trim() == "running")
            .unwrap_or(false)
}

/// The base chains on the `input` hook of an nftables family that sees
/// packets of `families` (`ip`, `ip6`, `inet`) in `nft -j list ruleset`
/// output whose policy is drop or that hold a rule whose verdict is drop
/// or reject; each chain once.
///
/// Errors: the text is not the JSON nft prints.
pub fn nft_blocking_chains(json: &str, families: &[Family]) -> Result<Vec<Blocker>> {
    let v: Value = serde_json::from_str(json).context("not JSON")?;
    let items = v
        .get("nftables")
        .and_then(Value::as_array)
        .context("no \"nftables\" array")?;
    let mut out = Vec::new();
    for item in items {
        let Some(c) = item.get("chain") else { continue };
        let s = |k: &str| c.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        let (family, table, chain) = (s("family"), s("table"), s("name"));
        let seen = families
            .iter()
            .any(|f| f.nft_families().contains(&&*family));
        if s("hook") != "input" || !seen {
            continue;
        }
        let why = if s("policy") == "drop" {
            "policy drop".to_string()
        } else {
            let drops = items.iter().filter_map(|i| i.get("rule")).any(|r| {
                let is = |k: &str, want: &str| r.get(k).and_then(Value::as_str) == Some(want);
                is("family", &family)
                    && is("table", &table)
                    && is("chain", &chain)
                    && r.get("expr").is_some_and(has_drop_verdict)
            });
            if !drops {
                continue;
            }
            "a drop or reject rule".to_string()
        };
        out.push(Blocker::Nft {
            family,
            table,
            chain,
            why,
        });
    }
    Ok(out)
}

fn has_drop_verdict(v: &Value) -> bool {
    match v {
        Value::Object(m) => m
            .iter()
            .any(|(k, v)| k == "drop" || k == "reject" || has_drop_verdict(v)),
        Value::Array(a) => a.iter().any(has_drop_verdict),
        _ => false,
    }
}

/// Why an `iptables -S INPUT` listing can drop new connections, if it can:
/// a DROP policy, or a rule that jumps to DROP or REJECT.
pub fn iptables_blocks(listing: &str) -> Option<String> {
    for line in listing.lines() {
        let w: Vec<&str> = line.split_whitespace().collect();
        if w.len() >= 3 && w[0] == "-P" && w[1] == "INPUT" && w[2] == "DROP" {
            return Some("policy DROP".into());
        }
    }
    listing
        .lines()
        .find(|l| l.starts_with("-A INPUT") && (l.contains("-j DROP") || l.contains("-j REJECT")))
        .map(|l| format!("rule `{}`", l.trim()))
}

/// In `nft -a list chain ...` output, is the rule with `handle` the one
/// tagged `tag`? (A handle alone is not proof: a firewall reloaded since
/// may have given it to another rule.)
pub fn nft_rule_is_ours(listing: &str, handle: u64, tag: &str) -> bool {
    let suffix = format!("# handle {handle}");
    listing.lines().any(|l| {
        let l = l.trim();
        l.ends_with(&suffix) && l.contains(&format!("comment \"{tag}\""))
    })
}

/// The handle nft reports for a rule it added with `--echo --handle`.
pub fn nft_echoed_handle(out: &str) -> Option<u64> {
    out.lines()
        .find_map(|l| l.rsplit_once("# handle ").map(|(_, h)| h.trim()))
        .and_then(|h| h.split_whitespace().next()?.parse().ok())
}

/// One rule this instance added.
#[derive(Debug)]
enum Opened {
    Nft {
        family: String,
        table: String,
        chain: String,
        handle: u64,
    },
    Iptables {
        tool: &'static str,
        path: ListenerPath,
    },
    Firewalld {
        zone: String,
        rule: String,
    },
}

/// What this instance opened; removed again on drop.
#[derive(Debug)]
pub struct Openings {
    tun: String,
    tag: String,
    opened: Vec<Opened>,
}

impl Openings {
    /// Opens every blocker for the `paths` (of the families whose probe
    /// found the path closed) on `tun`: one rule per blocker and path of a
    /// family it sees. On the first failure, what was opened so far is
    /// removed again and the error names the blocker and the command that
    /// would open it.
    pub fn open(tun: &str, blockers: &[Blocker], paths: &[ListenerPath]) -> Result<Openings> {
        let pid = std::process::id();
        let mut o = Openings {
            tun: tun.to_string(),
            tag: format!("clat run {tun} pid {pid}"),
            opened: Vec::new(),
        };
        for b in blockers {
            for p in b.paths(paths) {
                let r = o.open_one(b, p).with_context(|| {
                    format!(
                        "cannot open {b}; run: {}",
                        b.fix_command(tun, std::slice::from_ref(p))
                    )
                });
                match r {
                    Ok(Some(x)) => {
                        log::info!(
                            "opened {b} for {} TCP from {} on {tun}",
                            p.family.name(),
                            p.nat
                        );
                        o.opened.push(x);
                    }
                    Ok(None) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(o)
    }

    fn open_one(&self, b: &Blocker, path: &ListenerPath) -> Result<Option<Opened>> {
        let tun = &self.tun;
        match b {
            Blocker::Firewalld => {
                let zone = run(&["firewall-cmd", &format!("--get-zone-of-interface={tun}")])?;
                let zone = match zone.stdout.trim() {
                    z if zone.success && !z.is_empty() => z.to_string(),
                    _ => run_ok(&["firewall-cmd", "--get-default-zone"])?
                        .trim()
                        .to_string(),
                };
                let rule = path.rich_rule();
                let zone_arg = format!("--zone={zone}");
                let q = run(&[
                    "firewall-cmd",
                    &zone_arg,
                    &format!("--query-rich-rule={rule}"),
                ])?;
                if q.success && q.stdout.trim() == "yes" {
                    // The user's own: left in place, and not removed at exit.
                    log::info!("firewalld zone {zone} already has `{rule}`");
                    return Ok(None);
                }
                run_ok(&[
                    "firewall-cmd",
                    &zone_arg,
                    &format!("--add-rich-rule={rule}"),
                ])?;
                let record = FirewalldRecord {
                    pid: std::process::id(),
                    zone: zone.clone(),
                    rule: rule.clone(),
                };
                if let Err(e) = update_firewalld_records(tun, |v| v.push(record)) {
                    log::warn!("{e:#}: a SIGKILL would leave `{rule}` behind");
                }
                Ok(Some(Opened::Firewalld { zone, rule }))
            }
            Blocker::Nft {
                family,
                table,
                chain,
                ..
            } => {
                let mut argv = vec![
                    "nft".to_string(),
                    "--echo".into(),
                    "--handle".into(),
                    "insert".into(),
                    "rule".into(),
                    family.clone(),
                    table.clone(),
                    chain.clone(),
                ];
                argv.extend(path.nft_rule(tun).split(' ').map(str::to_string));
                argv.extend(["comment".to_string(), format!("\"{}\"", self.tag)]);
                let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
                let out = run_ok(&argv)?;
                let handle = nft_echoed_handle(&out)
                    .with_context(|| format!("nft did not say the new rule's handle: {out:?}"))?;
                Ok(Some(Opened::Nft {
                    family: family.clone(),
                    table: table.clone(),
                    chain: chain.clone(),
                    handle,
                }))
            }
            Blocker::Iptables { tool, .. } => {
                let argv = self.iptables_rule(tool, "-I", path);
                run_ok(&argv.iter().map(String::as_str).collect::<Vec<_>>())?;
                Ok(Some(Opened::Iptables { tool, path: *path }))
            }
        }
    }

    fn iptables_rule(&self, tool: &str, op: &str, path: &ListenerPath) -> Vec<String> {
        let mut v: Vec<String> = vec![tool.into(), op.into(), "INPUT".into()];
        if op == "-I" {
            v.push("1".into());
        }
        v.extend(path.iptables_match(&self.tun));
        v.extend(
            ["-m", "comment", "--comment", &self.tag, "-j", "ACCEPT"]
                .iter()
                .map(|s| s.to_string()),
        );
        v
    }

    fn close_one(&self, o: &Opened) -> Result<()> {
        match o {
            Opened::Nft {
                family,
                table,
                chain,
                handle,
            } => {
                let listing = run_ok(&["nft", "-a", "list", "chain", family, table, chain])?;
                if !nft_rule_is_ours(&listing, *handle, &self.tag) {
                    log::info!(
                        "nftables rule {handle} in {family} {table} {chain} is no longer ours; left alone"
                    );
                    return Ok(());
                }
                run_ok(&[
                    "nft",
                    "delete",
                    "rule",
                    family,
                    table,
                    chain,
                    "handle",
                    &handle.to_string(),
                ])?;
            }
            // Deleting by the full rule, comment with our pid included,
            // removes our rule or nothing.
            Opened::Iptables { tool, path } => {
                let argv = self.iptables_rule(tool, "-D", path);
                run_ok(&argv.iter().map(String::as_str).collect::<Vec<_>>())?;
            }
            Opened::Firewalld { zone, rule } => {
                run_ok(&[
                    "firewall-cmd",
                    &format!("--zone={zone}"),
                    &format!("--remove-rich-rule={rule}"),
                ])?;
                let pid = std::process::id();
                let forget = update_firewalld_records(&self.tun, |v| {
                    v.retain(|r| !(r.pid == pid && &r.zone == zone && &r.rule == rule))
                });
                // The rule is gone; a record left behind names a dead pid
                // and only makes the next instance try to remove it again.
                if let Err(e) = forget {
                    log::warn!("{e:#}");
                }
            }
        }
        Ok(())
    }
}

impl Drop for Openings {
    fn drop(&mut self) {
        for o in std::mem::take(&mut self.opened).iter().rev() {
            match self.close_one(o) {
                Ok(()) => log::info!("closed the firewall opening for {}: {o:?}", self.tun),
                Err(e) => log::warn!("cannot remove firewall opening {o:?}: {e:#}"),
            }
        }
    }
}

/// An nftables rule that an instance for the same TUN added, by the pid in
/// its tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaggedNftRule {
    pub family: String,
    pub table: String,
    pub chain: String,
    pub handle: u64,
    pub pid: u32,
}

/// The rules tagged `clat run <tun> pid N` in `nft -a list ruleset` output.
pub fn tagged_nft_rules(listing: &str, tun: &str) -> Vec<TaggedNftRule> {
    let prefix = format!("comment \"clat run {tun} pid ");
    let (mut family, mut table, mut chain) = (String::new(), String::new(), String::new());
    let mut out = Vec::new();
    for line in listing.lines() {
        let w: Vec<&str> = line.split_whitespace().collect();
        match w.as_slice() {
            ["table", f, t, ..] => {
                (family, table) = (f.to_string(), t.to_string());
                continue;
            }
            ["chain", c, ..] => {
                chain = c.to_string();
                continue;
            }
            _ => {}
        }
        let Some(rest) = line.split_once(&prefix).map(|(_, r)| r) else {
            continue;
        };
        let pid = rest.split('"').next().and_then(|p| p.parse().ok());
        let handle = line
            .rsplit_once("# handle ")
            .and_then(|(_, h)| h.trim().parse().ok());
        if let (Some(pid), Some(handle)) = (pid, handle) {
            out.push(TaggedNftRule {
                family: family.clone(),
                table: table.clone(),
                chain: chain.clone(),
                handle,
                pid,
            });
        }
    }
    out
}

/// The rules tagged `clat run <tun> pid N` in an `iptables -S INPUT`
/// listing: each one's pid and its arguments after `-A INPUT` (to delete it
/// with `-D INPUT` and the same arguments, whatever the rule matched).
pub fn tagged_iptables_rules(listing: &str, tun: &str) -> Vec<(u32, Vec<String>)> {
    let prefix = format!("--comment \"clat run {tun} pid ");
    listing
        .lines()
        .filter_map(|l| {
            let (_, r) = l.split_once(&prefix)?;
            let pid = r.split('"').next()?.parse().ok()?;
            let args = split_iptables_args(l.strip_prefix("-A INPUT ")?)?;
            Some((pid, args))
        })
        .collect()
}

/// Splits an `iptables -S` rule into its arguments: words, with a double
/// quoted one (iptables quotes comments with spaces, `\"` inside) as one.
/// `None` for an unterminated quote.
fn split_iptables_args(line: &str) -> Option<Vec<String>> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let (mut in_word, mut quoted) = (false, false);
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                quoted = !quoted;
                in_word = true;
            }
            '\\' if quoted => cur.push(chars.next()?),
            c if c.is_whitespace() && !quoted => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if quoted {
        return None;
    }
    if in_word {
        out.push(cur);
    }
    Some(out)
}

/// Whether `pid` is a running `clat` (the process that tagged a rule).
fn clat_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "clat")
}

/// A firewalld rich rule an instance added, as recorded in
/// [`firewalld_records_path`]: rich rules carry no comment to tag them
/// with, so the record is what tells an earlier instance's rule from the
/// user's own (which is never recorded, and never removed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirewalldRecord {
    pub pid: u32,
    pub zone: String,
    pub rule: String,
}

impl FirewalldRecord {
    /// One line: pid, zone and rule separated by tabs (neither a zone name
    /// nor a rich rule holds a tab or a newline).
    fn to_line(&self) -> String {
        format!("{}\t{}\t{}\n", self.pid, self.zone, self.rule)
    }
}

/// The records in a record file's text; lines that do not parse are
/// skipped (a file cut short by a crash loses at most its last line).
pub fn parse_firewalld_records(text: &str) -> Vec<FirewalldRecord> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.splitn(3, '\t');
            let pid = f.next()?.parse().ok()?;
            let zone = f.next().filter(|z| !z.is_empty())?.to_string();
            let rule = f.next().filter(|r| !r.is_empty())?.to_string();
            Some(FirewalldRecord { pid, zone, rule })
        })
        .collect()
}

/// Where the rich rules added for `tun` in this network namespace are
/// recorded: `/run/clat/firewalld-<netns inode>-<tun>`. Under `/run`
/// (tmpfs), so the records go at reboot with the runtime rules they name.
fn firewalld_records_path(tun: &str) -> std::path::PathBuf {
    let netns = std::fs::read_link("/proc/self/ns/net")
        .ok()
        .and_then(|l| {
            let l = l.to_string_lossy().into_owned();
            l.strip_prefix("net:[")?
                .strip_suffix(']')
                .map(str::to_string)
        })
        .unwrap_or_else(|| "unknown".into());
    std::path::PathBuf::from(format!("/run/clat/firewalld-{netns}-{tun}"))
}

/// Reads `tun`'s records, lets `change` edit them and writes them back
/// (the file is removed when none is left).
fn update_firewalld_records(
    tun: &str,
    change: impl FnOnce(&mut Vec<FirewalldRecord>),
) -> Result<()> {
    let path = firewalld_records_path(tun);
    let mut v = match std::fs::read_to_string(&path) {
        Ok(t) => parse_firewalld_records(&t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    change(&mut v);
    let r = if v.is_empty() {
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            r => r,
        }
    } else {
        let text: String = v.iter().map(FirewalldRecord::to_line).collect();
        std::fs::create_dir_all("/run/clat").and_then(|()| std::fs::write(&path, text))
    };
    r.with_context(|| format!("cannot write {}", path.display()))
}

/// Removes the rich rules recorded for `tun` by instances that no longer
/// run, and their records.
fn remove_stale_firewalld(tun: &str) {
    let path = firewalld_records_path(tun);
    let Ok(text) = std::fs::read_to_string(&path) else {
        return;
    };
    let (stale, live): (Vec<_>, Vec<_>) = parse_firewalld_records(&text)
        .into_iter()
        .partition(|r| !clat_alive(r.pid));
    for r in &stale {
        let argv = [
            "firewall-cmd",
            &format!("--zone={}", r.zone),
            &format!("--remove-rich-rule={}", r.rule),
        ];
        // NOT_ENABLED (firewalld reloaded or restarted meanwhile, which
        // drops runtime rules) is as good as removed.
        match run(&argv) {
            Ok(o) if o.success || o.stderr.contains("NOT_ENABLED") => log::info!(
                "removed the stale opening of pid {} from firewalld zone {}",
                r.pid,
                r.zone
            ),
            Ok(o) => log::warn!("cannot remove `{}`: {}", r.rule, o.stderr.trim()),
            Err(e) => log::warn!("{e:#}"),
        }
    }
    if !stale.is_empty() {
        if let Err(e) = update_firewalld_records(tun, |v| *v = live) {
            log::warn!("{e:#}");
        }
    }
}

/// Removes what instances for `tun` that no longer run left open (killed
/// with SIGKILL, their guards never ran): nftables and iptables rules
/// tagged with `tun` and the pid of a process that is not a running `clat`,
/// and the firewalld rich rules they recorded ([`FirewalldRecord`]).
pub fn remove_stale(tun: &str) {
    remove_stale_firewalld(tun);
    if let Ok(listing) = run_ok(&["nft", "-a", "list", "ruleset"]) {
        for r in tagged_nft_rules(&listing, tun) {
            if clat_alive(r.pid) {
                continue;
            }
            let h = r.handle.to_string();
            let argv = [
                "nft", "delete", "rule", &r.family, &r.table, &r.chain, "handle", &h,
            ];
            match run_ok(&argv) {
                Ok(_) => log::info!(
                    "removed the stale opening of pid {} from nftables chain {} {} {}",
                    r.pid,
                    r.family,
                    r.table,
                    r.chain
                ),
                Err(e) => log::warn!("{e:#}"),
            }
        }
    }
    let tools = [Family::V4, Family::V6].into_iter().flat_map(|f| {
        let (nft_tool, legacy_tool, legacy_names) = f.iptables();
        [
            Some(nft_tool),
            legacy_filter_exists(legacy_names).then_some(legacy_tool),
        ]
    });
    for tool in tools.flatten() {
        let Ok(listing) = run_ok(&[tool, "-S", "INPUT"]) else {
            continue;
        };
        for (pid, args) in tagged_iptables_rules(&listing, tun) {
            if clat_alive(pid) {
                continue;
            }
            let mut argv = vec![tool, "-D", "INPUT"];
            argv.extend(args.iter().map(String::as_str));
            match run_ok(&argv) {
                Ok(_) => log::info!("removed the stale opening of pid {pid} from {tool} INPUT"),
                Err(e) => log::warn!("{e:#}"),
            }
        }
    }
}

/// The error of a closed path: what closes it and how to open it for
/// `paths` (the closed families' paths to the listener).
pub fn blocked_message(
    tun: &str,
    verdict: &str,
    blockers: &[Blocker],
    paths: &[ListenerPath],
) -> String {
    if blockers.is_empty() {
        let example = Blocker::Nft {
            family: "inet".into(),
            table: "filter".into(),
            chain: "input".into(),
            why: String::new(),
        }
        .fix_command(tun, paths);
        return format!(
            "the host firewall blocks TCP from {tun} to the CLAT's own listener ({verdict}), \
             and no nftables, iptables, ip6tables or firewalld rule that drops it was found \
             (is the CLAT's /29 on another interface too?); allow TCP from the CLAT's NAT \
             address on {tun}, e.g. `{example}`, or see `nft list ruleset`"
        );
    }
    let list: Vec<String> = blockers.iter().map(|b| b.to_string()).collect();
    let fixes: Vec<String> = blockers.iter().map(|b| b.fix_command(tun, paths)).collect();
    format!(
        "the host firewall blocks TCP from {tun} to the CLAT's own listener ({verdict}): {}; \
         open it with: {} (or run with --firewall auto)",
        list.join(", "),
        fixes.join(" && ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `nft -j list ruleset` of a UFW-like ruleset (written out by hand in
    /// the shape nft 1.0.6 prints), plus iptables-nft's table and a chain
    /// on another hook.
    const RULESET: &str = r#"{"nftables": [
 {"metainfo": {"version": "1.0.6", "json_schema_version": 1}},
 {"table": {"family": "inet", "name": "filter", "handle": 1}},
 {"chain": {"family": "inet", "table": "filter", "name": "input", "handle": 1,
   "type": "filter", "hook": "input", "prio": 0, "policy": "drop"}},
 {"chain": {"family": "inet", "table": "filter", "name": "output", "handle": 2,
   "type": "filter", "hook": "output", "prio": 0, "policy": "drop"}},
 {"rule": {"family": "inet", "table": "filter", "chain": "input", "handle": 3,
   "expr": [{"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": "lo"}},
            {"accept": null}]}},
 {"table": {"family": "ip", "name": "fw", "handle": 2}},
 {"chain": {"family": "ip", "table": "fw", "name": "in", "handle": 1,
   "type": "filter", "hook": "input", "prio": 10, "policy": "accept"}},
 {"rule": {"family": "ip", "table": "fw", "chain": "in", "handle": 2,
   "expr": [{"reject": {"type": "icmp", "expr": "port-unreachable"}}]}},
 {"table": {"family": "ip6", "name": "v6", "handle": 3}},
 {"chain": {"family": "ip6", "table": "v6", "name": "in", "handle": 1,
   "type": "filter", "hook": "input", "prio": 0, "policy": "drop"}},
 {"table": {"family": "inet", "name": "open", "handle": 4}},
 {"chain": {"family": "inet", "table": "open", "name": "in", "handle": 1,
   "type": "filter", "hook": "input", "prio": 0, "policy": "accept"}},
 {"rule": {"family": "inet", "table": "open", "chain": "in", "handle": 2,
   "expr": [{"counter": {"packets": 0, "bytes": 0}}]}}
]}"#;

    #[test]
    fn nft_chains_that_drop_on_input() {
        let got = nft_blocking_chains(RULESET, &[Family::V4]).unwrap();
        assert_eq!(
            got,
            vec![
                Blocker::Nft {
                    family: "inet".into(),
                    table: "filter".into(),
                    chain: "input".into(),
                    why: "policy drop".into()
                },
                Blocker::Nft {
                    family: "ip".into(),
                    table: "fw".into(),
                    chain: "in".into(),
                    why: "a drop or reject rule".into()
                },
            ]
        );
        // IPv6: the inet chain and the ip6 one, not the ip one.
        let inet = got[0].clone();
        let ip6 = Blocker::Nft {
            family: "ip6".into(),
            table: "v6".into(),
            chain: "in".into(),
            why: "policy drop".into(),
        };
        let got6 = nft_blocking_chains(RULESET, &[Family::V6]).unwrap();
        assert_eq!(got6, vec![inet.clone(), ip6.clone()]);
        // Both: each chain once.
        let both = nft_blocking_chains(RULESET, &[Family::V4, Family::V6]).unwrap();
        assert_eq!(both, vec![inet, got[1].clone(), ip6]);
        assert!(nft_blocking_chains("not json", &[Family::V4]).is_err());
        assert!(nft_blocking_chains("{}", &[Family::V4]).is_err());
        assert_eq!(
            nft_blocking_chains(r#"{"nftables": []}"#, &[Family::V4]).unwrap(),
            Vec::new()
        );
    }

    #[test]
    fn iptables_listings() {
        assert_eq!(
            iptables_blocks("-P INPUT DROP\n-P FORWARD DROP\n-P OUTPUT ACCEPT\n"),
            Some("policy DROP".into())
        );
        assert_eq!(
            iptables_blocks("-P INPUT ACCEPT\n-A INPUT -i lo -j ACCEPT\n-A INPUT -j REJECT --reject-with icmp-port-unreachable\n"),
            Some("rule `-A INPUT -j REJECT --reject-with icmp-port-unreachable`".into())
        );
        assert_eq!(
            iptables_blocks("-P INPUT ACCEPT\n-A INPUT -i lo -j ACCEPT\n"),
            None
        );
        assert_eq!(iptables_blocks(""), None);
    }

    #[test]
    fn nft_handles() {
        assert_eq!(
            nft_echoed_handle(
                "insert rule inet filter input iifname \"clat0\" accept comment \"clat run clat0 pid 7\" # handle 3\n# new generation 5 by process 6843 (nft)\n"
            ),
            Some(3)
        );
        assert_eq!(nft_echoed_handle("nothing here"), None);
        let listing = "table inet filter {\n\tchain input { # handle 1\n\t\ttype filter hook input priority filter; policy drop;\n\t\tiifname \"clat0\" accept comment \"clat run clat0 pid 7\" # handle 3\n\t\tiifname \"lo\" accept # handle 2\n\t}\n}\n";
        assert!(nft_rule_is_ours(listing, 3, "clat run clat0 pid 7"));
        assert!(!nft_rule_is_ours(listing, 2, "clat run clat0 pid 7"));
        assert!(!nft_rule_is_ours(listing, 3, "clat run clat0 pid 8"));
        // "# handle 3" must not match "# handle 33".
        let l33 = listing.replace("# handle 3\n", "# handle 33\n");
        assert!(!nft_rule_is_ours(&l33, 3, "clat run clat0 pid 7"));
    }

    #[test]
    fn firewalld_records_round_trip_and_skip_what_does_not_parse() {
        let a = FirewalldRecord {
            pid: 4242,
            zone: "public".into(),
            rule: r#"rule family="ipv4" source address="192.0.0.5" destination address="192.0.0.4" protocol value="tcp" accept"#.into(),
        };
        let b = FirewalldRecord {
            pid: 7,
            zone: "home".into(),
            rule: "rule family=\"ipv6\" accept".into(),
        };
        let text = format!(
            "{}garbage\nx\tpublic\trule\n9\t\trule\n9\tpublic\t\n{}12\tcut",
            a.to_line(),
            b.to_line()
        );
        assert_eq!(parse_firewalld_records(&text), vec![a, b]);
        assert_eq!(parse_firewalld_records(""), vec![]);
    }

    #[test]
    fn tagged_rules_of_earlier_instances() {
        let nft = "table inet filter { # handle 1\n\tchain input { # handle 1\n\t\ttype filter hook input priority filter; policy drop;\n\t\tiifname \"clat0\" accept comment \"clat run clat0 pid 41\" # handle 7\n\t\tiifname \"clat1\" accept comment \"clat run clat1 pid 42\" # handle 8\n\t\tiifname \"lo\" accept # handle 2\n\t}\n}\ntable ip fw { # handle 2\n\tchain in { # handle 1\n\t\tiifname \"clat0\" accept comment \"clat run clat0 pid 43\" # handle 4\n\t}\n}\n";
        assert_eq!(
            tagged_nft_rules(nft, "clat0"),
            vec![
                TaggedNftRule {
                    family: "inet".into(),
                    table: "filter".into(),
                    chain: "input".into(),
                    handle: 7,
                    pid: 41
                },
                TaggedNftRule {
                    family: "ip".into(),
                    table: "fw".into(),
                    chain: "in".into(),
                    handle: 4,
                    pid: 43
                },
            ]
        );
        assert_eq!(tagged_nft_rules(nft, "clat9"), Vec::new());
        // As iptables 1.8.9 -S prints them (the narrow rule, and the wide
        // one of earlier versions, which must go too).
        let ipt = "-P INPUT DROP\n-A INPUT -s 192.0.0.5/32 -d 192.0.0.4/32 -i clat0 -p tcp -m comment --comment \"clat run clat0 pid 41\" -j ACCEPT\n-A INPUT -i clat1 -m comment --comment \"clat run clat1 pid 42\" -j ACCEPT\n-A INPUT -i lo -j ACCEPT\n";
        let words = |s: &str| s.split(' ').map(str::to_string).collect::<Vec<_>>();
        let mut a41 = words("-s 192.0.0.5/32 -d 192.0.0.4/32 -i clat0 -p tcp -m comment --comment");
        a41.extend([
            "clat run clat0 pid 41".to_string(),
            "-j".into(),
            "ACCEPT".into(),
        ]);
        assert_eq!(tagged_iptables_rules(ipt, "clat0"), vec![(41, a41)]);
        let mut a42 = words("-i clat1 -m comment --comment");
        a42.extend([
            "clat run clat1 pid 42".to_string(),
            "-j".into(),
            "ACCEPT".into(),
        ]);
        assert_eq!(tagged_iptables_rules(ipt, "clat1"), vec![(42, a42)]);
        assert!(tagged_iptables_rules("", "clat0").is_empty());
        assert_eq!(
            split_iptables_args(r#"-m comment --comment "a \"b\" c" -j ACCEPT"#).unwrap(),
            vec!["-m", "comment", "--comment", "a \"b\" c", "-j", "ACCEPT"]
        );
        assert_eq!(split_iptables_args(r#"--comment "open"#), None);
    }

    fn paths() -> [ListenerPath; 2] {
        [
            ListenerPath {
                family: Family::V4,
                nat: "192.0.0.5".parse().unwrap(),
                clat: "192.0.0.4".parse().unwrap(),
            },
            ListenerPath {
                family: Family::V6,
                nat: "2001:db8:c1a7::5".parse().unwrap(),
                clat: "2001:db8:c1a7::4".parse().unwrap(),
            },
        ]
    }

    #[test]
    fn messages_name_the_firewall_and_the_narrow_fix() {
        let b = [
            Blocker::Nft {
                family: "inet".into(),
                table: "filter".into(),
                chain: "input".into(),
                why: "policy drop".into(),
            },
            Blocker::Iptables {
                tool: "iptables-legacy",
                why: "policy DROP".into(),
            },
        ];
        let v4 = &paths()[..1];
        let m = blocked_message("clat0", "dropped", &b, v4);
        assert!(
            m.contains("nftables chain inet filter input (policy drop)"),
            "{m}"
        );
        assert!(
            m.contains("nft insert rule inet filter input iifname \"clat0\" ip saddr 192.0.0.5 ip daddr 192.0.0.4 meta l4proto tcp accept"),
            "{m}"
        );
        assert!(
            m.contains(
                "iptables-legacy -I INPUT -i clat0 -s 192.0.0.5 -d 192.0.0.4 -p tcp -j ACCEPT"
            ),
            "{m}"
        );
        assert!(!m.contains("ip6"), "{m}");
        assert_eq!(
            Blocker::Firewalld.fix_command("clat1", v4),
            "firewall-cmd --add-rich-rule='rule family=\"ipv4\" source address=\"192.0.0.5\" destination address=\"192.0.0.4\" protocol value=\"tcp\" accept'"
        );
        assert!(blocked_message("clat0", "dropped", &[], v4).contains("no nftables"));
    }

    #[test]
    fn one_rule_per_family_a_ruleset_sees() {
        let p = paths();
        let inet = Blocker::Nft {
            family: "inet".into(),
            table: "f".into(),
            chain: "input".into(),
            why: String::new(),
        };
        assert_eq!(
            inet.fix_command("clat0", &p),
            "nft insert rule inet f input iifname \"clat0\" ip saddr 192.0.0.5 ip daddr 192.0.0.4 meta l4proto tcp accept \
             && nft insert rule inet f input iifname \"clat0\" ip6 saddr 2001:db8:c1a7::5 ip6 daddr 2001:db8:c1a7::4 meta l4proto tcp accept"
        );
        let ip6 = Blocker::Nft {
            family: "ip6".into(),
            table: "f".into(),
            chain: "input".into(),
            why: String::new(),
        };
        assert_eq!(
            ip6.fix_command("clat0", &p),
            "nft insert rule ip6 f input iifname \"clat0\" ip6 saddr 2001:db8:c1a7::5 ip6 daddr 2001:db8:c1a7::4 meta l4proto tcp accept"
        );
        let ip6t = Blocker::Iptables {
            tool: "ip6tables-nft",
            why: String::new(),
        };
        assert_eq!(
            ip6t.fix_command("clat0", &p),
            "ip6tables-nft -I INPUT -i clat0 -s 2001:db8:c1a7::5 -d 2001:db8:c1a7::4 -p tcp -j ACCEPT"
        );
    }

    /// `table ip6 filter { chain input { type filter hook input priority 0;
    /// policy drop; } }` written by hand: not ip6tables-nft's `INPUT`, so
    /// nft opens it, whether or not ip6tables-nft could read INPUT.
    #[test]
    fn a_hand_written_ip6_filter_table_is_opened_with_nft() {
        let json = r#"{"nftables": [
 {"metainfo": {"version": "1.0.6", "json_schema_version": 1}},
 {"table": {"family": "ip6", "name": "filter", "handle": 5}},
 {"chain": {"family": "ip6", "table": "filter", "name": "input", "handle": 1,
   "type": "filter", "hook": "input", "prio": 0, "policy": "drop"}}
]}"#;
        let chains = nft_blocking_chains(json, &[Family::V6]).unwrap();
        assert_eq!(chains.len(), 1);
        for read in [false, true] {
            assert!(!left_to_iptables_nft("ip6", "filter", "input", read, read));
        }
        // ip6tables-nft's own chain, read by it: opened through the tool.
        assert!(left_to_iptables_nft("ip6", "filter", "INPUT", false, true));
        // ... but not when the tool could not read it.
        assert!(!left_to_iptables_nft("ip6", "filter", "INPUT", true, false));
        assert!(left_to_iptables_nft("ip", "filter", "INPUT", true, false));
        assert!(!left_to_iptables_nft("ip", "filter", "INPUT", false, true));
        assert!(!left_to_iptables_nft("inet", "filter", "INPUT", true, true));
    }
}
