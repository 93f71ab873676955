//! The IPv4 report of `clat run --report` (issue 17 item 3): the engine's
//! flow events (`docs/flow-events.md`), each start attributed to a local
//! process ([`crate::attribution`]), aggregated per process. Sans-I/O:
//! events, owners and `now` in, a [`ReportDoc`] out.
//!
//! Per process (pid, command, uid; a reused pid is another process, told
//! apart by its start time): flows (by protocol, by destination from a name
//! the relay resolved or from a literal, native IPv4 or NAT64), bytes each
//! way (counted when a flow ends, as `FlowEnd` gives them: whole IPv4
//! packets, headers included), distinct IPv4 destinations and names seen,
//! first and last use. Flows with no owner go to one `unattributed` entry
//! that says why.
//!
//! Bounded: at most [`Limits::processes`] processes (the one used least
//! recently leaves first, its flows counted in `processes_evicted`),
//! [`Limits::destinations`] destinations and [`Limits::names`] names per
//! process (more are counted, not kept), [`Limits::open_flows`] flows
//! waiting for their end (the oldest leaves first; once the engine has
//! dropped events, those older than [`PRESUMED_ENDED_AFTER`] too). Counts
//! run from the
//! start of `clat run`; `--since` selects processes by last use.

use crate::attribution::{Owner, Unattributed};
use clat_engine::{FlowEnd, FlowProto, FlowStart};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::time::Duration;

/// Version of the report's JSON (`docs/report-json.md`).
pub const SCHEMA_VERSION: u32 = 1;

/// The bounds of a [`Recorder`].
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub processes: usize,
    pub destinations: usize,
    pub names: usize,
    pub open_flows: usize,
    /// How long after its start an open flow is presumed ended once the
    /// engine has dropped flow events: the engine's longest idle timeout
    /// as configured (default [`PRESUMED_ENDED_AFTER`]).
    pub presume_ended_after: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            processes: 1024,
            destinations: 64,
            names: 64,
            open_flows: 65536,
            presume_ended_after: PRESUMED_ENDED_AFTER,
        }
    }
}

/// The default of [`Limits::presume_ended_after`]: the engine's default
/// longest idle timeout (TCP established, 2 h 4 min, RFC 5382 REQ-5; UDP
/// and ICMP are shorter). Once the engine has dropped flow events, an open
/// flow older than that may be one whose End was lost, or one active all
/// along: it is presumed ended for the listing (it no longer counts as
/// open, keeps its process in no `--since` and out of no eviction), but it
/// stays known, so that its End, if it comes, still credits its bytes.
/// Without drops no End was lost, and open flows stay open however old.
pub const PRESUMED_ENDED_AFTER: Duration = Duration::from_secs(2 * 3600 + 4 * 60);

/// Longest name kept (RFC 1035 section 2.3.4: 255 octets on the wire, 253
/// characters in presentation form).
const MAX_NAME: usize = 253;

/// Flows and bytes to one IPv4 destination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Destination {
    pub address: Ipv4Addr,
    pub flows: u64,
    pub bytes_up: u64,
    pub bytes_down: u64,
}

/// A DNS name the relay resolved for a flow's destination, and its flows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Name {
    pub name: String,
    pub flows: u64,
}

/// The aggregates of one process (or of the unattributed flows).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Flows started.
    pub flows: u64,
    pub flows_tcp: u64,
    pub flows_udp: u64,
    pub flows_icmp: u64,
    /// Flows started and not ended yet.
    pub open_flows: u64,
    /// IPv4 bytes from the process (ended flows; `docs/flow-events.md`).
    pub bytes_up: u64,
    /// IPv4 bytes to the process (ended flows).
    pub bytes_down: u64,
    /// Flows whose destination came from a name the relay resolved.
    pub flows_by_name: u64,
    /// Flows to an IPv4 literal (or a name resolved elsewhere).
    pub flows_by_literal: u64,
    /// Flows that left through native IPv4 (pass-through).
    pub flows_native: u64,
    /// Flows through the NAT64.
    pub flows_nat64: u64,
    /// First and last use, ms since the Unix epoch (a flow's start or end).
    pub first_use_ms: i64,
    pub last_use_ms: i64,
    /// Distinct destinations, most flows first (at most the limit).
    pub destinations: Vec<Destination>,
    /// Flows to destinations beyond the limit (not listed).
    pub destinations_not_kept: u64,
    pub names: Vec<Name>,
    /// Flows with names beyond the limit (not listed).
    pub names_not_kept: u64,
}

/// One process in the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessReport {
    pub pid: u32,
    pub command: String,
    pub exe: String,
    pub uid: u32,
    #[serde(flatten)]
    pub usage: Usage,
}

