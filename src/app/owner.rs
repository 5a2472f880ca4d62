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
    /// Where a running service answers (`/journal/stats`, `/journal/dump`).
    pub metrics_addr: Option<String>,
}

fn path_of(journal: &Path) -> PathBuf {
    let mut p = journal.as_os_str().to_owned();
    p.push(".owner");
    PathBuf::from(p)
}

/// Records this process as the journal's holder (best effort: a failure only loses the hint).
pub fn claim(journal: &Path, command: &str, metrics_addr: Option<&str>) {
    let o = Owner {
        pid: std::process::id(),
        command: command.to_string(),
        since: crate::timefmt::format_rfc3339(crate::timefmt::now_us()),
        metrics_addr: metrics_addr.map(str::to_string),
    };
    if let Ok(text) = serde_json::to_string(&o) {
        let _ = std::fs::write(path_of(journal), text);
    }
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
    s
}
