//! `journal replay`: the replay engine, records again to a sink from a new cursor, and the
//! dead letters a sink refused back to that sink.

use std::sync::Arc;
use std::time::Instant;

use super::filter;
use crate::app::{
    check_sink_settings, failed, make_sink, open_journal, parse_outputs, AppError, Output,
};
use crate::cli::{Cli, ReplayArgs, SinkArgs};
use crate::config::ConfigError;
use crate::forward::{self, SinkError, SinkFailure};
use crate::journal::inspect::Filter;
use crate::journal::{DeadLetter, Journal, SinkRefusal};
use crate::progress::Progress;
use crate::record::Record;
use crate::timefmt;

pub(super) async fn replay(cli: &Cli, a: &ReplayArgs) -> Result<(), AppError> {
    if a.dead_letters || !a.dead_letter.is_empty() {
        return replay_dead_letters(cli, a).await;
    }
    let (f, _) = filter(&a.range)?;
    if f.from_us.is_none() && f.to_us.is_none() && f.seq.is_none() {
        return Err(ConfigError::new("journal replay needs a range: --from/--to or --seq").into());
    }
    let (sink_args, output) = replay_sink(a)?;
    let j = open_journal(&cli.journal)?;
    let (mut sink, target) = make_sink(&output, &sink_args, &j).await?;
    let name = cursor_name(a, &target);
    let start = f.start_seq();
    if a.restart {
        j.set_cursor(&name, start)?;
    }
    let mut pos = j.cursor(&name)?.max(start);
    let end = j
        .next_seq()?
        .min(f.seq.map(|(_, b)| b.saturating_add(1)).unwrap_or(u64::MAX));
    if pos > start {
        tracing::info!(replay = %name, resume_at = pos, "resuming replay");
    }
    let began = Instant::now();
    let mut sent = 0u64;
    // Progress in journal sequence numbers walked (records outside the range are walked too).
    let progress = Progress::new("replay", "records walked", end.saturating_sub(pos));
    while pos < end {
        let jj: Arc<Journal> = j.clone();
        let (first, records) =
            tokio::task::spawn_blocking(move || jj.read_from(pos, forward::CHUNK)).await??;
        if records.is_empty() {
            break;
        }
        let upto = records.len().min((end.saturating_sub(first)) as usize);
        if let Err(source) = send_selected(&mut sink, &f, first, &records[..upto], &mut sent).await
        {
            progress.finish();
            return Err(AppError::Replay { name, sent, source });
        }
        let next = first + upto as u64;
        progress.inc(next - pos);
        pos = next;
        j.set_cursor(&name, pos)?;
    }
    progress.finish();
    drop(sink); // adds its last enrichment counts to the figures
    crate::app::log_enrichment(&sink_args);
    tracing::info!(replay = %name, sent, seconds = format!("{:.3}", began.elapsed().as_secs_f64()), "replay complete");
    Ok(())
}

/// The one sink a replay sends to, with its settings (`--es-index` in place of the index
/// pattern).
fn replay_sink(a: &ReplayArgs) -> Result<(SinkArgs, Output), AppError> {
    let mut sink_args = a.sink.clone();
    if let Some(ix) = &a.es_index {
        sink_args.es_action_index = ix.clone();
    }
    let outputs = parse_outputs(&a.output, &sink_args)?;
    check_sink_settings(&sink_args)?;
    let [output] = outputs.as_slice() else {
        return Err(
            ConfigError::new("journal replay sends to one sink: -o sqs, -o - or -o es").into(),
        );
    };
    if a.es_index.is_some() && *output != Output::Es {
        return Err(ConfigError::new("--es-index goes with -o es").into());
    }
    let output = output.clone();
    Ok((sink_args, output))
}

/// The replay's own cursor: `--name`, or the target and range, so that the same command
/// resumes where it stopped.
fn cursor_name(a: &ReplayArgs, target: &str) -> String {
    format!(
        "replay:{}",
        a.name.clone().unwrap_or_else(|| format!(
            "{target}:{}:{}:{}",
            a.range.from.as_deref().unwrap_or(""),
            a.range.to.as_deref().unwrap_or(""),
            a.range.seq.as_deref().unwrap_or("")
        ))
    )
}