/// The flows that no process could be named for.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnattributedReport {
    /// Flows by reason (`socket_not_found`, `process_not_found`,
    /// `lookup_failed`).
    pub reasons: BTreeMap<String, u64>,
    /// Flows by the socket's owner uid, where the kernel named it but no
    /// process could be (`process_not_found`), most flows first; at most
    /// [`Limits::names`] uids.
    pub by_uid: Vec<UidFlows>,
    /// Flows of uids beyond those kept.
    pub by_uid_not_kept: u64,
    #[serde(flatten)]
    pub usage: Usage,
}

/// Flows of one uid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UidFlows {
    pub uid: u32,
    pub flows: u64,
}

/// What `clat report` prints (`--json`: this document).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportDoc {
    pub schema_version: u32,
    /// When the report was made, ms since the Unix epoch.
    pub generated_ms: i64,
    /// When recording started (`clat run` start).
    pub recording_since_ms: i64,
    /// `--since` in seconds, `null` without it: then only processes used
    /// since `generated_ms - since`, or with flows still open, are listed.
    pub since_s: Option<u64>,
    /// Flows started since recording started (every process).
    pub flows_recorded: u64,
    /// Processes dropped to stay within the bound, and their flows.
    pub processes_evicted: u64,
    pub flows_of_evicted_processes: u64,
    /// Ends whose start was never seen (dropped by the engine's queue, or
    /// the flow left the open-flow table).
    pub unmatched_ends: u64,
    /// Open flows presumed ended because the engine dropped flow events
    /// and they started longer ago than the engine's longest idle timeout
    /// ([`Limits::presume_ended_after`]), whose End has not come since.
    #[serde(default)]
    pub open_flows_presumed_ended: u64,
    /// Events the engine dropped because the report fell behind
    /// (`flow_events_dropped`).
    pub events_dropped: u64,
    /// Processes, most recently used first.
    pub processes: Vec<ProcessReport>,
    /// `null` when every flow (of the period) had an owner.
    pub unattributed: Option<UnattributedReport>,
}

/// Aggregates as kept (maps; the report lists them sorted).
#[derive(Debug, Default)]
struct Acc {
    usage: Usage,
    dests: HashMap<Ipv4Addr, Destination>,
    names: HashMap<String, u64>,
}

impl Acc {
    fn start(&mut self, s: &FlowStart, lim: &Limits) {
        let u = &mut self.usage;
        if u.flows == 0 {
            u.first_use_ms = s.at_ms;
        }
        u.flows += 1;
        match s.proto {
            FlowProto::Tcp => u.flows_tcp += 1,
            FlowProto::Udp => u.flows_udp += 1,
            FlowProto::Icmp => u.flows_icmp += 1,
        }
        u.open_flows += 1;
        if s.native_ipv4 {
            u.flows_native += 1;
        } else {
            u.flows_nat64 += 1;
        }
        u.last_use_ms = u.last_use_ms.max(s.at_ms);
        let dst = *s.dst.ip();
        let room = self.dests.len() < lim.destinations;
        match self.dests.get_mut(&dst) {
            Some(d) => d.flows += 1,
            None if room => {
                self.dests.insert(
                    dst,
                    Destination {
                        address: dst,
                        flows: 1,
                        bytes_up: 0,
                        bytes_down: 0,
                    },
                );
            }
            None => u.destinations_not_kept += 1,
        }
        match s.name.as_deref().filter(|n| !n.is_empty()) {
            Some(n) => {
                u.flows_by_name += 1;
                let n = truncate(n, MAX_NAME);
                let room = self.names.len() < lim.names;
                match self.names.get_mut(n) {
                    Some(c) => *c += 1,
                    None if room => {
                        self.names.insert(n.to_string(), 1);
                    }
                    None => u.names_not_kept += 1,
                }
            }
            None => u.flows_by_literal += 1,
        }
    }

    /// `counted_open`: the flow still counts in `open_flows` (not presumed
    /// ended).
    fn end(&mut self, e: &FlowEnd, dst: Ipv4Addr, counted_open: bool) {
        let u = &mut self.usage;
        if counted_open {
            u.open_flows = u.open_flows.saturating_sub(1);
        }
        u.bytes_up = u.bytes_up.saturating_add(e.bytes_up);
        u.bytes_down = u.bytes_down.saturating_add(e.bytes_down);
        u.last_use_ms = u.last_use_ms.max(e.at_ms);
        if let Some(d) = self.dests.get_mut(&dst) {
            d.bytes_up = d.bytes_up.saturating_add(e.bytes_up);
            d.bytes_down = d.bytes_down.saturating_add(e.bytes_down);
        }
    }

