//! The stdout sink: one JSON record per line and nothing else on stdout (logs go to stderr).

use std::io::Write;

use super::SinkError;
use crate::enrich::SinkEnricher;
use crate::record::Record;

/// Writes records to standard output; a record counts as acknowledged once flushed.
#[derive(Debug, Default)]
pub struct StdoutSink {
    buf: Vec<u8>,
    /// `ENRICH_SINKS=all`: records gain `geoip` / `ua`.
    enrich: Option<SinkEnricher>,
}

impl StdoutSink {
    /// A stdout sink whose records are enriched (`ENRICH_SINKS=all`).
    pub fn enriched(enrich: Option<SinkEnricher>) -> StdoutSink {
        StdoutSink {
            buf: Vec::new(),
            enrich,
        }
    }

    pub fn send(&mut self, records: &[Record]) -> Result<(), SinkError> {
        self.buf.clear();
        for r in records {
            match &mut self.enrich {
                None => r.write_json(&mut self.buf),
                Some(e) => e.write_record(r, &mut self.buf, false),
            }
            self.buf.push(b'\n');
        }
        let mut out = std::io::stdout().lock();
        out.write_all(&self.buf)
            .and_then(|_| out.flush())
            .map_err(|e| SinkError {
                acked: 0,
                message: format!("writing to stdout: {e}"),
            })
    }
}
