//! The TCP flow core, sans I/O: the NAT table of the kernel-terminated TCP
//! trick (see [`crate::nat_tcp`]) and every decision of a flow's life. It
//! takes `now` and parsed inputs (app and listener segments, the upstream
//! connect's outcome, accept(), the close of a relay, timers) and queues
//! [`Action`]s; `Loop` (event_loop/tcp.rs) owns the sockets, the poll and
//! the TUN, executes the actions and reports back. Models: quinn-proto's
//! `handle_timeout`/`poll_timeout`, Firezone's `nat_table.rs`.
//!
//! A flow's life (`np` is its NAT port):
//! 1. The app's SYN creates it in [`FlowState::Connecting`]: the SYN is
//!    held ([`HeldSyn`]) and the upstream connect starts at once
//!    ([`Action::Connect`]); the listener sees nothing yet, so connect()
//!    in the app resolves as the real path does. Retransmitted SYNs are
//!    absorbed (the latest one is kept: same ISN, newer timestamp).
//! 2. The upstream connect resolves ([`TcpFlows::upstream_connected`] /
//!    [`TcpFlows::upstream_failed`]): success injects the held SYN into
//!    the listener ([`FlowState::SynInjected`]), whose kernel answers the
//!    SYN-ACK; refusal (ECONNREFUSED: a RST or ICMPv6 port unreachable)
//!    answers the SYN with RST+ACK; ICMPv6 unreachable answers it with the
//!    matching ICMPv4 Destination Unreachable (net 3/0, host 3/1, admin
//!    3/13, RFC 7915 section 5.2's mapping as seen through the socket's
//!    errno); a timeout answers nothing (silence stays silence). A failed
//!    flow frees its entry at once.
//! 3. accept() pairs the accepted socket with the connected upstream one
//!    ([`FlowState::Established`]).
//! 4. The relay ends: [`FlowState::Closing`] for a grace time, or the
//!    TIME_WAIT hold when the listener side may sit in TIME_WAIT (fast
//!    close: see nat_tcp's module doc).
//!
//! Idle timers: every packet of a flow on the TUN, in either direction,
//! and every relayed byte refreshes `last` (a timestamp); the deadline
//! re-arms lazily when it fires early. Never-completed flows (Connecting,
//! SynInjected) expire after the transitory timeout, established ones
//! after the established timeout (RFC 5382 REQ-5, RFC 7857).
//!
//! Keepalive rule: an app segment that carries only ACK, at most one byte,
//! and whose sequence number is one below the next one the app has used
//! (`seq + 1 == app_next`: the classic probe, RFC 9293 section 3.8.4,
//! which Linux, BSD and Windows send) is a keepalive probe, unless the
//! listener side's last ACK closed the window: a zero-window probe is the
//! same segment (Linux's tcp_xmit_probe_skb sends both), and taking its
//! backed-off retries for keepalives would pin the upstream interval at
//! the minimum for the connection's life. The time
//! between two probes is the app's interval; the upstream socket then
//! gets SO_KEEPALIVE with TCP_KEEPIDLE = TCP_KEEPINTVL = that interval
//! clamped to [`KEEPALIVE_MIN`]..=[`KEEPALIVE_MAX`] ([`Action::Keepalive`]),
//! re-set when the app's interval shrinks by more than a quarter.
//!
//! Fairness: when the table is full (the caller says so: the cap is on
//! all protocols together), a new SYN first evicts the oldest flow that
//! never completed (Connecting or SynInjected), as Linux conntrack's
//! early_drop does, and is refused only when there is none.

use crate::flow_events::{FlowEndReason, Tally};
use crate::ipv4_path::Ipv4Path;
use crate::packet::checksum;
use crate::port_table::{KeyIndex, PortTable};
use crate::stats::Counters;
use crate::timers::{TimerKey, Timers};
use clat_xlat::wire::{
    Icmpv4DstUnreachable, Icmpv6DstUnreachable, TcpFlags, TcpSegment, TcpSeqNumber,
};
use std::collections::{BTreeSet, VecDeque};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::num::NonZeroU32;
use std::time::{Duration, Instant};

/// How long a closed TCP flow's NAT entry keeps translating late segments
/// (the final ACK of a passive close, a retransmitted FIN): both ends are
/// in this host, so they come within milliseconds.
pub const CLOSE_GRACE: Duration = Duration::from_secs(2);
/// How long the NAT port of a flow whose listener side may sit in
/// TIME_WAIT stays unused: Linux's TCP_TIMEWAIT_LEN. A new flow on that
/// tuple sooner would have its SYN refused by PAWS (see nat_tcp).
pub const TIME_WAIT_HOLD: Duration = Duration::from_secs(60);
/// Shortest upstream keepalive interval. The app's own probes only cross
/// the TUN, but upstream probes wake the phone's radio: a NAT64 keeps TCP
/// state for minutes at the least (RFC 6146 section 4: 2 h 4 min
/// established, 4 min transitory), so probing it more often than every
/// 10 s buys nothing and costs battery.
pub const KEEPALIVE_MIN: Duration = Duration::from_secs(10);
/// Longest upstream keepalive interval: Linux's default TCP_KEEPIDLE.
pub const KEEPALIVE_MAX: Duration = Duration::from_secs(7200);
/// Largest SYN held: IPv4 header with options (60) and TCP header with
/// options (60), or the IPv6 fixed header (40, extension headers are not
/// kept) and TCP's; a SYN's payload (TCP Fast Open data) is not kept, the
/// listener would not take it either (no TFO on it), so the app sends it
/// again after the handshake.
pub const HELD_SYN_MAX: usize = 120;

/// App-side key: (app source port, destination, destination port). The
/// destination's family is the flow's: IPv4 and IPv6 flows share one table,
/// one NAT port space and one cap.
pub type NatKey = (u16, IpAddr, u16);

const FIRST_PORT: u16 = 1024;

/// The app's SYN as it came from the TUN (addresses not rewritten), its
/// payload cut off (and for IPv6 its extension headers: the listener needs
/// none). Quoted by ICMP errors, answered by RSTs, injected into the
/// listener once the upstream connect succeeds.
#[derive(Clone, PartialEq, Eq)]
pub struct HeldSyn {
    buf: [u8; HELD_SYN_MAX],
    len: u8,
    /// IP header length: the IPv4 header with options, or 40 for IPv6.
    pub hdr_len: u8,
}

