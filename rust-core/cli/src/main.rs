//! `clat`: the Linux front end of the CLAT core.
//!
//! Each subcommand lives in a module of its own (`cmd_*.rs`) that owns its
//! arguments and its behaviour; this file only dispatches.
//!
//! `unsafe` is denied in the crate except in `sys`, its one module of raw
//! system calls.

#![deny(unsafe_code)]

use clap::{CommandFactory, Parser, Subcommand};
use std::process::ExitCode;

mod args;
mod attribution;
mod auto_mode;
mod cmd_assets;
mod cmd_discover;
mod cmd_report;
mod cmd_run;
mod cmd_status;
mod cmd_xlat;
mod control;
mod firewall;
mod host_cmd;
mod host_setup;
mod listener_probe;
mod logging;
mod mark_rule;
mod report;
mod report_consumer;
mod resolv_watch;
mod route_watch;
mod sd_notify;
mod status;
mod sys;

/// A 464XLAT customer-side translator (CLAT) and its tools.
#[derive(Parser)]
#[command(name = "clat", version, about, long_about = None)]
struct Cli {
    /// Log level: error, warn, info, debug or trace (RUST_LOG overrides).
    #[arg(long, global = true, default_value = "info")]
    log_level: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Translate packets statelessly (RFC 7915) and print what comes out.
    Xlat(cmd_xlat::Args),
    /// Find the NAT64 prefix: RFC 7050 through resolvers, optionally PREF64 from an RA.
    Discover(cmd_discover::Args),
    /// Run the CLAT: TUN with the CLAT address, IPv4 default route, engine, until SIGINT/SIGTERM.
    Run(cmd_run::Args),
    /// Print a running instance's state, prefix, flows and counters (`--json` for scripts).
    Status(cmd_status::Args),
    /// Print which local processes used IPv4 through a running `clat run --report`.
    Report(cmd_report::Args),
    /// Write the man pages and shell completions (for packagers).
    #[command(hide = true)]
    GenerateAssets(cmd_assets::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init(&cli.log_level);
    match cli.command {
        Command::Xlat(args) => cmd_xlat::main(args),
        Command::Discover(args) => cmd_discover::main(args),
        Command::Run(args) => cmd_run::main(args),
        Command::Status(args) => cmd_status::main(args),
        Command::Report(args) => cmd_report::main(args),
        Command::GenerateAssets(args) => cmd_assets::main(args, Cli::command()),
    }
}
