//! `clat report`: asks a running `clat run --report` (through its control
//! socket) which local processes used IPv4 through the CLAT, and prints a
//! table for people or, with `--json`, the document of
//! `docs/report-json.md` (issue 17 item 3).

use crate::args::parse_duration;
use crate::control::InstanceArgs;
use crate::report::ReportDoc;
use std::process::ExitCode;
use std::time::Duration;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub instance: InstanceArgs,
    /// Only the processes that used IPv4 in this last period (e.g. 10m,
    /// 1h, 7d) or have flows open now; their counts still run from the
    /// start of `clat run`.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub since: Option<Duration>,
    /// Print the report as one JSON document (docs/report-json.md,
    /// `schema_version` 1) instead of the table.
    #[arg(long)]
    pub json: bool,
}

pub fn main(args: Args) -> ExitCode {
    let addr = args.instance.control_addr();
    let request = match args.since {
        // Whole seconds on the wire; a period under a second is one.
        Some(d) => format!("report {}", d.as_secs().max(1)),
        None => "report".to_string(),
    };
    addr.ask_and_print(
        "clat report",
        (&request, Duration::from_secs(10)),
        args.json,
        ReportDoc::from_json,
        ReportDoc::to_human,
    )
}