impl std::fmt::Debug for HeldSyn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HeldSyn({} bytes)", self.len)
    }
}

impl HeldSyn {
    /// The SYN `p` (a whole IPv4 or IPv6 packet, by its version; IP
    /// headers `hdr_len` bytes, extension headers included, TCP header
    /// `thl` bytes, both already validated) without its payload: Total
    /// Length or Payload Length and the checksums are made to fit. `None`
    /// when the headers do not fit in [`HELD_SYN_MAX`] (they always do for
    /// valid headers).
    pub fn new(p: &[u8], hdr_len: usize, thl: usize) -> Option<HeldSyn> {
        if p.len() < hdr_len + thl {
            return None;
        }
        let mut buf = [0u8; HELD_SYN_MAX];
        let (ip_len, pseudo) = if p[0] >> 4 == 6 {
            // The fixed header only, followed by TCP: Next Header 6.
            if hdr_len < 40 || 40 + thl > HELD_SYN_MAX {
                return None;
            }
            buf[..40].copy_from_slice(&p[..40]);
            buf[4..6].copy_from_slice(&(thl as u16).to_be_bytes());
            buf[6] = crate::packet::PROTO_TCP;
            let mut a = [0u8; 16];
            a.copy_from_slice(&p[8..24]);
            let src = Ipv6Addr::from(a);
            a.copy_from_slice(&p[24..40]);
            let dst = Ipv6Addr::from(a);
            (40, checksum::pseudo_v6(&src, &dst, 6, thl as u32))
        } else {
            if hdr_len + thl > HELD_SYN_MAX {
                return None;
            }
            buf[..hdr_len].copy_from_slice(&p[..hdr_len]);
            let old = [p[2], p[3]];
            let new = ((hdr_len + thl) as u16).to_be_bytes();
            buf[2..4].copy_from_slice(&new);
            let ipc = checksum::update(u16::from_be_bytes([buf[10], buf[11]]), &old, &new);
            buf[10..12].copy_from_slice(&ipc.to_be_bytes());
            let src = Ipv4Addr::new(buf[12], buf[13], buf[14], buf[15]);
            let dst = Ipv4Addr::new(buf[16], buf[17], buf[18], buf[19]);
            (hdr_len, checksum::pseudo_v4(src, dst, 6, thl as u16))
        };
        let n = ip_len + thl;
        buf[ip_len..n].copy_from_slice(&p[hdr_len..hdr_len + thl]);
        buf[ip_len + 16..ip_len + 18].fill(0);
        let c = checksum::finish(checksum::sum(&buf[ip_len..n], pseudo));
        buf[ip_len + 16..ip_len + 18].copy_from_slice(&c.to_be_bytes());
        Some(HeldSyn {
            buf,
            len: n as u8,
            hdr_len: ip_len as u8,
        })
    }

    pub fn bytes(&self) -> &[u8] {
        &self.buf[..self.len as usize]
    }
}

/// Lifecycle of a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowState {
    /// The app's SYN is held; the upstream connect is in progress.
    Connecting,
    /// The upstream is connected and the SYN went to the listener; waiting
    /// for accept().
    SynInjected,
    /// Accepted: a relay carries the bytes.
    Established,
    /// The sockets are closed: kept for a grace period so that late
    /// segments (final ACKs, retransmitted FINs) still translate.
    Closing,
}

#[derive(Debug, Clone)]
pub struct Flow {
    pub sp: u16,
    /// The app's destination: its family is the flow's.
    pub dst: IpAddr,
    pub dp: u16,
    /// The upstream path this flow took when it was created, for its
    /// whole life ([`crate::ipv4_path`]); IPv4 flows only (an IPv6 flow
    /// always goes to its destination itself, and no switch resets it).
    pub path: Ipv4Path,
    pub state: FlowState,
    /// The Loop's handle of this flow's sockets (its slot), once opened.
    pub slot: Option<usize>,
    /// Boxed: it lives only while the upstream connects (milliseconds),
    /// and inline its 122 bytes would sit in every entry of the NAT table
    /// for the flow's whole life (the budget is 512 bytes per idle flow).
    syn: Option<Box<HeldSyn>>,
    created: Instant,
    /// Last packet or byte of the flow, either way.
    last: Instant,
    /// Current deadline in the timer set.
    timer_at: Instant,
    /// The app's initial sequence number (from its SYN).
    pub app_isn: TcpSeqNumber,
    /// The sequence number after the last one the app has used.
    app_next: TcpSeqNumber,
    /// The sequence number just after the listener side's FIN, once seen.
    fin_end: Option<TcpSeqNumber>,
    /// The listener's SYN-ACK sequence number + 1, once seen before
    /// accept(): the app's RCV.NXT while the flow is `SynInjected`, at
    /// which a RST reaches an app that completed its handshake.
    listener_next: Option<TcpSeqNumber>,
    /// The app has sent its FIN.
    app_fin: bool,
    /// The listener side sent its FIN before the app did, so its socket
    /// ends in TIME_WAIT (60 s on Linux) unless the flow was fast-closed.
    engine_fin_first: bool,
    /// Closed by the engine answering the app's FIN itself: no TIME_WAIT
    /// on the listener side; stray RSTs from there are not carried.
    pub fast_closed: bool,
    /// The listener side's last ACK advertised a zero window: the app's
    /// segments one below its next sequence number are then window probes
    /// (RFC 9293 section 3.8.6.1), not keepalives.
    window_closed: bool,
    /// The app's last keepalive probe.
    probe_at: Option<Instant>,
    /// The upstream keepalive interval set, if any, in milliseconds (it
    /// is within [`KEEPALIVE_MIN`]..=[`KEEPALIVE_MAX`]): 4 bytes where an
    /// `Option<Duration>` takes 16, in every flow's entry (the budget of
    /// 512 bytes per idle flow).
    keepalive_ms: Option<NonZeroU32>,
    /// A reported flow's id and bytes ([`TcpFlows::report_flows`]): every
    /// IPv4 packet of the flow the app writes to the TUN counts up, every
    /// one of the listener's written to the app counts down
    /// ([`TcpFlows::delivered`]), until the entry goes. A flow that ended (Closing) keeps counting: when the
    /// relay ends, the listener side may still hold stream bytes it has
    /// not sent to the app, and the last ACKs follow; its end is reported
    /// when the entry goes ([`Action::Ended`], which takes the tally),
    /// with the time it ended.
    tally: Option<Box<Tally>>,
}

