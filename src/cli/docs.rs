//! `skiplock completions SHELL` and `skiplock man`: shell completions and man pages generated
//! from the same clap definitions that parse the command line, so they cannot drift from it.
//! Neither reads settings or opens anything, so packaging can run them anywhere.

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::Context;
use clap::CommandFactory;

use super::Cli;

#[derive(Debug, clap::Args)]
pub struct CompletionsArgs {
    /// The shell to complete for, e.g. `skiplock completions bash > /etc/bash_completion.d/skiplock`.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, clap::Args)]
pub struct ManArgs {
    /// Write a page per command (skiplock.1, skiplock-worker.1, …) into this existing folder
    /// instead of printing skiplock.1.
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<PathBuf>,
}

pub fn completions(a: &CompletionsArgs) -> anyhow::Result<()> {
    // Rendered to memory first: the generator panics on a failed write, and a closed pipe
    // (`skiplock completions bash | head`) deserves an error, not a panic.
    let mut script = Vec::new();
    clap_complete::generate(a.shell, &mut Cli::command(), "skiplock", &mut script);
    print(&script)
}

pub fn man(a: &ManArgs) -> anyhow::Result<()> {
    match &a.out_dir {
        None => {
            let mut page = Vec::new();
            clap_mangen::Man::new(Cli::command()).render(&mut page)?;
            print(&page)
        }
        Some(dir) => {
            // The folder must exist: creating it would hide a typo in a packaging script.
            if !dir.is_dir() {
                anyhow::bail!("--out-dir {}: no such folder", dir.display());
            }
            clap_mangen::generate_to(Cli::command(), dir)
                .with_context(|| format!("cannot write man pages into {}", dir.display()))?;
            Ok(())
        }
    }
}

fn print(bytes: &[u8]) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)
        .and_then(|()| out.flush())
        .context("cannot write to stdout")
}
