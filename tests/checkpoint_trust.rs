//! The S3 checkpoint treated as input from outside (issue 19 points 4, 12 and 15): a checkpoint
//! in the future is refused with the remedy instead of stalling every harvest silently, an
//! object that holds garbage is quoted short and escaped, `checkpoint` only shows, and
//! `check`'s probe leaves nothing behind in a versioned bucket.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;
use harvester::sim::SimConfig;
use harvester::timefmt;

const KEY: &str = "harvester-ts";

/// A new bucket holding `body` as the checkpoint object.
async fn bucket_with(a: &Aws, body: Vec<u8>) -> String {
    let (s3, _) = sdk(a).await;
    let bucket = unique("cp-trust").to_lowercase();
    s3.create_bucket().bucket(&bucket).send().await.unwrap();
    s3.put_object()
        .bucket(&bucket)
        .key(KEY)
        .body(body.into())
        .send()
        .await
        .unwrap();
    bucket
}

fn with_bucket(c: std::process::Command, a: &Aws, bucket: &str) -> std::process::Command {
    let mut c = with_aws(c, a);
    c.env("S3_HARVEST_TS_BUCKET", bucket)
        .env("S3_LAST_ACTION_TS_KEY", KEY);
    c
}

/// A checkpoint object of 2099 with a fresh journal: `run` harvested a one-second window in
/// 2099 every cycle with /healthz "ok", and `harvest` said "check --start/--end" though none
/// was given. Now both name the object, say it is in the future and give the remedy.
#[tokio::test(flavor = "multi_thread")]
async fn a_checkpoint_in_the_future_is_an_error_naming_the_object_and_the_remedy() {
    let a = aws().expect("the S3 test service (source .ci/services.env)");
    let bucket = bucket_with(&a, b"20991231235959".to_vec()).await;
    let sim = start_sim(SimConfig::new(data(100, 60))).await;
    let dir = scratch();
    let mut c = with_bucket(harvester_for(dir.path(), &sim), &a, &bucket);
    c.args(["harvest", "-o", "none"]);
    let out = tokio::task::spawn_blocking(move || run(c)).await.unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("s3://{bucket}/{KEY}"))
            && err.contains("in the future")
            && err.contains("20991231235959")
            && err.contains("checkpoint --set"),
        "{err}"
    );
    assert!(!err.contains("check --start/--end"), "{err}");
    // The service says so on /healthz rather than "ok".
    let addr = format!("127.0.0.1:{}", free_port());
    let mut c = with_bucket(harvester_for(dir.path(), &sim), &a, &bucket);
    c.args(run_service_args("none", &addr));
    c.stdout(Stdio::null()).stderr(Stdio::null());
    let mut child = c.spawn().unwrap();
    let t = Instant::now();
    let body = loop {
        if let Ok(r) = reqwest::get(format!("http://{addr}/healthz")).await {
            if r.status() == 503 {
                break r.text().await.unwrap();
            }
        }
        if t.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            panic!("/healthz stayed ok with a checkpoint in 2099");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    assert!(body.contains("in the future"), "{body}");
}

/// A 1 MB object of garbage (with line breaks and terminal escapes) was echoed whole into one
/// error line. Now it is quoted short, escaped.
#[tokio::test(flavor = "multi_thread")]
async fn a_garbage_checkpoint_object_is_quoted_short_and_escaped() {
    let a = aws().expect("the S3 test service (source .ci/services.env)");
    let mut garbage = b"not a time\n\x1b]0;owned\x07\x1b[2K".to_vec();
    garbage.extend(std::iter::repeat_n(b'x', 1 << 20));
    let bucket = bucket_with(&a, garbage).await;
    let sim = start_sim(SimConfig::new(data(100, 60))).await;
    let dir = scratch();
    let mut c = with_bucket(harvester_for(dir.path(), &sim), &a, &bucket);
    c.args(["harvest", "-o", "none"]);
    let out = tokio::task::spawn_blocking(move || run(c)).await.unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.len() < 2_000, "{} bytes of error", err.len());
    assert!(!err.contains('\u{1b}') && !err.contains('\u{7}'), "{err:?}");
    assert!(
        err.contains(&format!("s3://{bucket}/{KEY}")) && err.contains("not a time\\n"),
        "{err}"
    );
    assert!(err.contains("checkpoint --set"), "{err}");
}

/// `harvester checkpoint` (show only) created `harvester.redb` and its `.owner` in an empty
/// directory. Showing writes nothing.
#[test]
fn showing_the_checkpoint_creates_no_journal() {
    let dir = scratch();
    let mut c = harvester(dir.path());
    c.arg("checkpoint");
    let out = run(c);
    assert_ok(&out);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("journal: none"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "checkpoint (show) wrote {left:?}");
}

/// `check` left a version and a delete marker per run in a versioned bucket; its probe now
/// deletes the version it wrote.
#[tokio::test(flavor = "multi_thread")]
async fn check_leaves_nothing_in_a_versioned_bucket() {
    use aws_sdk_s3::types::{BucketVersioningStatus, VersioningConfiguration};
    let a = aws().expect("the S3 test service (source .ci/services.env)");
    let now = timefmt::now_us();
    let bucket = bucket_with(
        &a,
        timefmt::format_compact(now, chrono_tz::Tz::UTC).into_bytes(),
    )
    .await;
    let (s3, _) = sdk(&a).await;
    s3.put_bucket_versioning()
        .bucket(&bucket)
        .versioning_configuration(
            VersioningConfiguration::builder()
                .status(BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let sim = start_sim(SimConfig::new(data(100, 60))).await;
    let dir = scratch();
    let mut c = with_bucket(harvester_for(dir.path(), &sim), &a, &bucket);
    c.args(["check", "-o", "none", "--json"]);
    let out = tokio::task::spawn_blocking(move || run(c)).await.unwrap();
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", stderr(&out)));
    let s3_check = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "s3")
        .unwrap()
        .clone();
    assert_eq!(s3_check["status"], "pass", "{s3_check}");
    let versions = s3
        .list_object_versions()
        .bucket(&bucket)
        .send()
        .await
        .unwrap();
    let keys: Vec<String> = versions
        .versions()
        .iter()
        .filter_map(|v| v.key().map(str::to_string))
        .chain(
            versions
                .delete_markers()
                .iter()
                .filter_map(|m| m.key().map(|k| format!("delete marker {k}"))),
        )
        .collect();
    assert_eq!(keys, [KEY.to_string()], "left in the bucket: {keys:?}");
}

/// The same for the journal's own checkpoint (set by hand, or copied from a bad S3 object):
/// `harvest` said "check --start/--end" though none was given.
#[tokio::test(flavor = "multi_thread")]
async fn a_journal_checkpoint_in_the_future_names_the_remedy() {
    let sim = start_sim(SimConfig::new(data(100, 60))).await;
    let dir = scratch();
    let mut c = harvester(dir.path());
    c.args(["checkpoint", "--set", "20991231235959"]);
    assert_ok(&run(c));
    let mut c = harvester_for(dir.path(), &sim);
    c.args(["harvest", "-o", "none"]);
    let out = tokio::task::spawn_blocking(move || run(c)).await.unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("20991231235959")
            && err.contains("after now")
            && err.contains("checkpoint --set"),
        "{err}"
    );
    assert!(!err.contains("check --start/--end"), "{err}");
}
