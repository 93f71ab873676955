//! Translations per second for typical packets in both directions.
//! Run: cargo bench -p clat-xlat --bench translate

use clat_xlat::{OutBuf, Outcome};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::hint::black_box;

mod packets;

fn bench(c: &mut Criterion) {
    let t = packets::translator();
    let p = packets::packets(&t);
    let mut g = c.benchmark_group("translate");
    g.throughput(Throughput::Elements(1));
    let cases: [(&str, &[u8], bool); 6] = [
        ("4to6/tcp-1440B", &p.tcp4, true),
        ("4to6/udp-128B", &p.udp4, true),
        ("4to6/icmp-error", &p.icmp_err4, true),
        ("6to4/tcp-1460B", &p.tcp6, false),
        ("6to4/udp-148B", &p.udp6, false),
        ("6to4/icmp-error", &p.icmp_err6, false),
    ];
    let mut out = OutBuf::new();
    for (name, pkt, four) in cases {
        // Make sure the benchmark measures a real translation, not a drop.
        let o = if four {
            t.translate_4to6(pkt, &mut out)
        } else {
            t.translate_6to4(pkt, &mut out)
        };
        assert!(matches!(o, Outcome::Forward(_)), "{name}: {o:?}");
        g.bench_function(name, |b| {
            b.iter(|| {
                if four {
                    black_box(t.translate_4to6(black_box(pkt), &mut out))
                } else {
                    black_box(t.translate_6to4(black_box(pkt), &mut out))
                }
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
