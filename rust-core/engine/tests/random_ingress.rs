//! Bounded random ingress through a real `Engine` (the cargo-fuzz target
//! rust-core/engine/fuzz `ingress` does the same for longer): structured
//! random IPv4 packets of every kind the engine dispatches on (TCP with
//! every flag mix, UDP, DNS queries to the relay, ICMP, fragments, other
//! protocols; to servers, to the NAT and DNS addresses, to broadcast and
//! multicast, from foreign sources), each possibly mutated and with a
//! right or wrong checksum, written into the engine's "TUN" (a
//! SOCK_SEQPACKET pair).
//!
//! As root the test thread first moves into a fresh network namespace
//! (only a down loopback), so that upstream sockets are really created
//! and flow tables, the flow cap, timers and the DNS relay are exercised
//! while nothing can leave the machine; otherwise the protector refuses
//! every upstream socket.
//!
//! Checks: the engine keeps running and reads every packet; the flow
//! gauges never exceed the cap; malformed input is counted; once the input
//! stops, UDP and ICMP mappings expire (state does not leak); a requested
//! stop is clean.

use clat_engine::packet::checksum;
use clat_engine::{Engine, EngineConfig};
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn packet_pair() -> (OwnedFd, OwnedFd) {
    let (a, b) = socket2::Socket::pair(socket2::Domain::UNIX, socket2::Type::SEQPACKET, None)
        .expect("a SOCK_SEQPACKET socketpair");
    (a.into(), b.into())
}

fn pick<T: Copy>(rng: &mut fastrand::Rng, v: &[T]) -> T {
    v[rng.usize(..v.len())]
}

const CLAT: Ipv4Addr = Ipv4Addr::new(192, 0, 0, 4);

fn l4_checksum(p: &mut [u8], src: Ipv4Addr, dst: Ipv4Addr, proto: u8, at: usize) {
    let seg_len = p.len() - 20;
    if seg_len < at + 2 {
        return;
    }
    p[20 + at] = 0;
    p[21 + at] = 0;
    let init = if proto == 1 {
        0
    } else {
        checksum::pseudo_v4(src, dst, proto, seg_len as u16)
    };
    let c = checksum::finish(checksum::sum(&p[20..], init));
    p[20 + at..22 + at].copy_from_slice(&c.to_be_bytes());
}

