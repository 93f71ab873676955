//! `clat status`: asks a running `clat run` (through its control socket)
//! for its status and prints it for people (a summary, then `key value`
//! lines) or, with `--json`, as the JSON document of `docs/status-json.md`.

use crate::control::ControlAddr;
use crate::status::Status;
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
    /// Print the status as one JSON document (schema: docs/status-json.md,
    /// `schema_version` 1) instead of the summary and `key value` lines.
    #[arg(long)]
    pub json: bool,
}

pub fn main(args: Args) -> ExitCode {
    let addr = args
        .control
        .unwrap_or_else(|| ControlAddr::default_for(&args.tun));
    let text = match addr.ask("status", Duration::from_secs(5)) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("clat status: cannot reach a running `clat run` at {addr}: {e}");
            return ExitCode::FAILURE;
        }
    };
    // A refusal (e.g. a user other than root and the instance's own) is a
    // failure on stderr, with or without --json.
    if let Some(why) = text.strip_prefix("error ") {
        eprintln!("clat status: {addr} answered: {}", why.trim());
        return ExitCode::FAILURE;
    }
    if text.trim().is_empty() {
        eprintln!("clat status: empty answer from {addr}");
        return ExitCode::FAILURE;
    }
    // Parsed either way: a broken or foreign answer is an error, not output.
    let status = match Status::from_json(text.trim()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("clat status: {addr} answered badly: {e}");
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
