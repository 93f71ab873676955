//! The engine's real ingress: a running `Engine` whose "TUN" is one end of
//! a SOCK_SEQPACKET pair (packet boundaries like a TUN). Each input is a
//! run of packets; each is written into the engine and the target waits
//! until the engine has read it, so a panic (libFuzzer aborts on any panic,
//! also in the engine thread) or a stall is blamed on the right input.
//!
//! Run as root, the target first moves into a fresh network namespace with
//! only a down loopback: upstream sockets are really created (flow tables,
//! timers, the DNS relay and the flow cap are exercised) but nothing can
//! leave the machine. Without root, the protector refuses every upstream
//! socket instead.
//!
//! Input: [flags][len_hi][len_lo][bytes...] repeated. Flags ask for fix-ups
//! so that the fuzzer gets past the IPv4 header checks cheaply: bit 0
//! version/IHL 0x45 when the version is not 4, bit 1 source 192.0.0.4, bit 2
//! total length = packet length, bit 3 ICMP checksum, bit 4 destination in
//! the CLAT's /29 (low 3 bits from the old destination); the header checksum
//! is always recomputed when any bit is set.
//!
//! What comes out is checked too: every packet the engine writes to its TUN
//! is a well-formed IPv4 packet (version 4, header checksum right, total
//! length = its length, a whole TCP, UDP or ICMP packet with a right
//! transport checksum), parsed with etherparse and summed with the RFC 1071
//! sum below rather than the engine's own code; and the live flows never
//! exceed the configured cap.
#![no_main]

use clat_engine::packet::{checksum, PROTO_ICMP};
use clat_engine::{Engine, EngineConfig};
use libfuzzer_sys::fuzz_target;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

struct Rig {
    ours: OwnedFd,
    engine: Engine,
    sent: u64,
}

fn packet_pair() -> (OwnedFd, OwnedFd) {
    let (a, b) = socket2::Socket::pair(socket2::Domain::UNIX, socket2::Type::SEQPACKET, None)
        .expect("a SOCK_SEQPACKET socketpair");
    (a.into(), b.into())
}

fn rig() -> &'static Mutex<Rig> {
    static R: OnceLock<Mutex<Rig>> = OnceLock::new();
    R.get_or_init(|| {
        // SAFETY: unshare has no memory-safety preconditions.
        let isolated = unsafe { libc::unshare(libc::CLONE_NEWNET) } == 0;
        let protector: clat_protect::Protector = if isolated {
            let _ = std::fs::write("/proc/sys/net/ipv4/ping_group_range", "0 2147483647");
            Arc::new(clat_protect::NoProtect)
        } else {
            eprintln!("ingress fuzz: not root, upstream sockets refused");
            Arc::new(|_fd| -> io::Result<()> { Err(io::Error::other("fuzz: no upstream")) })
        };
        let (ours, tun) = packet_pair();
        let cfg = EngineConfig {
            prefix: "2001:db8:64::/96".parse().unwrap(),
            upstream_dns: vec!["[2001:db8:1::53]:53".parse().unwrap()],
            max_flows: MAX_FLOWS,
            udp_timeout: Duration::from_millis(500),
            icmp_timeout: Duration::from_millis(500),
            tcp_transitory_timeout: Duration::from_millis(500),
            dns_timeout: Duration::from_millis(200),
            ..Default::default()
        };
        let engine = Engine::start(tun, cfg, protector).expect("engine on a socketpair");
        Mutex::new(Rig {
            ours,
            engine,
            sent: 0,
        })
    })
}

fn fixup(flags: u8, p: &mut Vec<u8>) {
    if flags & 0x1f == 0 || p.len() < 20 {
        return;
    }
    if flags & 1 != 0 && p[0] >> 4 != 4 {
        p[0] = 0x45;
    }
    if flags & 2 != 0 {
        p[12..16].copy_from_slice(&[192, 0, 0, 4]);
    }
    if flags & 16 != 0 {
        p[16..19].copy_from_slice(&[192, 0, 0]);
        p[19] &= 7;
    }
    if flags & 4 != 0 {
        let n = p.len() as u16;
        p[2..4].copy_from_slice(&n.to_be_bytes());
    }
    let ihl = ((p[0] & 15) as usize * 4).clamp(20, p.len());
    if flags & 8 != 0 && p[9] == PROTO_ICMP && p.len() >= ihl + 4 {
        p[ihl + 2] = 0;
        p[ihl + 3] = 0;
        let c = checksum(0, &p[ihl..]);
        p[ihl + 2..ihl + 4].copy_from_slice(&c.to_be_bytes());
    }
    p[10] = 0;
    p[11] = 0;
    let c = checksum(0, &p[..ihl]);
    p[10..12].copy_from_slice(&c.to_be_bytes());
}

const MAX_FLOWS: usize = 64;

