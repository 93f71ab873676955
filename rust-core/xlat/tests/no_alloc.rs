//! The hot path must not allocate: a counting global allocator checks that
//! translating (forward, fragment, ICMP error, reply and drop cases) makes no
//! heap allocation once the OutBuf exists.

mod common;
use clat_xlat::{Config, OutBuf, Outcome, Translator};
use common::*;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

struct Counting;

thread_local! {
    static ARMED: Cell<bool> = const { Cell::new(false) };
    static COUNT: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: every call is passed on unchanged to the system allocator, which
// upholds GlobalAlloc's contract; counting touches only const-initialised
// thread-locals, which do not allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        if ARMED.with(|a| a.get()) {
            COUNT.with(|c| c.set(c.get() + 1));
        }
        // SAFETY: the caller's layout, as GlobalAlloc::alloc received it.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: `p` was allocated by System.alloc with layout `l` (above).
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn translation_does_not_allocate() {
    let t = Translator::new(Config {
        mtu4: 576,
        mtu6: 1280,
        decrement_ttl: true,
        ..config()
    })
    .unwrap();
    let (s4, d4) = (a4(CLAT4), a4("203.0.113.10"));
    let (s6, d6) = (remote6("203.0.113.10"), a6(CLAT6));
    let inner4 = ipv4(
        s4,
        d4,
        17,
        64,
        0,
        1,
        DF,
        &[],
        &udp(1, 2, b"x", &|l| pseudo4(s4, d4, 17, l)),
    );
    let inner6 = ipv6(
        d6,
        s6,
        17,
        64,
        0,
        &[],
        &udp(2, 1, b"x", &|l| pseudo6(d6, s6, 17, l)),
    );
    let pkts = vec![
        ipv4(
            s4,
            d4,
            6,
            64,
            0,
            1,
            DF,
            &[],
            &tcp(1, 2, 3, &[0; 1000], &|l| pseudo4(s4, d4, 6, l)),
        ),
        ipv4(
            s4,
            d4,
            17,
            64,
            0,
            1,
            0,
            &[],
            &udp(1, 2, &[0; 3000], &|l| pseudo4(s4, d4, 17, l)),
        ),
        ipv4(
            d4,
            s4,
            1,
            64,
            0,
            1,
            0,
            &[],
            &icmp(3, 3, [0; 4], &inner4, &no_pseudo),
        ),
        ipv4(
            s4,
            d4,
            17,
            1,
            0,
            1,
            DF,
            &[],
            &udp(1, 2, b"ttl", &|l| pseudo4(s4, d4, 17, l)),
        ),
        ipv6(
            s6,
            d6,
            17,
            64,
            0,
            &[],
            &udp(1, 2, &[0; 1200], &|l| pseudo6(s6, d6, 17, l)),
        ),
        ipv6(
            s6,
            d6,
            58,
            64,
            0,
            &[],
            &icmp(1, 4, [0; 4], &inner6, &|l| pseudo6(s6, d6, 58, l)),
        ),
        vec![0x45, 0, 0],
    ];
    let mut out = OutBuf::new();
    let mut kinds = [0usize; 3];
    ARMED.with(|a| a.set(true));
    for _ in 0..100 {
        for p in &pkts {
            match t.translate(p, &mut out) {
                Outcome::Forward(_) => kinds[0] += 1,
                Outcome::Reply(_) => kinds[1] += 1,
                Outcome::Drop(_) => kinds[2] += 1,
            }
        }
    }
    ARMED.with(|a| a.set(false));
    assert_eq!(
        COUNT.with(|c| c.get()),
        0,
        "heap allocations while translating"
    );
    assert!(
        kinds.iter().all(|&k| k > 0),
        "all outcomes exercised: {kinds:?}"
    );
}
