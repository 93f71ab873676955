//! Running the host's own tools (`ip`, `nft`, `iptables`, `firewall-cmd`):
//! they are what administrators use and read, so what `clat run` changes
//! with them looks the same as a change made by hand. Every call has a
//! deadline, so that a wedged tool (firewall-cmd waiting for D-Bus) cannot
//! hang `clat run`.

use anyhow::{bail, Context, Result};
use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long any one tool may take.
pub const TOOL_TIMEOUT: Duration = Duration::from_secs(5);

/// Where a program is: `$PATH`, then the sbin directories (which a
/// non-login root shell may not have in `$PATH`).
pub fn find(prog: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|d| d.join(prog))
        .find(|p| p.is_file())
}

/// What a tool said and how it ended.
#[derive(Debug)]
pub struct Outcome {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `argv` (its stdout and stderr captured), killing it after
/// [`TOOL_TIMEOUT`]. Errors: the program is missing or cannot start, or it
/// ran out of time; a non-zero exit is an [`Outcome`], not an error.
pub fn run(argv: &[&str]) -> Result<Outcome> {
    let (prog, args) = argv.split_first().context("empty command")?;
    let exe = find(prog).with_context(|| format!("{prog} is not installed"))?;
    let mut child = Command::new(exe)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run {}", argv.join(" ")))?;
    // Read both pipes in threads so a chatty tool cannot block on a full pipe.
    let mut out = child.stdout.take().context("stdout")?;
    let mut err = child.stderr.take().context("stderr")?;
    let t_out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let t_err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + TOOL_TIMEOUT;
    let status = loop {
        if let Some(st) = child.try_wait()? {
            break st;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "{} did not finish within {}s",
                argv.join(" "),
                TOOL_TIMEOUT.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Ok(Outcome {
        success: status.success(),
        stdout: t_out.join().unwrap_or_default(),
        stderr: t_err.join().unwrap_or_default(),
    })
}

/// [`run`], with a non-zero exit turned into an error that quotes the
/// command and its stderr. Returns stdout.
pub fn run_ok(argv: &[&str]) -> Result<String> {
    let o = run(argv)?;
    if !o.success {
        bail!("`{}` failed: {}", argv.join(" "), o.stderr.trim());
    }
    Ok(o.stdout)
}

/// `ip ARGS...`, which must succeed.
pub fn ip(args: &[&str]) -> Result<()> {
    let mut argv = vec!["ip"];
    argv.extend_from_slice(args);
    run_ok(&argv).map(|_| ())
}
