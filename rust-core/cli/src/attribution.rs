//! Naming the local process behind an IPv4 flow (issue 17 item 3): the
//! app's socket is a socket of this host, in the network namespace where
//! `clat run` runs, so the kernel can say who owns it.
//!
//! - TCP and UDP: an exact-tuple `SOCK_DIAG_BY_FAMILY` request
//!   (sock_diag(7), `inet_diag_req_v2`, AF_INET) answers the socket's uid
//!   and inode. The request is made on a socket of the caller's network
//!   namespace, which is the flows' (the TUN is there). It names the TUN as
//!   the interface (`idiag_if`): the kernel's lookup, as for an arriving
//!   packet, then also finds a socket bound to the TUN (`SO_BINDTODEVICE`),
//!   and still finds unbound ones. The kernel's TCP lookup falls back to a
//!   listening socket and UDP's to the best-scoring one, so an answer
//!   counts only when it is the flow's own socket ([`answer_is_the_flows`]).
//! - ICMP echo: ping sockets (`SOCK_DGRAM`/`IPPROTO_ICMP`) are not in
//!   inet_diag; `/proc/net/icmp` (the reader's namespace, too) lists them
//!   with their local address, the echo identifier as the port, uid and
//!   inode. Echo sent through a raw socket (`ping` without
//!   `net.ipv4.ping_group_range`, with CAP_NET_RAW) has no identifier
//!   bound to it and stays unattributed.
//! - The inode names the process: the `/proc/PID/fd/*` link that reads
//!   `socket:[INODE]` (socket inodes are unique on the host, whatever the
//!   namespace), then `/proc/PID/stat` (command, start time) and
//!   `/proc/PID/exe`. Reading other users' descriptors needs root (or
//!   CAP_SYS_PTRACE); without it their flows stay unattributed.
//!
//! The lookups run on the report's consumer thread right after the engine
//! reports a flow's start, a batch at a time: one `/proc` scan serves every
//! flow of a batch, and the processes that owned recent flows are looked at
//! first. An inode that a full scan did not find is not scanned for again
//! for [`UNFOUND_TTL`] ([`UnfoundInodes`]): a UDP socket of a process this
//! user cannot inspect sends to many destinations, each a flow, and would
//! otherwise cost a walk of every process each time. A socket that is already closed (a short UDP exchange, a TCP
//! socket in TIME_WAIT, whose inode is 0) cannot be named.
//!
//! The parsers are pure and unit-tested; the I/O is in [`Attributor`].

use clat_engine::FlowProto;
use netlink_packet_core::{NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_REQUEST};
use netlink_packet_sock_diag::{
    constants::{AF_INET, IPPROTO_TCP, IPPROTO_UDP},
    inet::{ExtensionFlags, InetRequest, SocketId, StateFlags},
    SockDiagMessage,
};
use netlink_sys::{protocols::NETLINK_SOCK_DIAG, Socket, SocketAddr as NlAddr};
use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddrV4};
use std::path::Path;
use std::time::{Duration, Instant};

/// The process that owned a flow's app-side socket.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Owner {
    pub pid: u32,
    /// `comm` (at most 15 bytes, as the kernel keeps it).
    pub command: String,
    /// The executable's path (`/proc/PID/exe`), empty when unreadable. The
    /// command line is not read: its arguments may hold URLs and secrets.
    pub exe: String,
    /// The socket's owner (`sk_uid`, what inet_diag and `/proc/net/icmp`
    /// answer).
    pub uid: u32,
    /// Start time in clock ticks after boot (`/proc/PID/stat` field 22):
    /// with the pid, it tells a reused pid from the process it replaces.
    pub start_ticks: u64,
}

/// Why a flow has no owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Unattributed {
    /// The kernel knows no such socket any more (closed, or in TIME_WAIT,
    /// before the lookup ran), or the echo came from a raw socket.
    SocketNotFound,
    /// The socket exists but no readable `/proc/PID/fd` holds it (it was
    /// closed meanwhile, or belongs to a process this user cannot inspect);
    /// the kernel still said whose socket it is.
    ProcessNotFound { uid: u32 },
    /// The lookup itself failed (sock_diag or `/proc` unreadable).
    LookupFailed,
}

impl Unattributed {
    /// The name in the report (JSON key).
    pub fn as_str(self) -> &'static str {
        match self {
            Unattributed::SocketNotFound => "socket_not_found",
            Unattributed::ProcessNotFound { .. } => "process_not_found",
            Unattributed::LookupFailed => "lookup_failed",
        }
    }
}