/// One structured random packet (before mutation).
fn packet(rng: &mut fastrand::Rng) -> Vec<u8> {
    let src = if rng.usize(..20) == 0 {
        Ipv4Addr::from(rng.u32(..))
    } else {
        CLAT
    };
    let dst = pick(
        rng,
        &[
            Ipv4Addr::new(203, 0, 113, 10),
            Ipv4Addr::new(203, 0, 113, 11),
            Ipv4Addr::new(192, 0, 0, 5),
            Ipv4Addr::new(192, 0, 0, 6),
            Ipv4Addr::new(192, 0, 0, 7),
            Ipv4Addr::new(192, 0, 0, 1),
            Ipv4Addr::new(224, 0, 0, 251),
            Ipv4Addr::new(255, 255, 255, 255),
            Ipv4Addr::new(10, 0, 0, 1),
            Ipv4Addr::new(198, 51, 100, 7),
        ],
    );
    let proto = pick(rng, &[6u8, 6, 6, 17, 17, 17, 1, 1, 47, 132, 0]);
    let payload_len = match rng.usize(..4) {
        0 => 0,
        1 => rng.usize(..16),
        2 => rng.usize(..600),
        _ => rng.usize(..3000),
    };
    let mut l4 = Vec::new();
    let sport = pick(rng, &[1024u16, 40000, 40001, 53, 5353, 65535, 0]) ^ (rng.usize(..64) as u16);
    let dport = pick(rng, &[80u16, 7, 53, 9, 0, 65535, 443]);
    match proto {
        6 => {
            l4.extend_from_slice(&sport.to_be_bytes());
            l4.extend_from_slice(&dport.to_be_bytes());
            l4.extend_from_slice(&(rng.u32(..)).to_be_bytes());
            l4.extend_from_slice(&(rng.u32(..)).to_be_bytes());
            let doff = pick(rng, &[5u8, 5, 5, 6, 8, 15, 4, 0]);
            l4.push(doff << 4);
            l4.push(pick(
                rng,
                &[
                    0x02u8, 0x02, 0x10, 0x12, 0x11, 0x04, 0x14, 0x18, 0x01, 0x3f, 0,
                ],
            ));
            l4.extend_from_slice(&[0xff, 0xff, 0, 0, 0, 0]);
            let opts = (usize::from(doff) * 4).saturating_sub(20);
            l4.extend((0..opts).map(|_| 1u8));
        }
        17 => {
            let len = (8 + payload_len) as u16;
            let len = if rng.usize(..10) == 0 {
                rng.u16(..)
            } else {
                len
            };
            l4.extend_from_slice(&sport.to_be_bytes());
            l4.extend_from_slice(&dport.to_be_bytes());
            l4.extend_from_slice(&len.to_be_bytes());
            l4.extend_from_slice(&[0, 0]);
            if dport == 53 && rng.usize(..2) == 0 {
                // a DNS query header with a random question
                l4.extend_from_slice(&(rng.u16(..)).to_be_bytes());
                l4.extend_from_slice(&[1, 0, 0, 1, 0, 0, 0, 0, 0, rng.usize(..2) as u8]);
            }
        }
        1 => {
            l4.push(pick(rng, &[8u8, 8, 8, 0, 3, 11, 13]));
            l4.push(pick(rng, &[0u8, 0, 1, 4]));
            l4.extend_from_slice(&[0, 0]);
            l4.extend_from_slice(
                &(pick(rng, &[1u16, 2, 3, 7, 65535]) ^ rng.usize(..300) as u16).to_be_bytes(),
            );
            l4.extend_from_slice(&(rng.u16(..)).to_be_bytes());
        }
        _ => {}
    }
    l4.extend((0..payload_len).map(|_| rng.u8(..)));
    let total = 20 + l4.len();
    let mut p = vec![0u8; 20];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    p[4..6].copy_from_slice(&(rng.usize(..8) as u16).to_be_bytes());
    if rng.usize(..8) == 0 {
        // a fragment: MF and/or an offset
        let off = pick(rng, &[0u16, 0, 1, 8, 100, 0x1fff]);
        let mf = if rng.usize(..2) == 0 { 0x2000 } else { 0 };
        p[6..8].copy_from_slice(&(off | mf).to_be_bytes());
    }
    p[8] = pick(rng, &[64u8, 1, 0, 255]);
    p[9] = proto;
    p[12..16].copy_from_slice(&src.octets());
    p[16..20].copy_from_slice(&dst.octets());
    p.extend_from_slice(&l4);
    match proto {
        1 => l4_checksum(&mut p, src, dst, 1, 2),
        6 => l4_checksum(&mut p, src, dst, 6, 16),
        _ => {}
    }
    p
}

fn finish(rng: &mut fastrand::Rng, mut p: Vec<u8>) -> Vec<u8> {
    // mutate some
    if rng.usize(..4) == 0 {
        for _ in 0..1 + rng.usize(..4) {
            let i = rng.usize(..p.len());
            p[i] = rng.u8(..);
        }
    }
    if rng.usize(..10) == 0 {
        p.truncate(rng.usize(..=p.len()).max(1));
    }
    // mostly a right header checksum, so that deeper code is reached
    if p.len() >= 20 && rng.usize(..10) != 0 {
        let ihl = (usize::from(p[0] & 15) * 4).clamp(20, p.len());
        p[10] = 0;
        p[11] = 0;
        let c = checksum::finish(checksum::sum(&p[..ihl], 0));
        p[10..12].copy_from_slice(&c.to_be_bytes());
    }
    p
}

fn drain(fd: &OwnedFd, buf: &mut [u8]) -> u64 {
    let mut n = 0;
    // SAFETY: buf is valid for writes of its length.
    while unsafe {
        libc::recv(
            fd.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            libc::MSG_DONTWAIT,
        )
    } > 0
    {
        n += 1;
    }
    n
}

