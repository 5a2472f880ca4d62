//! The stdout sink: one JSON record per line and nothing else on stdout (logs go to stderr).
//!
//! Whole lines only, even across a SIGKILL: each batch is one `write(2)` on fd 1 ending in a
//! newline (Rust's `Stdout` is a `LineWriter` that may split it), looping only on a genuine short
//! write. Linux may still cut a write to a file short when the process is killed mid-way. So
//! before its first write to an output file that does not end in a newline, the sink looks at
//! the file's last bytes: when they are, byte for byte, the start of the very batch it is about
//! to write (from a line's start: the record the cursor expects, and perhaps the ones after it),
//! they are what a killed run left unfinished and are removed (the cursor never moved over those
//! records; they are written again whole). Anything else is somebody's data (`>> notes.txt`, an
//! export of other records): it is left byte for byte as it is, and the records start on a new
//! line.

use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::mem::ManuallyDrop;
use std::os::fd::FromRawFd;
use std::os::unix::fs::FileExt;

use super::{SinkError, SinkFailure};
use crate::enrich::Shaper;
use crate::record::Record;

/// Writes records to standard output; a record counts as acknowledged once written.
#[derive(Debug, Default)]
pub struct StdoutSink {
    buf: Vec<u8>,
    checked_tail: bool,
    /// `ENRICH_SINKS=all`: records gain `geoip` / `ua`.
    enrich: Option<Shaper>,
}

/// Standard output as a file, never closed by us.
fn fd1() -> ManuallyDrop<File> {
    // SAFETY: fd 1 is open for the whole process; ManuallyDrop keeps us from closing it.
    ManuallyDrop::new(unsafe { File::from_raw_fd(1) })
}

impl StdoutSink {
    /// A stdout sink whose records are enriched (`ENRICH_SINKS=all`).
    pub fn enriched(enrich: Option<Shaper>) -> StdoutSink {
        StdoutSink {
            enrich,
            ..StdoutSink::default()
        }
    }

    pub fn send(&mut self, records: &[Record]) -> Result<(), SinkError> {
        let fail = |e: std::io::Error| SinkError::new(0, SinkFailure::Stdout(e));
        // Anything std's own stdout buffer holds goes first (normally nothing).
        std::io::stdout().lock().flush().map_err(fail)?;
        self.buf.clear();
        for r in records {
            match &mut self.enrich {
                None => r.write_json(&mut self.buf),
                Some(e) => e.write_record(r, &mut self.buf, false),
            }
            self.buf.push(b'\n');
        }
        if !self.checked_tail {
            self.checked_tail = true;
            let first = records.first().map(|r| r.action_id);
            if fix_tail(&fd1(), &self.buf, first).map_err(fail)? == Tail::Foreign {
                // One write still: the newline that ends somebody's last line, then the batch.
                self.buf.insert(0, b'\n');
            }
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

/// What the end of the output was, before the first write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tail {
    /// Nothing to do: not a file we append to, empty, or ending in a newline.
    Clean,
    /// The start of our own batch, left by a killed run: it was removed.
    Ours,
    /// Somebody's bytes without a final newline: left as they are; write a newline first.
    Foreign,
}

/// When `out` is a regular file we append to (`>>`, or positioned at its end) that does not end
/// in a newline, removes its tail if that is provably the unfinished start of `batch` (what we
/// are about to write, `first` its first action id); says what it found.
fn fix_tail(out: &File, batch: &[u8], first: Option<i64>) -> std::io::Result<Tail> {
    use std::os::fd::AsRawFd;
    let meta = out.metadata()?;
    let len = meta.len();
    if !meta.is_file() || len == 0 {
        return Ok(Tail::Clean);
    }
    let mut f: &File = out;
    // SAFETY: F_GETFL on an open descriptor only reads its flags.
    let flags = unsafe { libc::fcntl(out.as_raw_fd(), libc::F_GETFL) };
    let appending = flags >= 0 && flags & libc::O_APPEND != 0;
    if !appending && f.stream_position()? != len {
        // Writing over the file's start (e.g. `1<>file`): leave it as it is.
        return Ok(Tail::Clean);
    }
    // Our descriptor is usually write-only (`>>`): read the file through a descriptor of our own.
    let Ok(reader) = File::open(format!("/proc/self/fd/{}", out.as_raw_fd())) else {
        return Ok(Tail::Clean);
    };
    let mut last = [0u8];
    reader.read_exact_at(&mut last, len - 1)?;
    if last[0] == b'\n' {
        return Ok(Tail::Clean);
    }
    // A torn write of ours is shorter than the batch; one byte more shows where its line began.
    let take = len.min(batch.len() as u64 + 1);
    let mut tail = vec![0u8; take as usize];
    reader.read_exact_at(&mut tail, len - take)?;
    let cut = own_partial_batch(&tail, len == take, batch);
    match cut {
        Some(n) => {
            tracing::warn!(
                bytes = n,
                action_id = first.unwrap_or_default(),
                "the output file ends in an unfinished write of these very records (a run stopped mid-write); removing those bytes, the records are written again whole"
            );
            out.set_len(len - n as u64)?;
            if !appending {
                f.seek(SeekFrom::Start(len - n as u64))?;
            }
            Ok(Tail::Ours)
        }
        None => {
            tracing::warn!(
                "the output file does not end in a newline and its last line is not a record this harvester left unfinished; starting on a new line, the file's bytes are left as they are"
            );
            Ok(Tail::Foreign)
        }
    }
}

/// The length of the longest end of `tail` that starts a line (after a newline, or at the
/// file's start when `whole` says `tail` is the whole file) and is a proper start of `batch`.
fn own_partial_batch(tail: &[u8], whole: bool, batch: &[u8]) -> Option<usize> {
    (0..tail.len())
        .filter(|&p| if p == 0 { whole } else { tail[p - 1] == b'\n' })
        .map(|p| &tail[p..])
        .find(|end| end.len() < batch.len() && batch.starts_with(end))
        .map(<[u8]>::len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_our_own_unfinished_batch_is_cut_and_other_bytes_stay() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jsonl");
        let batch = b"{\"c\":3}\n{\"d\":4}\n";
        for (before, after, tail) in [
            // Torn inside the first record, after a line of somebody else's.
            (&b"{\"a\":1}\n{\"c\""[..], &b"{\"a\":1}\n"[..], Tail::Ours),
            // The first record whole, the second torn: the whole unfinished batch goes.
            (b"{\"c\":3}\n{\"d", b"", Tail::Ours),
            // Somebody's line that is no start of ours: kept, and a newline added.
            (b"{\"b\":", b"{\"b\":\n", Tail::Foreign),
            (b"notes", b"notes\n", Tail::Foreign),
            // Looks like ours, but not from a line's start.
            (b"x{\"c\":3", b"x{\"c\":3\n", Tail::Foreign),
            (b"{\"a\":1}\n", b"{\"a\":1}\n", Tail::Clean),
            (b"", b"", Tail::Clean),
        ] {
            std::fs::write(&path, before).unwrap();
            let f = std::fs::OpenOptions::new()
                .append(true)
                .open(&path)
                .unwrap();
            assert_eq!(fix_tail(&f, batch, Some(3)).unwrap(), tail);
            if tail == Tail::Foreign {
                write_whole(&f, b"\n").unwrap();
            }
            write_whole(&f, batch).unwrap();
            let mut want = after.to_vec();
            want.extend_from_slice(batch);
            assert_eq!(std::fs::read(&path).unwrap(), want);
        }
    }
}
