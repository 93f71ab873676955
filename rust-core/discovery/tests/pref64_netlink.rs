//! PREF64 (RFC 8781) and its delivery by the Linux kernel (RTM_NEWNDUSEROPT
//! on route netlink), checked against bytes written out by hand from
//! RFC 8781 section 4, RFC 4861 section 4.6 and the kernel's uapi headers
//! (include/uapi/linux/netlink.h, rtnetlink.h): the wire layouts are not
//! taken from our own encoder.
//!
//! Written to kill the mutants `cargo mutants -p clat-discovery` left alive
//! (see tests/mutants-survivors.md): the option walk's and the netlink
//! walk's truncation and alignment paths, and the PREF64 table's expiry
//! boundary.

use clat_discovery::netlink::{parse_messages, Pref64Event};
use clat_discovery::pref64::{encode_pref64, pref64_options, Pref64, Pref64Error, Pref64Table};
use ipnet::Ipv6Net;
use std::net::Ipv6Addr;
use std::time::{Duration, Instant};

// include/uapi/linux/rtnetlink.h and netlink.h, written out.
const RTM_NEWNDUSEROPT: u16 = 68;
const NLMSG_NOOP: u16 = 1;
const NDUSEROPT_SRCADDR: u16 = 1;
const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;
const ND_ROUTER_ADVERT: u8 = 134;
const ND_ROUTER_SOLICIT: u8 = 133;

fn net(s: &str) -> Ipv6Net {
    s.parse().unwrap()
}

/// RFC 8781 section 4: 2001:db8:64::/96, Scaled Lifetime 75 (600 s), PLC 0:
/// the second 16-bit word is 75 << 3 | 0 = 0x0258.
const PREF64_600S: [u8; 16] = [
    38, 2, 0x02, 0x58, 0x20, 0x01, 0x0d, 0xb8, 0x00, 0x64, 0, 0, 0, 0, 0, 0,
];

/// RFC 8106 RDNSS option (type 25, length 3 = 24 bytes): lifetime 60 s,
/// one server 2001:db8::53.
const RDNSS: [u8; 24] = [
    25, 3, 0, 0, 0, 0, 0, 60, 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x53,
];

fn pref64_600s() -> Pref64 {
    Pref64 {
        prefix: net("2001:db8:64::/96"),
        lifetime: Duration::from_secs(600),
    }
}

