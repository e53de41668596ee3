//! Shell completions and man pages, generated from the command line's clap definition
//! (`clap_complete`, `clap_mangen`), so they always match the commands drctl has.

use std::path::Path;

use anyhow::{Context, Result};
use clap::CommandFactory;

use crate::cli::Cli;

/// Prints the completion script for `shell` (`drctl completion bash`).
pub fn script(shell: clap_complete::Shell) -> Result<u8> {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "drctl", &mut script);
    print(&script)
}

/// Prints drctl.1, or writes it and a page per subcommand into `dir`.
pub fn man(dir: Option<&Path>) -> Result<u8> {
    let cmd = Cli::command();
    match dir {
        None => {
            let mut page = Vec::new();
            clap_mangen::Man::new(cmd).render(&mut page)?;
            print(&page)
        }
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
            clap_mangen::generate_to(cmd, dir)
                .with_context(|| format!("write man pages into {}", dir.display()))?;
            Ok(0)
        }
    }
}

fn print(bytes: &[u8]) -> Result<u8> {
    crate::output::write(bytes)?;
    Ok(0)
}