    fn usage(&self) -> Usage {
        let mut u = self.usage.clone();
        u.destinations = self.dests.values().cloned().collect();
        u.destinations
            .sort_by(|a, b| b.flows.cmp(&a.flows).then(a.address.cmp(&b.address)));
        u.names = self
            .names
            .iter()
            .map(|(n, f)| Name {
                name: n.clone(),
                flows: *f,
            })
            .collect();
        u.names
            .sort_by(|a, b| b.flows.cmp(&a.flows).then(a.name.cmp(&b.name)));
        u
    }
}

/// At most `max` bytes of `s`, cut at a character boundary.
fn truncate(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Who a process is: pid and start time (a reused pid is another process).
type ProcKey = (u32, u64);

/// A flow waiting for its end: whose it is and where it goes.
#[derive(Debug, Clone, Copy)]
struct Open {
    /// `None`: unattributed.
    owner: Option<ProcKey>,
    dst: Ipv4Addr,
    started_ms: i64,
    /// Presumed ended ([`Limits::presume_ended_after`]): no longer counted
    /// in its owner's `open_flows`.
    presumed: bool,
}

/// The aggregation: feed it each flow's start with its owner and each end.
#[derive(Debug)]
pub struct Recorder {
    limits: Limits,
    since_ms: i64,
    procs: HashMap<ProcKey, (Owner, Acc)>,
    unattributed: Acc,
    reasons: BTreeMap<&'static str, u64>,
    uids: BTreeMap<u32, u64>,
    uids_not_kept: u64,
    /// By flow id: ids grow, so the first entry is the oldest.
    open: BTreeMap<u64, Open>,
    flows: u64,
    evicted: u64,
    evicted_flows: u64,
    unmatched_ends: u64,
    /// The engine's `flow_events_dropped` as last told
    /// ([`Recorder::note_events_dropped`]).
    events_dropped: u64,
    /// Open flows presumed ended ([`Limits::presume_ended_after`]).
    presumed_ended: u64,
    /// Every open flow with an id up to this one has been looked at for
    /// presuming (ids grow with time).
    presumed_upto: u64,
}

impl Recorder {
    /// An empty recorder; recording starts at `now_ms`.
    pub fn new(limits: Limits, now_ms: i64) -> Recorder {
        Recorder {
            limits,
            since_ms: now_ms,
            procs: HashMap::new(),
            unattributed: Acc::default(),
            reasons: BTreeMap::new(),
            uids: BTreeMap::new(),
            uids_not_kept: 0,
            open: BTreeMap::new(),
            flows: 0,
            evicted: 0,
            evicted_flows: 0,
            events_dropped: 0,
            presumed_ended: 0,
            presumed_upto: 0,
            unmatched_ends: 0,
        }
    }

    /// A flow started, owned by `owner` (or not, and why).
    pub fn flow_started(&mut self, s: &FlowStart, owner: Result<Owner, Unattributed>) {
        self.flows += 1;
        let key = match owner {
            Ok(o) => {
                let key = (o.pid, o.start_ticks);
                if !self.procs.contains_key(&key) && self.procs.len() >= self.limits.processes {
                    self.evict_least_recent();
                }
                let (_, acc) = self.procs.entry(key).or_insert_with(|| (o, Acc::default()));
                acc.start(s, &self.limits);
                Some(key)
            }
            Err(why) => {
                *self.reasons.entry(why.as_str()).or_default() += 1;
                if let Unattributed::ProcessNotFound { uid } = why {
                    let room = self.uids.len() < self.limits.names;
                    match self.uids.get_mut(&uid) {
                        Some(n) => *n += 1,
                        None if room => {
                            self.uids.insert(uid, 1);
                        }
                        None => self.uids_not_kept += 1,
                    }
                }
                self.unattributed.start(s, &self.limits);
                None
            }
        };
        self.presume_lost_ends_ended(s.at_ms);
        if self.open.len() >= self.limits.open_flows {
            // Its end, if it comes, counts as unmatched; its owner no
            // longer waits for it.
            if let Some((_, old)) = self.open.pop_first() {
                if !old.presumed {
                    self.forget_open(&old);
                }
            }
        }
        self.open.insert(
            s.id,
            Open {
                owner: key,
                dst: *s.dst.ip(),
                started_ms: s.at_ms,
                presumed: false,
            },
        );
    }

    /// Its owner no longer waits for the flow's end.
    fn forget_open(&mut self, old: &Open) {
        let acc = match old.owner {
            Some(k) => self.procs.get_mut(&k).map(|(_, a)| a),
            None => Some(&mut self.unattributed),
        };
        if let Some(a) = acc {
            a.usage.open_flows = a.usage.open_flows.saturating_sub(1);
        }
    }

    /// The engine's `flow_events_dropped` is now `n` (it only grows); at
    /// `now_ms`, open flows are presumed ended as
    /// [`Limits::presume_ended_after`] says. The report thread calls it
    /// after each batch, and the report before it is made.
    pub fn note_events_dropped(&mut self, n: u64, now_ms: i64) {
        self.events_dropped = self.events_dropped.max(n);
        self.presume_lost_ends_ended(now_ms);
    }

    /// With events dropped, presumes ended the open flows that started more
    /// than the horizon before `now_ms` (ids grow with time, so they are
    /// the first entries not yet looked at): each leaves its owner's
    /// `open_flows` and is counted in `presumed_ended`, and stays known so
    /// that its End, if it comes, still credits its bytes.
    fn presume_lost_ends_ended(&mut self, now_ms: i64) {
        if self.events_dropped == 0 {
            return;
        }
        let horizon =
            i64::try_from(self.limits.presume_ended_after.as_millis()).unwrap_or(i64::MAX);
        let mut newly = Vec::new();
        for (id, o) in self.open.range_mut(self.presumed_upto.saturating_add(1)..) {
            if now_ms.saturating_sub(o.started_ms) <= horizon {
                break;
            }
            o.presumed = true;
            newly.push(o.owner);
            self.presumed_upto = *id;
        }
        for owner in newly {
            self.forget_open(&Open {
                owner,
                dst: Ipv4Addr::UNSPECIFIED,
                started_ms: 0,
                presumed: true,
            });
            self.presumed_ended += 1;
        }
    }

    /// A flow ended: its bytes go to its owner.
    pub fn flow_ended(&mut self, e: &FlowEnd) {
        let Some(open) = self.open.remove(&e.id) else {
            self.unmatched_ends += 1;
            return;
        };
        // A flow presumed ended: its End was not lost after all.
        let counted_open = !open.presumed;
        if open.presumed {
            self.presumed_ended = self.presumed_ended.saturating_sub(1);
        }
        match open.owner {
            Some(k) => match self.procs.get_mut(&k) {
                Some((_, acc)) => acc.end(e, open.dst, counted_open),
                // The process was evicted meanwhile.
                None => self.unmatched_ends += 1,
            },
            None => self.unattributed.end(e, open.dst, counted_open),
        }
    }

    fn evict_least_recent(&mut self) {
        let victim = self
            .procs
            .iter()
            .min_by_key(|(_, (_, a))| (a.usage.open_flows > 0, a.usage.last_use_ms))
            .map(|(k, _)| *k);
        if let Some(k) = victim {
            if let Some((_, acc)) = self.procs.remove(&k) {
                self.evicted += 1;
                self.evicted_flows += acc.usage.flows;
            }
        }
    }

    /// The report at `now_ms`; with `since`, only the processes used since
    /// `now_ms - since` or with flows still open. `events_dropped` is the
    /// engine's `flow_events_dropped`.
    pub fn report(&self, now_ms: i64, since: Option<Duration>, events_dropped: u64) -> ReportDoc {
        let from =
            since.map(|d| now_ms.saturating_sub(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)));
        let in_period = |u: &Usage| match from {
            None => true,
            Some(f) => u.open_flows > 0 || u.last_use_ms >= f,
        };
        let mut processes: Vec<ProcessReport> = self
            .procs
            .values()
            .filter(|(_, a)| in_period(&a.usage))
            .map(|(o, a)| ProcessReport {
                pid: o.pid,
                command: o.command.clone(),
                exe: o.exe.clone(),
                uid: o.uid,
                usage: a.usage(),
            })
            .collect();
        processes.sort_by(|a, b| {
            b.usage
                .last_use_ms
                .cmp(&a.usage.last_use_ms)
                .then(a.pid.cmp(&b.pid))
        });
        let unattributed = (self.unattributed.usage.flows > 0
            && in_period(&self.unattributed.usage))
        .then(|| UnattributedReport {
            reasons: self
                .reasons
                .iter()
                .map(|(r, n)| (r.to_string(), *n))
                .collect(),
            by_uid: {
                let mut v: Vec<UidFlows> = self
                    .uids
                    .iter()
                    .map(|(&uid, &flows)| UidFlows { uid, flows })
                    .collect();
                v.sort_by(|a, b| b.flows.cmp(&a.flows).then(a.uid.cmp(&b.uid)));
                v
            },
            by_uid_not_kept: self.uids_not_kept,
            usage: self.unattributed.usage(),
        });
        ReportDoc {
            schema_version: SCHEMA_VERSION,
            generated_ms: now_ms,
            recording_since_ms: self.since_ms,
            since_s: since.map(|d| d.as_secs()),
            flows_recorded: self.flows,
            processes_evicted: self.evicted,
            flows_of_evicted_processes: self.evicted_flows,
            unmatched_ends: self.unmatched_ends,
            open_flows_presumed_ended: self.presumed_ended,
            events_dropped,
            processes,
            unattributed,
        }
    }
}