/// RFC 1071 one's-complement sum of `parts` (each but the last of even length).
fn ones_sum(parts: &[&[u8]]) -> u16 {
    let mut s: u64 = 0;
    for part in parts {
        for c in part.chunks(2) {
            s += u64::from(u16::from_be_bytes([c[0], c.get(1).copied().unwrap_or(0)]));
        }
    }
    while s >> 16 != 0 {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

/// The one's-complement sum over an IPv4 packet's transport segment and
/// its pseudo-header (none for ICMP), the segment's range and protocol, for
/// a whole (unfragmented) TCP, UDP or ICMP packet that etherparse accepts.
fn transport_sum(p: &[u8]) -> Option<(u16, std::ops::Range<usize>, u8)> {
    let ip = etherparse::Ipv4Slice::from_slice(p).ok()?;
    let pl = ip.payload();
    let seg = pl.payload;
    let proto = pl.ip_number.0;
    if pl.fragmented || !matches!(proto, PROTO_ICMP | 6 | 17) {
        return None;
    }
    let mut pseudo = Vec::with_capacity(12);
    if proto != PROTO_ICMP {
        let h = ip.header();
        pseudo.extend_from_slice(&h.source());
        pseudo.extend_from_slice(&h.destination());
        pseudo.extend_from_slice(&[0, proto]);
        pseudo.extend_from_slice(&(seg.len() as u16).to_be_bytes());
    }
    let start = seg.as_ptr() as usize - p.as_ptr() as usize;
    Some((ones_sum(&[&pseudo, seg]), start..start + seg.len(), proto))
}

/// The engine passes TCP segments through its NAT with incremental
/// checksum updates, so a bad checksum in stays bad out (and the kernel
/// drops it). Inputs get a right TCP checksum so that any bad one out is
/// the engine's fault.
fn fix_tcp_checksum(p: &mut [u8]) {
    let Some((_, seg, 6)) = transport_sum(p) else {
        return;
    };
    if seg.len() < 20 {
        return;
    }
    p[seg.start + 16] = 0;
    p[seg.start + 17] = 0;
    let (sum, ..) = transport_sum(p).expect("still parses");
    p[seg.start + 16..seg.start + 18].copy_from_slice(&(!sum).to_be_bytes());
}

/// Panics unless `p`, written by the engine to its TUN, is well formed.
fn check_tun_output(p: &[u8]) {
    assert!(p.len() >= 20, "short packet from the engine: {p:02x?}");
    // Options are possible: a NATed TCP segment keeps the app's.
    let ihl = usize::from(p[0] & 15) * 4;
    assert!(
        p[0] >> 4 == 4 && ihl >= 20 && ihl <= p.len(),
        "IPv4 header: {p:02x?}"
    );
    assert_eq!(
        usize::from(u16::from_be_bytes([p[2], p[3]])),
        p.len(),
        "total length"
    );
    assert_eq!(
        ones_sum(&[&p[..ihl]]),
        0xffff,
        "IPv4 header checksum: {p:02x?}"
    );
    etherparse::Ipv4Slice::from_slice(p).expect("engine output parses");
    let Some((sum, seg, proto)) = transport_sum(p) else {
        assert!(
            p[6] & 0x3f != 0 || p[7] != 0,
            "the engine wrote protocol {} to its TUN",
            p[9]
        );
        return; // a fragment
    };
    if proto == 17 {
        assert!(
            seg.len() >= 8 && (p[seg.start + 6], p[seg.start + 7]) != (0, 0),
            "UDP without checksum"
        );
    }
    assert_eq!(
        sum, 0xffff,
        "transport checksum of protocol {proto}: {p:02x?}"
    );
}

/// Reads (and checks) everything the engine has written so far.
fn drain(fd: &OwnedFd, buf: &mut [u8]) {
    loop {
        // SAFETY: buf is valid for writes of its length.
        let n = unsafe {
            libc::recv(
                fd.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT,
            )
        };
        if n <= 0 {
            return;
        }
        check_tun_output(&buf[..n as usize]);
    }
}

fn assert_flows_capped(e: &Engine) {
    let s = e.stats();
    let live = s.flows_tcp + s.flows_udp + s.flows_icmp;
    assert!(
        live as usize <= MAX_FLOWS,
        "{live} live flows, cap {MAX_FLOWS}"
    );
}

fuzz_target!(|data: &[u8]| {
    let mut r = rig().lock().unwrap();
    let mut sink = vec![0u8; 70000];
    let mut rest = data;
    let mut batch = 0u64;
    while rest.len() >= 3 {
        let flags = rest[0];
        let n = (usize::from(u16::from_be_bytes([rest[1], rest[2]])) % 2048).min(rest.len() - 3);
        let mut p = rest[3..3 + n].to_vec();
        rest = &rest[3 + n..];
        if p.is_empty() {
            continue; // an empty packet is a counted drop, tested elsewhere
        }
        fixup(flags, &mut p);
        fix_tcp_checksum(&mut p);
        // SAFETY: p is valid for the call.
        let w = unsafe { libc::send(r.ours.as_raw_fd(), p.as_ptr().cast(), p.len(), 0) };
        assert_eq!(w as usize, p.len(), "send: {}", io::Error::last_os_error());
        batch += 1;
        drain(&r.ours, &mut sink);
        assert_flows_capped(&r.engine);
    }
    r.sent += batch;
    let want = r.sent;
    let t0 = Instant::now();
    while r.engine.stats().tun_rx_packets < want {
        assert!(
            r.engine.is_running(),
            "engine ended: {:?}",
            r.engine.exit_reason()
        );
        assert!(t0.elapsed() < Duration::from_secs(5), "engine stalled");
        drain(&r.ours, &mut sink);
        std::thread::yield_now();
    }
    drain(&r.ours, &mut sink);
    assert_flows_capped(&r.engine);
    assert!(
        r.engine.is_running(),
        "engine ended: {:?}",
        r.engine.exit_reason()
    );
});
