//! `clat run --native-ipv4` is refused before anything on the host changes:
//! without `--auto` (a usage error, exit status 2), and without
//! `--bind-device` or `--mark` (the engine's own IPv4 sockets would follow
//! the CLAT's routes back into the TUN), with a message naming both.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs `clat args...`: (exit code, stderr). One that wrongly accepted its
/// arguments would keep running: killed after 10 s and the test fails.
fn clat(args: &[&str]) -> (Option<i32>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_clat"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("clat {args:?} was still running after 10 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const BASE: [&str; 6] = [
    "run",
    "--pref64",
    "2001:db8:64::/96",
    "--tun",
    "clatnv4test",
    "--native-ipv4",
];

#[test]
fn native_ipv4_needs_auto() {
    let (code, err) = clat(&BASE);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--auto"), "{err}");
}

#[test]
fn native_ipv4_needs_bind_device_or_mark() {
    let control =
        std::env::temp_dir().join(format!("clat-native-ipv4-args-{}.sock", std::process::id()));
    let mut args = BASE.to_vec();
    args.extend(["--auto", "--control", control.to_str().unwrap()]);
    let (code, err) = clat(&args);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("--native-ipv4 needs --bind-device IFACE")
            && err.contains("--mark N")
            && err.contains("back into the TUN"),
        "{err}"
    );
    assert!(!control.exists(), "nothing set up before the refusal");
}
