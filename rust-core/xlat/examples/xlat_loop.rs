//! A fixed number of translations of one kind, for instruction counting:
//!   cargo build --release -p clat-xlat --example xlat_loop
//!   valgrind --tool=callgrind target/release/examples/xlat_loop udp4 100000
//! Divide the instruction count (minus a run with N=0) by N.

use clat_xlat::{OutBuf, Outcome};
use std::hint::black_box;

#[path = "../benches/packets.rs"]
mod packets;

fn main() {
    let mut args = std::env::args().skip(1);
    let kind = args.next().unwrap_or_else(|| "udp4".into());
    let n: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(100_000);
    let t = packets::translator();
    let p = packets::packets(&t);
    let (pkt, four) = match kind.as_str() {
        "tcp4" => (&p.tcp4, true),
        "udp4" => (&p.udp4, true),
        "err4" => (&p.icmp_err4, true),
        "tcp6" => (&p.tcp6, false),
        "udp6" => (&p.udp6, false),
        "err6" => (&p.icmp_err6, false),
        k => {
            eprintln!("unknown kind {k}: tcp4 udp4 err4 tcp6 udp6 err6");
            std::process::exit(2);
        }
    };
    let mut out = OutBuf::new();
    let mut fwd = 0u64;
    for _ in 0..n {
        let o = if four {
            t.translate_4to6(black_box(pkt), &mut out)
        } else {
            t.translate_6to4(black_box(pkt), &mut out)
        };
        if matches!(o, Outcome::Forward(_)) {
            fwd += 1;
        }
    }
    println!("{kind}: {fwd} of {n} forwarded");
}
