//! The stdout sink: one JSON record per line and nothing else on stdout (logs go to stderr).
//!
//! Whole lines only, even across a SIGKILL: each batch is one `write(2)` on fd 1 ending in a
//! newline (Rust's `Stdout` is a `LineWriter` that may split it), looping only on a genuine short
//! write. Linux may still cut a write to a file short when the process is killed mid-way, so
//! before its first write the sink removes a torn last line from an output file (the record
//! was never acknowledged: the cursor did not move over it, and it is written again whole).

use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::mem::ManuallyDrop;
use std::os::fd::FromRawFd;
use std::os::unix::fs::FileExt;

use super::{SinkError, SinkFailure};
use crate::enrich::SinkEnricher;
use crate::record::Record;

/// Writes records to standard output; a record counts as acknowledged once written.
#[derive(Debug, Default)]
pub struct StdoutSink {
    buf: Vec<u8>,
    checked_tail: bool,
    /// `ENRICH_SINKS=all`: records gain `geoip` / `ua`.
    enrich: Option<SinkEnricher>,
}

/// Standard output as a file, never closed by us.
fn fd1() -> ManuallyDrop<File> {
    // SAFETY: fd 1 is open for the whole process; ManuallyDrop keeps us from closing it.
    ManuallyDrop::new(unsafe { File::from_raw_fd(1) })
}

impl StdoutSink {
    /// A stdout sink whose records are enriched (`ENRICH_SINKS=all`).
    pub fn enriched(enrich: Option<SinkEnricher>) -> StdoutSink {
        StdoutSink {
            enrich,
            ..StdoutSink::default()
        }
    }

    pub fn send(&mut self, records: &[Record]) -> Result<(), SinkError> {
        let fail = |e: std::io::Error| SinkError::new(0, SinkFailure::Stdout(e));
        // Anything std's own stdout buffer holds goes first (normally nothing).
        std::io::stdout().lock().flush().map_err(fail)?;
        if !self.checked_tail {
            drop_torn_line(&fd1()).map_err(fail)?;
            self.checked_tail = true;
        }
        self.buf.clear();
        for r in records {
            match &mut self.enrich {
                None => r.write_json(&mut self.buf),
                Some(e) => e.write_record(r, &mut self.buf, false),
            }
            self.buf.push(b'\n');
        }
        write_whole(&*fd1(), &self.buf).map_err(fail)
    }
}

/// One `write` for the whole buffer; more only when the kernel took less.
fn write_whole(mut out: impl Write, mut buf: &[u8]) -> std::io::Result<()> {
    while !buf.is_empty() {
        match out.write(buf) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => buf = &buf[n..],
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// When `out` is a regular file we append to (`>>`, or positioned at its end) whose last line
/// has no newline (a write cut short by a kill), cuts that partial line off, so the next line
/// starts on its own.
fn drop_torn_line(out: &File) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let meta = out.metadata()?;
    let len = meta.len();
    if !meta.is_file() || len == 0 {
        return Ok(());
    }
    let mut f: &File = out;
    // SAFETY: F_GETFL on an open descriptor only reads its flags.
    let flags = unsafe { libc::fcntl(out.as_raw_fd(), libc::F_GETFL) };
    let appending = flags >= 0 && flags & libc::O_APPEND != 0;
    if !appending && f.stream_position()? != len {
        // Writing over the file's start (e.g. `1<>file`): leave it as it is.
        return Ok(());
    }
    // Our descriptor is usually write-only (`>>`): read the file through a descriptor of our own.
    let Ok(reader) = File::open(format!("/proc/self/fd/{}", out.as_raw_fd())) else {
        return Ok(());
    };
    let mut last = [0u8];
    reader.read_exact_at(&mut last, len - 1)?;
    if last[0] == b'\n' {
        return Ok(());
    }
    // Find the last newline, reading backwards in chunks.
    let mut end = len;
    let mut chunk = vec![0u8; 64 * 1024];
    let keep = loop {
        let start = end.saturating_sub(chunk.len() as u64);
        let part = &mut chunk[..(end - start) as usize];
        reader.read_exact_at(part, start)?;
        if let Some(p) = part.iter().rposition(|&b| b == b'\n') {
            break start + p as u64 + 1;
        }
        if start == 0 {
            break 0;
        }
        end = start;
    };
    tracing::warn!(
        bytes = len - keep,
        "the output file ends in a partial line (an earlier run was killed mid-write); removing it, its records are written again"
    );
    out.set_len(keep)?;
    if !appending {
        f.seek(SeekFrom::Start(keep))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_torn_last_line_is_cut_off_and_whole_lines_stay() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jsonl");
        for (before, after) in [
            (&b"{\"a\":1}\n{\"b\":"[..], &b"{\"a\":1}\n"[..]),
            (b"{\"b\":", b""),
            (b"{\"a\":1}\n", b"{\"a\":1}\n"),
            (b"", b""),
        ] {
            std::fs::write(&path, before).unwrap();
            let f = std::fs::OpenOptions::new()
                .append(true)
                .open(&path)
                .unwrap();
            drop_torn_line(&f).unwrap();
            write_whole(&f, b"{\"c\":3}\n").unwrap();
            let mut want = after.to_vec();
            want.extend_from_slice(b"{\"c\":3}\n");
            assert_eq!(std::fs::read(&path).unwrap(), want);
        }
    }
}