#[test]
fn random_structured_packets_through_a_real_engine() {
    // SAFETY: unshare has no memory-safety preconditions; it only affects
    // this test thread (and the engine thread it starts below).
    let isolated = unsafe { libc::unshare(libc::CLONE_NEWNET) } == 0;
    let protector: clat_protect::Protector = if isolated {
        let _ = std::fs::write("/proc/sys/net/ipv4/ping_group_range", "0 2147483647");
        Arc::new(clat_protect::NoProtect)
    } else {
        eprintln!("not root: upstream sockets refused (flow tables not exercised)");
        Arc::new(|_fd| -> io::Result<()> { Err(io::Error::other("test: no upstream")) })
    };
    let max_flows = 48;
    let cfg = EngineConfig {
        prefix: "2001:db8:64::/96".parse().unwrap(),
        upstream_dns: vec!["[2001:db8:1::53]:53".parse().unwrap()],
        max_flows,
        udp_timeout: Duration::from_millis(300),
        icmp_timeout: Duration::from_millis(300),
        tcp_transitory_timeout: Duration::from_millis(300),
        dns_timeout: Duration::from_millis(100),
        ..Default::default()
    };
    let (ours, tun) = packet_pair();
    let mut e = Engine::start(tun, cfg, protector).expect("engine on a socketpair");
    let mut rng = fastrand::Rng::with_seed(0x00dd_ba11_c0ff_ee00);
    let mut sink = vec![0u8; 70000];
    let mut sent = 0u64;
    let mut answers = 0u64;
    let mut peak_flows = 0u64;
    for round in 0..40 {
        for _ in 0..1000 {
            let p = packet(&mut rng);
            let p = finish(&mut rng, p);
            // SAFETY: p is valid for the call.
            let w = unsafe { libc::send(ours.as_raw_fd(), p.as_ptr().cast(), p.len(), 0) };
            assert_eq!(w as usize, p.len(), "{}", io::Error::last_os_error());
            sent += 1;
            answers += drain(&ours, &mut sink);
        }
        let t0 = Instant::now();
        while e.stats().tun_rx_packets < sent {
            assert!(
                e.is_running(),
                "round {round}: engine ended: {:?}",
                e.exit_reason()
            );
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "engine stalled: {:?}",
                e.stats()
            );
            answers += drain(&ours, &mut sink);
            std::thread::sleep(Duration::from_millis(1));
        }
        let s = e.stats();
        peak_flows = peak_flows.max(s.flows_tcp + s.flows_udp + s.flows_icmp);
        assert!(
            s.flows_tcp + s.flows_udp + s.flows_icmp <= max_flows as u64,
            "flow cap broken: {s:?}"
        );
    }
    let s = e.stats();
    assert!(e.is_running(), "{:?}", e.exit_reason());
    assert!(s.drop_malformed > 1000, "{s:?}");
    assert!(
        s.drop_bad_source > 100 && s.drop_broadcast > 100 && s.drop_multicast > 100,
        "{s:?}"
    );
    assert!(
        s.tcp_rst_sent > 100 && answers > 100,
        "refusals are answered: {s:?}"
    );
    if isolated {
        assert!(s.flows_udp_total > 10 && s.flows_icmp_total > 2, "{s:?}");
        assert!(
            s.drop_flow_limit > 0,
            "the cap was reached: {s:?} (peak {peak_flows})"
        );
        assert!(s.dns_queries > 10, "{s:?}");
        // Input stopped: mappings expire, nothing leaks.
        let t0 = Instant::now();
        loop {
            let s = e.stats();
            if s.flows_udp == 0 && s.flows_icmp == 0 && s.flows_tcp == 0 {
                break;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(5),
                "flows did not expire: {s:?}"
            );
            drain(&ours, &mut sink);
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    e.stop().unwrap();
    assert!(e.exit_reason().is_none(), "{:?}", e.exit_reason());
}
