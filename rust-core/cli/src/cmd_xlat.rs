//! `clat xlat`: the stateless translator as a tool (work in progress).

use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// Files holding one packet each, starting at the IP header.
    pub files: Vec<std::path::PathBuf>,
}

pub fn main(_args: Args) -> ExitCode {
    eprintln!("clat xlat: not built yet");
    ExitCode::from(2)
}