impl ReportDoc {
    /// One line of JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Parses the document `clat run` sent; an error says what is wrong.
    pub fn from_json(text: &str) -> Result<ReportDoc, String> {
        let doc: ReportDoc = serde_json::from_str(text).map_err(|e| e.to_string())?;
        if doc.schema_version != SCHEMA_VERSION {
            return Err(format!(
                "report schema_version {} (this clat reads {SCHEMA_VERSION})",
                doc.schema_version
            ));
        }
        Ok(doc)
    }

    /// A table for people: one row per process, then its destinations and
    /// names.
    pub fn to_human(&self) -> String {
        let mut out = String::new();
        let period = match self.since_s {
            Some(s) => format!(
                "used in the last {}",
                clat_discovery::fmt_duration(Duration::from_secs(s))
            ),
            None => "since recording started".to_string(),
        };
        let _ = writeln!(
            out,
            "IPv4 use by process, {period} ({} flows recorded, {} ago)",
            self.flows_recorded,
            ago(self.generated_ms, self.recording_since_ms)
        );
        let _ = writeln!(
            out,
            "{:>7} {:>6} {:<15} {:>6} {:>5} {:>5} {:>5} {:>10} {:>10} {:>6} {:>9}",
            "PID",
            "UID",
            "COMMAND",
            "FLOWS",
            "TCP",
            "UDP",
            "ICMP",
            "UP",
            "DOWN",
            "NAMED",
            "LAST USE"
        );
        let mut row = |pid: String, uid: String, cmd: &str, u: &Usage| {
            let _ = writeln!(
                out,
                "{pid:>7} {uid:>6} {cmd:<15} {:>6} {:>5} {:>5} {:>5} {:>10} {:>10} {:>6} {:>9}",
                u.flows,
                u.flows_tcp,
                u.flows_udp,
                u.flows_icmp,
                bytes(u.bytes_up),
                bytes(u.bytes_down),
                u.flows_by_name,
                ago(self.generated_ms, u.last_use_ms),
            );
            let mut dests: Vec<String> = u
                .destinations
                .iter()
                .map(|d| d.address.to_string())
                .collect();
            if u.destinations_not_kept > 0 {
                dests.push(format!("+{} flows elsewhere", u.destinations_not_kept));
            }
            let _ = writeln!(out, "{:>15} to {}", "", dests.join(", "));
            if !u.names.is_empty() {
                let names: Vec<&str> = u.names.iter().map(|n| n.name.as_str()).collect();
                let _ = writeln!(out, "{:>15} names {}", "", names.join(", "));
            }
            if u.flows_native > 0 {
                let _ = writeln!(
                    out,
                    "{:>15} native IPv4 {} of {} flows",
                    "", u.flows_native, u.flows
                );
            }
        };
        for p in &self.processes {
            row(p.pid.to_string(), p.uid.to_string(), &p.command, &p.usage);
        }
        if let Some(un) = &self.unattributed {
            row("-".into(), "-".into(), "(unattributed)", &un.usage);
            let why: Vec<String> = un.reasons.iter().map(|(r, n)| format!("{r} {n}")).collect();
            let _ = writeln!(out, "{:>15} why: {}", "", why.join(", "));
            if !un.by_uid.is_empty() {
                let uids: Vec<String> = un
                    .by_uid
                    .iter()
                    .map(|u| format!("uid {}: {} flows", u.uid, u.flows))
                    .collect();
                let _ = writeln!(out, "{:>15} sockets of {}", "", uids.join(", "));
            }
        }
        if self.processes.is_empty() && self.unattributed.is_none() {
            let _ = writeln!(out, "(no IPv4 flows)");
        }
        for (what, n) in [
            (
                "events dropped by the engine (report fell behind)",
                self.events_dropped,
            ),
            ("processes evicted (bound reached)", self.processes_evicted),
            ("ends without a start", self.unmatched_ends),
            (
                "open flows presumed ended (events dropped)",
                self.open_flows_presumed_ended,
            ),
        ] {
            if n > 0 {
                let _ = writeln!(out, "{what}: {n}");
            }
        }
        out
    }
}

