//! Property tests: 4 -> 6 -> 4 and 6 -> 4 -> 6 keep addresses, payloads and
//! header fields, and every emitted packet has valid checksums.

mod common;
use clat_xlat::{Config, IpVersion, OutBuf, Outcome, Translator};
use common::*;
use proptest::prelude::*;
use std::net::Ipv4Addr;

fn xl() -> Translator {
    // A network-specific prefix carries any IPv4 address (no RFC 6052 3.1 refusal).
    Translator::new(Config {
        pool6: Some("2001:db8:64::/64".parse().unwrap()),
        ..config()
    })
    .unwrap()
}

fn transport(proto: u8, src: Ipv4Addr, dst: Ipv4Addr, data: &[u8], ports: (u16, u16)) -> Vec<u8> {
    match proto {
        6 => tcp(ports.0, ports.1, 1, data, &|l| pseudo4(src, dst, 6, l)),
        17 => udp(ports.0, ports.1, data, &|l| pseudo4(src, dst, 17, l)),
        _ => icmp(8, 0, [1, 2, 3, 4], data, &no_pseudo),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn four_six_four(
        src in any::<u32>(), dst in any::<u32>(),
        proto in prop::sample::select(vec![1u8, 6, 17]),
        data in prop::collection::vec(any::<u8>(), 0..1400),
        ttl in 1u8..=255, tos in any::<u8>(), ports in any::<(u16, u16)>(),
    ) {
        let t = xl();
        let (s, d) = (Ipv4Addr::from(src), Ipv4Addr::from(dst));
        let pay = transport(proto, s, d, &data, ports);
        let pkt = ipv4(s, d, proto, ttl, tos, 7, DF, &[], &pay);
        let mut o6 = OutBuf::new();
        prop_assert_eq!(t.translate_4to6(&pkt, &mut o6), Outcome::Forward(IpVersion::V6));
        prop_assert_eq!(o6.len(), 1);
        let p6 = o6.get(0).unwrap().to_vec();
        let (h6, _, up6) = check_v6(&p6);
        prop_assert_eq!(h6.traffic_class, tos);
        prop_assert_eq!(up6.len(), pay.len());
        let mut o4 = OutBuf::new();
        prop_assert_eq!(t.translate_6to4(&p6, &mut o4), Outcome::Forward(IpVersion::V4));
        let p4 = o4.get(0).unwrap();
        let (h4, up4) = check_v4(p4);
        prop_assert_eq!(h4.source, s.octets());
        prop_assert_eq!(h4.destination, d.octets());
        prop_assert_eq!(h4.time_to_live, ttl);
        prop_assert_eq!(h4.protocol.0, proto);
        prop_assert_eq!(&up4, &pay, "payload, checksum included, comes back identical");
    }

    #[test]
    fn six_four_six(
        src in any::<u32>(), dst in any::<u32>(),
        proto in prop::sample::select(vec![6u8, 17, 58]),
        data in prop::collection::vec(any::<u8>(), 0..1400),
        hop in 1u8..=255, tc in any::<u8>(), ports in any::<(u16, u16)>(),
    ) {
        let t = xl();
        let p: ipnet::Ipv6Net = "2001:db8:64::/64".parse().unwrap();
        let (s, d) = (clat_xlat::embed(&p, Ipv4Addr::from(src)), clat_xlat::embed(&p, Ipv4Addr::from(dst)));
        let pay = match proto {
            6 => tcp(ports.0, ports.1, 9, &data, &|l| pseudo6(s, d, 6, l)),
            17 => udp(ports.0, ports.1, &data, &|l| pseudo6(s, d, 17, l)),
            _ => icmp(128, 0, [5, 6, 7, 8], &data, &|l| pseudo6(s, d, 58, l)),
        };
        let pkt = ipv6(s, d, proto, hop, tc, &[], &pay);
        let mut o4 = OutBuf::new();
        prop_assert_eq!(t.translate_6to4(&pkt, &mut o4), Outcome::Forward(IpVersion::V4));
        prop_assert_eq!(o4.len(), 1);
        let p4 = o4.get(0).unwrap().to_vec();
        let (h4, _) = check_v4(&p4);
        prop_assert_eq!(h4.dont_fragment, p4.len() > 1260);
        let mut o6 = OutBuf::new();
        prop_assert_eq!(t.translate_4to6(&p4, &mut o6), Outcome::Forward(IpVersion::V6));
        let (h6, proto6, up6) = check_v6(o6.get(0).unwrap());
        prop_assert_eq!(h6.source_addr(), s);
        prop_assert_eq!(h6.destination_addr(), d);
        prop_assert_eq!(h6.hop_limit, hop);
        prop_assert_eq!(h6.traffic_class, tc);
        prop_assert_eq!(proto6, proto);
        prop_assert_eq!(&up6, &pay);
    }

    /// Fragmented results reassemble to the original payload with a valid checksum.
    #[test]
    fn fragments_reassemble(len in 1500usize..9000, mtu6 in 1280u16..1500, df0_lim in 1280u16..1500) {
        let t = Translator::new(Config {
            pool6: Some("2001:db8:64::/64".parse().unwrap()), mtu6, lowest_ipv6_mtu: df0_lim, ..config()
        }).unwrap();
        let (s, d) = (a4("198.51.100.7"), a4("203.0.113.10"));
        let data: Vec<u8> = (0..len).map(|i| (i * 31) as u8).collect();
        let pay = udp(1, 2, &data, &|l| pseudo4(s, d, 17, l));
        let pkt = ipv4(s, d, 17, 64, 0, 0x77, 0, &[], &pay);
        let mut out = OutBuf::new();
        prop_assert_eq!(t.translate_4to6(&pkt, &mut out), Outcome::Forward(IpVersion::V6));
        let mut re = Vec::new();
        for f in out.iter() {
            prop_assert!(f.len() <= mtu6.min(df0_lim) as usize);
            prop_assert_eq!(f[6], 44, "every piece has a Fragment header");
            let off = u16::from_be_bytes([f[42], f[43]]) >> 3;
            prop_assert_eq!(off as usize * 8, re.len());
            re.extend_from_slice(&f[48..]);
        }
        let ps = pseudo6(clat_xlat::embed(&"2001:db8:64::/64".parse().unwrap(), s), clat_xlat::embed(&"2001:db8:64::/64".parse().unwrap(), d), 17, re.len());
        prop_assert_eq!(naive_sum(&[&ps, &re]), 0xffff);
        prop_assert_eq!(&re[8..], &data[..]);
    }
}
