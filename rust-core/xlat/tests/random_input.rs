//! Bounded random-input test of both entry points: random and mutated
//! packets never panic, and whatever is emitted is well formed (valid IPv4
//! header checksum, lengths consistent, within the configured MTUs).

mod common;
use clat_xlat::{Config, OutBuf, Outcome, Translator};
use common::*;

fn seeds() -> Vec<Vec<u8>> {
    let (s4, d4) = (a4(CLAT4), a4("203.0.113.10"));
    let (s6, d6) = (remote6("203.0.113.10"), a6(CLAT6));
    let u4 = udp(1, 2, b"payload", &|l| pseudo4(s4, d4, 17, l));
    let inner4 = ipv4(s4, d4, 17, 64, 0, 1, DF, &[], &u4);
    let u6 = udp(1, 2, b"payload", &|l| pseudo6(s6, d6, 17, l));
    let inner6 = ipv6(
        d6,
        s6,
        17,
        64,
        0,
        &[],
        &udp(2, 1, b"payload", &|l| pseudo6(d6, s6, 17, l)),
    );
    vec![
        inner4.clone(),
        ipv4(
            s4,
            d4,
            6,
            64,
            0,
            1,
            0,
            &[],
            &tcp(1, 2, 3, &[0; 1400], &|l| pseudo4(s4, d4, 6, l)),
        ),
        ipv4(
            s4,
            d4,
            1,
            64,
            0,
            1,
            0,
            &[],
            &icmp(8, 0, [0; 4], b"ping", &no_pseudo),
        ),
        ipv4(
            a4("198.51.100.1"),
            s4,
            1,
            64,
            0,
            1,
            0,
            &[],
            &icmp(3, 3, [0; 4], &inner4, &no_pseudo),
        ),
        ipv4(s4, d4, 17, 64, 0, 9, MF | 3, &[1, 1, 1, 0], &[0; 40]),
        ipv6(s6, d6, 17, 64, 0, &[], &u6),
        ipv6(s6, d6, 44, 64, 0, &frag_hdr(17, 0, true, 5), &u6),
        ipv6(
            s6,
            d6,
            0,
            64,
            0,
            &[43, 0, 1, 4, 0, 0, 0, 0, 17, 0, 0, 1, 0, 0, 0, 0],
            &u6,
        ),
        ipv6(
            a6("2001:db8::1"),
            d6,
            58,
            64,
            0,
            &[],
            &icmp(2, 0, [0, 0, 5, 0], &inner6, &|l| {
                pseudo6(a6("2001:db8::1"), d6, 58, l)
            }),
        ),
        ipv6(
            s6,
            d6,
            58,
            64,
            0,
            &[],
            &icmp(128, 0, [0; 4], b"ping", &|l| pseudo6(s6, d6, 58, l)),
        ),
    ]
}

fn check_emitted(out: &OutBuf, cfg: &Config) {
    for p in out.iter() {
        assert!(p.len() >= 20);
        match p[0] >> 4 {
            4 => {
                assert_eq!(naive_sum(&[&p[..20]]), 0xffff, "IPv4 header checksum");
                assert_eq!(u16::from_be_bytes([p[2], p[3]]) as usize, p.len());
                assert!(p.len() <= cfg.mtu4.max(576) as usize);
            }
            6 => {
                assert_eq!(u16::from_be_bytes([p[4], p[5]]) as usize + 40, p.len());
                assert!(p.len() <= cfg.mtu6 as usize);
            }
            v => panic!("emitted version {v}"),
        }
    }
}

#[test]
fn random_and_mutated_packets_never_panic() {
    let mut cfg = config();
    cfg.decrement_ttl = true;
    cfg.amend_udp_zero_checksum = true;
    cfg.mtu4 = 576;
    cfg.mtu6 = 1280;
    let t = Translator::new(cfg.clone()).unwrap();
    let mut out = OutBuf::new();
    let mut rng = fastrand::Rng::with_seed(0x9e37_79b9_7f4a_7c15);
    let seeds = seeds();
    let iterations = 200_000;
    let (mut forwarded, mut replied, mut dropped) = (0u32, 0u32, 0u32);
    for i in 0..iterations {
        let mut pkt = if i % 4 == 0 {
            // Pure random bytes with a plausible version nibble.
            let n = rng.usize(..200);
            let mut p: Vec<u8> = (0..n).map(|_| rng.u8(..)).collect();
            if let Some(b) = p.first_mut() {
                *b = (*b & 0x0f) | if rng.bool() { 0x40 } else { 0x60 };
            }
            p
        } else {
            seeds[rng.usize(..seeds.len())].clone()
        };
        if i % 4 != 0 {
            // Mutate: flip bytes, truncate, or extend.
            for _ in 0..1 + rng.usize(..4) {
                if pkt.is_empty() {
                    break;
                }
                match rng.usize(..4) {
                    0 | 1 => {
                        let j = rng.usize(..pkt.len());
                        pkt[j] = rng.u8(..);
                    }
                    2 => {
                        let n = rng.usize(..=pkt.len());
                        pkt.truncate(n);
                    }
                    _ => pkt.extend((0..rng.usize(..64)).map(|_| rng.u8(..))),
                }
            }
        }
        let o = if rng.bool() {
            t.translate(&pkt, &mut out)
        } else if pkt.first().is_some_and(|b| b >> 4 == 4) {
            t.translate_4to6(&pkt, &mut out)
        } else {
            t.translate_6to4(&pkt, &mut out)
        };
        match o {
            Outcome::Forward(_) => forwarded += 1,
            Outcome::Reply(_) => replied += 1,
            Outcome::Drop(_) => {
                dropped += 1;
                assert!(out.is_empty(), "a drop emits nothing");
            }
        }
        if !matches!(o, Outcome::Drop(_)) {
            assert!(!out.is_empty(), "forward/reply emit at least one packet");
        }
        check_emitted(&out, &cfg);
    }
    // The mutation mix must exercise all three outcomes, or it tests nothing.
    assert!(
        forwarded > 1000 && replied > 10 && dropped > 1000,
        "{forwarded} {replied} {dropped}"
    );
}
