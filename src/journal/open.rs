//! Opening the journal file: for writing (created private, 0600, and whole), or for reading only
//! (the file is never written, not even by redb's repair).
//!
//! Guarantees:
//! - a reading open never creates, repairs, upgrades or otherwise writes the file: a missing path
//!   is [`JournalError::Missing`], an empty file [`JournalError::Empty`];
//! - a journal that was not closed cleanly (a copy taken while `harvester run` held it, or a
//!   crash) is read through a repaired private copy (0600, in the temporary directory). The
//!   copy's name is removed as soon as it is open, so no way out (Ctrl-C, SIGTERM, SIGHUP, a
//!   kill) leaves it behind; a copy left by a process killed while making one is removed by
//!   the next reading open;
//! - a new journal appears at its path already initialised and with mode 0600, whatever the
//!   umask: it is built under a temporary name and linked into place;
//! - a file redb cannot open is reported with the remedy ([`JournalError::Unopenable`]) and is
//!   not changed.

use std::fs::{File, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use redb::{Database, DatabaseError, ReadOnlyDatabase, StorageError};

use super::{JournalError, Result};

/// A bounded cache keeps memory flat whatever the journal's size (redb's default is 1 GiB,
/// which a full dump of a large journal would fill).
const CACHE_BYTES: usize = 16 << 20;

/// A temporary file of ours (0600), removed when dropped.
#[derive(Debug)]
pub(crate) struct PrivateFile(PathBuf);

impl PrivateFile {
    /// Creates a new, empty file readable by us alone.
    fn create(path: PathBuf) -> std::io::Result<(PrivateFile, File)> {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)?;
        Ok((PrivateFile(path), f))
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for PrivateFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// What an open found at the path before redb looked at it.
fn check_file(path: &Path) -> Result<std::fs::Metadata> {
    let m = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == ErrorKind::NotFound => {
            return Err(JournalError::Missing {
                path: path.to_path_buf(),
            })
        }
        Err(e) => {
            return Err(JournalError::File {
                what: "cannot read journal",
                path: path.to_path_buf(),
                source: e,
            })
        }
    };
    if !m.is_file() {
        return Err(JournalError::Unopenable {
            path: path.to_path_buf(),
            reason: "it is not a regular file".into(),
        });
    }
    if m.len() == 0 {
        return Err(JournalError::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok(m)
}

/// Maps redb's refusal to open `path` to what the user can do about it.
fn open_error(path: &Path, e: DatabaseError) -> JournalError {
    match e {
        DatabaseError::DatabaseAlreadyOpen | DatabaseError::LockProtocolMismatch => {
            JournalError::InUse {
                path: path.to_path_buf(),
            }
        }
        // The file system refused (permissions, a read-only mount, no space): the file is fine.
        DatabaseError::Storage(StorageError::Io(ref io))
            if !matches!(io.kind(), ErrorKind::InvalidData | ErrorKind::UnexpectedEof) =>
        {
            JournalError::Open {
                path: path.to_path_buf(),
                source: e,
            }
        }
        other => JournalError::Unopenable {
            path: path.to_path_buf(),
            reason: other.to_string(),
        },
    }
}

/// Runs a redb open, turning a panic on a hostile file into `Err(None)` (redb trusts the bytes
/// of a file it did not write itself).
fn guarded<T>(
    open: impl FnOnce() -> std::result::Result<T, DatabaseError>,
) -> std::result::Result<T, Option<DatabaseError>> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(open)) {
        Ok(r) => r.map_err(Some),
        Err(_) => Err(None),
    }
}

/// What a failed open means for the user.
fn failure(path: &Path, e: Option<DatabaseError>) -> JournalError {
    match e {
        Some(e) => open_error(path, e),
        None => JournalError::Unopenable {
            path: path.to_path_buf(),
            reason: "its structure is damaged (the storage engine gave up reading it)".into(),
        },
    }
}

/// Opens an existing journal for writing; `Ok(None)` when there is no file at `path` yet.
pub(crate) fn open_existing(path: &Path) -> Result<Option<Database>> {
    let m = match check_file(path) {
        Ok(m) => m,
        Err(JournalError::Missing { .. }) => return Ok(None),
        Err(e) => return Err(e),
    };
    if m.mode() & 0o077 != 0 {
        tracing::warn!(
            path = %path.display(),
            mode = format!("{:o}", m.mode() & 0o777),
            "the journal holds personal data but other users may read it; run `chmod 600` on it"
        );
    }
    guarded(|| Database::builder().set_cache_size(CACHE_BYTES).open(path))
        .map(Some)
        .map_err(|e| failure(path, e))
}

/// Creates a new journal at `path`: built and initialised (by `init`) under a temporary name
/// with mode 0600, then linked into place, so the path never shows an empty or half-made
/// journal. Returns `false` when another process created the path first.
pub(crate) fn create_new(path: &Path, init: impl FnOnce(Database) -> Result<()>) -> Result<bool> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "journal".into());
    let tmp_path = dir.join(format!(".{name}.new-{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp_path); // left by a process of ours that died
    let storage = |what: &'static str, source: std::io::Error| JournalError::File {
        what,
        path: tmp_path.clone(),
        source,
    };
    let (tmp, _file) =
        PrivateFile::create(tmp_path.clone()).map_err(|e| storage("cannot create", e))?;
    let db = guarded(|| {
        Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create(tmp.path())
    })
    .map_err(|e| failure(tmp.path(), e))?;
    init(db)?;
    match std::fs::hard_link(tmp.path(), path) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::AlreadyExists => return Ok(false),
        Err(e) => {
            return Err(JournalError::File {
                what: "cannot create journal",
                path: path.to_path_buf(),
                source: e,
            })
        }
    }
    // The new name must survive a crash as the data committed under it will.
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(true)
}

