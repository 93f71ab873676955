//! Bounded random input for every parser of the discovery crate (the
//! cargo-fuzz targets in rust-core/discovery/fuzz run the same checks for
//! longer): DNS answers (hickory-proto parse + our interpretation),
//! AAAA record sets, PREF64 options, netlink ND user-option messages and
//! resolv.conf text. Deterministic (fixed seeds), a few seconds in debug.
//! Properties: nothing panics; every prefix found has an RFC 6052 length
//! and is backed by a record that embeds a well-known address; PREF64
//! encode/parse round-trips; RFC 6052 synthesis and extraction agree.

use clat_discovery::extract::{embedded_v4, extract_prefixes, synthesize, RFC6052_LENGTHS, WKAS};
use clat_discovery::netlink::parse_messages;
use clat_discovery::pref64::{encode_pref64, parse_pref64, pref64_options};
use clat_discovery::resolv_conf::parse_resolv_conf;
use clat_discovery::rfc7050::interpret;
use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::{rdata::AAAA, Name, RData, Record, RecordType};
use ipnet::Ipv6Net;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

fn bytes(rng: &mut fastrand::Rng, n: usize) -> Vec<u8> {
    std::iter::repeat_with(|| rng.u8(..)).take(n).collect()
}

/// A few random edits: overwrite or flip a byte, truncate, insert bytes.
fn mutate(rng: &mut fastrand::Rng, mut v: Vec<u8>) -> Vec<u8> {
    for _ in 0..rng.usize(..6) {
        match rng.usize(..4) {
            0 if !v.is_empty() => {
                let i = rng.usize(..v.len());
                v[i] = rng.u8(..);
            }
            1 if !v.is_empty() => {
                let i = rng.usize(..v.len());
                v[i] ^= 1 << rng.u32(..8);
            }
            2 => v.truncate(rng.usize(..=v.len())),
            _ => {
                let i = rng.usize(..=v.len());
                let n = rng.usize(..8);
                let extra = bytes(rng, n);
                v.splice(i..i, extra);
            }
        }
    }
    v
}

fn resolver() -> SocketAddr {
    "[2001:db8:1::53]:53".parse().unwrap()
}

fn backed(p: &Ipv6Net, recs: &[(Ipv6Addr, u32)]) -> bool {
    recs.iter().any(|(a, _)| {
        p.contains(a) && embedded_v4(*a, p.prefix_len()).is_some_and(|v| WKAS.contains(&v))
    })
}

/// A DNS64 answer for ipv4only.arpa under `prefixes`, as bytes.
fn dns64_answer(rng: &mut fastrand::Rng, prefixes: &[Ipv6Net]) -> Vec<u8> {
    let mut m = Message::new(rng.u16(..), MessageType::Response, OpCode::Query);
    let name = Name::from_ascii("ipv4only.arpa.").unwrap();
    m.add_query(Query::query(name.clone(), RecordType::AAAA));
    for p in prefixes {
        for w in WKAS {
            let a = synthesize(*p, w).unwrap();
            m.add_answer(Record::from_rdata(name.clone(), 300, RData::AAAA(AAAA(a))));
        }
    }
    m.to_vec().unwrap()
}

fn random_prefix(rng: &mut fastrand::Rng) -> Ipv6Net {
    let len = RFC6052_LENGTHS[rng.usize(..RFC6052_LENGTHS.len())];
    let mut o = [0u8; 16];
    o[..8].copy_from_slice(&rng.u64(..).to_be_bytes());
    Ipv6Net::new(Ipv6Addr::from(o), len).unwrap().trunc()
}

#[test]
fn dns_answers_random_and_mutated() {
    let mut rng = fastrand::Rng::with_seed(0x5eed_0001);
    let mut interpreted = 0;
    for i in 0..20_000 {
        let bytes = if i % 4 == 0 {
            {
                let n = rng.usize(..300);
                bytes(&mut rng, n)
            }
        } else {
            let prefixes: Vec<Ipv6Net> = (0..1 + rng.usize(..3))
                .map(|_| random_prefix(&mut rng))
                .collect();
            let clean = dns64_answer(&mut rng, &prefixes);
            if i % 4 == 1 {
                // Unmutated: the prefixes must come back.
                let m = Message::from_vec(&clean).unwrap();
                let got = interpret(resolver(), &m).expect("a clean DNS64 answer");
                for p in &prefixes {
                    assert!(
                        got.iter().any(|d| d.prefix == *p),
                        "{p} missing from {got:?}"
                    );
                }
            }
            mutate(&mut rng, clean)
        };
        let Ok(m) = Message::from_vec(&bytes) else {
            continue;
        };
        interpreted += 1;
        if let Ok(found) = interpret(resolver(), &m) {
            let recs: Vec<(Ipv6Addr, u32)> = m
                .answers
                .iter()
                .filter_map(|r| match &r.data {
                    RData::AAAA(a) => Some((a.0, r.ttl)),
                    _ => None,
                })
                .collect();
            assert!(!found.is_empty());
            for d in found {
                assert!(RFC6052_LENGTHS.contains(&d.prefix.prefix_len()));
                assert!(backed(&d.prefix, &recs), "{} from {recs:?}", d.prefix);
            }
        }
    }
    assert!(
        interpreted > 3_000,
        "mutations too destructive: {interpreted}"
    );
}