/// A netlink message: `struct nlmsghdr` (u32 len, u16 type, u16 flags, u32
/// seq, u32 pid; host byte order), then `payload`, padded to 4 bytes as
/// NLMSG_ALIGN places the next message. `len` overrides nlmsg_len.
fn nlmsg(ty: u16, payload: &[u8], len: Option<u32>) -> Vec<u8> {
    let mut m = Vec::new();
    let l = len.unwrap_or(16 + payload.len() as u32);
    m.extend_from_slice(&l.to_ne_bytes());
    m.extend_from_slice(&ty.to_ne_bytes());
    m.extend_from_slice(&0u16.to_ne_bytes());
    m.extend_from_slice(&7u32.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.extend_from_slice(payload);
    while m.len() % 4 != 0 {
        m.push(0);
    }
    m
}

/// `struct nduseroptmsg` (u8 family, u8 pad1, u16 opts_len, i32 ifindex,
/// u8 icmp_type, u8 icmp_code, u16 pad2, u32 pad3), then the options.
fn nduseropt(family: u8, opts_len: u16, ifindex: u32, icmp_type: u8, opts: &[u8]) -> Vec<u8> {
    let mut p = vec![family, 0];
    p.extend_from_slice(&opts_len.to_ne_bytes());
    p.extend_from_slice(&ifindex.to_ne_bytes());
    p.extend_from_slice(&[icmp_type, 0, 0, 0, 0, 0, 0, 0]);
    p.extend_from_slice(opts);
    p
}

/// `struct rtattr` (u16 rta_len, u16 rta_type) and its data, padded to 4.
fn rtattr(ty: u16, data: &[u8]) -> Vec<u8> {
    let mut a = Vec::new();
    a.extend_from_slice(&((4 + data.len()) as u16).to_ne_bytes());
    a.extend_from_slice(&ty.to_ne_bytes());
    a.extend_from_slice(data);
    while a.len() % 4 != 0 {
        a.push(0);
    }
    a
}

fn ra_useropt(ifindex: u32, opts: &[u8], attrs: &[u8]) -> Vec<u8> {
    let mut p = nduseropt(AF_INET6, opts.len() as u16, ifindex, ND_ROUTER_ADVERT, opts);
    p.extend_from_slice(attrs);
    nlmsg(RTM_NEWNDUSEROPT, &p, None)
}

fn fe80_1() -> Ipv6Addr {
    "fe80::1".parse().unwrap()
}

fn event(ifindex: u32, router: Option<Ipv6Addr>) -> Pref64Event {
    Pref64Event {
        ifindex,
        router,
        pref64: pref64_600s(),
    }
}

/// RFC 8781 section 4, one option per Prefix Length Code, written out by
/// hand: Scaled Lifetime 75 (600 s) gives 0x0258 | PLC in the second word,
/// and only the bits up to the prefix length are sent (the rest zero).
#[test]
fn rfc8781_s4_encoding_of_every_prefix_length_code() {
    // Bits 64-71 zero: a /96 must have them so (RFC 6052 section 2.2).
    let base = "2001:db8:1122:3344:66:7788::";
    let want: [(u8, [u8; 16]); 6] = [
        (
            96,
            [
                38, 2, 0x02, 0x58, 0x20, 0x01, 0x0d, 0xb8, 0x11, 0x22, 0x33, 0x44, 0x00, 0x66,
                0x77, 0x88,
            ],
        ),
        (
            64,
            [
                38, 2, 0x02, 0x59, 0x20, 0x01, 0x0d, 0xb8, 0x11, 0x22, 0x33, 0x44, 0, 0, 0, 0,
            ],
        ),
        (
            56,
            [
                38, 2, 0x02, 0x5a, 0x20, 0x01, 0x0d, 0xb8, 0x11, 0x22, 0x33, 0, 0, 0, 0, 0,
            ],
        ),
        (
            48,
            [
                38, 2, 0x02, 0x5b, 0x20, 0x01, 0x0d, 0xb8, 0x11, 0x22, 0, 0, 0, 0, 0, 0,
            ],
        ),
        (
            40,
            [
                38, 2, 0x02, 0x5c, 0x20, 0x01, 0x0d, 0xb8, 0x11, 0, 0, 0, 0, 0, 0, 0,
            ],
        ),
        (
            32,
            [
                38, 2, 0x02, 0x5d, 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0,
            ],
        ),
    ];
    for (len, bytes) in want {
        let p = Ipv6Net::new(base.parse().unwrap(), len).unwrap().trunc();
        assert_eq!(
            encode_pref64(p, Duration::from_secs(600)),
            Some(bytes),
            "/{len}"
        );
        let parsed = pref64_options(&bytes);
        assert_eq!(
            parsed,
            vec![Ok(Pref64 {
                prefix: p,
                lifetime: Duration::from_secs(600)
            })],
            "/{len}"
        );
    }
}

/// RFC 4861 section 4.6: options are walked by their Length field (units of
/// 8 octets); PREF64 after another option is found, an option whose length
/// runs past the buffer ends the walk, and only a PREF64 cut short is an
/// error worth reporting: a truncated RDNSS is not ours to complain about.
#[test]
fn rfc4861_s4_6_option_walk_and_truncation() {
    let mut buf = RDNSS.to_vec();
    buf.extend_from_slice(&PREF64_600S);
    assert_eq!(pref64_options(&buf), vec![Ok(pref64_600s())]);

    // PREF64 first, then an RDNSS that claims 24 bytes but has 10.
    let mut buf = PREF64_600S.to_vec();
    buf.extend_from_slice(&RDNSS[..10]);
    assert_eq!(pref64_options(&buf), vec![Ok(pref64_600s())]);

    // A non-PREF64 option of length 0 ends the walk: the PREF64 after it
    // is not read (the RA must be discarded, RFC 4861 section 4.6).
    let mut buf = vec![25, 0, 0, 0, 0, 0, 0, 0];
    buf.extend_from_slice(&PREF64_600S);
    assert_eq!(pref64_options(&buf), vec![]);

    // A PREF64 of length 0: reported once, and the walk ends.
    let mut zero = PREF64_600S;
    zero[1] = 0;
    assert_eq!(pref64_options(&zero), vec![Err(Pref64Error::Short(16))]);

    // A PREF64 whose Length says 3 (24 bytes) in a 16-byte buffer.
    let mut long = PREF64_600S;
    long[1] = 3;
    assert_eq!(pref64_options(&long), vec![Err(Pref64Error::Short(16))]);

    // A 1-byte tail is not an option.
    let mut buf = PREF64_600S.to_vec();
    buf.push(38);
    assert_eq!(pref64_options(&buf), vec![Ok(pref64_600s())]);
}

/// The kernel's message for an RA with PREF64 and the router's address
/// (net/ipv6/ndisc.c `ndisc_ra_useropt`), and the same after a header-only
/// NLMSG_NOOP message: a 16-byte message is a message, not the end.
#[test]
fn netlink_header_only_message_before_the_user_option() {
    let msg = ra_useropt(
        3,
        &PREF64_600S,
        &rtattr(NDUSEROPT_SRCADDR, &fe80_1().octets()),
    );
    assert_eq!(parse_messages(&msg, None), vec![event(3, Some(fe80_1()))]);
    let mut buf = nlmsg(NLMSG_NOOP, &[], None);
    assert_eq!(buf.len(), 16);
    buf.extend_from_slice(&msg);
    assert_eq!(parse_messages(&buf, None), vec![event(3, Some(fe80_1()))]);
}

/// netlink(7): the next message starts at NLMSG_ALIGN(nlmsg_len), the
/// length rounded up to 4, not at nlmsg_len itself.
#[test]
fn netlink_messages_start_at_4_byte_alignment() {
    let mut buf = nlmsg(NLMSG_NOOP, &[0xaa, 0xbb], None);
    assert_eq!(&buf[..4], &18u32.to_ne_bytes());
    assert_eq!(buf.len(), 20, "two bytes of padding");
    buf.extend_from_slice(&ra_useropt(
        3,
        &PREF64_600S,
        &rtattr(NDUSEROPT_SRCADDR, &fe80_1().octets()),
    ));
    assert_eq!(parse_messages(&buf, None), vec![event(3, Some(fe80_1()))]);
}

/// A message whose nlmsg_len is below the header's own 16 bytes (0 here)
/// or beyond the buffer ends the walk: nothing after it is trusted, and it
/// does not loop on the same bytes.
#[test]
fn netlink_impossible_message_lengths_end_the_walk() {
    let good = ra_useropt(3, &PREF64_600S, &[]);
    for bad_len in [0u32, 4, 15] {
        let mut buf = nlmsg(NLMSG_NOOP, &[], Some(bad_len));
        buf.extend_from_slice(&good);
        assert_eq!(parse_messages(&buf, None), vec![], "nlmsg_len {bad_len}");
    }
    let mut buf = good.clone();
    buf.extend_from_slice(&nlmsg(RTM_NEWNDUSEROPT, &[0; 40], Some(1000)));
    assert_eq!(parse_messages(&buf, None), vec![event(3, None)]);
}

/// Only IPv6 Router Advertisements carry PREF64: an IPv4 family or another
/// ICMPv6 type is not one, whatever its options say.
#[test]
fn netlink_only_ipv6_router_advertisements_count() {
    let n = PREF64_600S.len() as u16;
    for (family, icmp) in [(AF_INET, ND_ROUTER_ADVERT), (AF_INET6, ND_ROUTER_SOLICIT)] {
        let msg = nlmsg(
            RTM_NEWNDUSEROPT,
            &nduseropt(family, n, 3, icmp, &PREF64_600S),
            None,
        );
        assert_eq!(
            parse_messages(&msg, None),
            vec![],
            "family {family} type {icmp}"
        );
    }
    // Another message type with the same payload is not a user option.
    let msg = nlmsg(
        RTM_NEWNDUSEROPT + 1,
        &nduseropt(AF_INET6, n, 3, ND_ROUTER_ADVERT, &PREF64_600S),
        None,
    );
    assert_eq!(parse_messages(&msg, None), vec![]);
}

/// A user-option message cut short: an nduseroptmsg of 8 bytes, or an
/// opts_len larger than what follows. Nothing is read past the message.
#[test]
fn netlink_truncated_user_option_messages_are_skipped() {
    let short = nlmsg(RTM_NEWNDUSEROPT, &[AF_INET6, 0, 16, 0, 3, 0, 0, 0], None);
    assert_eq!(parse_messages(&short, None), vec![]);
    // opts_len 24, only 16 bytes of options present.
    let msg = nlmsg(
        RTM_NEWNDUSEROPT,
        &nduseropt(AF_INET6, 24, 3, ND_ROUTER_ADVERT, &PREF64_600S),
        None,
    );
    assert_eq!(parse_messages(&msg, None), vec![]);
    // opts_len 8 of the 16 bytes: the PREF64 option is cut, so none is
    // delivered (the error is logged).
    let msg = nlmsg(
        RTM_NEWNDUSEROPT,
        &nduseropt(AF_INET6, 8, 3, ND_ROUTER_ADVERT, &PREF64_600S),
        None,
    );
    assert_eq!(parse_messages(&msg, None), vec![]);
}

/// The route attributes after the options (rtnetlink.h RTA_ALIGN/RTA_OK):
/// an empty 4-byte attribute and a 2-byte one (padded to 8) before
/// NDUSEROPT_SRCADDR are stepped over; a 20-byte attribute of another type
/// after it does not replace the router; a SRCADDR of the wrong size is not
/// an address.
#[test]
fn netlink_route_attributes_are_walked_by_rta_len() {
    let other: Ipv6Addr = "2001:db8::bad".parse().unwrap();
    let mut attrs = rtattr(7, &[]);
    attrs.extend_from_slice(&rtattr(8, &[0x12, 0x34]));
    assert_eq!(attrs.len(), 12);
    attrs.extend_from_slice(&rtattr(NDUSEROPT_SRCADDR, &fe80_1().octets()));
    attrs.extend_from_slice(&rtattr(2, &other.octets()));
    assert_eq!(
        parse_messages(&ra_useropt(5, &PREF64_600S, &attrs), None),
        vec![event(5, Some(fe80_1()))]
    );
    let odd = rtattr(NDUSEROPT_SRCADDR, &[0xfe, 0x80, 0, 0]);
    assert_eq!(
        parse_messages(&ra_useropt(5, &PREF64_600S, &odd), None),
        vec![event(5, None)]
    );
}

/// Attributes that cannot be walked end the attribute walk but not the
/// event: rta_len 0 (would never advance), and a SRCADDR whose rta_len (20)
/// runs past the message.
#[test]
fn netlink_broken_route_attributes_end_the_attribute_walk() {
    let zero = [0u8, 0, 1, 0];
    assert_eq!(
        parse_messages(&ra_useropt(5, &PREF64_600S, &zero), None),
        vec![event(5, None)]
    );
    let mut cut = rtattr(NDUSEROPT_SRCADDR, &fe80_1().octets());
    cut.truncate(12);
    assert_eq!(
        parse_messages(&ra_useropt(5, &PREF64_600S, &cut), None),
        vec![event(5, None)]
    );
}

/// RFC 8781 section 5: a prefix may be used for its lifetime and no longer:
/// at the instant the lifetime runs out it is gone, and a refresh moves the
/// expiry to the refresh time plus the new lifetime.
#[test]
fn rfc8781_s5_lifetime_runs_out_at_the_exact_instant() {
    let t0 = Instant::now();
    let mut t = Pref64Table::default();
    let p = Pref64 {
        prefix: net("2001:db8:64::/96"),
        lifetime: Duration::from_secs(16),
    };
    assert!(t.update(p, t0));
    let just_before = t0 + Duration::from_secs(16) - Duration::from_nanos(1);
    assert_eq!(t.current(just_before).len(), 1);
    assert!(t.current(t0 + Duration::from_secs(16)).is_empty());
    assert!(!t.expire(just_before));
    assert!(t.expire(t0 + Duration::from_secs(16)));
    assert_eq!(t.next_expiry(), None);

    assert!(t.update(p, t0));
    let t1 = t0 + Duration::from_secs(10);
    assert!(!t.update(p, t1), "a refresh is not a change");
    assert_eq!(t.next_expiry(), Some(t1 + Duration::from_secs(16)));
    assert_eq!(t.current(t0 + Duration::from_secs(20)).len(), 1);
}

/// The listener is a route netlink socket (what the kernel sends
/// RTM_NEWNDUSEROPT on), non-blocking (the monitor polls it) and closed
/// on exec (a `clat` child must not inherit it).
#[test]
fn listener_is_a_nonblocking_cloexec_netlink_socket() {
    use std::os::fd::AsRawFd;
    let l = clat_discovery::netlink::NdUserOptListener::open(None).expect("netlink socket");
    let fd = l.as_raw_fd();
    let mut domain: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: valid fd, a c_int out-parameter of the given length.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_DOMAIN,
            (&mut domain as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    assert_eq!(rc, 0, "{}", std::io::Error::last_os_error());
    assert_eq!(domain, libc::AF_NETLINK);
    // SAFETY: fcntl queries on a valid fd.
    let (fl, fdfl) = unsafe {
        (
            libc::fcntl(fd, libc::F_GETFL),
            libc::fcntl(fd, libc::F_GETFD),
        )
    };
    assert_ne!(fl & libc::O_NONBLOCK, 0, "non-blocking");
    assert_ne!(fdfl & libc::FD_CLOEXEC, 0, "close-on-exec");
}

/// `recv(None)` waits for an RA however long it takes (the monitor's
/// thread sleeps in it only through poll, but a caller may block): on a
/// quiet socket it has not returned after 300 ms. The thread is left
/// blocked; it ends with the test process.
#[test]
fn recv_without_timeout_waits() {
    let mut l = clat_discovery::netlink::NdUserOptListener::open(None).expect("netlink socket");
    let t = std::thread::spawn(move || l.recv(None).map(|v| v.len()));
    std::thread::sleep(Duration::from_millis(300));
    assert!(!t.is_finished(), "recv(None) returned on a quiet socket");
}
