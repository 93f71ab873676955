//! Typical packets for the benchmark and the callgrind example: built with
//! the translator itself from IPv4 originals, so the IPv6 ones are exactly
//! what a peer would send back.
#![allow(dead_code)]

use clat_xlat::{checksum, Config, Eam, EamTable, OutBuf, Translator};
use std::net::Ipv4Addr;

pub fn translator() -> Translator {
    let mut eam = EamTable::new();
    eam.insert(
        Eam::new(
            "192.0.0.4/32".parse().unwrap(),
            "2001:db8:1::2/128".parse().unwrap(),
        )
        .unwrap(),
    )
    .unwrap();
    Translator::new(Config {
        pool6: Some("2001:db8:64::/96".parse().unwrap()),
        eam,
        self_v4: Some(Ipv4Addr::new(192, 0, 0, 1)),
        self_v6: Some("2001:db8:1::1".parse().unwrap()),
        ..Config::default()
    })
    .unwrap()
}

fn ipv4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, payload: &[u8]) -> Vec<u8> {
    let mut h = vec![0x45, 0, 0, 0, 0x12, 0x34, 0x40, 0, 64, proto, 0, 0];
    h[2..4].copy_from_slice(&((20 + payload.len()) as u16).to_be_bytes());
    h.extend_from_slice(&src.octets());
    h.extend_from_slice(&dst.octets());
    let c = checksum::finish(checksum::sum(&h, 0));
    h[10..12].copy_from_slice(&c.to_be_bytes());
    h.extend_from_slice(payload);
    h
}

fn l4(proto: u8, src: Ipv4Addr, dst: Ipv4Addr, data_len: usize) -> Vec<u8> {
    let data: Vec<u8> = (0..data_len).map(|i| i as u8).collect();
    let mut m = match proto {
        6 => {
            let mut t = vec![0u8; 20];
            t[0..4].copy_from_slice(&[0x9c, 0x40, 0, 80]);
            t[12] = 0x50;
            t[13] = 0x10;
            t
        }
        17 => {
            let mut u = vec![0x9c, 0x40, 0, 53, 0, 0, 0, 0];
            u[4..6].copy_from_slice(&((8 + data_len) as u16).to_be_bytes());
            u
        }
        _ => vec![8, 0, 0, 0, 0, 1, 0, 1],
    };
    m.extend_from_slice(&data);
    let init = if proto == 1 {
        0
    } else {
        checksum::pseudo_v4(src, dst, proto, m.len() as u16)
    };
    let c = checksum::finish(checksum::sum(&m, init));
    let at = match proto {
        6 => 16,
        17 => 6,
        _ => 2,
    };
    m[at..at + 2].copy_from_slice(&c.to_be_bytes());
    m
}

pub struct Packets {
    pub tcp4: Vec<u8>,
    pub udp4: Vec<u8>,
    pub icmp_err4: Vec<u8>,
    pub tcp6: Vec<u8>,
    pub udp6: Vec<u8>,
    pub icmp_err6: Vec<u8>,
}

/// TCP with 1400 data bytes (a full-size segment), UDP with 100 (a DNS
/// query), and a Port Unreachable quoting a UDP packet; IPv6 versions of the
/// same (as IPv6 replies from the server: addresses swapped).
pub fn packets(t: &Translator) -> Packets {
    let clat = Ipv4Addr::new(192, 0, 0, 4);
    let srv = Ipv4Addr::new(203, 0, 113, 10);
    let tcp4 = ipv4(clat, srv, 6, &l4(6, clat, srv, 1400));
    let udp4 = ipv4(clat, srv, 17, &l4(17, clat, srv, 100));
    let mut err = vec![3, 3, 0, 0, 0, 0, 0, 0];
    err.extend_from_slice(&udp4);
    let c = checksum::finish(checksum::sum(&err, 0));
    err[2..4].copy_from_slice(&c.to_be_bytes());
    let icmp_err4 = ipv4(srv, clat, 1, &err);
    // IPv6 packets: translate IPv4 packets going the other way.
    let mut out = OutBuf::new();
    let mut v6_of = |p: &[u8]| {
        t.translate_4to6(p, &mut out);
        out.get(0).expect("translated").to_vec()
    };
    let tcp6 = v6_of(&ipv4(srv, clat, 6, &l4(6, srv, clat, 1400)));
    let udp6 = v6_of(&ipv4(srv, clat, 17, &l4(17, srv, clat, 100)));
    let icmp_err6 = v6_of(&icmp_err4);
    // That error goes to the CLAT side; an error from the server side about
    // a packet of ours is what 6->4 sees: build it from the IPv6 UDP packet.
    let _ = icmp_err6;
    let udp6_out = v6_of(&udp4);
    let src6 = &udp6[8..24];
    let dst6 = &udp6[24..40];
    let mut m = vec![1, 4, 0, 0, 0, 0, 0, 0];
    m.extend_from_slice(&udp6_out);
    let mut pseudo = Vec::new();
    pseudo.extend_from_slice(src6);
    pseudo.extend_from_slice(dst6);
    let init = checksum::sum(&pseudo, 0) + m.len() as u32 + 58;
    let c = checksum::finish(checksum::sum(&m, init));
    m[2..4].copy_from_slice(&c.to_be_bytes());
    let mut icmp_err6 = vec![0x60, 0, 0, 0, 0, 0, 58, 64];
    icmp_err6[4..6].copy_from_slice(&(m.len() as u16).to_be_bytes());
    icmp_err6.extend_from_slice(src6);
    icmp_err6.extend_from_slice(dst6);
    icmp_err6.extend_from_slice(&m);
    Packets {
        tcp4,
        udp4,
        icmp_err4,
        tcp6,
        udp6,
        icmp_err6,
    }
}
