//! The stdout sink: one JSON record per line and nothing else on stdout (logs go to stderr).

use std::io::Write;

use super::SinkError;
use crate::record::Record;

/// Writes records to standard output; a record counts as acknowledged once flushed.
#[derive(Debug, Default)]
pub struct StdoutSink {
    buf: Vec<u8>,
}

impl StdoutSink {
    pub fn send(&mut self, records: &[Record]) -> Result<(), SinkError> {
        self.buf.clear();
        for r in records {
            r.write_json(&mut self.buf);
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
