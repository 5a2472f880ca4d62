//! `harvester`: a local-first harvester of Opencast viewer analytics.
//!
//! The data flows one way: **Opencast → harvest → journal → forward → sinks**.
//! [`opencast`] is the source, [`harvest`] pages a time window into the [`journal`] (redb,
//! durable, deduplicated), [`forward`] drains it to stdout or SQS with a cursor per sink, and
//! [`checkpoint`] keeps the original's S3 timestamp object in step. [`sim`] is a faithful
//! simulated Opencast for tests, the demo and benchmarks.

pub mod app;
pub mod aws;
pub mod checkpoint;
pub mod cli;
pub mod config;
pub mod enrich;
pub mod episode_doc;
pub mod episode_meta;
pub mod episodes;
pub mod es;
pub mod forward;
pub mod harvest;
pub mod journal;
pub mod logging;
pub mod metrics;
pub mod opencast;
pub mod progress;
pub mod record;
pub mod record_csv;
pub mod retry;
pub mod secret;
pub mod shutdown;
pub mod sim;
pub mod timefmt;