/// A socket the kernel knows: its owner's uid and its inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketInfo {
    pub uid: u32,
    pub inode: u64,
}

/// One line of `/proc/net/icmp`: a ping socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PingSocket {
    /// Local address and port; the port is the echo identifier.
    pub local: SocketAddrV4,
    pub uid: u32,
    pub inode: u64,
}

/// Parses `/proc/net/icmp` (same layout as `/proc/net/udp`: `sl
/// local_address rem_address st ... uid timeout inode ...`, addresses as
/// the kernel's `%08X:%04X` of the address in network byte order read as a
/// host-order u32). Lines that do not parse are skipped.
pub fn parse_proc_net_icmp(text: &str) -> Vec<PingSocket> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (addr, port) = f.get(1)?.split_once(':')?;
            let addr = u32::from_str_radix(addr, 16).ok()?;
            let port = u16::from_str_radix(port, 16).ok()?;
            Some(PingSocket {
                // The kernel printed the network-order bytes as a native u32.
                local: SocketAddrV4::new(Ipv4Addr::from(addr.to_ne_bytes()), port),
                uid: f.get(7)?.parse().ok()?,
                inode: f.get(9)?.parse().ok()?,
            })
        })
        .collect()
}

/// The ping socket that sent echo with identifier `ident` from `src`: bound
/// to that identifier, on `src`'s address or the wildcard.
pub fn find_ping_socket(socks: &[PingSocket], src: SocketAddrV4) -> Option<SocketInfo> {
    socks
        .iter()
        .filter(|s| s.local.port() == src.port() && s.inode != 0)
        .find(|s| *s.local.ip() == *src.ip() || s.local.ip().is_unspecified())
        .map(|s| SocketInfo {
            uid: s.uid,
            inode: s.inode,
        })
}

/// The inode of a `/proc/PID/fd/N` link target `socket:[INODE]`.
pub fn socket_inode(link: &[u8]) -> Option<u64> {
    let s = std::str::from_utf8(link).ok()?;
    s.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
}

/// `comm` and start time (clock ticks after boot) from `/proc/PID/stat`:
/// `pid (comm) state ppid ... starttime(22) ...`. The command may itself
/// hold spaces and parentheses, so it ends at the last `)`.
pub fn parse_stat(text: &str) -> Option<(String, u64)> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text.get(open + 1..close)?.to_string();
    // Fields after the command start at field 3 (state); starttime is 22.
    let start = text
        .get(close + 1..)?
        .split_whitespace()
        .nth(22 - 3)?
        .parse()
        .ok()?;
    Some((comm, start))
}

/// Linux's TCP_LISTEN (`include/net/tcp_states.h`).
const TCP_LISTEN: u8 = 10;

/// Whether a sock_diag answer (`state`, the socket's own local address
/// `a_local` and remote address `a_remote`) is the app's socket of the flow
/// from `src` to `dst`:
/// - TCP: the same four-tuple, and not a listener (the kernel's exact
///   lookup falls back to a listening socket on the source port: a server
///   of this host is not the flow's owner);
/// - UDP: bound to the source port on the source address or the wildcard,
///   and connected to `dst` or not connected (`0.0.0.0:0`).
pub fn answer_is_the_flows(
    proto: FlowProto,
    src: SocketAddrV4,
    dst: SocketAddrV4,
    state: u8,
    a_local: SocketAddrV4,
    a_remote: SocketAddrV4,
) -> bool {
    match proto {
        FlowProto::Tcp => state != TCP_LISTEN && a_local == src && a_remote == dst,
        FlowProto::Udp => {
            a_local.port() == src.port()
                && (a_local.ip() == src.ip() || a_local.ip().is_unspecified())
                && (a_remote == dst || (a_remote.ip().is_unspecified() && a_remote.port() == 0))
        }
        FlowProto::Icmp => false,
    }
}

