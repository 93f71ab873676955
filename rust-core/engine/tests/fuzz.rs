//! Robustness: the engine must never panic on any input. The "TUN" here is
//! one end of a Unix datagram socketpair (the engine only reads and writes
//! whole packets), so no root is needed; the protector refuses every
//! upstream socket, so nothing ever leaves the machine.

use clat_engine::packet::wire::{TcpFlags, TcpRepr, TcpSeqNumber};
use clat_engine::packet::{emit_icmp4, emit_tcp4, emit_udp4};
use clat_engine::{Engine, EngineConfig};
use std::io;
use std::net::Ipv4Addr;
use std::net::SocketAddrV4;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::Duration;

/// A SOCK_SEQPACKET pair: packet boundaries like a TUN, and a hang-up when
/// one end closes. Returns (test end, engine end).
fn packet_pair() -> (OwnedFd, OwnedFd) {
    let (a, b) = socket2::Socket::pair(socket2::Domain::UNIX, socket2::Type::SEQPACKET, None)
        .expect("a SOCK_SEQPACKET socketpair");
    (a.into(), b.into())
}

fn send(fd: &OwnedFd, p: &[u8]) -> bool {
    // SAFETY: p is valid for the call.
    unsafe {
        libc::send(
            std::os::fd::AsRawFd::as_raw_fd(fd),
            p.as_ptr().cast(),
            p.len(),
            libc::MSG_DONTWAIT,
        ) >= 0
    }
}

fn recv(fd: &OwnedFd, b: &mut [u8]) -> bool {
    // SAFETY: b is valid for the call.
    unsafe {
        libc::recv(
            std::os::fd::AsRawFd::as_raw_fd(fd),
            b.as_mut_ptr().cast(),
            b.len(),
            libc::MSG_DONTWAIT,
        ) > 0
    }
}

fn templates() -> Vec<Vec<u8>> {
    let clat = Ipv4Addr::new(192, 0, 0, 4);
    let d = Ipv4Addr::new(203, 0, 113, 10);
    let mut out = Vec::new();
    let mut b = vec![0u8; 1600];
    let tcp = |sport, dport, ack, flags| TcpRepr {
        src_port: sport,
        dst_port: dport,
        seq: TcpSeqNumber(1),
        ack: TcpSeqNumber(ack),
        flags,
        window: 0,
        timestamps: None,
    };
    let n = emit_tcp4(&mut b, clat, d, &tcp(40000, 80, 0, TcpFlags::SYN));
    out.push(b[..n].to_vec());
    let n = emit_tcp4(&mut b, clat, d, &tcp(40000, 80, 1, TcpFlags::ACK));
    out.push(b[..n].to_vec());
    let nat = Ipv4Addr::new(192, 0, 0, 5);
    let n = emit_tcp4(&mut b, clat, nat, &tcp(33333, 1024, 1, TcpFlags::ACK));
    out.push(b[..n].to_vec());
    let udp = |sport, dst, dport| {
        (
            SocketAddrV4::new(clat, sport),
            SocketAddrV4::new(dst, dport),
        )
    };
    let n = emit_udp4(&mut b, udp(5000, d, 7), 100, 1);
    out.push(b[..n].to_vec());
    let n = emit_udp4(&mut b, udp(5001, Ipv4Addr::new(192, 0, 0, 6), 53), 40, 2);
    out.push(b[..n].to_vec());
    b[20] = 8;
    b[21] = 0;
    let n = emit_icmp4(&mut b, clat, d, 64, 3);
    out.push(b[..n].to_vec());
    // a first fragment
    let n = emit_udp4(&mut b, udp(5002, d, 7), 1000, 4);
    let mut f = b[..n].to_vec();
    f[6] = 0x20;
    out.push(f);
    out
}

#[test]
fn random_and_mutated_packets_never_stop_the_engine() {
    let (ours, tun) = packet_pair();
    let refuse: clat_protect::Protector =
        Arc::new(|_fd| -> io::Result<()> { Err(io::Error::other("test: no upstream")) });
    let cfg = EngineConfig {
        prefix: "2001:db8:64::/96".parse().unwrap(),
        max_flows: 256,
        ..Default::default()
    };
    let mut e = Engine::start(tun, cfg, refuse).expect("engine on a socketpair");
    let t = templates();
    let mut rng = fastrand::Rng::with_seed(0x9e37_79b9_7f4a_7c15);
    let mut sink = vec![0u8; 70000];
    let mut sent = 0u64;
    for i in 0..30_000 {
        let mut p = if i % 5 == 0 {
            (0..rng.usize(..200))
                .map(|_| rng.u8(..))
                .collect::<Vec<u8>>()
        } else {
            t[rng.usize(..t.len())].clone()
        };
        for _ in 0..rng.usize(..4) {
            if !p.is_empty() {
                let j = rng.usize(..p.len());
                p[j] = rng.u8(..);
            }
        }
        if rng.usize(..4) == 0 {
            p.truncate(rng.usize(..=p.len()));
        }
        if send(&ours, &p) {
            sent += 1;
        }
        while recv(&ours, &mut sink) {}
        if i % 1000 == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    assert!(e.is_running(), "engine ended: {:?}", e.exit_reason());
    let s = e.stats();
    assert!(s.tun_rx_packets > sent / 2, "{s:?}");
    let drops: u64 = s
        .pairs()
        .iter()
        .filter(|(k, _)| k.starts_with("drop_"))
        .map(|(_, v)| v)
        .sum();
    assert!(drops > 1000, "malformed input is counted: {s:?}");
    e.stop().unwrap();
    assert!(!e.is_running());
    assert!(
        e.exit_reason().is_none(),
        "a requested stop is not a failure: {:?}",
        e.exit_reason()
    );
}

#[test]
fn closing_the_packet_fd_ends_the_loop_with_a_reason() {
    let (ours, theirs) = packet_pair();
    let cfg = EngineConfig {
        prefix: "2001:db8:64::/96".parse().unwrap(),
        ..Default::default()
    };
    let e = Engine::start(theirs, cfg, Arc::new(clat_protect::NoProtect)).unwrap();
    assert!(send(&ours, &[]), "an empty packet is not the end");
    std::thread::sleep(Duration::from_millis(100));
    assert!(e.is_running());
    assert_eq!(e.stats().drop_malformed, 1);
    drop(ours);
    let t0 = std::time::Instant::now();
    while e.is_running() {
        assert!(
            t0.elapsed() < Duration::from_secs(3),
            "engine did not notice"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(e.exit_reason().as_deref(), Some("TUN closed"));
    assert!(
        e.set_prefix("2001:db8:65::/96".parse().unwrap()).is_err(),
        "commands fail once stopped"
    );
}
