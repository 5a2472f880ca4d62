//! A command's failure, typed to the end: each cause keeps its own error (and its `source()`
//! chain); `main` formats it once and takes its exit code.

use crate::checkpoint::S3Error;
use crate::config::ConfigError;
use crate::es::EsError;
use crate::forward::sqs::SqsError;
use crate::forward::{ForwardError, SinkFailure};
use crate::harvest::HarvestError;
use crate::journal::JournalError;
use crate::opencast::OpencastError;

/// A command's failure: bad settings (exit 2) or a runtime fault (exit 1).
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// The journal is in use by the process `holder` describes (from its owner record).
    #[error("{source} (held by {holder})")]
    JournalHeld {
        source: JournalError,
        holder: String,
    },
    #[error(transparent)]
    Harvest(#[from] HarvestError),
    #[error(transparent)]
    Opencast(#[from] OpencastError),
    #[error(transparent)]
    Forward(#[from] ForwardError),
    #[error(transparent)]
    Sqs(#[from] SqsError),
    #[error(transparent)]
    Es(#[from] EsError),
    #[error(transparent)]
    Checkpoint(#[from] S3Error),
    /// Writing the checkpoint to S3 failed; the journal keeps it marked unsynced.
    #[error(
        "{0} (the checkpoint is safe in the journal and will be written to S3 on the next run)"
    )]
    CheckpointNotSynced(#[source] S3Error),
    /// A file or socket operation; `what` says which ("cannot listen on METRICS_ADDR …").
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    /// Writing the command's output (a dump to stdout) failed.
    #[error(transparent)]
    Output(std::io::Error),
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    #[error(transparent)]
    Http(#[from] reqwest::Error),
    /// A replay stopped: the sink failed (its cursor `name` keeps how far it got).
    #[error(
        "replay {name}: {source}; {sent} records were sent, run the same command again to resume"
    )]
    Replay {
        name: String,
        sent: u64,
        source: crate::forward::SinkError,
    },
    /// A dead letter replay stopped: the sink did not answer.
    #[error(
        "replaying dead letters to {target}: {source}; {delivered} were delivered, run the same \
         command again to go on"
    )]
    DeadLetterReplay {
        target: String,
        delivered: u64,
        source: Box<SinkFailure>,
    },
    #[error(transparent)]
    Remote(#[from] crate::app::journal::RemoteError),
    /// A running service sent a record a report cannot read.
    #[error(transparent)]
    ReportInput(#[from] crate::report::input::NotAnAction),
    /// A blocking or spawned task panicked or was cancelled.
    #[error(transparent)]
    Task(#[from] tokio::task::JoinError),
    /// A failure with no typed cause: a decision of the command itself ("3 of 12 checks
    /// failed"), a refusal with its remedy.
    #[error("{0}")]
    Failed(String),
}

impl AppError {
    pub fn exit_code(&self) -> i32 {
        match self {
            AppError::Config(_) => 2,
            _ => 1,
        }
    }

    /// An I/O error with what was being done.
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> AppError {
        AppError::Io {
            what: what.into(),
            source,
        }
    }
}

/// A failure told in words only (see [`AppError::Failed`]).
pub(crate) fn failed(e: impl std::fmt::Display) -> AppError {
    AppError::Failed(e.to_string())
}
