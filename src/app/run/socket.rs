//! The Unix socket beside the journal (`<journal>.sock`): the record endpoints for whoever may
//! read the journal file, as Docker's and PostgreSQL's sockets are for whoever may use the
//! daemon. Its owner and group are the journal's, and its mode grants connecting (which needs
//! write permission on a socket) to exactly the classes of users that may read the journal.

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tokio::net::UnixListener;

use crate::app::AppError;

/// Where the socket of the journal at `journal` lives.
pub fn path_of(journal: &Path) -> PathBuf {
    let mut p = journal.as_os_str().to_owned();
    p.push(".sock");
    PathBuf::from(p)
}

/// The socket's mode for a journal of mode `journal_mode`: read and write (connect) for each
/// class of users that may read the journal, nothing for the others.
pub fn mode_for(journal_mode: u32) -> u32 {
    let mut m = 0;
    for (read, rw) in [(0o400, 0o600), (0o040, 0o060), (0o004, 0o006)] {
        if journal_mode & read != 0 {
            m |= rw;
        }
    }
    m
}

/// A listening socket; the file is removed when dropped.
pub struct Socket {
    listener: Option<UnixListener>,
    path: PathBuf,
}

impl Socket {
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn take_listener(&mut self) -> Option<UnixListener> {
        self.listener.take()
    }
}

impl Drop for Socket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Binds the socket beside `journal`, which this process holds (so a socket file already there
/// was left by a process that held it before, and is replaced). The socket is created with no
/// permission for anyone but us, then given the journal's owner and mode.
pub fn bind(journal: &Path) -> Result<Socket, AppError> {
    let path = path_of(journal);
    let shown = path.display().to_string();
    let what = |w: &str| format!("{w} the record socket {shown}");
    match std::fs::symlink_metadata(&path) {
        Ok(m) if m.file_type().is_socket() => {
            std::fs::remove_file(&path).map_err(|e| AppError::io(what("cannot replace"), e))?
        }
        Ok(_) => {
            return Err(crate::app::failed(format!(
                "{} is in the way of the record socket and is not a socket: move it away",
                path.display()
            )))
        }
        Err(_) => {}
    }
    let journal_meta =
        std::fs::metadata(journal).map_err(|e| AppError::io(what("cannot make"), e))?;
    // SAFETY: umask only swaps the process's file mode mask; the socket is born private
    // (0600 at most) whatever the mask was, and the mask is put back at once.
    let old = unsafe { libc::umask(0o177) };
    let bound = UnixListener::bind(&path);
    unsafe { libc::umask(old) };
    let listener = bound.map_err(|e| AppError::io(what("cannot make"), e))?;
    let socket = Socket {
        listener: Some(listener),
        path,
    };
    // The journal's owner (when we may give it: we run as root, say) and mode.
    let (uid, gid) = (journal_meta.uid(), journal_meta.gid());
    let _ = std::os::unix::fs::chown(&socket.path, Some(uid), Some(gid));
    std::fs::set_permissions(
        &socket.path,
        std::fs::Permissions::from_mode(mode_for(journal_meta.mode())),
    )
    .map_err(|e| AppError::io(what("cannot set the mode of"), e))?;
    Ok(socket)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_socket_admits_who_may_read_the_journal() {
        assert_eq!(mode_for(0o600), 0o600);
        assert_eq!(mode_for(0o400), 0o600);
        assert_eq!(mode_for(0o640), 0o660);
        assert_eq!(mode_for(0o644), 0o666);
        assert_eq!(mode_for(0o200), 0);
    }
}
