//! Log lines of the real `clat` binary with stderr connected to "the
//! journal" (`JOURNAL_STREAM` naming stderr's device and inode, as systemd
//! sets it; the journal itself is not needed to see what is written to it)
//! and without: `<N>` priority prefixes and no timestamps there, timestamps
//! and one plain error line elsewhere. The run fails on purpose on a bad
//! `--mtu`, before it touches anything on the host.

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::process::Command;

fn run_bad_mtu(journal: bool, name: &str) -> String {
    let path = std::env::temp_dir().join(format!("clat-journal-{}-{name}", std::process::id()));
    let f = File::create(&path).unwrap();
    let m = f.metadata().unwrap();
    let mut c = Command::new(env!("CARGO_BIN_EXE_clat"));
    c.args([
        "run",
        "--pref64",
        "64:ff9b::/96",
        "--dns",
        "2001:db8::53",
        "--mtu",
        "100",
        "--tun",
        "clatjtest",
    ])
    .env_remove("RUST_LOG")
    .env_remove("JOURNAL_STREAM")
    .stderr(f);
    if journal {
        c.env("JOURNAL_STREAM", format!("{}:{}", m.dev(), m.ino()));
    }
    let st = c.status().unwrap();
    assert!(!st.success());
    let out = std::fs::read_to_string(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    out
}

#[test]
fn journal_lines_carry_a_priority_and_no_timestamp() {
    let out = run_bad_mtu(true, "j");
    assert_eq!(
        out,
        "<3>invalid configuration: mtu 100 is out of range (576..=65535)\n"
    );
}

#[test]
fn terminal_lines_carry_a_timestamp() {
    let out = run_bad_mtu(false, "t");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    // `[2026-11-30T11:05:42.846Z ERROR clat::cmd_run] ...`
    assert!(
        lines[0].starts_with('[') && lines[0].contains("Z ERROR "),
        "{out}"
    );
    assert!(lines[0].ends_with("invalid configuration: mtu 100 is out of range (576..=65535)"));
    assert_eq!(
        lines[1],
        "clat run: invalid configuration: mtu 100 is out of range (576..=65535)"
    );
}

#[test]
fn an_inherited_journal_stream_is_not_stderr() {
    // JOURNAL_STREAM set, but stderr redirected elsewhere (a child of a
    // service writing to a file): timestamps again.
    let path = std::env::temp_dir().join(format!("clat-journal-{}-x", std::process::id()));
    let f = File::create(&path).unwrap();
    let st = Command::new(env!("CARGO_BIN_EXE_clat"))
        .args([
            "run",
            "--pref64",
            "64:ff9b::/96",
            "--mtu",
            "100",
            "--tun",
            "clatjtest",
        ])
        .env("JOURNAL_STREAM", "1:1")
        .env_remove("RUST_LOG")
        .stderr(f)
        .status()
        .unwrap();
    assert!(!st.success());
    let out = std::fs::read_to_string(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert!(out.starts_with('[') && !out.contains("<3>"), "{out}");
}
