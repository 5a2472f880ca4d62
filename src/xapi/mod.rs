//! xAPI statements of the ADL video profile, for learning record stores (issue 21).
//!
//! [`translate`] turns the journal's actions into statements; `journal dump --format xapi`
//! prints them and the sink `-o xapi` ([`crate::forward::xapi`]) posts them to an LRS. Both
//! read the journal from its first record, because a statement's progress and segments come
//! from its session's earlier actions: the same journal always gives the same statements,
//! byte for byte, so a replay is "already stored", never a conflict.

pub mod profile;
pub mod translate;

use std::sync::Arc;

pub use translate::{Statement, Translator, XapiFigures, XapiShape};

use crate::config::ConfigError;
use crate::journal::inspect::{self, Filter};
use crate::journal::{Journal, JournalError};
use crate::privacy::SinkPrivacy;
use crate::record::Record;

/// Parses `XAPI_COMPLETION_THRESHOLD`: a number in (0, 1] with at most 3 decimals.
pub fn parse_threshold(s: &str) -> Result<f64, ConfigError> {
    let bad = || {
        ConfigError::new(format!(
            "XAPI_COMPLETION_THRESHOLD={} is not a share; give a number above 0 and at most 1 with at most 3 decimals (the profile's default, 1, means every second watched)",
            crate::escape::quoted_short(s, 40)
        ))
    };
    let t = s.trim();
    // A plain decimal only: Rust's parser also takes `5e-4` or `+0.5`, which the 3-decimal
    // rule would not see.
    let (int, frac) = t.split_once('.').unwrap_or((t, ""));
    let digits = |x: &str| x.bytes().all(|b| b.is_ascii_digit());
    if int.is_empty() || !digits(int) || !digits(frac) || frac.len() > 3 {
        return Err(bad());
    }
    let v: f64 = t.parse().map_err(|_| bad())?;
    if !(v > 0.0 && v <= 1.0) {
        return Err(bad());
    }
    Ok(v)
}

/// Feeds `translator` the journal's records before sequence `upto` (their statements are
/// dropped): the state a sink or a dump resumes from.
pub fn catch_up(j: &Journal, translator: &mut Translator, upto: u64) -> Result<(), JournalError> {
    if upto == 0 {
        return Ok(());
    }
    let filter = Filter {
        seq: Some((0, upto - 1)),
        ..Filter::default()
    };
    let mut scratch = Vec::new();
    translator.set_quiet(true);
    let walked = inspect::for_each(j, &filter, None, |r| {
        translator.feed(r, &mut scratch);
        scratch.clear();
        Ok(())
    });
    translator.set_quiet(false);
    walked?;
    Ok(())
}

/// Writes the statements of the records `filter` selects as JSON lines: every record of the
/// journal is fed in order (the state), only the selected ones' statements are written.
pub fn dump(
    j: &Journal,
    shape: Arc<XapiShape>,
    privacy: Option<SinkPrivacy>,
    filter: &Filter,
    out: &mut impl std::io::Write,
) -> Result<(XapiFigures, Vec<inspect::BadBlock>), JournalError> {
    let mut t = Translator::new(shape, privacy);
    let mut statements = Vec::new();
    let all = Filter::default();
    let mut line = Vec::with_capacity(2048);
    let sum = inspect::for_each(j, &all, None, |r: &Record| {
        t.feed(r, &mut statements);
        // The statements of a selected record (and of sessions its time ended) go out.
        if selects(filter, r) {
            for s in &statements {
                line.clear();
                line.extend_from_slice(s.json.as_bytes());
                line.push(b'\n');
                out.write_all(&line)?;
            }
        }
        statements.clear();
        Ok(())
    })?;
    Ok((t.figures, sum.bad_blocks))
}

/// Whether `filter` selects `r` by its time, episode and type (a sequence range is not known
/// here: the dump asks for time ranges).
fn selects(f: &Filter, r: &Record) -> bool {
    f.from_us.is_none_or(|x| r.created_us >= x)
        && f.to_us.is_none_or(|x| r.created_us <= x)
        && (f.mpids.is_empty() || f.mpids.contains(&r.mpid))
        && (f.types.is_empty()
            || r.action
                .kind
                .as_deref()
                .is_some_and(|k| f.types.iter().any(|t| t.eq_ignore_ascii_case(k))))
}

#[cfg(test)]
mod tests {
    #[test]
    fn thresholds() {
        assert_eq!(super::parse_threshold("1").unwrap(), 1.0);
        assert_eq!(super::parse_threshold("0.95").unwrap(), 0.95);
        assert_eq!(super::parse_threshold(" 0.5 ").unwrap(), 0.5);
        for bad in [
            "0", "1.5", "-0.1", "0.9999", "x", "NaN", "", "5e-4", "9999e-4", "+0.5", "1e0", ".5",
        ] {
            let e = super::parse_threshold(bad).unwrap_err().to_string();
            assert!(e.contains("XAPI_COMPLETION_THRESHOLD"), "{e}");
        }
    }
}
