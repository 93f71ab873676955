//! `clat status`: asks a running `clat run` (through its control socket)
//! for its status and prints it for people (a summary, then `key value`
//! lines) or, with `--json`, as the JSON document of `docs/status-json.md`.

use crate::status::Status;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// TUN name of the instance (selects the default control socket).
    #[arg(long, default_value = "clat0")]
    pub tun: String,
    /// Control socket of the instance (default /run/clat/<tun>.sock).
    #[arg(long, value_name = "PATH")]
    pub control: Option<PathBuf>,
    /// Print the status as one JSON document (schema: docs/status-json.md,
    /// `schema_version` 1) instead of the summary and `key value` lines.
    #[arg(long)]
    pub json: bool,
}

/// Sends `status` on the control socket and returns the answer (one JSON
/// document and a newline).
fn ask(path: &Path) -> std::io::Result<String> {
    let mut s = UnixStream::connect(path)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(b"status\n")?;
    s.shutdown(std::net::Shutdown::Write)?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

pub fn main(args: Args) -> ExitCode {
    let path = args
        .control
        .unwrap_or_else(|| crate::cmd_run::default_control(&args.tun));
    let text = match ask(&path) {
        Ok(t) => t,
        Err(e) => {
            eprintln!(
                "clat status: cannot reach a running `clat run` at {}: {e}",
                path.display()
            );
            return ExitCode::FAILURE;
        }
    };
    // Parsed either way: a broken or foreign answer is an error, not output.
    let status = match Status::from_json(text.trim()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("clat status: {} answered badly: {e}", path.display());
            return ExitCode::FAILURE;
        }
    };
    if args.json {
        // The sender's document as it came (fields newer than this reader included).
        println!("{}", text.trim());
    } else {
        print!("{}", status.to_human());
    }
    ExitCode::SUCCESS
}
