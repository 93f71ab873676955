//! Drives the built `clat xlat` binary through the corpus in
//! rust-core/xlat/tests/corpus/ (generated, with independently derived
//! expected output, by gen.py there) and checks argument errors exit 2.

use std::path::{Path, PathBuf};
use std::process::Command;

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../xlat/tests/corpus")
}

fn clat() -> Command {
    Command::new(env!("CARGO_BIN_EXE_clat"))
}

fn args_of(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("args"))
        .unwrap()
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

#[test]
fn corpus_cases_match_expected_output() {
    let mut cases: Vec<PathBuf> = std::fs::read_dir(corpus())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir() && p.join("expected").exists())
        .collect();
    cases.sort();
    assert!(cases.len() >= 8, "corpus missing: {cases:?}");
    for dir in cases {
        let mut pkts: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "pkt"))
            .collect();
        pkts.sort();
        assert!(!pkts.is_empty());
        let out = clat()
            .arg("xlat")
            .args(args_of(&dir))
            .args(&pkts)
            .output()
            .unwrap();
        let name = dir.file_name().unwrap().to_string_lossy();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let got = String::from_utf8(out.stdout).unwrap();
        let want = std::fs::read_to_string(dir.join("expected")).unwrap();
        for (i, (g, w)) in got.lines().zip(want.lines()).enumerate() {
            assert_eq!(g, w, "{name}: line {i}");
        }
        assert_eq!(
            got.lines().count(),
            want.lines().count(),
            "{name}: number of lines"
        );
    }
}

#[test]
fn pcap_in_pcap_out() {
    let dir = corpus().join("pcap");
    let tmp = std::env::temp_dir().join(format!("clat-xlat-corpus-{}.pcap", std::process::id()));
    let out = clat()
        .arg("xlat")
        .args(args_of(&dir))
        .arg("--pcap")
        .arg(dir.join("in.pcap"))
        .arg("--pcap-out")
        .arg(&tmp)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = std::fs::read(&tmp).unwrap();
    let _ = std::fs::remove_file(&tmp);
    assert_eq!(got, std::fs::read(dir.join("expected.pcap")).unwrap());
}

#[test]
fn bad_arguments_exit_2_with_a_message() {
    let pkt = corpus().join("4to6_basic/00.pkt");
    let bad: &[&[&str]] = &[
        &["--pool6", "2001:db8::/33"],
        &["--pool6", "not-a-prefix"],
        &["--eam", "192.0.2.0/24=2001:db8::/124"],
        &["--eam", "192.0.2.0/24"],
        &["--mtu6", "1000"],
        &["--mtu4", "40"],
        &["--lowest-ipv6-mtu", "576"],
        &["--mtu4", "70000"],
        &["--self-v4", "2001:db8::1"],
        &["--no-such-option"],
        &["--pcap", "x.pcap"],
    ];
    for args in bad {
        let out = clat().arg("xlat").args(*args).arg(&pkt).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(!out.stderr.is_empty(), "{args:?}: a message");
        assert!(out.stdout.is_empty(), "{args:?}: nothing translated");
    }
    let out = clat()
        .args(["xlat", "/nonexistent/packet"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = clat().arg("xlat").output().unwrap();
    assert_eq!(out.status.code(), Some(2), "no FILE and no --pcap");
}