/// An address of a sock_diag answer as the IPv4 flow's: the kernel answers
/// an AF_INET request with a dual-stack AF_INET6 socket (Java's, or any
/// with IPV6_V6ONLY off) in that socket's family, its addresses IPv4-mapped
/// (`::ffff:a.b.c.d`, RFC 4291 2.5.5.2), or `::` while unbound or
/// unconnected; any other IPv6 address is no IPv4 flow's (255.255.255.255:0
/// matches none).
pub fn answer_v4(a: IpAddr, port: u16) -> SocketAddrV4 {
    match a {
        IpAddr::V4(a) => SocketAddrV4::new(a, port),
        IpAddr::V6(a) if a.is_unspecified() => SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port),
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(a) => SocketAddrV4::new(a, port),
            None => SocketAddrV4::new(Ipv4Addr::BROADCAST, 0),
        },
    }
}

/// How many recent owners are looked at before the full `/proc` scan.
const RECENT_OWNERS: usize = 16;

/// How long an inode that a full `/proc` walk did not find is not walked
/// for again: long enough that a burst of flows from one socket that
/// cannot be named costs one walk, short enough that a process that was
/// unreadable for a moment is named again soon.
pub const UNFOUND_TTL: Duration = Duration::from_secs(5);

/// Most inodes remembered as unfound (the oldest leave first).
const UNFOUND_CAP: usize = 4096;

/// The negative cache of full `/proc` walks: inodes a walk did not find,
/// each until [`UNFOUND_TTL`] after that walk. Sans-I/O: `now` in.
#[derive(Debug, Default)]
pub struct UnfoundInodes {
    until: HashMap<u64, Instant>,
    order: VecDeque<(u64, Instant)>,
}

impl UnfoundInodes {
    /// Whether a full walk for `inode` is worth it at `now`.
    pub fn worth_a_walk(&self, inode: u64, now: Instant) -> bool {
        self.until.get(&inode).is_none_or(|&t| now >= t)
    }

    /// A full walk at `now` did not find `inode`.
    pub fn not_found(&mut self, inode: u64, now: Instant) {
        while self.order.len() >= UNFOUND_CAP || self.order.front().is_some_and(|&(_, t)| now >= t)
        {
            let Some((old, t)) = self.order.pop_front() else {
                break;
            };
            if self.until.get(&old) == Some(&t) {
                self.until.remove(&old);
            }
        }
        let t = now + UNFOUND_TTL;
        self.until.insert(inode, t);
        self.order.push_back((inode, t));
    }
}

/// The I/O side: a sock_diag socket and the `/proc` scans.
pub struct Attributor {
    diag: Option<Socket>,
    /// Sequence number of the last sock_diag request.
    seq: std::cell::Cell<u32>,
    /// Pids of recent owners, newest first: a process that opened one flow
    /// often opens the next.
    recent: VecDeque<u32>,
    proc_root: std::path::PathBuf,
    /// The TUN's interface index (`idiag_if` of the requests).
    ifindex: u32,
    unfound: UnfoundInodes,
}

impl Attributor {
    /// A sock_diag socket in the caller's network namespace (a failure is
    /// logged once; TCP and UDP then stay unattributed), for flows that come
    /// in on the interface with index `ifindex` (the TUN's; 0 matches only
    /// sockets bound to no device).
    pub fn new(ifindex: u32) -> Attributor {
        let diag = Socket::new(NETLINK_SOCK_DIAG).and_then(|mut s| {
            s.bind_auto()?;
            s.connect(&NlAddr::new(0, 0))?;
            // The kernel answers a request while it is sent: a missing
            // answer must not block the consumer.
            s.set_non_blocking(true)?;
            Ok(s)
        });
        let diag = match diag {
            Ok(s) => Some(s),
            Err(e) => {
                log::warn!(
                    "report: no sock_diag socket ({e}): TCP and UDP flows stay unattributed"
                );
                None
            }
        };
        Attributor {
            diag,
            seq: std::cell::Cell::new(0),
            recent: VecDeque::new(),
            proc_root: "/proc".into(),
            ifindex,
            unfound: UnfoundInodes::default(),
        }
    }

    /// The owners of a batch of flows, each given as (protocol, app-side
    /// address and port or echo identifier, destination), in order.
    pub fn owners(
        &mut self,
        flows: &[(FlowProto, SocketAddrV4, SocketAddrV4)],
    ) -> Vec<Result<Owner, Unattributed>> {
        let socks = self.sockets(flows);
        let wanted: HashSet<u64> = socks
            .iter()
            .filter_map(|s| s.ok())
            .map(|s| s.inode)
            .collect();
        let pids = self.pids_of(&wanted, Instant::now());
        socks
            .into_iter()
            .map(|s| {
                let s = s?;
                let not_found = Unattributed::ProcessNotFound { uid: s.uid };
                let pid = *pids.get(&s.inode).ok_or(not_found)?;
                let owner = self.describe(pid, s.uid).ok_or(not_found)?;
                self.recent.retain(|p| *p != pid);
                self.recent.push_front(pid);
                self.recent.truncate(RECENT_OWNERS);
                Ok(owner)
            })
            .collect()
    }

