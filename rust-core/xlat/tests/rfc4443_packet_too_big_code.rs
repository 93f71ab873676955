//! RFC 4443 section 3.2: the Code of Packet Too Big is "set to 0 (zero) by
//! the originator and ignored by the receiver". A translator is a receiver
//! here: a Packet Too Big with another Code still tells the IPv4 sender its
//! path MTU (RFC 7915 section 5.2: Destination Unreachable, Code 4).

mod common;
use clat_xlat::icmp_map::{map_6to4, Info, Mapped};
use clat_xlat::{IpVersion, OutBuf, Outcome};
use common::*;

#[test]
fn packet_too_big_code_is_ignored() {
    for code in [0u8, 1, 255] {
        assert_eq!(
            map_6to4(2, code, 1400),
            Mapped::Error {
                typ: 3,
                code: 4,
                info: Info::Mtu
            },
            "code {code}"
        );
    }
    let t = translator();
    let (r, c) = (remote6("198.51.100.1"), a6(CLAT6));
    let inner = {
        let (s, d) = (c, remote6("203.0.113.10"));
        let u = udp(1, 2, b"big", &|l| pseudo6(s, d, 17, l));
        ipv6(s, d, 17, 63, 0, &[], &u)
    };
    let m = icmp(2, 1, 1400u32.to_be_bytes(), &inner, &|l| {
        pseudo6(r, c, 58, l)
    });
    let mut out = OutBuf::new();
    let o = t.translate(&ipv6(r, c, 58, 60, 0, &[], &m), &mut out);
    assert_eq!(o, Outcome::Forward(IpVersion::V4));
    let (_, data) = check_v4(out.get(0).unwrap());
    assert_eq!((data[0], data[1]), (3, 4));
    assert_eq!(u16::from_be_bytes([data[6], data[7]]), 1380);
}
