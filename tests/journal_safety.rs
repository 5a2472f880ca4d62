//! The journal file is treated with care: reading never writes, damage is reported where it
//! matters and can be repaired, and the file is private (issue 10, points 5, 6 and 7).

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;
use harvester::sim::SimConfig;

async fn run_async(c: Command) -> Output {
    tokio::task::spawn_blocking(move || run(c)).await.unwrap()
}

/// Harvests `n` actions over an hour into the journal of `dir`, 300 a page.
async fn build_journal(dir: &Path, n: u64) -> harvester::sim::SimHandle {
    let sim = start_sim(SimConfig::new(data(n, 3600))).await;
    let mut c = harvester_for(dir, &sim);
    harvest_window(&mut c, 3_600_000_000, "none");
    c.args(["-b", "300"]);
    assert_ok(&run_async(c).await);
    sim
}

/// `harvester journal ARGS` on the journal at `journal` (no Opencast settings, no .env).
fn journal_cmd(dir: &Path, journal: &Path, args: &[&str]) -> Command {
    let mut c = harvester(dir);
    c.env("JOURNAL_PATH", journal).arg("journal").args(args);
    c
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

const READERS: [&[&str]; 4] = [&["dump"], &["stats"], &["stats", "--json"], &["verify"]];

#[tokio::test(flavor = "multi_thread")]
async fn reading_commands_never_write_the_journal() {
    let dir = scratch();
    let _sim = build_journal(dir.path(), 900).await;
    let path = journal_path(dir.path());
    let owner = dir.path().join("journal.redb.owner");
    let _ = std::fs::remove_file(&owner);
    let before = std::fs::read(&path).unwrap();
    let modified = std::fs::metadata(&path).unwrap().modified().unwrap();
    for args in READERS {
        let out = run_async(journal_cmd(dir.path(), &path, args)).await;
        assert_ok(&out);
    }
    assert!(
        std::fs::read(&path).unwrap() == before,
        "a reading command changed the journal's bytes"
    );
    assert_eq!(
        std::fs::metadata(&path).unwrap().modified().unwrap(),
        modified
    );
    assert!(!owner.exists(), "a reading command claimed the journal");
}

/// A directory holding a copy of `journal` that nobody may write, root included: a read-only
/// tmpfs (tests run as root in CI), else (not root) modes 0444/0555. Unmounted when dropped.
struct ReadOnlyCopy {
    dir: PathBuf,
    mounted: bool,
}

impl ReadOnlyCopy {
    fn new(scratch: &Path, journal: &Path) -> ReadOnlyCopy {
        let dir = scratch.join("ro");
        std::fs::create_dir(&dir).unwrap();
        let root = Command::new("id").arg("-u").output().unwrap().stdout == b"0\n";
        let mount = |args: &[&str]| {
            Command::new("mount")
                .args(args)
                .status()
                .is_ok_and(|s| s.success())
        };
        let mut mounted = false;
        if root {
            assert!(
                mount(&[
                    "-t",
                    "tmpfs",
                    "-o",
                    "size=16m",
                    "tmpfs",
                    dir.to_str().unwrap()
                ]),
                "running as root, the test needs `mount -t tmpfs` for a read-only file system"
            );
            mounted = true;
        }
        std::fs::copy(journal, dir.join("journal.redb")).unwrap();
        if root {
            assert!(mount(&["-o", "remount,ro", dir.to_str().unwrap()]));
            assert!(
                std::fs::write(dir.join("probe"), b"x").is_err(),
                "mount is read-only"
            );
        } else {
            let p = dir.join("journal.redb");
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o444)).unwrap();
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o555)).unwrap();
        }
        ReadOnlyCopy { dir, mounted }
    }

    fn journal(&self) -> PathBuf {
        self.dir.join("journal.redb")
    }
}