impl Flow {
    /// The app-side tuple the flow was opened for (its [`NatKey`]).
    fn key(&self) -> NatKey {
        (self.sp, self.dst, self.dp)
    }
}

/// How the held SYN is answered when the upstream connect fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SynAnswer {
    /// RST+ACK: the app's connect() fails with ECONNREFUSED.
    Rst,
    /// Destination Unreachable for this reason, in the SYN's family,
    /// quoting the SYN.
    Unreachable(Unreachable),
}

/// Why a destination is unreachable, as the upstream socket's errno says
/// it, for either family's Destination Unreachable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unreachable {
    /// ENETUNREACH: no route.
    Net,
    /// EHOSTUNREACH: the address is unreachable.
    Host,
    /// EACCES / EPERM: administratively prohibited.
    Prohibited,
}

impl Unreachable {
    /// The ICMPv4 code (RFC 792, RFC 1812): 3/0, 3/1, 3/13.
    pub fn icmpv4(self) -> Icmpv4DstUnreachable {
        match self {
            Unreachable::Net => Icmpv4DstUnreachable::NetUnreachable,
            Unreachable::Host => Icmpv4DstUnreachable::HostUnreachable,
            Unreachable::Prohibited => Icmpv4DstUnreachable::CommProhibited,
        }
    }

    /// The ICMPv6 code (RFC 4443 section 3.1): 1/0 no route, 1/3 address
    /// unreachable, 1/1 administratively prohibited.
    pub fn icmpv6(self) -> Icmpv6DstUnreachable {
        match self {
            Unreachable::Net => Icmpv6DstUnreachable::NoRoute,
            Unreachable::Host => Icmpv6DstUnreachable::AddrUnreachable,
            Unreachable::Prohibited => Icmpv6DstUnreachable::AdminProhibited,
        }
    }
}

/// What the Loop must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Open the protected, non-blocking upstream connect of flow `np` to
    /// `dst:dp` (through the NAT64 prefix; the DNS relay's address means
    /// the preferred resolver); report with `upstream_opened` or
    /// `upstream_failed`. `tos`: the TOS byte of the app's SYN, whose DSCP
    /// becomes the upstream socket's traffic class (RFC 7915 section 4.1).
    Connect {
        np: u16,
        /// The app's destination (an IPv6 one is connected to as it is).
        dst: IpAddr,
        dp: u16,
        tos: u8,
        /// The flow's upstream path: prefix+`dst` or `dst` itself.
        path: Ipv4Path,
    },
    /// Rewrite the held SYN onto the listener (nat:np -> clat:L) and write
    /// it to the TUN.
    InjectSyn { np: u16, syn: Box<HeldSyn> },
    /// Answer the app's SYN (no flow any more).
    AnswerSyn {
        syn: Box<HeldSyn>,
        answer: SynAnswer,
    },
    /// Close the sockets of `slot` (no report back): RST towards the app /
    /// upstream when asked, else an orderly close.
    CloseSlot {
        slot: usize,
        rst_app: bool,
        rst_up: bool,
    },
    /// Enable keepalives on the upstream socket of `slot`: TCP_KEEPIDLE and
    /// TCP_KEEPINTVL both `interval`.
    Keepalive { slot: usize, interval: Duration },
    /// A reported flow started: the app's SYN created it (`clat:sp ->
    /// dst:dp`, leaving on `path`).
    Started {
        id: u64,
        sp: u16,
        dst: Ipv4Addr,
        dp: u16,
        path: Ipv4Path,
    },
    /// A reported flow ended: the engine dropped it, for `how`, at `at`
    /// (`None`: now; a flow that went through Closing ended when it
    /// entered it, and its packets since are counted; a flow that timed
    /// out ended with its last packet).
    Ended {
        tally: Tally,
        how: FlowEndReason,
        at: Option<Instant>,
    },
    /// Write a RST `nat:np -> clat:L` with sequence number `seq` into the
    /// TUN: the listener drops the half-open (or not yet accepted)
    /// connection of a flow freed before accept(), so that a later flow
    /// given the same NAT port does not meet it.
    AbortListener {
        np: u16,
        seq: TcpSeqNumber,
        /// The flow was IPv6: the RST goes to the IPv6 listener.
        v6: bool,
    },
    /// Write a RST+ACK `dst:dp -> clat:sp` (the app's own connection, in
    /// `dst`'s family) with sequence number `seq` and acknowledgment `ack`
    /// into the TUN: the app learns of a flow reset before accept().
    ResetApp {
        dst: IpAddr,
        dp: u16,
        sp: u16,
        seq: TcpSeqNumber,
        ack: TcpSeqNumber,
    },
}

/// How a flow whose upstream connect failed with `errno` ended
/// (`docs/flow-events.md`, `how`): the path refused it (ECONNREFUSED: a
/// RST or port unreachable) or could not reach it (no route, host
/// unreachable, administratively prohibited), or nothing answered
/// (ETIMEDOUT); any other failure is the engine's own (no descriptor, no
/// buffer, protect failed), which the app sees as a RST.
pub fn connect_failure_end(errno: Option<i32>) -> FlowEndReason {
    match errno {
        Some(libc::ECONNREFUSED) => FlowEndReason::Refused,
        Some(libc::EHOSTUNREACH | libc::ENETUNREACH | libc::EACCES | libc::EPERM) => {
            FlowEndReason::Unreachable
        }
        Some(libc::ETIMEDOUT) => FlowEndReason::TimedOut,
        _ => FlowEndReason::Reset,
    }
}