/// Sends the runs of consecutive records of `records` (from sequence `first`) that `f`
/// selects, each with its first sequence number; counts them in `sent`.
async fn send_selected(
    sink: &mut forward::Sink,
    f: &Filter,
    first: u64,
    records: &[Record],
    sent: &mut u64,
) -> Result<(), SinkError> {
    let mut k = 0;
    while k < records.len() {
        if !f.selects(first + k as u64, &records[k]) {
            k += 1;
            continue;
        }
        let run_start = k;
        while k < records.len() && f.selects(first + k as u64, &records[k]) {
            k += 1;
        }
        let run = &records[run_start..k];
        sink.send(first + run_start as u64, run).await?;
        *sent += run.len() as u64;
    }
    Ok(())
}

/// `journal replay --dead-letters`: sends the records a sink refused again, each once, to the
/// same kind of sink (`-o sqs` for SQS's, `-o es` for Elasticsearch's, into the index that
/// refused it), in bulk: SQS batches of ten, Elasticsearch bulk requests (3,000 letters took
/// 3,000 requests one by one). A delivered dead letter is marked so no replay sends it again;
/// one refused again stays as it is, and the command exits 1 saying why. Logs name a refusal by
/// its type and action id only: Elasticsearch's reason quotes the record's values, and stays in
/// the dead-letter table.
pub(super) async fn replay_dead_letters(cli: &Cli, a: &ReplayArgs) -> Result<(), AppError> {
    let (output, kind) = dead_letter_sink(a)?;
    let j = open_journal(&cli.journal)?;
    let todo = dead_letters_to_replay(&j, kind, &a.dead_letter)?;
    if todo.is_empty() {
        tracing::info!(
            sink = kind,
            "no undelivered dead letters of this sink to replay"
        );
        return Ok(());
    }
    let (mut sink, target) = make_sink(&output, &a.sink, &j).await?;
    let outcome = resend_all(&mut sink, &todo).await;
    let delivered: Vec<u64> = outcome
        .fates
        .iter()
        .zip(&todo)
        .filter(|(f, _)| **f == LetterFate::Delivered)
        .map(|(_, (n, _, _))| *n)
        .collect();
    {
        let j = j.clone();
        let ns = delivered.clone();
        tokio::task::spawn_blocking(move || j.mark_dead_letters_delivered(&ns, timefmt::now_us()))
            .await??;
    }
    let mut still = Vec::new();
    for (fate, (n, _, r)) in outcome.fates.iter().zip(&todo) {
        if let LetterFate::Refused(kind) = fate {
            tracing::warn!(dead_letter = n, action_id = r.action_id, reason_type = %kind, "dead letter refused again; it stays (journal dump --dead-letters shows the full reason)");
            still.push((*n, r.action_id, kind.clone()));
        }
    }
    let requests = sink.requests();
    tracing::info!(sink = %target, delivered = delivered.len(), refused_again = still.len(), requests, "dead letter replay complete");
    if let Some(source) = outcome.failed {
        return Err(AppError::DeadLetterReplay {
            target,
            delivered: delivered.len() as u64,
            source: Box::new(source),
        });
    }
    match still.first() {
        None => Ok(()),
        Some((n, id, kind)) => Err(failed(format!(
            "{} dead letter(s) were refused again by {target} and stay undelivered (dead letter {n}, action {id}: {kind}; journal dump --dead-letters shows the full reasons)",
            still.len()
        ))),
    }
}

/// The sink a dead letter replay sends to (`-o sqs` or `-o es`, nothing else) and its kind.
fn dead_letter_sink(a: &ReplayArgs) -> Result<(Output, &'static str), AppError> {
    if a.range.from.is_some() || a.range.to.is_some() || a.range.seq.is_some() {
        return Err(ConfigError::new(
            "journal replay --dead-letters takes no --from/--to/--seq (choose with --dead-letter N)"
        )
        .into());
    }
    let outputs = parse_outputs(&a.output, &a.sink)?;
    check_sink_settings(&a.sink)?;
    match outputs.as_slice() {
        [Output::Sqs] => Ok((Output::Sqs, "sqs")),
        [Output::Es] => Ok((Output::Es, "es")),
        [Output::Xapi] => Err(ConfigError::new(
            "a statement the LRS refused is made again from the journal: replay its time range with `harvester journal replay --from ... --to ... -o xapi` (the LRS answers \"already stored\" for the others); `journal dump --dead-letters` shows each refused statement with its time",
        )
        .into()),
        _ => Err(ConfigError::new(
            "journal replay --dead-letters sends to the sink that refused them: -o sqs or -o es",
        )
        .into()),
    }
}

