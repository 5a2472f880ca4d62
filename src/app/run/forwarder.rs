//! Sink supervision: one forwarder per output for as long as a session runs.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use super::super::{make_sink, Output};
use super::session::Fault;
use crate::cli::SinkArgs;
use crate::forward;
use crate::journal::Journal;
use crate::metrics::Metrics;
use crate::retry;
use crate::shutdown::Shutdown;

/// How long an idle forwarder waits for news of new records before it looks anyway.
const IDLE_POLL: Duration = Duration::from_secs(2);

/// Forwards to one sink for as long as the session runs, reconnecting and backing off while
/// the sink is down: the journal holds everything meanwhile. A sink that fails is connected
/// again as at start (an SQS queue deleted under the service is created again, an index
/// template removed is installed again), not only retried. A journal I/O error ends the
/// session (the journal must be reopened).
pub(super) async fn forward_loop(
    journal: Arc<Journal>,
    output: Output,
    sink_args: SinkArgs,
    metrics: Arc<Metrics>,
    new_records: Arc<Notify>,
    stop: Shutdown,
    fault: Arc<Fault>,
) {
    let mut backoff = retry::FORWARD.retries();
    let mut sink = None;
    // `stdout`, `sqs` or `es`: the label of the per-sink latency and dead letters.
    let kind = format!("{output:?}").to_lowercase();
    let send_time = metrics.sink_send_histogram(&kind);
    metrics.sink_dead_letters(&kind, 0);
    while !stop.is_shutdown() {
        if sink.is_none() {
            match make_sink(&output, &sink_args, &journal).await {
                Ok(s) => sink = Some(s),
                Err(e) => {
                    metrics.sink_error(&kind);
                    tracing::warn!(error = %e, "sink unavailable; records wait in the journal");
                    stop.sleep(backoff.next_delay()).await;
                    continue;
                }
            }
        }
        let (s, cursor) = sink.as_mut().expect("connected");
        let notified = new_records.notified();
        let dead_before = s.dead_letters();
        let res =
            forward::forward_observed(&journal, s, cursor, Some(&stop), Some(&send_time)).await;
        metrics.sink_dead_letters(&kind, s.dead_letters().saturating_sub(dead_before));
        match res {
            Ok(f) => {
                if f.forwarded > 0 {
                    metrics.forwarded(cursor, f.forwarded);
                    tracing::info!(sink = %cursor, forwarded = f.forwarded, "forwarded");
                }
                backoff.reset();
                tokio::select! {
                    _ = notified => {},
                    _ = tokio::time::sleep(IDLE_POLL) => {},
                    _ = stop.wait() => {},
                }
            }
            Err(forward::ForwardError::Journal(e)) if e.needs_reopen() => {
                fault.raise(e);
                return;
            }
            Err(e) => {
                if let forward::ForwardError::Sink { forwarded, .. } = &e {
                    metrics.forwarded(cursor, *forwarded);
                }
                metrics.sink_error(cursor);
                tracing::warn!(error = %e, "forwarding failed; reconnecting the sink and retrying");
                // Reconnect as at start: what broke may be the sink's own state (a deleted
                // queue), which only connecting repairs.
                sink = None;
                stop.sleep(backoff.next_delay()).await;
            }
        }
    }
}
