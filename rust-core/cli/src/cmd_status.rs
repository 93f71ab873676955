//! `clat status`: asks a running `clat run` (through its control socket)
//! for its status and prints it for people (a summary, then `key value`
//! lines) or, with `--json`, as the JSON document of `docs/status-json.md`.

use crate::control::InstanceArgs;
use crate::status::Status;
use std::process::ExitCode;
use std::time::Duration;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub instance: InstanceArgs,
    /// Print the status as one JSON document (schema: docs/status-json.md,
    /// `schema_version` 1) instead of the summary and `key value` lines.
    #[arg(long)]
    pub json: bool,
}

pub fn main(args: Args) -> ExitCode {
    let addr = args.instance.control_addr();
    let request = ("status", Duration::from_secs(5));
    addr.ask_and_print(
        "clat status",
        request,
        args.json,
        Status::from_json,
        Status::to_human,
    )
}
