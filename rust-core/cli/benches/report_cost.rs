//! What `clat run --report` costs (issue 17 item 4): memory per flow
//! recorded and CPU per 1,000 flows, printed, never asserted.
//!
//! ```sh
//! cargo bench -p clat-cli --bench report_cost
//! ```
//!
//! - Aggregation ([`report::Recorder`], sans-I/O): CPU per 1,000 flows
//!   (start and end), and the heap it keeps, measured by a counting global
//!   allocator: per process, per open flow, and per flow recorded for a
//!   mix of processes and destinations.
//! - Attribution ([`attribution::Attributor`]): CPU per 1,000 flows for
//!   real TCP and UDP sockets of this process (sock_diag + `/proc` scan),
//!   one flow per batch (the owner among the recent ones, and cold: a
//!   full `/proc` scan) and 100 flows per batch. It depends on how many
//!   processes and descriptors the host has: the figures say how many.
//!
//! The modules are the `clat` binary's own source files, compiled into
//! this benchmark (the cli crate has no library target).

#[path = "../src/attribution.rs"]
#[allow(dead_code)]
mod attribution;
#[path = "../src/report.rs"]
#[allow(dead_code)]
mod report;

use clat_engine::{FlowEnd, FlowEndReason, FlowProto, FlowStart};
use std::alloc::{GlobalAlloc, Layout, System};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

/// The system allocator, counting the bytes in use.
struct Counting;

static IN_USE: AtomicI64 = AtomicI64::new(0);

// SAFETY: every call is passed on unchanged to the system allocator; the
// counter is only arithmetic on the sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        IN_USE.fetch_add(l.size() as i64, Ordering::Relaxed);
        // SAFETY: same layout contract as our caller's.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        IN_USE.fetch_sub(l.size() as i64, Ordering::Relaxed);
        // SAFETY: `p` came from `alloc` with layout `l`.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        IN_USE.fetch_add(new as i64 - l.size() as i64, Ordering::Relaxed);
        // SAFETY: `p` came from `alloc` with layout `l`.
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static A: Counting = Counting;

/// CPU time of this thread (user and system: the `/proc` scans and
/// sock_diag are system time), `CLOCK_THREAD_CPUTIME_ID`.
fn cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec for the kernel to fill in.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// CPU time taken by `f`.
struct Cpu(Duration);

impl Cpu {
    fn start() -> Cpu {
        Cpu(cpu())
    }
    fn elapsed(&self) -> Duration {
        cpu().saturating_sub(self.0)
    }
}

fn in_use() -> i64 {
    IN_USE.load(Ordering::Relaxed)
}

fn owner(pid: u32) -> attribution::Owner {
    attribution::Owner {
        pid,
        command: format!("app-{pid}"),
        exe: format!("/usr/bin/app-{pid}"),
        uid: 1000,
        start_ticks: 1,
    }
}

fn start(id: u64, dst: u32, named: bool) -> FlowStart {
    FlowStart {
        id,
        at_ms: id as i64,
        proto: FlowProto::Tcp,
        src: SocketAddrV4::new(Ipv4Addr::new(192, 0, 0, 4), (id % 60000) as u16 + 1024),
        dst: SocketAddrV4::new(Ipv4Addr::from(0xcb00_7100 + dst), 443),
        // A typical name length (a CDN host name).
        name: named.then(|| format!("host{dst}.cdn.example.com")),
        native_ipv4: false,
    }
}

fn end(id: u64) -> FlowEnd {
    FlowEnd {
        id,
        at_ms: id as i64 + 1,
        bytes_up: 1000,
        bytes_down: 20000,
        how: FlowEndReason::Closed,
    }
}

/// Feeds `n` flows from `procs` processes to `dests` destinations each
/// (half by name), each ended right away; returns the time taken.
fn feed(r: &mut report::Recorder, first_id: u64, n: u64, procs: u32, dests: u32) -> Duration {
    let t = Cpu::start();
    for i in 0..n {
        let id = first_id + i;
        let pid = (i % u64::from(procs)) as u32 + 1;
        let dst = ((i / u64::from(procs)) % u64::from(dests)) as u32;
        r.flow_started(&start(id, dst, dst.is_multiple_of(2)), Ok(owner(pid)));
        r.flow_ended(&end(id));
    }
    t.elapsed()
}

