//! `harvester forward`.

use super::{check_sink_settings, forward_all, open_journal, parse_outputs, AppError};
use crate::cli::{Cli, ForwardArgs};

/// `harvester forward`.
pub async fn forward(cli: &Cli, args: &ForwardArgs) -> Result<(), AppError> {
    let outputs = parse_outputs(&args.output, &args.sink)?;
    check_sink_settings(&args.sink)?;
    let journal = open_journal(&cli.journal)?;
    let n = forward_all(&journal, &outputs, &args.sink).await?;
    tracing::info!(forwarded = n, "forward complete");
    Ok(())
}
