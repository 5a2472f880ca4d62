//! `harvester completions SHELL` and `harvester man`: clap's own generators, so the completions
//! and the manual always say what the flags are.

use clap::CommandFactory;

use super::{to_stdout, AppError};
use crate::cli::{Cli, CompletionsArgs, ManArgs};

/// Writes the completion script of `args.shell` to stdout.
pub fn completions(args: &CompletionsArgs) -> Result<(), AppError> {
    // Generated into memory first: clap_complete panics on a write error (`| head`).
    let mut buf = Vec::new();
    clap_complete::generate(args.shell, &mut Cli::command(), "harvester", &mut buf);
    to_stdout(&buf)
}

/// Writes the manual page to stdout, or every page (one per command) into `--dir`.
pub fn man(args: &ManArgs) -> Result<(), AppError> {
    let cmd = Cli::command();
    match &args.dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .map_err(|e| AppError::io(format!("cannot create {}", dir.display()), e))?;
            clap_mangen::generate_to(cmd, dir).map_err(|e| {
                AppError::io(format!("cannot write the pages into {}", dir.display()), e)
            })
        }
        None => {
            let mut buf = Vec::new();
            clap_mangen::Man::new(cmd)
                .render(&mut buf)
                .map_err(|e| AppError::io("rendering the manual", e))?;
            to_stdout(&buf)
        }
    }
}