/// The report of `t`'s end: when and how it ended if it did earlier
/// (Closing, or the last packet of a flow that timed out), else now for
/// `how`.
fn ended(t: Tally, how: FlowEndReason) -> Action {
    let (at, how) = match t.ended {
        Some((at, how)) => (Some(at), how),
        None => (None, how),
    };
    Action::Ended { tally: t, how, at }
}

/// What to do with an app segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppVerdict {
    /// Rewrite onto the listener as flow `np` and write to the TUN.
    Forward(u16),
    /// Nothing more: the segment was held, absorbed or dropped (counted).
    Consumed,
    /// No flow: answer with a RST (counted by the caller's refusal).
    Refuse,
    /// No flow and a RST: drop silently.
    Drop,
    /// A FIN that may be fast-closed (see nat_tcp): if the relay in `slot`
    /// has read and written everything (the app has sent
    /// `app_bytes` bytes in all), call [`TcpFlows::fast_close`] and answer
    /// the FIN; else forward it as flow `np`.
    FinCandidate {
        np: u16,
        slot: usize,
        app_bytes: u32,
    },
    /// A retransmitted FIN of a fast-closed flow: answer it again.
    AnswerFin,
}

/// What to do with a listener segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenerVerdict {
    /// Rewrite to `dst:dp -> clat:sp` and write to the TUN.
    Forward { dst: IpAddr, dp: u16, sp: u16 },
    /// The abort of a fast-closed flow: the app has its ACK already.
    Suppress,
    /// No such flow (counted).
    NoFlow,
}

/// The parts of a TCP segment the core decides on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegInfo {
    pub flags: TcpFlags,
    pub seq: TcpSeqNumber,
    pub ack: TcpSeqNumber,
    pub payload_len: usize,
    /// The Window field as sent (unscaled: zero is zero at any scale).
    pub window: u16,
}

impl From<&TcpSegment> for SegInfo {
    fn from(s: &TcpSegment) -> SegInfo {
        SegInfo {
            flags: s.flags,
            seq: s.seq,
            ack: s.ack,
            payload_len: s.payload_len,
            window: s.window,
        }
    }
}

impl SegInfo {
    fn seq_len(&self) -> u32 {
        self.payload_len as u32
            + self.flags.intersects(TcpFlags::SYN) as u32
            + self.flags.intersects(TcpFlags::FIN) as u32
    }
    fn is_syn(&self) -> bool {
        self.flags
            .masked(TcpFlags::SYN | TcpFlags::ACK | TcpFlags::RST)
            == TcpFlags::SYN
    }
}

/// The timeouts the core applies.
#[derive(Debug, Clone, Copy)]
pub struct FlowTimeouts {
    pub established: Duration,
    pub transitory: Duration,
}

/// The TCP flow table and its decisions.
#[derive(Debug)]
pub struct TcpFlows {
    /// Flows by NAT port, stored densely ([`PortTable`]: a hash table
    /// would hold every 160-byte entry in 8/7 to 16/7 of its size).
    by_np: PortTable<Flow>,
    /// The linked flows' ports by their [`NatKey`]: a closing flow is
    /// unlinked so that a new SYN on its tuple opens a new flow.
    by_key: KeyIndex,
    /// Next NAT port to try: ports cycle through the whole range so that a
    /// port is reused as late as possible (the listener side's TIME_WAIT).
    cursor: u16,
    /// Flows that never completed, oldest first: early-drop candidates.
    incomplete: BTreeSet<(Instant, u16)>,
    /// Entries in the Closing state (not live flows: not in the cap).
    closing: usize,
    timers: Timers,
    actions: VecDeque<Action>,
    to: FlowTimeouts,
    /// The path new flows take ([`TcpFlows::set_path`]).
    path: Ipv4Path,
    /// Report IPv4 flows, except those to this address (the DNS relay's:
    /// its queries are not flows); `None`: report nothing.
    report: Option<Ipv4Addr>,
}

impl TcpFlows {
    pub fn new(to: FlowTimeouts) -> TcpFlows {
        TcpFlows {
            by_np: PortTable::default(),
            by_key: KeyIndex::default(),
            cursor: FIRST_PORT,
            incomplete: BTreeSet::new(),
            closing: 0,
            timers: Timers::default(),
            actions: VecDeque::new(),
            to,
            path: Ipv4Path::Nat64,
            report: None,
        }
    }

    /// Reports IPv4 flows from now on ([`Action::Started`] when the app's
    /// SYN creates one, [`Action::Ended`] when it is dropped), except those
    /// to `relay` (the DNS relay's address). IPv6 flows are never reported.
    pub fn report_flows(&mut self, relay: Ipv4Addr) {
        self.report = Some(relay);
    }

    /// Live flows (all but Closing): what counts against the flow cap.
    pub fn live(&self) -> usize {
        self.by_np.len() - self.closing
    }

    pub fn get(&self, np: u16) -> Option<&Flow> {
        self.by_np.get(np)
    }

