//! `clat status`: asks a running `clat run` (through its control socket)
//! for its prefix, addresses and counters, printed as `key value` lines.

use crate::control::ControlAddr;
use std::io::{Read, Write};
use std::process::ExitCode;
use std::time::Duration;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// TUN name of the instance (selects the default control socket, that
    /// of the instance in this network namespace).
    #[arg(long, default_value = "clat0")]
    pub tun: String,
    /// Control socket of the instance: `@NAME` (abstract) or a path
    /// (default @clat/<tun>).
    #[arg(long, value_name = "@NAME|PATH")]
    pub control: Option<ControlAddr>,
}

pub fn main(args: Args) -> ExitCode {
    let addr = args
        .control
        .unwrap_or_else(|| ControlAddr::default_for(&args.tun));
    let r = (|| -> std::io::Result<String> {
        let mut s = addr.connect()?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        s.write_all(b"status\n")?;
        s.shutdown(std::net::Shutdown::Write)?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        Ok(out)
    })();
    match r {
        Ok(text) if text.starts_with("error ") => {
            eprintln!(
                "clat status: {addr} answered: {}",
                text["error ".len()..].trim()
            );
            ExitCode::FAILURE
        }
        Ok(text) if !text.is_empty() => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Ok(_) => {
            eprintln!("clat status: empty answer from {}", addr);
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!(
                "clat status: cannot reach a running `clat run` at {}: {e}",
                addr
            );
            ExitCode::FAILURE
        }
    }
}
