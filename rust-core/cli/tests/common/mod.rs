//! Helpers shared by the argument tests.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs `clat args...` and returns (exit code, stderr). A `clat run` that
/// wrongly accepted its arguments would keep running: it is killed after
/// 10 s and the test fails.
pub fn clat(args: &[&str]) -> (Option<i32>, String) {
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
            panic!("clat {args:?} was still running after 10 s: its arguments were accepted");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