/// The undelivered dead letters that sinks of `kind` refused, those of `wanted` alone when it
/// names some (each must be one such sink refused).
fn dead_letters_to_replay(
    j: &Journal,
    kind: &str,
    wanted: &[u64],
) -> Result<Vec<(u64, DeadLetter, SinkRefusal)>, AppError> {
    let letters = j.dead_letters()?;
    let refusals = j.sink_refusals()?;
    for n in wanted {
        match refusals.get(n) {
            Some(r) if r.sink == kind => {}
            Some(r) => {
                return Err(ConfigError::new(format!(
                    "dead letter {n} was refused by {}, not {kind}: use -o {}",
                    r.sink, r.sink
                ))
                .into())
            }
            None => {
                return Err(ConfigError::new(format!(
                "dead letter {n} is not a record a sink refused (see journal dump --dead-letters)"
            ))
                .into())
            }
        }
    }
    Ok(letters
        .into_iter()
        .filter_map(|(n, d)| refusals.get(&n).map(|r| (n, d, r.clone())))
        .filter(|(n, _, r)| {
            r.sink == kind
                && r.delivered_at_us.is_none()
                && (wanted.is_empty() || wanted.contains(n))
        })
        .collect())
}

/// What became of one dead letter sent again.
#[derive(Debug, Clone, PartialEq, Eq)]
enum LetterFate {
    Delivered,
    /// Refused again: the reason's type (SQS's code and message, which quote no values).
    Refused(String),
    /// Not sent, or not known to have arrived (the sink failed first).
    Unsent,
}

/// What became of the dead letters sent again: a fate for each, and why the sink stopped.
struct Resent {
    fates: Vec<LetterFate>,
    failed: Option<SinkFailure>,
}

/// Sends the dead letters `todo` again, in bulk.
async fn resend_all(sink: &mut forward::Sink, todo: &[(u64, DeadLetter, SinkRefusal)]) -> Resent {
    let mut fates = vec![LetterFate::Unsent; todo.len()];
    match sink {
        forward::Sink::Sqs(s) => {
            let entries = todo
                .iter()
                .map(|(_, d, r)| forward::sqs::Entry {
                    body: d.raw.clone(),
                    action_id: r.action_id,
                })
                .collect();
            let out = s.send_entries(entries).await;
            // Letters delivered past a failure count as delivered too: never sent twice.
            for i in (0..out.acked).chain(out.ahead) {
                fates[i] = LetterFate::Delivered;
            }
            for (i, why) in out.refused {
                fates[i] = LetterFate::Refused(why);
            }
            Resent {
                fates,
                failed: out.failed.map(SinkFailure::from),
            }
        }
        forward::Sink::Es(s) => {
            let docs: Vec<(String, i64, String)> = todo
                .iter()
                .map(|(_, d, r)| (r.target.clone(), r.action_id, d.raw.clone()))
                .collect();
            let (resolved, failed) = s.resend_documents(&docs).await;
            for (i, r) in resolved.into_iter().enumerate() {
                fates[i] = match r {
                    None => LetterFate::Delivered,
                    Some(why) => LetterFate::Refused(why.kind),
                };
            }
            Resent {
                fates,
                failed: failed.map(|(_, why)| SinkFailure::from(why)),
            }
        }
        // `dead_letter_sink` gives sqs or es; were stdout ever handed some, they stay.
        forward::Sink::Stdout(_) => Resent {
            fates: vec![LetterFate::Refused("stdout takes no dead letters".into()); todo.len()],
            failed: None,
        },
        // A statement the LRS refused is made again from the journal by `journal replay -o
        // xapi` over its range (the statement depends on its session's earlier actions).
        forward::Sink::Xapi(_) => Resent {
            fates: vec![
                LetterFate::Refused(
                    "xapi statements are replayed with `journal replay -o xapi --from ... --to ...`".into()
                );
                todo.len()
            ],
            failed: None,
        },
    }
}
