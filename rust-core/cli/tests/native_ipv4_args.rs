//! `clat run --native-ipv4` is refused before anything on the host changes:
//! without `--auto` (a usage error, exit status 2), and without
//! `--bind-device` or `--mark` (the engine's own IPv4 sockets would follow
//! the CLAT's routes back into the TUN), with a message naming both.

mod common;
use common::clat;

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