    /// The app-side sockets of a batch of flows (as for [`Self::owners`]),
    /// in order.
    pub fn sockets(
        &self,
        flows: &[(FlowProto, SocketAddrV4, SocketAddrV4)],
    ) -> Vec<Result<SocketInfo, Unattributed>> {
        let mut icmp: Option<Vec<PingSocket>> = None;
        flows
            .iter()
            .map(|&(proto, src, dst)| match proto {
                FlowProto::Tcp | FlowProto::Udp => self.diag_lookup(proto, src, dst),
                FlowProto::Icmp => {
                    let table = icmp.get_or_insert_with(|| {
                        std::fs::read_to_string(self.proc_root.join("net/icmp"))
                            .map(|t| parse_proc_net_icmp(&t))
                            .unwrap_or_default()
                    });
                    find_ping_socket(table, src).ok_or(Unattributed::SocketNotFound)
                }
            })
            .collect()
    }

    /// An exact-tuple inet_diag request for the app's socket.
    fn diag_lookup(
        &self,
        proto: FlowProto,
        src: SocketAddrV4,
        dst: SocketAddrV4,
    ) -> Result<SocketInfo, Unattributed> {
        let sock = self.diag.as_ref().ok_or(Unattributed::LookupFailed)?;
        let (protocol, local, remote) = match proto {
            FlowProto::Tcp => (IPPROTO_TCP, src, dst),
            // udp_dump_one() looks the socket up as for an arriving
            // datagram: the request's source is the remote end ("src and
            // dst are swapped for historical reasons", net/ipv4/udp_diag.c).
            FlowProto::Udp => (IPPROTO_UDP, dst, src),
            FlowProto::Icmp => return Err(Unattributed::LookupFailed),
        };
        let seq = self.seq.get().wrapping_add(1);
        self.seq.set(seq);
        let mut hdr = NetlinkHeader::default();
        hdr.flags = NLM_F_REQUEST;
        hdr.sequence_number = seq;
        let mut msg = NetlinkMessage::new(
            hdr,
            SockDiagMessage::InetRequest(InetRequest {
                family: AF_INET,
                protocol,
                extensions: ExtensionFlags::empty(),
                states: StateFlags::all(),
                socket_id: SocketId {
                    source_port: local.port(),
                    destination_port: remote.port(),
                    source_address: IpAddr::V4(*local.ip()),
                    destination_address: IpAddr::V4(*remote.ip()),
                    interface_id: self.ifindex,
                    // INET_DIAG_NOCOOKIE: match by the tuple alone.
                    cookie: [0xff; 8],
                },
            })
            .into(),
        );
        msg.finalize();
        let mut buf = vec![0u8; msg.buffer_len()];
        msg.serialize(&mut buf);
        sock.send(&buf, 0).map_err(|e| {
            log::debug!("report: sock_diag send: {e}");
            Unattributed::LookupFailed
        })?;
        let mut rx = vec![0u8; 8192];
        // The kernel answers while the request is sent; an answer to an
        // earlier request (one that was not read) is skipped by its
        // sequence number, so that no flow gets another's owner.
        loop {
            let n = match sock.recv(&mut &mut rx[..], 0) {
                Ok(n) => n,
                Err(e) => {
                    log::debug!("report: sock_diag recv: {e}");
                    return Err(Unattributed::LookupFailed);
                }
            };
            let m = match NetlinkMessage::<SockDiagMessage>::deserialize(&rx[..n]) {
                Ok(m) => m,
                Err(e) => {
                    log::debug!("report: sock_diag answer: {e}");
                    return Err(Unattributed::LookupFailed);
                }
            };
            if m.header.sequence_number != seq {
                continue;
            }
            return match m.payload {
                NetlinkPayload::InnerMessage(SockDiagMessage::InetResponse(r)) => {
                    let id = &r.header.socket_id;
                    let (a_local, a_remote) = (
                        answer_v4(id.source_address, id.source_port),
                        answer_v4(id.destination_address, id.destination_port),
                    );
                    if !answer_is_the_flows(proto, src, dst, r.header.state, a_local, a_remote) {
                        log::debug!(
                            "report: sock_diag answered another socket ({a_local} -> {a_remote}, state {})",
                            r.header.state
                        );
                        return Err(Unattributed::SocketNotFound);
                    }
                    match r.header.inode {
                        // A TIME_WAIT or request socket: no file, no owner.
                        0 => Err(Unattributed::SocketNotFound),
                        inode => Ok(SocketInfo {
                            uid: r.header.uid,
                            inode: u64::from(inode),
                        }),
                    }
                }
                // ENOENT: no such socket.
                NetlinkPayload::Error(_) => Err(Unattributed::SocketNotFound),
                _ => Err(Unattributed::LookupFailed),
            };
        }
    }

