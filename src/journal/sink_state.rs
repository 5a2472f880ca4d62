//! What sinks did that a cursor cannot say: records delivered beyond a sink's cursor, and dead
//! letters delivered by a replay, many in one transaction.
//!
//! A cursor covers a contiguous run of acknowledged records. A sink that keeps several requests
//! in flight (SQS: up to eight batches) can see a later request delivered while an earlier one
//! fails for good; the cursor stops before the failed one, and without a note of the later
//! deliveries the next run would send them again as new. The note is kept per cursor as the
//! sequence ranges delivered beyond it; the forwarder skips them and drops the note once its
//! cursor has passed them.

use redb::{ReadableTable, TableDefinition};

use super::SINK_REFUSALS;
use super::{codec, decode_error, read_table, Journal, Result, SinkRefusal, DEAD_KEYS};

/// Sequence ranges `[from, to)` a sink delivered beyond its cursor, by cursor name.
pub(crate) const SENT_AHEAD: TableDefinition<&str, &[u8]> = TableDefinition::new("sent_ahead");

impl Journal {
    /// The ranges of sequences `[from, to)` the sink of `cursor` delivered beyond its cursor
    /// (none for a journal without the note).
    pub fn sent_ahead(&self, cursor: &str) -> Result<Vec<(u64, u64)>> {
        let tx = self.db.begin_read()?;
        let Some(t) = read_table(&tx, SENT_AHEAD)? else {
            return Ok(Vec::new());
        };
        match t.get(cursor)? {
            None => Ok(Vec::new()),
            Some(v) => codec::decode_value(v.value())
                .map_err(|e| decode_error(format!("sent-ahead note of {cursor}"), e)),
        }
    }

    /// Replaces the note of what the sink of `cursor` delivered beyond its cursor; an empty
    /// list removes it.
    pub fn set_sent_ahead(&self, cursor: &str, ranges: &[(u64, u64)]) -> Result<()> {
        let tx = self.db.begin_write()?;
        {
            let mut t = tx.open_table(SENT_AHEAD)?;
            if ranges.is_empty() {
                t.remove(cursor)?;
            } else {
                t.insert(cursor, codec::encode_value(&ranges.to_vec()).as_slice())?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Marks the dead letters `ns` as delivered by a replay, all in one transaction (a replay
    /// of thousands of letters would otherwise wait for as many durable commits); see
    /// [`Journal::mark_dead_letter_delivered`].
    pub fn mark_dead_letters_delivered(&self, ns: &[u64], at_us: i64) -> Result<()> {
        if ns.is_empty() {
            return Ok(());
        }
        let tx = self.db.begin_write()?;
        {
            let mut t = tx.open_table(SINK_REFUSALS)?;
            let mut keys = tx.open_table(DEAD_KEYS)?;
            for &n in ns {
                let found = t
                    .get(n)?
                    .map(|v| codec::decode_value::<SinkRefusal>(v.value()));
                if let Some(r) = found {
                    let mut r = r.map_err(|e| decode_error(format!("sink refusal {n}"), e))?;
                    keys.remove(r.key.as_str())?;
                    r.delivered_at_us = Some(at_us);
                    t.insert(n, codec::encode_value(&r).as_slice())?;
                }
            }
        }
        tx.commit()?;
        Ok(())
    }
}