#[test]
fn record_sets_random() {
    let mut rng = fastrand::Rng::with_seed(0x5eed_0002);
    for _ in 0..20_000 {
        let mut recs = Vec::new();
        for _ in 0..rng.usize(..6) {
            let a = if rng.usize(..2) == 0 {
                let p = random_prefix(&mut rng);
                let v4 = if rng.usize(..3) == 0 {
                    Ipv4Addr::from(rng.u32(..))
                } else {
                    WKAS[rng.usize(..2)]
                };
                synthesize(p, v4).unwrap()
            } else {
                let mut o = [0u8; 16];
                o.copy_from_slice(&bytes(&mut rng, 16));
                Ipv6Addr::from(o)
            };
            recs.push((a, rng.u32(..)));
        }
        if let Ok(found) = extract_prefixes(&recs) {
            for f in found {
                assert!(backed(&f.prefix, &recs));
            }
        }
    }
}

#[test]
fn rfc6052_synthesis_round_trips() {
    let mut rng = fastrand::Rng::with_seed(0x5eed_0003);
    for _ in 0..20_000 {
        let p = random_prefix(&mut rng);
        let v4 = Ipv4Addr::from(rng.u32(..));
        let a = synthesize(p, v4).unwrap();
        assert!(p.contains(&a));
        assert_eq!(embedded_v4(a, p.prefix_len()), Some(v4), "{p} {v4} {a}");
    }
}

#[test]
fn pref64_random_and_round_trip() {
    let mut rng = fastrand::Rng::with_seed(0x5eed_0004);
    for i in 0..50_000 {
        let p = random_prefix(&mut rng);
        let life = Duration::from_secs(rng.usize(..70_000) as u64);
        let enc = encode_pref64(p, life).unwrap();
        let back = parse_pref64(&enc).unwrap();
        assert_eq!(back.prefix, p);
        assert!(back.lifetime >= life.min(Duration::from_secs(65528)));
        assert!(back.lifetime < life + Duration::from_secs(8) || life > Duration::from_secs(65528));
        let bytes = if i % 2 == 0 {
            mutate(&mut rng, enc.to_vec())
        } else {
            {
                let n = rng.usize(..64);
                bytes(&mut rng, n)
            }
        };
        let mut parsed: Vec<_> = pref64_options(&bytes).into_iter().flatten().collect();
        parsed.extend(parse_pref64(&bytes));
        parsed.extend(parse_messages(&bytes, None).into_iter().map(|e| e.pref64));
        for q in parsed {
            let again = parse_pref64(&encode_pref64(q.prefix, q.lifetime).unwrap()).unwrap();
            assert_eq!((again.prefix, again.lifetime), (q.prefix, q.lifetime));
        }
    }
}

#[test]
fn resolv_conf_random_text() {
    let mut rng = fastrand::Rng::with_seed(0x5eed_0005);
    let words = [
        "nameserver",
        "search",
        "options",
        "#",
        ";",
        "2001:db8::53",
        "fe80::1%lo",
        "fe80::1%",
        "%",
        "192.0.2.1",
        "::",
        "\0",
        "\t",
        " ",
        "\n",
        "ndots:2",
    ];
    for _ in 0..20_000 {
        let text: String = (0..rng.usize(..30))
            .map(|_| words[rng.usize(..words.len())])
            .collect();
        for a in parse_resolv_conf(&text) {
            assert_eq!(a.port(), 53);
        }
        let raw = {
            let n = rng.usize(..100);
            bytes(&mut rng, n)
        };
        let _ = parse_resolv_conf(&String::from_utf8_lossy(&raw));
    }
}