    /// The pid holding each wanted socket inode: recent owners first, then
    /// every process, newest first, until all are found; the full walk only
    /// when an inode still missing is worth one ([`UnfoundInodes`]).
    fn pids_of(&mut self, wanted: &HashSet<u64>, now: Instant) -> HashMap<u64, u32> {
        let mut found = HashMap::new();
        if wanted.is_empty() {
            return found;
        }
        let mut seen = HashSet::new();
        for &pid in &self.recent {
            seen.insert(pid);
            self.scan_fds(pid, wanted, &mut found);
            if found.len() == wanted.len() {
                return found;
            }
        }
        if !wanted
            .iter()
            .any(|i| !found.contains_key(i) && self.unfound.worth_a_walk(*i, now))
        {
            return found;
        }
        self.walk_all(wanted, &seen, &mut found);
        for &i in wanted {
            if !found.contains_key(&i) {
                self.unfound.not_found(i, now);
            }
        }
        found
    }

    /// Every process but those in `seen`, newest first, until every wanted
    /// inode is in `found`.
    fn walk_all(&self, wanted: &HashSet<u64>, seen: &HashSet<u32>, found: &mut HashMap<u64, u32>) {
        let Ok(dir) = std::fs::read_dir(&self.proc_root) else {
            return;
        };
        let mut pids: Vec<u32> = dir
            .flatten()
            .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
            .filter(|p| !seen.contains(p))
            .collect();
        // Newest first (pids grow until they wrap): a command that was
        // just started, such as `curl`, is found before the long-running
        // daemons.
        pids.sort_unstable_by(|a, b| b.cmp(a));
        for pid in pids {
            self.scan_fds(pid, wanted, found);
            if found.len() == wanted.len() {
                break;
            }
        }
    }

    fn scan_fds(&self, pid: u32, wanted: &HashSet<u64>, found: &mut HashMap<u64, u32>) {
        let fd_dir = self.proc_root.join(pid.to_string()).join("fd");
        let Ok(dir) = std::fs::read_dir(&fd_dir) else {
            return;
        };
        for e in dir.flatten() {
            let Ok(target) = std::fs::read_link(e.path()) else {
                continue;
            };
            if let Some(inode) = socket_inode(target.as_os_str().as_encoded_bytes()) {
                if wanted.contains(&inode) {
                    found.entry(inode).or_insert(pid);
                }
            }
        }
    }

    fn describe(&self, pid: u32, uid: u32) -> Option<Owner> {
        let dir = self.proc_root.join(pid.to_string());
        let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
        let (command, start_ticks) = parse_stat(&stat)?;
        let exe = std::fs::read_link(dir.join("exe"))
            .map(|p| exe_path(&p))
            .unwrap_or_default();
        Some(Owner {
            pid,
            command,
            exe,
            uid,
            start_ticks,
        })
    }
}

