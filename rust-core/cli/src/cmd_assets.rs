//! `clat generate-assets DIR` (hidden): writes the man pages (`clat.1`,
//! `clat-run.1`, ... one per subcommand) and shell completions (bash, zsh,
//! fish) generated from the CLI's own clap definitions, for packagers
//! (`packaging/build-deb.sh`) and for users of `cargo install`.
//!
//! Why a hidden subcommand and not an xtask binary: the definitions are the
//! binary's (`Cli` in main.rs, the `Args` of each `cmd_*` module), so the
//! pages can never describe options another build does not have, and no
//! second copy of the CLI or library split is needed to reach them. The
//! cost is clap_mangen and clap_complete in the binary: their functions
//! take about 92 KiB of the 3.6 MB stripped release binary (`nm -S`).

use clap_complete::Shell;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Directory to write into: DIR/man/*.1 and DIR/completions/{clat.bash,_clat,clat.fish}.
    #[arg(value_name = "DIR")]
    pub out: PathBuf,
}

/// Writes every page and completion of `cmd` under `out`; returns the files.
pub fn generate(cmd: clap::Command, out: &Path) -> std::io::Result<Vec<PathBuf>> {
    let man = out.join("man");
    let comp = out.join("completions");
    std::fs::create_dir_all(&man)?;
    std::fs::create_dir_all(&comp)?;
    clap_mangen::generate_to(cmd.clone(), &man)?;
    let mut files = Vec::new();
    for e in std::fs::read_dir(&man)? {
        files.push(e?.path());
    }
    // clap_complete offers hidden subcommands too: leave them out.
    let visible = clap::Command::new("clat")
        .version(env!("CARGO_PKG_VERSION"))
        .args(cmd.get_arguments().cloned())
        .subcommands(cmd.get_subcommands().filter(|s| !s.is_hide_set()).cloned());
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        let mut c = visible.clone();
        files.push(clap_complete::generate_to(shell, &mut c, "clat", &comp)?);
    }
    files.sort();
    Ok(files)
}

pub fn main(args: Args, cmd: clap::Command) -> ExitCode {
    match generate(cmd, &args.out) {
        Ok(files) => {
            for f in files {
                println!("{}", f.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("clat generate-assets: {}: {e}", args.out.display());
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn pages_and_completions_come_from_the_cli() {
        let out = std::env::temp_dir().join(format!("clat-assets-{}", std::process::id()));
        let files = generate(crate::Cli::command(), &out).unwrap();
        let names: Vec<String> = files
            .iter()
            .map(|f| f.strip_prefix(&out).unwrap().display().to_string())
            .collect();
        assert_eq!(
            names,
            [
                "completions/_clat",
                "completions/clat.bash",
                "completions/clat.fish",
                "man/clat-discover.1",
                "man/clat-report.1",
                "man/clat-run.1",
                "man/clat-status.1",
                "man/clat-xlat.1",
                "man/clat.1",
            ]
        );
        let read = |p: &str| std::fs::read_to_string(out.join(p)).unwrap();
        // roff escapes '-' as '\-'.
        assert!(read("man/clat-run.1").contains(r"\-\-pref64"));
        assert!(read("man/clat-status.1").contains(r"\-\-json"));
        assert!(read("man/clat.1").contains("clat\\-run(1)"));
        assert!(!read("man/clat.1").contains("generate"));
        assert!(read("completions/clat.bash").contains("--resolv-conf"));
        assert!(read("completions/clat.fish").contains("-l json"));
        assert!(read("completions/_clat").contains("--max-flows"));
        for f in [
            "completions/clat.bash",
            "completions/_clat",
            "completions/clat.fish",
        ] {
            assert!(
                !read(f).contains("generate-assets"),
                "{f} offers the hidden command"
            );
        }
        std::fs::remove_dir_all(&out).unwrap();
    }
}
