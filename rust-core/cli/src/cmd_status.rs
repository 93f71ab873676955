//! `clat status`: asks a running `clat run` (through its control socket)
//! for its prefix, addresses and counters, printed as `key value` lines.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
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
}

pub fn main(args: Args) -> ExitCode {
    let path = args
        .control
        .unwrap_or_else(|| crate::cmd_run::default_control(&args.tun));
    let r = (|| -> std::io::Result<String> {
        let mut s = UnixStream::connect(&path)?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        s.write_all(b"status\n")?;
        s.shutdown(std::net::Shutdown::Write)?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        Ok(out)
    })();
    match r {
        Ok(text) if !text.is_empty() => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Ok(_) => {
            eprintln!("clat status: empty answer from {}", path.display());
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!(
                "clat status: cannot reach a running `clat run` at {}: {e}",
                path.display()
            );
            ExitCode::FAILURE
        }
    }
}