    /// The next action for the Loop.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The earliest deadline, `None` when nothing is scheduled.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    /// A segment from the app (`clat:key.0 -> key.1:key.2`); `p` is the
    /// whole IP packet (IP headers `hdr_len` bytes, TCP header `thl`);
    /// `full` when the flow cap is reached.
    #[allow(clippy::too_many_arguments)]
    pub fn on_app_segment(
        &mut self,
        now: Instant,
        key: NatKey,
        seg: SegInfo,
        p: &[u8],
        hdr_len: usize,
        thl: usize,
        full: bool,
        c: &Counters,
    ) -> AppVerdict {
        let existing = self.by_key.get(&self.by_np, Flow::key, &key);
        let Some(np) = existing.filter(|np| {
            !(seg.is_syn() && self.by_np.get(*np).map(|e| e.state) == Some(FlowState::Closing))
        }) else {
            if !seg.is_syn() {
                Counters::inc(&c.drop_tcp_no_flow);
                return if seg.flags.intersects(TcpFlags::RST) {
                    AppVerdict::Drop
                } else {
                    AppVerdict::Refuse
                };
            }
            return self.new_flow(now, key, existing, seg, p, hdr_len, thl, full, c);
        };
        let Some(e) = self.by_np.get_mut(np) else {
            return AppVerdict::Drop;
        };
        e.last = now;
        Tally::up(&mut e.tally, p.len());
        let end = seg.seq + seg.seq_len();
        match e.state {
            FlowState::Connecting => {
                if seg.is_syn() {
                    // A retransmission (or a new ISN on the same tuple):
                    // the latest one is what the listener will see.
                    if let Some(s) = HeldSyn::new(p, hdr_len, thl) {
                        e.syn = Some(Box::new(s));
                        e.app_isn = seg.seq;
                        e.app_next = end;
                    }
                    Counters::inc(&c.tcp_syns_absorbed);
                } else if seg.flags.intersects(TcpFlags::RST) {
                    // The app gave up: so does the upstream connect.
                    self.free(np, true, FlowEndReason::Reset, c);
                } else {
                    Counters::inc(&c.drop_tcp_no_flow);
                }
                AppVerdict::Consumed
            }
            FlowState::SynInjected => {
                if seg.flags.intersects(TcpFlags::RST) {
                    // The listener drops its half-open connection on the
                    // RST; the upstream goes with it.
                    self.free(np, true, FlowEndReason::Reset, c);
                    return AppVerdict::Forward(np);
                }
                if end > e.app_next {
                    e.app_next = end;
                }
                // A FIN before accept() (a client that writes and shuts
                // down at once): the app closes first, so the listener
                // side will not sit in TIME_WAIT.
                if seg
                    .flags
                    .masked(TcpFlags::FIN | TcpFlags::SYN | TcpFlags::RST)
                    == TcpFlags::FIN
                {
                    e.app_fin = true;
                }
                AppVerdict::Forward(np)
            }
            FlowState::Established => {
                let probe = seg
                    .flags
                    .masked(TcpFlags::FIN | TcpFlags::SYN | TcpFlags::RST | TcpFlags::ACK)
                    == TcpFlags::ACK
                    && seg.payload_len <= 1
                    && seg.seq + 1 == e.app_next
                    && !e.window_closed;
                if probe {
                    self.on_probe(np, now, c);
                } else if end > e.app_next {
                    e.app_next = end;
                }
                let Some(e) = self.by_np.get_mut(np) else {
                    return AppVerdict::Forward(np);
                };
                if seg
                    .flags
                    .masked(TcpFlags::FIN | TcpFlags::SYN | TcpFlags::RST)
                    == TcpFlags::FIN
                {
                    e.app_fin = true;
                    // The FIN acknowledges ours (so every byte we sent,
                    // too) and carries nothing: the relay decides the rest.
                    if seg.flags.intersects(TcpFlags::ACK)
                        && seg.payload_len == 0
                        && e.fin_end == Some(seg.ack)
                    {
                        if let Some(slot) = e.slot {
                            return AppVerdict::FinCandidate {
                                np,
                                slot,
                                app_bytes: seg.seq.0.wrapping_sub(e.app_isn.0.wrapping_add(1)),
                            };
                        }
                    }
                }
                AppVerdict::Forward(np)
            }
            FlowState::Closing => {
                if seg
                    .flags
                    .masked(TcpFlags::FIN | TcpFlags::SYN | TcpFlags::RST)
                    == TcpFlags::FIN
                    && e.fast_closed
                {
                    return AppVerdict::AnswerFin;
                }
                AppVerdict::Forward(np)
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn new_flow(
        &mut self,
        now: Instant,
        key: NatKey,
        old: Option<u16>,
        seg: SegInfo,
        p: &[u8],
        hdr_len: usize,
        thl: usize,
        full: bool,
        c: &Counters,
    ) -> AppVerdict {
        let Some(syn) = HeldSyn::new(p, hdr_len, thl) else {
            Counters::inc(&c.drop_malformed);
            return AppVerdict::Consumed;
        };
        // The TOS byte, or the IPv6 Traffic Class (bits 4-11).
        let tos = if p[0] >> 4 == 6 {
            (u16::from_be_bytes([p[0], p[1]]) >> 4) as u8
        } else {
            p[1]
        };
        if full && !self.evict_one(c) {
            Counters::inc(&c.drop_flow_limit);
            return AppVerdict::Refuse;
        }
        if let Some(old) = old {
            self.unlink_key(old);
        }
        let at = now + self.to.transitory;
        let np = match self.alloc_port() {
            Some(np) => np,
            // Every NAT port taken (most by TIME_WAIT holds): a flow that
            // never completed gives its port up first.
            None if self.evict_one(c) => match self.alloc_port() {
                Some(np) => np,
                None => {
                    Counters::inc(&c.drop_flow_limit);
                    return AppVerdict::Refuse;
                }
            },
            None => {
                Counters::inc(&c.drop_flow_limit);
                return AppVerdict::Refuse;
            }
        };
        self.by_np.insert(
            np,
            Flow {
                sp: key.0,
                dst: key.1,
                dp: key.2,
                path: self.path,
                state: FlowState::Connecting,
                slot: None,
                syn: Some(Box::new(syn)),
                created: now,
                last: now,
                timer_at: at,
                app_isn: seg.seq,
                app_next: seg.seq + 1,
                fin_end: None,
                listener_next: None,
                app_fin: false,
                engine_fin_first: false,
                fast_closed: false,
                window_closed: false,
                probe_at: None,
                keepalive_ms: None,
                tally: None,
            },
        );
        self.by_key.link(&self.by_np, Flow::key, np);
        self.incomplete.insert((now, np));
        self.timers.insert(at, TimerKey::Nat(np));
        if let (Some(relay), IpAddr::V4(dst)) = (self.report, key.1) {
            if dst != relay {
                let id = crate::flow_events::next_flow_id();
                let mut tally = Tally::new(id);
                tally.up = p.len() as u64;
                if let Some(e) = self.by_np.get_mut(np) {
                    e.tally = Some(tally);
                }
                self.actions.push_back(Action::Started {
                    id,
                    sp: key.0,
                    dst,
                    dp: key.2,
                    path: self.path,
                });
            }
        }
        Counters::inc(&c.flows_tcp);
        Counters::inc(&c.flows_tcp_total);
        if key.1.is_ipv6() {
            Counters::inc(&c.flows_ipv6_total);
        } else if self.path == Ipv4Path::Native {
            Counters::inc(&c.flows_native_total);
        }
        log::debug!(
            "tcp flow {} -> {}:{} via nat port {np} ({})",
            key.0,
            key.1,
            key.2,
            self.path.name()
        );
        self.actions.push_back(Action::Connect {
            np,
            dst: key.1,
            dp: key.2,
            tos,
            path: self.path,
        });
        AppVerdict::Consumed
    }

    fn alloc_port(&mut self) -> Option<u16> {
        let range = (u16::MAX - FIRST_PORT) as usize + 1;
        for _ in 0..range {
            let np = self.cursor;
            self.cursor = if self.cursor == u16::MAX {
                FIRST_PORT
            } else {
                self.cursor + 1
            };
            if !self.by_np.contains_key(np) {
                return Some(np);
            }
        }
        None
    }

    /// Out of descriptors (opening flow `opening`'s upstream socket, or
    /// accepting): frees the oldest flow whose upstream connect is still
    /// pending, other than `opening`, as for a full table; its descriptor
    /// closes with the queued action (the caller runs the actions, then
    /// tries again). A flow whose SYN already went to the listener is left
    /// alone: it may be the one waiting to be accepted. False when there is
    /// none.
    pub fn evict_for_descriptor(&mut self, opening: Option<u16>, c: &Counters) -> bool {
        let victim = self.incomplete.iter().map(|&(_, np)| np).find(|&np| {
            Some(np) != opening
                && self
                    .by_np
                    .get(np)
                    .is_some_and(|e| e.state == FlowState::Connecting && e.slot.is_some())
        });
        let Some(victim) = victim else {
            return false;
        };
        self.evict(victim, c);
        true
    }

    /// Frees the oldest flow that never completed (conntrack's early
    /// drop): its upstream socket is reset, the app's SYN stays
    /// unanswered. False when there is none. Also for a new UDP or echo
    /// mapping that finds the table full: a SYN flood must not starve the
    /// other protocols either. Run [`Self::poll_action`] after it.
    pub fn evict_one(&mut self, c: &Counters) -> bool {
        let Some(&(_, np)) = self.incomplete.first() else {
            return false;
        };
        self.evict(np, c);
        true
    }

    fn evict(&mut self, np: u16, c: &Counters) {
        log::debug!("evicting incomplete tcp flow {np}");
        self.free(np, true, FlowEndReason::Evicted, c);
        Counters::inc(&c.flows_evicted);
    }

    /// Removes a flow, closing its sockets if it has any (a RST upstream
    /// when `rst_up`); a live one leaves the flow gauge, and its end is
    /// reported for `how` (a Closing one's was, when it entered Closing).
    fn free(&mut self, np: u16, rst_up: bool, how: FlowEndReason, c: &Counters) {
        self.by_key.unlink(&self.by_np, Flow::key, np);
        let Some(mut e) = self.by_np.remove(np) else {
            return;
        };
        self.report_end(&mut e, how);
        self.timers.remove(e.timer_at, TimerKey::Nat(np));
        self.incomplete.remove(&(e.created, np));
        if e.state == FlowState::Closing {
            self.closing -= 1;
            return;
        }
        Counters::dec(&c.flows_tcp);
        if e.state == FlowState::SynInjected {
            // At the listener's RCV.NXT: once the app's ACK (and maybe
            // data) completed the handshake, the listener side is
            // ESTABLISHED and takes a RST only at exactly that number (RFC
            // 5961 section 3.2); half-open, it is the ISN + 1 either way.
            self.actions.push_back(Action::AbortListener {
                np,
                seq: e.app_next,
                v6: e.dst.is_ipv6(),
            });
        }
        if let Some(slot) = e.slot {
            self.actions.push_back(Action::CloseSlot {
                slot,
                rst_app: false,
                rst_up,
            });
        }
    }

    /// Queues [`Action::Ended`] for `e` if it is reported and its end was
    /// not reported yet: for `how`, now, unless it ended earlier (Closing).
    fn report_end(&mut self, e: &mut Flow, how: FlowEndReason) {
        if let Some(t) = e.tally.take() {
            self.actions.push_back(ended(*t, how));
        }
    }

    /// The engine stops: the end of every reported flow still in the
    /// table is queued ([`Action::Ended`] only, no other action): live
    /// ones as [`FlowEndReason::NetworkChanged`], now; those in Closing as
    /// and when they ended. The caller closes the sockets as it does
    /// with flow events off.
    pub fn report_stop(&mut self) {
        for e in self.by_np.values_mut() {
            if let Some(t) = e.tally.take() {
                self.actions
                    .push_back(ended(*t, FlowEndReason::NetworkChanged));
            }
        }
    }

    fn unlink_key(&mut self, np: u16) {
        self.by_key.unlink(&self.by_np, Flow::key, np);
    }

    fn on_probe(&mut self, np: u16, now: Instant, c: &Counters) {
        let Some(e) = self.by_np.get_mut(np) else {
            return;
        };
        let prev = e.probe_at.replace(now);
        let (Some(prev), Some(slot)) = (prev, e.slot) else {
            return;
        };
        let interval = now
            .saturating_duration_since(prev)
            .clamp(KEEPALIVE_MIN, KEEPALIVE_MAX);
        // Within 10 s..=2 h: a nonzero u32 of milliseconds.
        let ms = NonZeroU32::new(interval.as_millis() as u32);
        let set = match e.keepalive_ms {
            None => true,
            Some(cur) => interval < Duration::from_millis(u64::from(cur.get())) * 3 / 4,
        };
        if set {
            e.keepalive_ms = ms;
            Counters::inc(&c.tcp_upstream_keepalives);
            self.actions.push_back(Action::Keepalive { slot, interval });
        }
    }

    /// The Loop opened flow `np`'s upstream socket under `slot`.
    pub fn upstream_opened(&mut self, np: u16, slot: usize) {
        if let Some(e) = self.by_np.get_mut(np) {
            e.slot = Some(slot);
        }
    }

    /// The upstream connect of `np` succeeded: the held SYN goes to the
    /// listener.
    pub fn upstream_connected(&mut self, np: u16, now: Instant) {
        let Some(e) = self.by_np.get_mut(np) else {
            return;
        };
        if e.state != FlowState::Connecting {
            return;
        }
        e.state = FlowState::SynInjected;
        e.last = now;
        if let Some(syn) = e.syn.take() {
            self.actions.push_back(Action::InjectSyn { np, syn });
        }
    }

    /// The upstream connect of `np` failed with `errno` (at once or later):
    /// the app's SYN is answered as the real path would have answered it,
    /// and the flow is freed at once.
    pub fn upstream_failed(&mut self, np: u16, errno: Option<i32>, c: &Counters) {
        let Some(e) = self.by_np.get_mut(np) else {
            return;
        };
        if e.state != FlowState::Connecting {
            return;
        }
        let answer = match errno {
            Some(libc::ECONNREFUSED) => Some(SynAnswer::Rst),
            Some(libc::EHOSTUNREACH) => Some(SynAnswer::Unreachable(Unreachable::Host)),
            Some(libc::ENETUNREACH) => Some(SynAnswer::Unreachable(Unreachable::Net)),
            Some(libc::EACCES | libc::EPERM) => {
                Some(SynAnswer::Unreachable(Unreachable::Prohibited))
            }
            // No answer from the path: the app's own timeout decides.
            Some(libc::ETIMEDOUT) => None,
            // Our own failure (no descriptors, no buffers, protect): a
            // reset, so that the app does not wait for nothing.
            _ => {
                Counters::inc(&c.drop_upstream_socket);
                Some(SynAnswer::Rst)
            }
        };
        if let (Some(answer), Some(syn)) = (answer, e.syn.take()) {
            match answer {
                SynAnswer::Rst => Counters::inc(&c.tcp_rst_sent),
                SynAnswer::Unreachable(_) => Counters::inc(&c.icmp_errors_sent),
            }
            self.actions.push_back(Action::AnswerSyn { syn, answer });
        }
        self.free(np, false, connect_failure_end(errno), c);
    }

    /// accept() returned flow `np`'s local socket: the slot of its
    /// connected upstream socket, to pair with it; `None` when the flow is
    /// not waiting for that (reset the accepted socket).
    pub fn accepted(&mut self, np: u16, now: Instant) -> Option<usize> {
        let e = self.by_np.get_mut(np)?;
        if e.state != FlowState::SynInjected {
            return None;
        }
        let slot = e.slot?;
        e.state = FlowState::Established;
        e.last = now;
        self.incomplete.remove(&(e.created, np));
        // Established now: the idle deadline is the established timeout.
        let at = now + self.to.established;
        self.timers.remove(e.timer_at, TimerKey::Nat(np));
        e.timer_at = at;
        self.timers.insert(at, TimerKey::Nat(np));
        Some(slot)
    }

    /// Bytes moved on flow `np`'s relay.
    pub fn touch(&mut self, np: u16, now: Instant) {
        if let Some(e) = self.by_np.get_mut(np) {
            e.last = now;
        }
    }

    /// The app's FIN on `np` is answered here (see nat_tcp): the relay is
    /// closed by the caller (orderly), the listener side's RST is not
    /// carried.
    pub fn fast_close(&mut self, np: u16, c: &Counters) {
        if let Some(e) = self.by_np.get_mut(np) {
            e.fast_closed = true;
            Counters::inc(&c.tcp_fast_closes);
        }
    }

    /// A segment from the listener of family `v6` (IPv6 or IPv4) to NAT
    /// port `np` (the whole IP packet goes to the app translated, of the
    /// same length, unless suppressed; the caller reports it
    /// [`TcpFlows::delivered`] once written). A segment of
    /// the other family than `np`'s flow is not the flow's: no flow, and
    /// nothing of the flow (its bytes, its idle time, its FIN and window
    /// state) is touched.
    pub fn on_listener_segment(
        &mut self,
        now: Instant,
        (np, v6): (u16, bool),
        seg: Option<SegInfo>,
        c: &Counters,
    ) -> ListenerVerdict {
        let Some(e) = self.by_np.get_mut(np).filter(|e| e.dst.is_ipv6() == v6) else {
            Counters::inc(&c.drop_tcp_no_flow);
            return ListenerVerdict::NoFlow;
        };
        e.last = now;
        if let Some(seg) = seg {
            if seg.flags.intersects(TcpFlags::RST) && e.fast_closed {
                return ListenerVerdict::Suppress;
            }
            if seg.flags.intersects(TcpFlags::ACK) {
                e.window_closed = seg.window == 0;
            }
            let syn_ack =
                seg.flags.intersects(TcpFlags::SYN) && seg.flags.intersects(TcpFlags::ACK);
            if e.state == FlowState::SynInjected && syn_ack {
                e.listener_next = Some(seg.seq + 1);
            }
            if seg.flags.intersects(TcpFlags::FIN) {
                e.fin_end = Some(seg.seq + seg.payload_len as u32 + 1);
                e.engine_fin_first |= !e.app_fin;
            }
        }
        ListenerVerdict::Forward {
            dst: e.dst,
            dp: e.dp,
            sp: e.sp,
        }
    }

    /// A listener segment of flow `np` (forwarded by
    /// [`TcpFlows::on_listener_segment`]), `len` bytes, reached the app:
    /// its down bytes, if it is reported. Counted only once written, so
    /// that a failed write to the TUN is not.
    pub fn delivered(&mut self, np: u16, len: usize) {
        if let Some(e) = self.by_np.get_mut(np) {
            Tally::down(&mut e.tally, len);
        }
    }

    /// Flow `np`'s relay ended (its sockets are closed by the caller);
    /// `orderly` when without a reset, so the listener side may be in
    /// TIME_WAIT.
    /// Its end is reported as [`FlowEndReason::Closed`] when `orderly`,
    /// else [`FlowEndReason::Reset`].
    pub fn relay_closed(&mut self, np: u16, orderly: bool, now: Instant, c: &Counters) {
        let how = if orderly {
            FlowEndReason::Closed
        } else {
            FlowEndReason::Reset
        };
        self.enter_closing(np, orderly, (how, now), now, c);
    }

    /// Flow `np`'s relay ended because its upstream socket failed with
    /// `errno` (read or write; the app side is reset). Its end is reported
    /// as that errno says, as for a failed connect ([`connect_failure_end`]):
    /// [`FlowEndReason::TimedOut`] for ETIMEDOUT (the upstream's
    /// retransmissions or keepalives went unanswered),
    /// [`FlowEndReason::Unreachable`] for EHOSTUNREACH, ENETUNREACH, EACCES
    /// or EPERM, [`FlowEndReason::Refused`] for ECONNREFUSED, else
    /// [`FlowEndReason::Reset`] (ECONNRESET: the server's RST; EPIPE).
    pub fn relay_failed(&mut self, np: u16, errno: Option<i32>, now: Instant, c: &Counters) {
        let how = connect_failure_end(errno);
        self.enter_closing(np, false, (how, now), now, c);
    }

    /// Ends live flow `np` (reported for `how`, as ended at `ended`: now,
    /// or the last packet of a flow that timed out), keeping its entry for
    /// the grace time or the TIME_WAIT hold from `now`.
    fn enter_closing(
        &mut self,
        np: u16,
        orderly: bool,
        (how, ended): (FlowEndReason, Instant),
        now: Instant,
        c: &Counters,
    ) {
        let grace = CLOSE_GRACE.min(self.to.transitory);
        let Some(e) = self.by_np.get_mut(np) else {
            return;
        };
        if e.state == FlowState::Closing {
            return;
        }
        if let Some(t) = &mut e.tally {
            t.ended = Some((ended, how));
        }
        let at = if orderly && e.engine_fin_first && !e.fast_closed {
            now + TIME_WAIT_HOLD
        } else {
            now + grace
        };
        self.incomplete.remove(&(e.created, np));
        e.state = FlowState::Closing;
        e.slot = None;
        self.timers.remove(e.timer_at, TimerKey::Nat(np));
        e.timer_at = at;
        self.timers.insert(at, TimerKey::Nat(np));
        self.closing += 1;
        Counters::dec(&c.flows_tcp);
    }

    /// Runs every deadline due at `now`.
    pub fn handle_timeout(&mut self, now: Instant, c: &Counters) {
        while let Some((at, key)) = self.timers.pop_due(now) {
            let TimerKey::Nat(np) = key else { continue };
            let Some(e) = self.by_np.get_mut(np) else {
                continue;
            };
            if e.timer_at != at {
                continue;
            }
            let idle = match e.state {
                FlowState::Closing => {
                    self.timers.insert(at, key); // removed again by free
                    self.free(np, false, FlowEndReason::Closed, c);
                    continue;
                }
                FlowState::Established => self.to.established,
                FlowState::Connecting | FlowState::SynInjected => self.to.transitory,
            };
            let due = e.last + idle;
            if due > now {
                e.timer_at = due;
                self.timers.insert(due, key);
                continue;
            }
            Counters::inc(&c.flows_expired);
            if e.state == FlowState::Established {
                if let Some(slot) = e.slot {
                    self.actions.push_back(Action::CloseSlot {
                        slot,
                        rst_app: true,
                        rst_up: true,
                    });
                }
                // It ended with its last packet, not when we noticed.
                let ended = (FlowEndReason::TimedOut, e.last);
                self.timers.insert(at, key); // removed again by enter_closing
                self.enter_closing(np, false, ended, now, c);
            } else {
                if let Some(t) = &mut e.tally {
                    t.ended = Some((e.last, FlowEndReason::TimedOut));
                }
                self.timers.insert(at, key);
                self.free(np, true, FlowEndReason::TimedOut, c);
            }
        }
    }

    /// The upstream network changed: every live flow is reset (its slot
    /// closed with RSTs both ways); flows that never completed are freed.
    pub fn reset_all(&mut self, now: Instant, c: &Counters) {
        self.reset_where(|_| true, now, c);
    }

    /// The path new flows take from now on; flows keep theirs. Returns the
    /// path whose flows the caller must reset ([`crate::ipv4_path::resets_on_switch`]),
    /// which it does with [`TcpFlows::reset_path`].
    pub fn set_path(&mut self, path: Ipv4Path) -> Option<Ipv4Path> {
        let reset = crate::ipv4_path::resets_on_switch(self.path, path);
        self.path = path;
        reset
    }

    /// The path new flows take.
    #[cfg(test)]
    pub fn path(&self) -> Ipv4Path {
        self.path
    }

    /// Resets the flows on `path` as [`TcpFlows::reset_all`] does, and
    /// leaves the others alone.
    pub fn reset_path(&mut self, path: Ipv4Path, now: Instant, c: &Counters) {
        self.reset_where(|f| f.dst.is_ipv4() && f.path == path, now, c);
    }

    fn reset_where(&mut self, pick: impl Fn(&Flow) -> bool, now: Instant, c: &Counters) {
        let nps: Vec<u16> = self.by_np.ports().collect();
        for np in nps {
            let Some(e) = self.by_np.get(np) else {
                continue;
            };
            if !pick(e) {
                continue;
            }
            match e.state {
                FlowState::Closing => {}
                FlowState::Established => {
                    if let Some(slot) = e.slot {
                        self.actions.push_back(Action::CloseSlot {
                            slot,
                            rst_app: true,
                            rst_up: true,
                        });
                    }
                    let how = FlowEndReason::NetworkChanged;
                    self.enter_closing(np, false, (how, now), now, c);
                }
                FlowState::Connecting | FlowState::SynInjected => {
                    // An app that has the listener's SYN-ACK may think it
                    // is connected: it gets a RST at its RCV.NXT (RFC 5961
                    // 3.2), as an established flow does. One still waiting
                    // for it retransmits its SYN, which opens a new flow.
                    if let Some(seq) = e.listener_next {
                        self.actions.push_back(Action::ResetApp {
                            dst: e.dst,
                            dp: e.dp,
                            sp: e.sp,
                            seq,
                            ack: e.app_next,
                        });
                    }
                    self.free(np, true, FlowEndReason::NetworkChanged, c)
                }
            }
        }
    }

    pub fn clear(&mut self) {
        self.by_np.clear();
        self.by_key.clear();
        self.incomplete.clear();
        self.closing = 0;
        self.timers.clear();
        self.actions.clear();
    }
}

#[cfg(test)]
mod tests;