fn aggregation() {
    println!("## Aggregation (Recorder, default bounds)");
    // Warm-up, then the figure: 1,000,000 flows from 100 processes to 50
    // destinations each.
    let mut r = report::Recorder::new(report::Limits::default(), 0);
    feed(&mut r, 0, 100_000, 100, 50);
    let n = 1_000_000;
    let t = feed(&mut r, 100_000, n, 100, 50);
    println!(
        "CPU: {:.1} us per 1,000 flows (start + end), {} flows in {:.0} ms",
        t.as_secs_f64() * 1e6 / (n as f64 / 1000.0),
        n,
        t.as_secs_f64() * 1e3
    );
    let t = Cpu::start();
    let doc = r.report(0, None, 0);
    let json = doc.to_json();
    println!(
        "report of 100 processes: {:.2} ms to build and serialise, {} bytes of JSON",
        t.elapsed().as_secs_f64() * 1e3,
        json.len()
    );

    // Memory.
    let base = in_use();
    let mut r = report::Recorder::new(report::Limits::default(), 0);
    let empty = in_use() - base;
    feed(&mut r, 0, 1, 1, 1);
    let one = in_use() - base - empty;
    let before = in_use();
    feed(&mut r, 1, 1000, 1, 1);
    let repeat = in_use() - before;
    println!(
        "memory: empty recorder {empty} B; first flow of a process {one} B; \
         1,000 more flows of it to the same destination {repeat} B"
    );
    let mut r = report::Recorder::new(report::Limits::default(), 0);
    let before = in_use();
    feed(&mut r, 0, 64 * 64, 1, 64);
    let full = in_use() - before;
    println!(
        "one process at its bounds (64 destinations, 32 names): {full} B ({:.0} B per destination)",
        full as f64 / 64.0
    );
    let mut r = report::Recorder::new(report::Limits::default(), 0);
    let before = in_use();
    let n = 10_000u64;
    for id in 0..n {
        r.flow_started(&start(id, 1, false), Ok(owner(1)));
    }
    let open = in_use() - before;
    println!(
        "open flows (started, not ended): {:.1} B per flow ({n} open)",
        open as f64 / n as f64
    );
    for (procs, dests, n) in [
        (20u32, 10u32, 10_000u64),
        (200, 50, 100_000),
        (1024, 64, 1_000_000),
    ] {
        let mut r = report::Recorder::new(report::Limits::default(), 0);
        let before = in_use();
        feed(&mut r, 0, n, procs, dests);
        let kept = in_use() - before;
        println!(
            "{n} flows, {procs} processes x {dests} destinations: {kept} B kept, \
             {:.1} B per flow recorded",
            kept as f64 / n as f64
        );
    }
}

fn v4(a: std::net::SocketAddr) -> SocketAddrV4 {
    match a {
        std::net::SocketAddr::V4(a) => a,
        std::net::SocketAddr::V6(_) => unreachable!("bound to 127.0.0.1"),
    }
}

fn count_dir(p: &str) -> usize {
    std::fs::read_dir(p).map(|d| d.count()).unwrap_or(0)
}

/// CPU per 1,000 flows of looking `flow` up `n` times, one per batch.
fn per_1000(
    a: &mut attribution::Attributor,
    flow: (FlowProto, SocketAddrV4, SocketAddrV4),
    n: usize,
) -> f64 {
    let t = Cpu::start();
    for _ in 0..n {
        let r = a.owners(&[flow]);
        assert!(r[0].is_ok(), "{r:?}");
    }
    t.elapsed().as_secs_f64() * 1e6 / n as f64
}

fn attribution() {
    println!("## Attribution (sock_diag + /proc, real sockets of this process)");
    let procs = std::fs::read_dir("/proc")
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
                .count()
        })
        .unwrap_or(0);
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (_s, _) = l.accept().unwrap();
    let tcp = (
        FlowProto::Tcp,
        v4(c.local_addr().unwrap()),
        v4(c.peer_addr().unwrap()),
    );
    let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    let u = UdpSocket::bind("127.0.0.1:0").unwrap();
    let udp = (
        FlowProto::Udp,
        v4(u.local_addr().unwrap()),
        v4(peer.local_addr().unwrap()),
    );
    println!("host: {procs} processes");

    let mut a = attribution::Attributor::new(0);
    let fds = count_dir("/proc/self/fd");
    println!(
        "owner among the recent ones, {fds} descriptors: TCP {:.1} ms, UDP {:.1} ms CPU per 1,000 flows",
        per_1000(&mut a, tcp, 2000) ,
        per_1000(&mut a, udp, 2000)
    );
    // Cold: a new attributor knows no recent owner, so it scans /proc.
    let t = Cpu::start();
    let n = 200;
    for _ in 0..n {
        let mut fresh = attribution::Attributor::new(0);
        assert!(fresh.owners(&[tcp])[0].is_ok());
    }
    println!(
        "cold (full /proc scan, new sock_diag socket), {fds} descriptors: {:.1} ms per 1,000 flows",
        t.elapsed().as_secs_f64() * 1e6 / n as f64
    );

    // An owner with many descriptors: its fd table is read per lookup.
    let mut keep = Vec::new();
    let mut flows = Vec::new();
    for _ in 0..300 {
        let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, _) = l.accept().unwrap();
        flows.push((
            FlowProto::Tcp,
            v4(c.local_addr().unwrap()),
            v4(c.peer_addr().unwrap()),
        ));
        keep.push((c, s));
    }
    let fds = count_dir("/proc/self/fd");
    println!(
        "owner among the recent ones, {fds} descriptors: TCP {:.1} ms per 1,000 flows",
        per_1000(&mut a, tcp, 500)
    );
    for batch in [10, 100] {
        let t = Cpu::start();
        let mut done = 0;
        for _ in 0..5 {
            for chunk in flows.chunks(batch) {
                let mut fresh = attribution::Attributor::new(0);
                assert!(fresh.owners(chunk).iter().all(|o| o.is_ok()));
                done += chunk.len();
            }
        }
        println!(
            "{batch} flows per batch, cold, {fds} descriptors: {:.1} ms per 1,000 flows",
            t.elapsed().as_secs_f64() * 1e6 / done as f64
        );
    }
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing
    // useful either: run the figures in both cases, they take seconds.
    aggregation();
    attribution();
}
