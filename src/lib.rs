//! `harvester`: a local-first harvester of Opencast viewer analytics.
//!
//! The data flows one way: **Opencast → harvest → journal → forward → sinks**.
//! [`opencast`] is the source, [`harvest`] pages a time window into the [`journal`] (redb,
//! durable, deduplicated), [`forward`] drains it to stdout or SQS with a cursor per sink, and
//! [`checkpoint`] keeps the original's S3 timestamp object in step. [`sim`] is a faithful
//! simulated Opencast for tests, the demo and benchmarks.
//!
//! The binary (`main.rs`) needs [`app`], [`cli`], [`config`], [`logging`] and [`progress`]; the
//! integration tests and benches reach also the journal, records, the Opencast wire format,
//! the sinks, enrichment, the simulator and time formatting. Everything else is private to the
//! crate.

pub mod app;
mod aws;
mod checkpoint;
pub mod cli;
pub mod config;
pub mod enrich;
mod episode_doc;
mod episode_meta;
mod episodes;
mod es;
pub mod escape;
pub mod forward;
mod harvest;
pub mod journal;
pub mod logging;
mod metrics;
pub mod opencast;
pub mod privacy;
pub mod progress;
pub mod record;
pub mod record_csv;
pub mod report;
mod retry;
mod secret;
mod shutdown;
pub mod sim;
pub mod timefmt;
pub mod tls;
pub mod xapi;
