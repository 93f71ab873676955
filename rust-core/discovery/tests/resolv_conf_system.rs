//! `system_resolvers` reads the system's /etc/resolv.conf: checked in a
//! private mount namespace where a known file is bind-mounted over it (the
//! host's file is neither read nor touched). Needs root.

use clat_discovery::resolv_conf::system_resolvers;
use std::ffi::CString;

#[test]
fn system_resolvers_come_from_etc_resolv_conf() {
    // SAFETY: geteuid/unshare/mount have no memory-safety preconditions;
    // the strings are valid and NUL-terminated. unshare affects this test
    // thread only, and making / private first keeps the bind mount from
    // propagating to the host.
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(euid, 0, "needs root (mount namespace)");
    // SAFETY: see above; this thread only.
    let rc = unsafe { libc::unshare(libc::CLONE_NEWNS) };
    assert_eq!(rc, 0, "{}", std::io::Error::last_os_error());
    let root = CString::new("/").unwrap();
    // SAFETY: see above; null source, type and data are allowed for a
    // propagation change.
    let rc = unsafe {
        libc::mount(
            std::ptr::null(),
            root.as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        )
    };
    assert_eq!(rc, 0, "{}", std::io::Error::last_os_error());
    let dir = std::env::temp_dir().join(format!("clat-resolv-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("resolv.conf");
    std::fs::write(&file, "nameserver 2001:db8:1::53\nnameserver 192.0.2.53\n").unwrap();
    let src = CString::new(file.to_str().unwrap()).unwrap();
    let dst = CString::new("/etc/resolv.conf").unwrap();
    // SAFETY: see above; both paths are NUL-terminated and outlive the call.
    let rc = unsafe {
        libc::mount(
            src.as_ptr(),
            dst.as_ptr(),
            std::ptr::null(),
            libc::MS_BIND,
            std::ptr::null(),
        )
    };
    assert_eq!(rc, 0, "{}", std::io::Error::last_os_error());
    let got = system_resolvers();
    // SAFETY: see above.
    unsafe { libc::umount(dst.as_ptr()) };
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(
        got,
        vec![
            "[2001:db8:1::53]:53".parse().unwrap(),
            "192.0.2.53:53".parse().unwrap()
        ]
    );
}
