//! The operator's tools that need no service: shell completions and the manual.

mod common;

use std::io::Read;
use std::process::Stdio;

use common::*;

#[test]
fn completions_and_manual_come_from_the_flags() {
    let dir = scratch();
    for (shell, marker) in [
        ("bash", "_harvester()"),
        ("zsh", "#compdef harvester"),
        ("fish", "complete -c harvester"),
    ] {
        let mut c = harvester(dir.path());
        c.args(["completions", shell]);
        let out = run(c);
        assert_ok(&out);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains(marker),
            "{shell}: {}",
            &text[..text.len().min(200)]
        );
        assert!(
            text.contains("load-episodes") && text.contains("batch-size"),
            "{shell}"
        );
    }
    let mut c = harvester(dir.path());
    c.arg("man");
    let out = run(c);
    assert_ok(&out);
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with(".ie"),
        "roff on stdout"
    );
    let mut c = harvester(dir.path());
    c.args(["man", "--dir"]).arg(dir.path().join("man1"));
    assert_ok(&run(c));
    let page = std::fs::read_to_string(dir.path().join("man1/harvester-harvest.1")).unwrap();
    assert!(page.contains("batch\\-size"), "{page}");
}

#[test]
fn a_closed_pipe_is_no_panic() {
    let dir = scratch();
    for args in [&["completions", "bash"][..], &["man"][..]] {
        let mut c = harvester(dir.path());
        c.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = c.spawn().unwrap();
        drop(child.stdout.take()); // the reader goes away at once
        let mut err = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        let status = child.wait().unwrap();
        assert!(status.success(), "{args:?}: {status:?} {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

/// Stdout whose reader is gone before the command starts (as `| head` after its lines): every
/// write gets EPIPE, deterministically.
fn closed_pipe() -> Stdio {
    use std::os::fd::FromRawFd;
    let mut fds = [0; 2];
    // SAFETY: pipe(2) fills both descriptors; the read end is closed at once and the write end
    // is owned by the returned Stdio.
    unsafe {
        assert_eq!(libc::pipe(fds.as_mut_ptr()), 0);
        libc::close(fds[0]);
        Stdio::from(std::os::fd::OwnedFd::from_raw_fd(fds[1]))
    }
}

/// The reports of `checkpoint`, `journal stats` and `journal verify` were written with
/// `println!`, which panics on a closed pipe.
#[test]
fn reports_to_a_closed_pipe_end_quietly() {
    let dir = scratch();
    let mut c = harvester(dir.path());
    c.args(["checkpoint", "--set", "20160301000000"]);
    assert_ok(&run(c));
    for args in [
        &["checkpoint"][..],
        &["journal", "stats"][..],
        &["journal", "stats", "--json"][..],
        &["journal", "verify"][..],
    ] {
        let mut c = harvester(dir.path());
        c.args(args).stdout(closed_pipe());
        let out = c.output().unwrap();
        let err = stderr(&out);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert!(out.status.success(), "{args:?}: {:?} {err}", out.status);
    }
}
