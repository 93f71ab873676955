//! Both entry points on arbitrary bytes, with two configurations (the
//! first byte picks one): never panic, and what comes out is well formed.
#![no_main]

use clat_xlat::{checksum, Config, Eam, EamTable, OutBuf, Outcome, Translator};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn translators() -> &'static [Translator; 2] {
    static T: OnceLock<[Translator; 2]> = OnceLock::new();
    T.get_or_init(|| {
        let mut eam = EamTable::new();
        eam.insert(Eam::new("192.0.0.4/32".parse().unwrap(), "2001:db8:1::2/128".parse().unwrap()).unwrap())
            .unwrap();
        let base = Config {
            pool6: Some("2001:db8:64::/96".parse().unwrap()),
            eam,
            self_v4: Some("192.0.0.1".parse().unwrap()),
            self_v6: Some("2001:db8:1::1".parse().unwrap()),
            pool6791_v4: Some("192.0.0.8".parse().unwrap()),
            ..Config::default()
        };
        let small = Config {
            pool6: Some("64:ff9b::/96".parse().unwrap()),
            mtu4: 68,
            mtu6: 1280,
            decrement_ttl: true,
            amend_udp_zero_checksum: true,
            ..base.clone()
        };
        [Translator::new(base).unwrap(), Translator::new(small).unwrap()]
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, pkt)) = data.split_first() else { return };
    let t = &translators()[(sel & 1) as usize];
    let mut out = OutBuf::new();
    let o = if sel & 2 == 0 { t.translate_4to6(pkt, &mut out) } else { t.translate_6to4(pkt, &mut out) };
    if let Outcome::Drop(_) = o {
        assert!(out.is_empty());
        return;
    }
    assert!(!out.is_empty());
    for p in out.iter() {
        match p[0] >> 4 {
            4 => {
                assert!(checksum::verify(&p[..20], 0));
                assert_eq!(u16::from_be_bytes([p[2], p[3]]) as usize, p.len());
                assert!(p.len() <= t.config().mtu4.max(576) as usize);
            }
            6 => {
                assert_eq!(u16::from_be_bytes([p[4], p[5]]) as usize + 40, p.len());
                assert!(p.len() <= t.config().mtu6 as usize);
            }
            _ => panic!("bad version"),
        }
    }
});
