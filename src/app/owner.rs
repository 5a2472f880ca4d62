//! Who holds the journal: a small sidecar file (`<journal>.owner`) written by the process that
//! opened it, so that another command meeting a locked journal can say which process holds it,
//! and reach a running `harvester run` to have it answer `journal dump` and `journal stats`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The holder of a journal.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Owner {
    pub pid: u32,
    pub command: String,
    pub since: String,
    /// Where a running service answers on TCP (`/metrics`; the record endpoints with a token).
    pub metrics_addr: Option<String>,
    /// The Unix socket on which a running service answers `/journal/stats` and `/journal/dump`
    /// to whoever may read the journal.
    #[serde(default)]
    pub socket: Option<PathBuf>,
}

fn path_of(journal: &Path) -> PathBuf {
    let mut p = journal.as_os_str().to_owned();
    p.push(".owner");
    PathBuf::from(p)
}

/// Records this process as the journal's holder (best effort: a failure only loses the hint).
pub fn claim(journal: &Path, command: &str, metrics_addr: Option<&str>) {
    write(
        journal,
        Owner {
            pid: std::process::id(),
            command: command.to_string(),
            since: crate::timefmt::format_rfc3339(crate::timefmt::now_us()),
            metrics_addr: metrics_addr.map(str::to_string),
            socket: None,
        },
    )
}

/// Records `harvester run` as the journal's holder, with where it answers.
pub fn claim_service(journal: &Path, metrics_addr: &str, socket: &Path) {
    write(
        journal,
        Owner {
            pid: std::process::id(),
            command: "run".into(),
            since: crate::timefmt::format_rfc3339(crate::timefmt::now_us()),
            metrics_addr: Some(metrics_addr.to_string()),
            socket: Some(socket.to_path_buf()),
        },
    )
}

fn write(journal: &Path, o: Owner) {
    if let Ok(text) = serde_json::to_string(&o) {
        if let Err(e) = write_private(&path_of(journal), text.as_bytes()) {
            tracing::debug!(error = %e, "journal owner file not written");
        }
    }
}

/// Writes `path` as a new 0600 file whatever the umask, atomically and never through a link:
/// the bytes go to a fresh temporary file beside it (created exclusively, so a planted file or
/// symlink of that name is refused), which is then renamed over `path`. A rename replaces a
/// symlink at `path` itself, never the file it points to.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(
        ".{}.{:016x}.tmp",
        std::process::id(),
        rand::random::<u64>()
    ));
    let tmp = PathBuf::from(tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    let res = (|| {
        // The mode given at creation is masked by the umask; this one is not.
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res
}

/// The recorded holder, if the file is there and its process still runs.
pub fn read(journal: &Path) -> Option<Owner> {
    let o: Owner = serde_json::from_str(&std::fs::read_to_string(path_of(journal)).ok()?).ok()?;
    Path::new(&format!("/proc/{}", o.pid)).exists().then_some(o)
}

/// "pid 123, `harvester run` since ..., answering on ..." for error messages.
pub fn describe(o: &Owner) -> String {
    let mut s = format!("pid {}, `harvester {}` since {}", o.pid, o.command, o.since);
    if let Some(a) = &o.metrics_addr {
        s.push_str(&format!(", serving on {a}"));
    }
    if let Some(p) = &o.socket {
        s.push_str(&format!(" and {}", p.display()));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn the_owner_file_is_private_and_never_written_through_a_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let journal = dir.path().join("j.redb");
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "precious").unwrap();
        std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::os::unix::fs::symlink(&victim, path_of(&journal)).unwrap();
        claim(&journal, "run", Some("127.0.0.1:9898"));
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
        let meta = std::fs::symlink_metadata(path_of(&journal)).unwrap();
        assert!(meta.file_type().is_file(), "the link itself was replaced");
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        let o = read(&journal).expect("owner readable");
        assert_eq!(o.pid, std::process::id());
        assert_eq!(o.metrics_addr.as_deref(), Some("127.0.0.1:9898"));
        // No temporary file is left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
    }
}
