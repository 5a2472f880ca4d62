//! Who watched what: watched stretches, views and attendance, straight from the journal.
//!
//! The journal is read once, in sequence order, through the same walk as `journal dump`
//! ([`crate::journal::inspect::for_each`]) or, while `harvester run` holds it, from the
//! service's record stream. [`rules`] turns each session's actions into watched stretches
//! (heartbeat players and event players alike), [`aggregate`] keeps them per (episode,
//! viewer), [`tables`] makes the viewers, episodes and series tables, [`attendance`] is
//! Harvard's export, and [`write`] / [`svg`] print them. Memory follows the (episode, viewer)
//! pairs and sessions, never the number of actions; hostile positions are bounded and counted
//! ([`rules::Anomalies`]), never a panic and never a percentage over 100.

pub mod aggregate;
pub mod attendance;
pub mod input;
pub mod names;
pub mod rules;
pub mod segments;
pub mod svg;
pub mod tables;
pub mod write;

pub use aggregate::{Aggregator, Settings};
pub use input::{Action, JsonAction};
pub use tables::Tables;

/// The one summary line of a report (stderr): what was read and what had to be corrected.
pub fn summary(t: &Tables) -> String {
    let a = t.aggregate();
    let n = &a.anomalies;
    let mut s = format!(
        "report: {} actions read, {} selected; {} episodes ({} without a duration: no percent), \
         {} (episode, viewer) rows",
        a.read,
        a.selected,
        a.episodes.len(),
        t.episodes_without_duration(),
        t.pair_count(),
    );
    let mut fixed = Vec::new();
    for (k, v) in [
        ("negative positions read as 0", n.negative_positions),
        (
            "positions past the episode's end read as its end",
            n.past_end,
        ),
        ("absurd positions (over 7 days) bounded", n.absurd_positions),
        (
            "heartbeats with outpoint before inpoint left out",
            n.outpoint_before_inpoint,
        ),
        (
            "actions without the position a rule needs left out",
            n.missing_positions,
        ),
        (
            "actions older than their session's previous one",
            n.out_of_order,
        ),
        (
            "reported end positions not believed (real speed used)",
            n.implausible_ends,
        ),
        ("sessions with over 10000 actions", n.crowded_sessions),
    ] {
        if v > 0 {
            fixed.push(format!("{v} {k}"));
        }
    }
    if n.crowded_sessions > 0 {
        fixed.push(format!(
            "at most {} actions in one session",
            n.most_actions_in_a_session
        ));
    }
    if fixed.is_empty() {
        s.push_str("; no hostile input");
    } else {
        s.push_str("; hostile input: ");
        s.push_str(&fixed.join(", "));
    }
    if n.plays_ended_by_gap > 0 {
        s.push_str(&format!(
            "; {} plays ended by the session gap",
            n.plays_ended_by_gap
        ));
    }
    s
}
