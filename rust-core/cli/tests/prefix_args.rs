//! The `clat` binary refuses a NAT64 prefix that RFC 6052 section 2.2
//! forbids (bits 64-71 set) when it parses its arguments, with exit status
//! 2 and the rule in the message, for `clat run --pref64` and
//! `clat xlat --pool6` alike (one check: `clat_xlat::addr6052`).

mod common;
use common::clat;

const BAD: &str = "2001:db8:0:0:ff00::/96";

#[test]
fn clat_run_refuses_a_pref64_with_a_nonzero_u_octet() {
    let control =
        std::env::temp_dir().join(format!("clat-prefix-args-{}.sock", std::process::id()));
    let (code, err) = clat(&[
        "run",
        "--pref64",
        BAD,
        "--tun",
        "clatpfxtest",
        "--no-routes",
        "--dns",
        "[2001:db8::53]:53",
        "--control",
        control.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("--pref64")
            && err.contains(BAD)
            && err.contains("bits 64-71 must be zero (RFC 6052 section 2.2)"),
        "{err}"
    );
}

#[test]
fn clat_run_names_the_other_rfc_6052_rules() {
    for (p, why) in [
        (
            "2001:db8:64::/80",
            "/80 is not one of 32, 40, 48, 56, 64, 96",
        ),
        ("2001:db8:64::1/96", "did you mean 2001:db8:64::/96?"),
        ("192.0.2.0/24", "is not an IPv6 prefix"),
    ] {
        let (code, err) = clat(&["run", "--pref64", p, "--no-routes", "--tun", "clatpfxtest"]);
        assert_eq!(code, Some(2), "{p}: {err}");
        assert!(err.contains(why), "{p}: {err}");
    }
}

#[test]
fn clat_xlat_refuses_the_same_pool6() {
    let (code, err) = clat(&["xlat", "--pool6", BAD, "/dev/null"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("bits 64-71 must be zero"), "{err}");
}

/// `--dns` goes through the one resolver parser when the arguments are
/// parsed: port 0 and a link-local address without its interface are usage
/// errors (exit status 2) naming the option, before anything is set up.
#[test]
fn clat_run_refuses_a_bad_dns_at_argument_parsing() {
    for bad in ["[2001:db8::53]:0", "fe80::1", "not-an-address"] {
        let (code, err) = clat(&[
            "run",
            "--pref64",
            "2001:db8:64::/96",
            "--tun",
            "clatdnstest",
            "--no-routes",
            "--dns",
            bad,
        ]);
        assert_eq!(code, Some(2), "{bad}: {err}");
        assert!(err.contains("--dns") && err.contains(bad), "{bad}: {err}");
    }
}