/// `1.5 MiB`, `512 B`.
fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < UNITS.len() {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[i])
    }
}

/// `3s`, `2m5s` before `now_ms`.
fn ago(now_ms: i64, then_ms: i64) -> String {
    let ms = u64::try_from(now_ms.saturating_sub(then_ms)).unwrap_or(0);
    clat_discovery::fmt_duration(Duration::from_secs(ms / 1000))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clat_engine::FlowEndReason;
    use std::net::SocketAddrV4;

    fn owner(pid: u32, command: &str) -> Owner {
        Owner {
            pid,
            command: command.into(),
            exe: format!("/usr/bin/{command}"),
            uid: 1000,
            start_ticks: 100 + u64::from(pid),
        }
    }

    fn start(id: u64, at_ms: i64, proto: FlowProto, dst: &str, name: Option<&str>) -> FlowStart {
        FlowStart {
            id,
            at_ms,
            proto,
            src: SocketAddrV4::new(Ipv4Addr::new(192, 0, 0, 4), 40000 + id as u16),
            dst: dst.parse().unwrap(),
            name: name.map(str::to_string),
            native_ipv4: false,
        }
    }

    fn end(id: u64, at_ms: i64, up: u64, down: u64) -> FlowEnd {
        FlowEnd {
            id,
            at_ms,
            bytes_up: up,
            bytes_down: down,
            how: FlowEndReason::Closed,
        }
    }

    /// A start whose End the engine's full queue dropped: without drops
    /// the flow stays open however old; once drops are known it is presumed
    /// ended PRESUMED_ENDED_AFTER after its start, and its process leaves
    /// `--since` and eviction's protection; a younger open flow stays.
    #[test]
    fn a_lost_end_is_presumed_after_the_longest_timeout_once_events_were_dropped() {
        let horizon = PRESUMED_ENDED_AFTER.as_millis() as i64;
        let mut r = Recorder::new(Limits::default(), 0);
        r.flow_started(
            &start(1, 1_000, FlowProto::Tcp, "192.0.2.1:80", None),
            Ok(owner(10, "lost")),
        );
        let late = 1_000 + horizon + 60_000;
        r.flow_started(
            &start(2, late - 1_000, FlowProto::Udp, "192.0.2.2:53", None),
            Ok(owner(11, "young")),
        );
        let since = Some(Duration::from_secs(1));
        // No drops: both open, both listed under --since.
        r.note_events_dropped(0, late);
        let d = r.report(late, since, 0);
        let pids: Vec<u32> = d.processes.iter().map(|p| p.pid).collect();
        assert_eq!(pids, vec![11, 10]);
        assert_eq!(d.open_flows_presumed_ended, 0);
        // Drops: the old one is presumed ended, the young one is not.
        r.note_events_dropped(1, late);
        let d = r.report(late, since, 1);
        let pids: Vec<u32> = d.processes.iter().map(|p| p.pid).collect();
        assert_eq!(pids, vec![11]);
        assert_eq!(d.open_flows_presumed_ended, 1);
        let all = r.report(late, None, 1);
        let lost = all.processes.iter().find(|p| p.pid == 10).unwrap();
        assert_eq!(lost.usage.open_flows, 0);
        assert!(all
            .to_human()
            .contains("open flows presumed ended (events dropped)"));
        // Exactly at the horizon it is still open.
        let mut r = Recorder::new(Limits::default(), 0);
        r.flow_started(
            &start(1, 0, FlowProto::Tcp, "192.0.2.1:80", None),
            Ok(owner(10, "edge")),
        );
        r.note_events_dropped(5, horizon);
        assert_eq!(r.report(horizon, since, 5).processes.len(), 1);
        // Its End, if it comes after all (a flow active all along), still
        // credits its bytes, and it is no longer presumed.
        let mut r = Recorder::new(Limits::default(), 0);
        r.flow_started(
            &start(1, 0, FlowProto::Tcp, "192.0.2.1:80", None),
            Ok(owner(10, "x")),
        );
        r.note_events_dropped(1, horizon + 1);
        assert_eq!(r.report(horizon + 1, None, 1).open_flows_presumed_ended, 1);
        r.flow_ended(&end(1, horizon + 2, 10, 20));
        let d = r.report(horizon + 3, None, 1);
        assert_eq!((d.unmatched_ends, d.open_flows_presumed_ended), (0, 0));
        let u = &d.processes[0].usage;
        assert_eq!((u.bytes_up, u.bytes_down, u.open_flows), (10, 20, 0));
        // The horizon is the configured one (a 1-year UDP timeout, say).
        let long = Limits {
            presume_ended_after: Duration::from_secs(365 * 24 * 3600),
            ..Limits::default()
        };
        let mut r = Recorder::new(long, 0);
        r.flow_started(
            &start(1, 0, FlowProto::Udp, "192.0.2.1:53", None),
            Ok(owner(10, "y")),
        );
        r.note_events_dropped(1, horizon + 1);
        assert_eq!(r.report(horizon + 1, None, 1).open_flows_presumed_ended, 0);
    }

    fn doc_human(r: &Recorder) -> String {
        r.report(100, None, 0).to_human()
    }

    fn lim() -> Limits {
        Limits::default()
    }

    #[test]
    fn aggregates_per_process_with_destinations_names_and_bytes() {
        let mut r = Recorder::new(lim(), 1_000);
        let curl = owner(10, "curl");
        r.flow_started(
            &start(
                1,
                2_000,
                FlowProto::Tcp,
                "203.0.113.10:80",
                Some("v4only.lab.example"),
            ),
            Ok(curl.clone()),
        );
        r.flow_started(
            &start(2, 3_000, FlowProto::Tcp, "203.0.113.10:80", None),
            Ok(curl.clone()),
        );
        let mut native = start(3, 4_000, FlowProto::Udp, "198.51.100.7:53", None);
        native.native_ipv4 = true;
        r.flow_started(&native, Ok(curl));
        r.flow_started(
            &start(4, 4_500, FlowProto::Icmp, "203.0.113.11:0", None),
            Ok(owner(20, "ping")),
        );
        r.flow_ended(&end(1, 5_000, 120, 1_048_000));
        r.flow_ended(&end(2, 6_000, 100, 200));
        r.flow_ended(&end(4, 7_000, 252, 252));
        let doc = r.report(10_000, None, 3);
        assert_eq!(doc.flows_recorded, 4);
        assert_eq!(doc.events_dropped, 3);
        assert_eq!(doc.processes.len(), 2);
        // Most recently used first: ping (7 s) before curl (6 s).
        let (ping, curl) = (&doc.processes[0], &doc.processes[1]);
        assert_eq!((ping.pid, ping.command.as_str()), (20, "ping"));
        assert_eq!(ping.usage.flows_icmp, 1);
        assert_eq!((ping.usage.bytes_up, ping.usage.bytes_down), (252, 252));
        assert_eq!(curl.command, "curl");
        assert_eq!(curl.exe, "/usr/bin/curl");
        assert_eq!(curl.uid, 1000);
        let u = &curl.usage;
        assert_eq!(
            (u.flows, u.flows_tcp, u.flows_udp, u.flows_icmp),
            (3, 2, 1, 0)
        );
        assert_eq!(u.open_flows, 1, "flow 3 has not ended");
        assert_eq!((u.bytes_up, u.bytes_down), (220, 1_048_200));
        assert_eq!((u.flows_by_name, u.flows_by_literal), (1, 2));
        assert_eq!((u.flows_native, u.flows_nat64), (1, 2));
        assert_eq!((u.first_use_ms, u.last_use_ms), (2_000, 6_000));
        assert_eq!(
            u.destinations,
            vec![
                Destination {
                    address: Ipv4Addr::new(203, 0, 113, 10),
                    flows: 2,
                    bytes_up: 220,
                    bytes_down: 1_048_200
                },
                Destination {
                    address: Ipv4Addr::new(198, 51, 100, 7),
                    flows: 1,
                    bytes_up: 0,
                    bytes_down: 0
                },
            ]
        );
        assert_eq!(
            u.names,
            vec![Name {
                name: "v4only.lab.example".into(),
                flows: 1
            }]
        );
        assert!(doc.unattributed.is_none());
        // The JSON reads back as the same document.
        assert_eq!(ReportDoc::from_json(&doc.to_json()).unwrap(), doc);
        let human = doc.to_human();
        assert!(
            human.contains("curl") && human.contains("203.0.113.10, 198.51.100.7"),
            "{human}"
        );
        assert!(human.contains("names v4only.lab.example"), "{human}");
        assert!(human.contains("1023.6 KiB"), "{human}");
    }

    #[test]
    fn unattributed_flows_say_why_and_get_their_bytes() {
        let mut r = Recorder::new(lim(), 0);
        r.flow_started(
            &start(1, 10, FlowProto::Udp, "203.0.113.10:7", None),
            Err(Unattributed::SocketNotFound),
        );
        r.flow_started(
            &start(2, 20, FlowProto::Icmp, "203.0.113.10:0", None),
            Err(Unattributed::SocketNotFound),
        );
        r.flow_started(
            &start(3, 30, FlowProto::Tcp, "203.0.113.10:80", None),
            Err(Unattributed::ProcessNotFound { uid: 1000 }),
        );
        r.flow_ended(&end(1, 40, 30, 60));
        // An end without a start (its start was dropped) is counted.
        r.flow_ended(&end(99, 50, 1, 1));
        let doc = r.report(100, None, 0);
        assert!(doc.processes.is_empty());
        let un = doc.unattributed.unwrap();
        assert_eq!(un.usage.flows, 3);
        assert_eq!((un.usage.bytes_up, un.usage.bytes_down), (30, 60));
        assert_eq!(un.reasons.get("socket_not_found"), Some(&2));
        assert_eq!(un.reasons.get("process_not_found"), Some(&1));
        assert_eq!(
            un.by_uid,
            vec![UidFlows {
                uid: 1000,
                flows: 1
            }]
        );
        let human = doc_human(&r);
        assert!(human.contains("sockets of uid 1000: 1 flows"), "{human}");
        assert_eq!(doc.unmatched_ends, 1);
    }

    #[test]
    fn since_selects_by_last_use_or_open_flows() {
        let mut r = Recorder::new(lim(), 0);
        r.flow_started(
            &start(1, 1_000, FlowProto::Tcp, "203.0.113.10:80", None),
            Ok(owner(1, "old")),
        );
        r.flow_ended(&end(1, 2_000, 1, 1));
        r.flow_started(
            &start(2, 1_000, FlowProto::Tcp, "203.0.113.10:80", None),
            Ok(owner(2, "long")),
        );
        r.flow_started(
            &start(3, 590_000, FlowProto::Udp, "203.0.113.10:53", None),
            Ok(owner(3, "new")),
        );
        r.flow_ended(&end(3, 591_000, 1, 1));
        let doc = r.report(600_000, Some(Duration::from_secs(60)), 0);
        let names: Vec<&str> = doc.processes.iter().map(|p| p.command.as_str()).collect();
        // "old" last used 598 s ago is out; "long" has a flow open since.
        assert_eq!(names, vec!["new", "long"]);
        assert_eq!(doc.since_s, Some(60));
        assert_eq!(r.report(600_000, None, 0).processes.len(), 3);
        // At the boundary: used exactly `since` ago is in.
        assert_eq!(
            r.report(62_000, Some(Duration::from_secs(60)), 0)
                .processes
                .len(),
            3
        );
        assert_eq!(
            r.report(62_001, Some(Duration::from_secs(60)), 0)
                .processes
                .len(),
            2
        );
    }

    #[test]
    fn bounds_hold_and_what_falls_out_is_counted() {
        let l = Limits {
            processes: 2,
            destinations: 2,
            names: 1,
            open_flows: 3,
            presume_ended_after: PRESUMED_ENDED_AFTER,
        };
        let mut r = Recorder::new(l, 0);
        let a = owner(1, "a");
        r.flow_started(
            &start(1, 10, FlowProto::Tcp, "203.0.113.1:80", Some("one.example")),
            Ok(a.clone()),
        );
        r.flow_started(
            &start(2, 20, FlowProto::Tcp, "203.0.113.2:80", Some("two.example")),
            Ok(a.clone()),
        );
        r.flow_started(
            &start(3, 30, FlowProto::Tcp, "203.0.113.3:80", None),
            Ok(a.clone()),
        );
        let doc = r.report(40, None, 0);
        let u = &doc.processes[0].usage;
        assert_eq!(u.destinations.len(), 2);
        assert_eq!(u.destinations_not_kept, 1);
        assert_eq!(u.names.len(), 1);
        assert_eq!(u.names_not_kept, 1);
        // A fourth open flow pushes the oldest (1) out of the open table:
        // its end is unmatched.
        r.flow_started(
            &start(4, 40, FlowProto::Tcp, "203.0.113.1:80", None),
            Ok(owner(2, "b")),
        );
        r.flow_ended(&end(1, 50, 5, 5));
        assert_eq!(r.report(60, None, 0).unmatched_ends, 1);
        for id in 2..=4 {
            r.flow_ended(&end(id, 60 + id as i64, 1, 1));
        }
        // A third process evicts the least recently used one ("b", last
        // use 64, is newer than "a", 63).
        r.flow_started(
            &start(5, 70, FlowProto::Udp, "203.0.113.9:53", None),
            Ok(owner(3, "c")),
        );
        let doc = r.report(80, None, 0);
        let names: Vec<&str> = doc.processes.iter().map(|p| p.command.as_str()).collect();
        assert_eq!(names, vec!["c", "b"]);
        assert_eq!(doc.processes_evicted, 1);
        assert_eq!(doc.flows_of_evicted_processes, 3);
        // A reused pid is another process.
        let mut again = owner(3, "c");
        again.start_ticks += 1;
        r.flow_started(
            &start(6, 90, FlowProto::Udp, "203.0.113.9:53", None),
            Ok(again),
        );
        assert_eq!(r.report(100, None, 0).processes_evicted, 2);
    }

    #[test]
    fn a_long_name_is_cut_at_a_character_boundary() {
        let long = "é".repeat(200);
        let cut = truncate(&long, MAX_NAME);
        assert!(cut.len() <= MAX_NAME && cut.len() == 252, "{}", cut.len());
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
    }

    #[test]
    fn a_foreign_document_is_an_error() {
        assert!(ReportDoc::from_json("{}").is_err());
        let mut doc = Recorder::new(lim(), 0).report(0, None, 0);
        doc.schema_version = 2;
        assert!(ReportDoc::from_json(&doc.to_json())
            .unwrap_err()
            .contains("schema_version 2"));
    }
}
