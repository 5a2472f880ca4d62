//! The commands: each wires settings, journal, source and sinks together for one job.

/// Prints one line of a command's report on stdout, like `println!`, but a reader that went
/// away (`harvester journal stats | head -1`) ends the report quietly instead of panicking;
/// another write error is the command's error. Evaluates to `Result<(), AppError>`.
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::app::to_stdout(format!("{}\n", format_args!($($arg)*)).as_bytes())
    };
}

mod check;
mod checkpoint_cmd;
mod demo;
pub mod docs;
mod error;
mod forward_cmd;
mod harvest_cmd;
mod identity;
pub mod journal;
mod load_episodes;
mod opening;
pub mod owner;
pub mod report;
pub mod run;
mod s3;
mod sinks;
mod start;

pub use check::check;
pub use checkpoint_cmd::checkpoint;
pub use demo::{bench_fetch, demo, sim};
pub(crate) use error::failed;
pub use error::AppError;
pub use forward_cmd::forward;
pub use harvest_cmd::harvest;
pub use load_episodes::load_episodes;
pub(crate) use opening::{
    journal_error, open_journal, open_journal_as, open_journal_read, refuse_damage,
};
pub(crate) use s3::{s3_checkpoint, s3_client_if, sync_checkpoint};
pub(crate) use sinks::{
    check_sink_formats, check_sink_settings, forward_all, log_enrichment, make_sink,
};
pub use sinks::{parse_outputs, Output};
pub(crate) use start::{default_start, start_of, StartFrom};

/// Writes `buf` to stdout (the writer behind [`say!`] and the generated docs). A closed pipe
/// (`| head`) is a normal way to stop reading.
pub(crate) fn to_stdout(buf: &[u8]) -> Result<(), AppError> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(buf).and_then(|_| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(AppError::io("writing to stdout", e))
        }
        _ => Ok(()),
    }
}
