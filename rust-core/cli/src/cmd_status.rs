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
    let request = ("status", Duration::from_secs(5));
    addr.ask_and_print(
        "clat status",
        request,
        args.json,
        Status::from_json,
        Status::to_human,
    )
}