/// A journal opened for reading, and the private copy it reads when the file needed a repair.
pub(crate) struct ReadOnly {
    pub db: ReadOnlyDatabase,
    pub copy: Option<PrivateFile>,
}

/// Opens an existing journal without ever writing to it.
pub(crate) fn open_read_only(path: &Path) -> Result<ReadOnly> {
    check_file(path)?;
    let open = |p: &Path| {
        guarded(|| {
            redb::Builder::new()
                .set_cache_size(CACHE_BYTES)
                .open_read_only(p)
        })
    };
    match open(path) {
        Ok(db) => Ok(ReadOnly { db, copy: None }),
        // Not closed cleanly: redb would repair it by writing. Repair a private copy instead.
        Err(Some(DatabaseError::RepairAborted)) => {
            let copy = repaired_copy(path)?;
            let db = open(copy.path()).map_err(|e| failure(path, e))?;
            // The open file is all the reading needs: its name goes now, so that nothing is
            // left however this process ends (the space is freed when the file is closed).
            let _ = std::fs::remove_file(copy.path());
            Ok(ReadOnly {
                db,
                copy: Some(copy),
            })
        }
        Err(e) => Err(failure(path, e)),
    }
}

/// The prefix of a repaired copy's name; the process id follows.
const COPY_PREFIX: &str = "harvester-journal-";

/// Removes the repaired copies in `dir` whose process is gone (killed while copying).
fn remove_orphan_copies(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(COPY_PREFIX)) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        let ours = e
            .metadata()
            .is_ok_and(|m| m.uid() == unsafe { libc::geteuid() });
        if ours && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Copies the journal to a private temporary file and lets redb repair the copy.
fn repaired_copy(path: &Path) -> Result<PrivateFile> {
    let tmp_dir = std::env::temp_dir();
    remove_orphan_copies(&tmp_dir);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let target = tmp_dir.join(format!("{COPY_PREFIX}{}-{nanos}.redb", std::process::id()));
    tracing::warn!(
        path = %path.display(),
        copy = %target.display(),
        "the journal was not closed cleanly (a copy taken while harvester ran, or a crash); \
         reading a repaired private copy, never left behind (set TMPDIR for another place); \
         the journal itself is not changed"
    );
    let fail = |source: std::io::Error| JournalError::CopyForReading {
        path: path.to_path_buf(),
        target: target.clone(),
        source,
    };
    let (copy, mut out) = PrivateFile::create(target.clone()).map_err(fail)?;
    let mut src = File::open(path).map_err(fail)?;
    std::io::copy(&mut src, &mut out).map_err(fail)?;
    drop(out);
    let db = guarded(|| {
        Database::builder()
            .set_cache_size(CACHE_BYTES)
            .open(copy.path())
    })
    .map_err(|e| failure(path, e))?;
    db.close().map_err(|e| open_error(path, e))?;
    Ok(copy)
}