impl Drop for ReadOnlyCopy {
    fn drop(&mut self) {
        if self.mounted {
            let _ = Command::new("umount").arg(&self.dir).status();
        } else {
            let _ = std::fs::set_permissions(&self.dir, std::fs::Permissions::from_mode(0o755));
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn reading_commands_work_on_a_read_only_file_system() {
    let dir = scratch();
    let _sim = build_journal(dir.path(), 600).await;
    let ro = ReadOnlyCopy::new(dir.path(), &journal_path(dir.path()));
    for args in READERS {
        let out = run_async(journal_cmd(dir.path(), &ro.journal(), args)).await;
        assert_ok(&out);
    }
    let out = run_async(journal_cmd(dir.path(), &ro.journal(), &["dump"])).await;
    assert_eq!(stdout_records(&out).len(), 600);
    let out = run_async(journal_cmd(dir.path(), &ro.journal(), &["verify"])).await;
    assert!(
        stdout(&out).starts_with("ok: 600 records"),
        "{}",
        stdout(&out)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mistyped_path_is_an_error_and_creates_nothing() {
    let dir = scratch();
    let missing = dir.path().join("typo").join("journal.redb");
    for args in READERS {
        let out = run_async(journal_cmd(dir.path(), &missing, args)).await;
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(&format!("no journal at {}", missing.display())),
            "{}",
            stderr(&out)
        );
    }
    assert!(!dir.path().join("typo").exists(), "a directory was created");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_empty_file_is_not_made_into_a_journal() {
    let dir = scratch();
    let sim = start_sim(SimConfig::new(data(50, 60))).await;
    let path = journal_path(dir.path());
    std::fs::write(&path, b"").unwrap();
    for args in READERS {
        let out = run_async(journal_cmd(dir.path(), &path, args)).await;
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(
            stderr(&out).contains("is an empty file"),
            "{}",
            stderr(&out)
        );
    }
    let mut c = harvester_for(dir.path(), &sim);
    harvest_window(&mut c, 60_000_000, "none");
    let out = run_async(c).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("is an empty file"),
        "{}",
        stderr(&out)
    );
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_file_that_is_no_journal_gets_the_remedy_and_is_left_unchanged() {
    let dir = scratch();
    let sim = start_sim(SimConfig::new(data(50, 60))).await;
    let path = journal_path(dir.path());
    // Random bytes, and a journal whose first page (redb's header) is damaged.
    let random: Vec<u8> = (0..65_536u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let mut damaged = {
        let d = scratch();
        let _ = build_journal(d.path(), 100).await;
        std::fs::read(journal_path(d.path())).unwrap()
    };
    for b in &mut damaged[16..600] {
        *b ^= 0xa5;
    }
    for bytes in [random, damaged] {
        std::fs::write(&path, &bytes).unwrap();
        let mut harvest = harvester_for(dir.path(), &sim);
        harvest_window(&mut harvest, 60_000_000, "none");
        let runs = [
            journal_cmd(dir.path(), &path, &["stats"]),
            journal_cmd(dir.path(), &path, &["verify"]),
            journal_cmd(dir.path(), &path, &["dump"]),
            journal_cmd(dir.path(), &path, &["salvage"]),
            harvest,
        ];
        for c in runs {
            let what = format!("{:?}", c.get_args().collect::<Vec<_>>());
            let out = run_async(c).await;
            assert_eq!(out.status.code(), Some(1), "{what}: {}", stderr(&out));
            let err = stderr(&out);
            assert!(
                err.contains("cannot be opened")
                    && err.contains("It was not changed")
                    && err.contains("Move it aside")
                    && err.contains("checkpoint in S3"),
                "{what}: {err}"
            );
            assert!(!err.contains("panicked"), "{what}: {err}");
            assert!(
                std::fs::read(&path).unwrap() == bytes,
                "{what} changed the file"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_journal_is_private_whatever_the_umask() {
    let dir = scratch();
    let sim = start_sim(SimConfig::new(data(50, 60))).await;
    let mut c = harvester_for(dir.path(), &sim);
    harvest_window(&mut c, 60_000_000, "none");
    // The same command, started by a shell with umask 022.
    let mut sh = Command::new("sh");
    sh.arg("-c")
        .arg("umask 022 && exec \"$0\" \"$@\"")
        .arg(c.get_program())
        .args(c.get_args())
        .current_dir(dir.path())
        .env_clear()
        .envs(c.get_envs().filter_map(|(k, v)| Some((k, v?))));
    assert_ok(&run_async(sh).await);
    let mode = std::fs::metadata(journal_path(dir.path()))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "journal mode {:o}", mode & 0o777);
    // Nothing else was left beside it (the temporary name it was built under).
    let stray: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".new-"))
        .collect();
    assert!(stray.is_empty(), "{stray:?}");
}

/// Flips bytes inside the compressed records of the `nth` block; returns its first sequence.
fn damage_block(path: &Path, nth: usize) -> u64 {
    use redb::ReadableTable;
    let db = redb::Database::open(path).unwrap();
    let def: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("blocks");
    let tx = db.begin_write().unwrap();
    let key = {
        let mut t = tx.open_table(def).unwrap();
        let (key, mut bytes) = {
            let (k, v) = t.iter().unwrap().nth(nth).unwrap().unwrap();
            (k.value(), v.value().to_vec())
        };
        let n = bytes.len();
        for b in &mut bytes[n / 2..n / 2 + 6] {
            *b ^= 0x5a;
        }
        t.insert(key, bytes.as_slice()).unwrap();
        key
    };
    tx.commit().unwrap();
    key
}

fn ids(records: &[harvester::record::Record]) -> std::collections::BTreeSet<i64> {
    records.iter().map(|r| r.action_id).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn damage_stops_harvest_and_salvage_brings_every_record_back() {
    let dir = scratch();
    let sim = build_journal(dir.path(), 2000).await;
    let path = journal_path(dir.path());
    let all = ids(&journal_records(dir.path()));
    assert_eq!(all.len(), 2000);
    let bad = damage_block(&path, 2);
    damage_block(&path, 4);

    // A harvest does not pass silently: it names the damage and the remedy.
    let mut c = harvester_for(dir.path(), &sim);
    harvest_window(&mut c, 3_600_000_000, "none");
    let out = run_async(c).await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("2 unreadable block(s)")
            && stderr(&out).contains(&format!("at sequence {bad}"))
            && stderr(&out).contains("harvester journal salvage"),
        "{}",
        stderr(&out)
    );

    let out = run_async(journal_cmd(dir.path(), &path, &["salvage"])).await;
    assert_ok(&out);
    let text = stdout(&out);
    assert_eq!(
        text.matches("quarantined the block at sequence").count(),
        2,
        "{text}"
    );
    // The printed harvest: harvester harvest -s S -e E --no-update-last-ts
    let windows: Vec<(String, String)> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("harvester harvest -s "))
        .map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            assert_eq!((w[1], w[3]), ("-e", "--no-update-last-ts"), "{l}");
            (w[0].to_string(), w[2].to_string())
        })
        .collect();
    assert!(!windows.is_empty(), "{text}");
    let lost = all.len() - ids(&journal_records(dir.path())).len();
    assert_eq!(lost, 600, "two blocks of 300 set aside");
    // Verify accepts the quarantined gaps; stats counts them.
    let out = run_async(journal_cmd(dir.path(), &path, &["verify"])).await;
    assert_ok(&out);
    let out = run_async(journal_cmd(dir.path(), &path, &["stats"])).await;
    assert!(
        stdout(&out).contains("quarantined      2"),
        "{}",
        stdout(&out)
    );

    for (s, e) in windows {
        let mut c = harvester_for(dir.path(), &sim);
        c.args([
            "harvest",
            "-s",
            &s,
            "-e",
            &e,
            "--no-update-last-ts",
            "-o",
            "none",
        ]);
        assert_ok(&run_async(c).await);
    }
    assert_eq!(
        ids(&journal_records(dir.path())),
        all,
        "every record is back"
    );
    let out = run_async(journal_cmd(dir.path(), &path, &["verify"])).await;
    assert_ok(&out);
    // And harvests run again.
    let mut c = harvester_for(dir.path(), &sim);
    harvest_window(&mut c, 3_600_000_000, "none");
    assert_ok(&run_async(c).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_copy_of_a_live_journal_is_read_through_a_private_copy_and_left_alone() {
    let dir = scratch();
    let _sim = build_journal(dir.path(), 600).await;
    let tmp = dir.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let copy = dir.path().join("copy.redb");
    {
        // Copied while a process holds it open: the copy was not closed cleanly.
        let held = harvester::journal::Journal::open(&journal_path(dir.path())).unwrap();
        held.set_cursor("x", 1).unwrap();
        std::fs::copy(journal_path(dir.path()), &copy).unwrap();
        // The journal is in use: verify says so rather than reading under the writer.
        let out = run_async(journal_cmd(
            dir.path(),
            &journal_path(dir.path()),
            &["verify"],
        ))
        .await;
        assert_eq!(out.status.code(), Some(1));
        assert!(stderr(&out).contains("in use"), "{}", stderr(&out));
    }
    let before = std::fs::read(&copy).unwrap();
    for args in READERS {
        let mut c = journal_cmd(dir.path(), &copy, args);
        c.env("TMPDIR", &tmp);
        let out = run_async(c).await;
        assert_ok(&out);
    }
    let mut c = journal_cmd(dir.path(), &copy, &["dump"]);
    c.env("TMPDIR", &tmp);
    let out = run_async(c).await;
    assert_eq!(stdout_records(&out).len(), 600);
    assert!(
        std::fs::read(&copy).unwrap() == before,
        "the copy was written"
    );
    assert_eq!(
        std::fs::read_dir(&tmp).unwrap().count(),
        0,
        "private copy left behind"
    );
}

/// Issue 19 point 11: `journal dump` of a journal that was not closed cleanly reads a repaired
/// private copy in $TMPDIR; Ctrl-C, SIGTERM or SIGHUP in the middle of the dump left that copy
/// (the whole journal) behind every time. Now its name is gone once it is open.
#[tokio::test(flavor = "multi_thread")]
async fn an_interrupted_dump_leaves_no_copy_of_the_journal() {
    use std::io::Read as _;
    let dir = scratch();
    let _sim = build_journal(dir.path(), 3000).await;
    let copy = dir.path().join("copy.redb");
    {
        let held = harvester::journal::Journal::open(&journal_path(dir.path())).unwrap();
        held.set_cursor("x", 1).unwrap();
        std::fs::copy(journal_path(dir.path()), &copy).unwrap();
    }
    for signal in ["INT", "TERM", "HUP"] {
        let tmp = dir.path().join(format!("tmp-{signal}"));
        std::fs::create_dir(&tmp).unwrap();
        let mut c = journal_cmd(dir.path(), &copy, &["dump"]);
        c.env("TMPDIR", &tmp)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null());
        let mut child = c.spawn().unwrap();
        // The dump has begun (and stalls on the full pipe, as on a slow terminal).
        let mut first = [0u8; 1];
        child
            .stdout
            .as_mut()
            .unwrap()
            .read_exact(&mut first)
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(300));
        assert!(
            child.try_wait().unwrap().is_none(),
            "the dump is still running"
        );
        let left: Vec<_> = std::fs::read_dir(&tmp)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect();
        assert!(
            left.is_empty(),
            "a copy of the journal is visible during the dump: {left:?}"
        );
        let ok = Command::new("kill")
            .args([&format!("-{signal}"), &child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
        drop(child.stdout.take());
        let _ = child.wait().unwrap();
        let left: Vec<_> = std::fs::read_dir(&tmp)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect();
        assert!(
            left.is_empty(),
            "SIG{signal} left a copy of the journal: {left:?}"
        );
    }
}