/// The executable's path as `/proc/PID/exe` reads, without the
/// ` (deleted)` the kernel appends when the file was replaced.
fn exe_path(p: &Path) -> String {
    let s = p.to_string_lossy();
    s.strip_suffix(" (deleted)").unwrap_or(&s).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_net_icmp_lines() {
        // Two ping sockets as Linux 6.x prints them: 192.0.0.4 with
        // identifier 0x1234, and the wildcard with identifier 7; the
        // address is the network-order bytes read as a little- or
        // big-endian u32, so build the field the way the kernel does.
        let a = u32::from_ne_bytes([192, 0, 0, 4]);
        let text = format!(
            "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n\
             \x20 12: {a:08X}:1234 00000000:0000 07 00000000:00000000 00:00000000 00000000  1000        0 4242 2 0000000000000000 0\n\
             \x20 40: 00000000:0007 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 77 2 0000000000000000 0\n\
             garbage line\n"
        );
        let socks = parse_proc_net_icmp(&text);
        assert_eq!(
            socks,
            vec![
                PingSocket {
                    local: "192.0.0.4:4660".parse().unwrap(),
                    uid: 1000,
                    inode: 4242
                },
                PingSocket {
                    local: "0.0.0.0:7".parse().unwrap(),
                    uid: 0,
                    inode: 77
                },
            ]
        );
        let src = |s: &str| s.parse::<SocketAddrV4>().unwrap();
        assert_eq!(
            find_ping_socket(&socks, src("192.0.0.4:4660")),
            Some(SocketInfo {
                uid: 1000,
                inode: 4242
            })
        );
        assert_eq!(
            find_ping_socket(&socks, src("192.0.0.4:7")).unwrap().inode,
            77
        );
        assert_eq!(find_ping_socket(&socks, src("192.0.0.9:4660")), None);
        assert_eq!(find_ping_socket(&socks, src("192.0.0.4:8")), None);
    }

    #[test]
    fn stat_and_links() {
        let stat = "4242 (my (odd) cmd) S 1 4242 4242 0 -1 4194560 100 0 0 0 3 1 0 0 20 0 1 0 987654 1000 100";
        assert_eq!(parse_stat(stat), Some(("my (odd) cmd".into(), 987654)));
        assert_eq!(parse_stat("4242 (short) S 1"), None);
        assert_eq!(socket_inode(b"socket:[123456]"), Some(123456));
        assert_eq!(socket_inode(b"pipe:[1]"), None);
        assert_eq!(socket_inode(b"/dev/null"), None);
        assert_eq!(
            exe_path(Path::new("/usr/bin/curl (deleted)")),
            "/usr/bin/curl"
        );
    }

    fn own_comm() -> String {
        std::fs::read_to_string("/proc/self/comm")
            .unwrap()
            .trim()
            .to_string()
    }

    fn v4(a: std::net::SocketAddr) -> SocketAddrV4 {
        match a {
            std::net::SocketAddr::V4(a) => a,
            _ => panic!("not IPv4"),
        }
    }

    /// The inode of a socket: stat of its descriptor (`/proc/self/fd/N`
    /// followed, as fstat(2) would answer).
    fn inode_of(fd: &impl std::os::fd::AsRawFd) -> u64 {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(format!("/proc/self/fd/{}", fd.as_raw_fd()))
            .unwrap()
            .ino()
    }

    #[test]
    fn an_answer_counts_only_for_the_flows_own_socket() {
        let a = |s: &str| s.parse::<SocketAddrV4>().unwrap();
        let (src, dst) = (a("192.0.0.4:40000"), a("203.0.113.10:80"));
        let est = 1;
        assert!(answer_is_the_flows(FlowProto::Tcp, src, dst, est, src, dst));
        // A listener on the source port (the kernel's fallback).
        assert!(!answer_is_the_flows(
            FlowProto::Tcp,
            src,
            dst,
            TCP_LISTEN,
            a("0.0.0.0:40000"),
            a("0.0.0.0:0")
        ));
        assert!(!answer_is_the_flows(
            FlowProto::Tcp,
            src,
            dst,
            TCP_LISTEN,
            src,
            dst
        ));
        // Another connection.
        assert!(!answer_is_the_flows(
            FlowProto::Tcp,
            src,
            dst,
            est,
            src,
            a("203.0.113.10:81")
        ));
        assert!(!answer_is_the_flows(
            FlowProto::Tcp,
            src,
            dst,
            est,
            a("192.0.0.4:40001"),
            dst
        ));
        // UDP: connected to dst, or not connected, on the address or the
        // wildcard; not a socket connected elsewhere, not another port.
        let close = 7;
        assert!(answer_is_the_flows(FlowProto::Udp, src, dst, est, src, dst));
        assert!(answer_is_the_flows(
            FlowProto::Udp,
            src,
            dst,
            close,
            src,
            a("0.0.0.0:0")
        ));
        assert!(answer_is_the_flows(
            FlowProto::Udp,
            src,
            dst,
            close,
            a("0.0.0.0:40000"),
            a("0.0.0.0:0")
        ));
        assert!(!answer_is_the_flows(
            FlowProto::Udp,
            src,
            dst,
            est,
            src,
            a("203.0.113.11:80")
        ));
        assert!(!answer_is_the_flows(
            FlowProto::Udp,
            src,
            dst,
            close,
            a("0.0.0.0:40001"),
            a("0.0.0.0:0")
        ));
        assert!(!answer_is_the_flows(
            FlowProto::Udp,
            src,
            dst,
            close,
            a("192.0.0.9:40000"),
            a("0.0.0.0:0")
        ));
        // The answer is the peer's socket (swapped tuple).
        assert!(!answer_is_the_flows(
            FlowProto::Udp,
            src,
            dst,
            est,
            dst,
            src
        ));
    }

    #[test]
    fn an_unfound_inode_is_walked_for_once_per_ttl() {
        let t0 = Instant::now();
        let mut u = UnfoundInodes::default();
        assert!(u.worth_a_walk(7, t0));
        u.not_found(7, t0);
        assert!(!u.worth_a_walk(7, t0));
        assert!(!u.worth_a_walk(7, t0 + UNFOUND_TTL - Duration::from_millis(1)));
        assert!(u.worth_a_walk(8, t0));
        assert!(u.worth_a_walk(7, t0 + UNFOUND_TTL));
        // Expired entries leave as new ones come; the cap holds.
        u.not_found(9, t0 + UNFOUND_TTL);
        assert_eq!(u.until.len(), 1);
        for i in 0..(UNFOUND_CAP as u64 + 10) {
            u.not_found(1000 + i, t0 + UNFOUND_TTL);
        }
        assert_eq!(u.until.len(), UNFOUND_CAP);
        assert!(u.worth_a_walk(9, t0 + UNFOUND_TTL));
        // Found again later, walked for again after the TTL.
        assert!(!u.worth_a_walk(1000 + UNFOUND_CAP as u64, t0 + UNFOUND_TTL));
    }

    /// A socket bound to a device (SO_BINDTODEVICE, here `lo`) is found
    /// when the request names that device, as the TUN's index is named for
    /// flows, and not with index 0. Binding needs CAP_NET_RAW: as another
    /// user the test says so and checks nothing else.
    #[test]
    fn a_socket_bound_to_the_device_is_found_by_its_index() {
        use std::net::{TcpListener, TcpStream, UdpSocket};
        use std::os::fd::AsFd;
        let bind_to = |fd: std::os::fd::BorrowedFd<'_>| crate::sys::bind_to_device(fd, "lo");
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (_s, _) = l.accept().unwrap();
        let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
        let u = UdpSocket::bind("127.0.0.1:0").unwrap();
        u.connect(peer.local_addr().unwrap()).unwrap();
        if let Err(e) = bind_to(c.as_fd()) {
            assert_ne!(crate::sys::euid(), 0, "root cannot bind to lo");
            eprintln!("SO_BINDTODEVICE refused ({e}, not root): not checked");
            return;
        }
        bind_to(u.as_fd()).unwrap();
        let lo = crate::sys::if_nametoindex("lo").unwrap();
        let flows = [
            (
                FlowProto::Tcp,
                v4(c.local_addr().unwrap()),
                v4(c.peer_addr().unwrap()),
            ),
            (
                FlowProto::Udp,
                v4(u.local_addr().unwrap()),
                v4(peer.local_addr().unwrap()),
            ),
        ];
        let by_index = Attributor::new(lo).sockets(&flows);
        assert_eq!(by_index[0].map(|s| s.inode), Ok(inode_of(&c)));
        assert_eq!(by_index[1].map(|s| s.inode), Ok(inode_of(&u)));
        let unbound_only = Attributor::new(0).sockets(&flows);
        assert!(unbound_only.iter().all(|r| r.is_err()), "{unbound_only:?}");
    }

    #[test]
    fn dual_stack_answers_are_read_as_ipv4() {
        let v6 = |s: &str| IpAddr::V6(s.parse().unwrap());
        assert_eq!(
            answer_v4(v6("::ffff:192.0.0.4"), 40000),
            "192.0.0.4:40000".parse().unwrap()
        );
        assert_eq!(answer_v4(v6("::"), 53), "0.0.0.0:53".parse().unwrap());
        assert_eq!(
            answer_v4(v6("2001:db8::1"), 80),
            SocketAddrV4::new(Ipv4Addr::BROADCAST, 0)
        );
        let v4a = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 10));
        assert_eq!(answer_v4(v4a, 80), "203.0.113.10:80".parse().unwrap());
    }

    /// A dual-stack socket (AF_INET6, IPV6_V6ONLY off, as Java's) talking
    /// IPv4: the kernel answers the AF_INET request in the socket's own
    /// family, with IPv4-mapped addresses; it is still the flow's.
    #[test]
    fn a_dual_stack_socket_is_found() {
        use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let mapped = |a: SocketAddr| match a {
            SocketAddr::V4(a) => SocketAddr::new(IpAddr::V6(a.ip().to_ipv6_mapped()), a.port()),
            a => a,
        };
        let c = TcpStream::connect(mapped(l.local_addr().unwrap())).unwrap();
        let (_s, _) = l.accept().unwrap();
        assert!(c.local_addr().unwrap().is_ipv6(), "a dual-stack socket");
        let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
        let u = UdpSocket::bind("[::]:0").unwrap();
        u.connect(mapped(peer.local_addr().unwrap())).unwrap();
        let as_v4 = |a: SocketAddr| answer_v4(a.ip(), a.port());
        let flows = [
            (
                FlowProto::Tcp,
                as_v4(c.local_addr().unwrap()),
                as_v4(c.peer_addr().unwrap()),
            ),
            (
                FlowProto::Udp,
                SocketAddrV4::new(Ipv4Addr::LOCALHOST, u.local_addr().unwrap().port()),
                v4(peer.local_addr().unwrap()),
            ),
        ];
        let found = Attributor::new(0).sockets(&flows);
        assert_eq!(found[0].map(|s| s.inode), Ok(inode_of(&c)), "{found:?}");
        assert_eq!(found[1].map(|s| s.inode), Ok(inode_of(&u)), "{found:?}");
    }

    /// Real sockets of this process, found through sock_diag and /proc as
    /// a flow's app side would be: a TCP client, a connected and an
    /// unconnected UDP socket; and a tuple nobody has.
    #[test]
    fn names_this_process_for_its_own_sockets() {
        use std::net::{TcpListener, TcpStream, UdpSocket};
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (_s, _) = l.accept().unwrap();
        let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
        let connected = UdpSocket::bind("127.0.0.1:0").unwrap();
        connected.connect(peer.local_addr().unwrap()).unwrap();
        let unconnected = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut a = Attributor::new(0);
        let flows = [
            (
                FlowProto::Tcp,
                v4(c.local_addr().unwrap()),
                v4(c.peer_addr().unwrap()),
            ),
            (
                FlowProto::Udp,
                v4(connected.local_addr().unwrap()),
                v4(peer.local_addr().unwrap()),
            ),
            (
                FlowProto::Udp,
                v4(unconnected.local_addr().unwrap()),
                "127.0.0.1:9".parse().unwrap(),
            ),
            // A TCP tuple with no socket.
            (
                FlowProto::Tcp,
                "127.0.0.1:1".parse().unwrap(),
                "127.0.0.1:2".parse().unwrap(),
            ),
        ];
        // The very sockets, not their peers: a UDP lookup that found
        // `peer` would name this process too.
        let socks = a.sockets(&flows);
        let expected = [inode_of(&c), inode_of(&connected), inode_of(&unconnected)];
        for (i, want) in expected.iter().enumerate() {
            let got = socks[i].unwrap_or_else(|e| panic!("flow {i}: {e:?}"));
            assert_eq!(got.inode, *want, "flow {i}");
        }
        assert_ne!(inode_of(&peer), expected[1]);
        let got = a.owners(&flows);
        let me = std::process::id();
        for (i, g) in got.iter().take(3).enumerate() {
            let o = g.as_ref().unwrap_or_else(|e| panic!("flow {i}: {e:?}"));
            assert_eq!(o.pid, me, "flow {i}");
            assert_eq!(o.command, own_comm(), "flow {i}");
            assert_eq!(o.uid, crate::sys::euid(), "flow {i}");
            assert_eq!(
                o.exe,
                std::env::current_exe().unwrap().to_string_lossy(),
                "flow {i}"
            );
        }
        assert_eq!(got[3], Err(Unattributed::SocketNotFound));
        // A closed socket is gone too.
        let gone = (
            FlowProto::Tcp,
            v4(c.local_addr().unwrap()),
            v4(c.peer_addr().unwrap()),
        );
        drop(c);
        drop(_s);
        let again = a.owners(&[gone]);
        assert!(again[0].is_err(), "{again:?}");
    }
}
