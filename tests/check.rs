//! `harvester check` (issue 13, §1) against the real services and the simulated Opencast: all
//! good is exit 0 and writes nothing; each broken service is exit 1 with a ✗ line naming it and
//! its remedy; `--json` agrees; bad settings are exit 2; no secret is ever printed.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;
use harvester::sim::SimConfig;
use serde_json::Value;

/// Secrets put in the settings; none may appear in any output.
const OC_PASS: &str = "MARKERocPass7731";
const ES_PASS: &str = "MARKEResPass4417";
const AWS_SECRET: &str = "MARKERawsSecret9902";
const API_TOKEN: &str = "MARKERapiToken0000123456";
const WRONG_PASS: &str = "MARKERwrongPass5150";

async fn run_async(c: Command) -> Output {
    tokio::task::spawn_blocking(move || run(c)).await.unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

fn assert_no_secret(o: &Output) {
    let all = format!("{}\n{}", stdout(o), stderr(o));
    for s in [OC_PASS, ES_PASS, AWS_SECRET, API_TOKEN, WRONG_PASS] {
        assert!(!all.contains(s), "secret {s} printed:\n{all}");
    }
}

/// The line of check `name` (the first), e.g. "✗ sqs ...".
fn line<'a>(out: &'a str, name: &str) -> Option<&'a str> {
    out.lines().find(|l| {
        let rest = l.split_once(' ').map(|x| x.1).unwrap_or("");
        rest.starts_with(&format!("{name} "))
    })
}

fn mmdb(dir: &Path) -> PathBuf {
    let out = dir.join("city.mmdb");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/enrich/make_mmdb.py");
    let st = Command::new("python3")
        .arg(&script)
        .arg(&out)
        .arg("city-a")
        .status()
        .expect("python3 runs");
    assert!(
        st.success(),
        "make_mmdb.py failed: install PyPI's mmdb-writer"
    );
    out
}

struct Env {
    aws: Aws,
    es: String,
    bucket: String,
    queue: String,
    geoip: PathBuf,
}

/// Every setting good: the simulator with a marker password, S3, SQS, Elasticsearch with
/// (ignored) credentials, GeoIP and user agents, and the service-only token.
fn good(dir: &Path, sim: &harvester::sim::SimHandle, e: &Env) -> Command {
    let mut c = harvester(dir);
    c.env("MATTERHORN_ENGAGE_HOST", sim.url())
        .env("MATTERHORN_REST_USER", USER)
        .env("MATTERHORN_REST_PASS", OC_PASS)
        .env("OPENCAST_RETRIES", "2");
    let mut c = with_aws(c, &e.aws);
    let es_host =
        e.es.replacen("http://", &format!("http://elastic:{ES_PASS}@"), 1);
    c.env("AWS_SECRET_ACCESS_KEY", AWS_SECRET)
        .env("S3_HARVEST_TS_BUCKET", &e.bucket)
        .env("SQS_QUEUE_NAME", &e.queue)
        .env("ELASTICSEARCH_HOST", es_host)
        .env("ES_ACTION_INDEX", format!("{}-%Y.%m.%d", e.queue))
        .env("GEOIP_DATABASE", &e.geoip)
        .env("PARSE_USERAGENT", "1")
        .env("HARVESTER_API_TOKEN", API_TOKEN);
    c
}

fn check_args(c: &mut Command, json: bool) {
    c.args(["check", "-o", "sqs,es"]);
    if json {
        c.arg("--json");
    }
}

fn json_of(o: &Output) -> Value {
    serde_json::from_str(&stdout(o))
        .unwrap_or_else(|e| panic!("--json is not JSON ({e}):\n{}", stdout(o)))
}

fn status_of<'a>(v: &'a Value, name: &str) -> Vec<&'a str> {
    v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["name"] == name)
        .map(|c| c["status"].as_str().unwrap())
        .collect()
}

async fn setup(dir: &Path) -> Option<(Env, aws_sdk_s3::Client, aws_sdk_sqs::Client)> {
    let aws = aws()?;
    let es = service("HARVESTER_TEST_ES_URL")?;
    let (s3, sqs) = sdk(&aws).await;
    let bucket = unique("check").to_lowercase();
    s3.create_bucket().bucket(&bucket).send().await.unwrap();
    let queue = unique("check");
    sqs.create_queue().queue_name(&queue).send().await.unwrap();
    let geoip = mmdb(dir);
    Some((
        Env {
            aws,
            es,
            bucket,
            queue,
            geoip,
        },
        s3,
        sqs,
    ))
}

#[tokio::test(flavor = "multi_thread")]
async fn all_good_is_exit_0_writes_nothing_and_json_agrees() {
    let dir = scratch();
    let Some((e, s3, _sqs)) = setup(dir.path()).await else {
        return;
    };
    let mut cfg = SimConfig::new(data(200, 600));
    cfg.password = OC_PASS.into();
    let sim = start_sim(cfg).await;

    // A first harvest: a journal with a checkpoint, in S3 too, and one sink's cursor.
    let mut c = good(dir.path(), &sim, &e);
    harvest_window(&mut c, 600 * 1_000_000, "sqs");
    let out = run_async(c).await;
    assert_ok(&out);
    let journal = journal_path(dir.path());
    let before = std::fs::read(&journal).unwrap();
    let cp_before = checkpoint_object(&s3, &e.bucket).await;

    let mut c = good(dir.path(), &sim, &e);
    check_args(&mut c, false);
    let out = run_async(c).await;
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}\n{}", stderr(&out));
    assert_no_secret(&out);
    assert!(!text.contains('✗'), "{text}");
    for name in [
        "settings",
        "journal",
        "checkpoint",
        "lag",
        "dead letters",
        "s3",
        "window",
        "span",
        "opencast",
        "clock",
        "sqs",
        "elasticsearch",
        "es template",
        "geoip",
        "useragent",
    ] {
        let l = line(&text, name).unwrap_or_else(|| panic!("no {name} line:\n{text}"));
        assert!(l.starts_with('✓'), "{l}");
    }
    let oc = line(&text, "opencast").unwrap();
    assert!(oc.contains("accepted") && oc.contains(USER), "{oc}");
    let lag = text
        .lines()
        .filter(|l| l.starts_with("✓ lag"))
        .collect::<Vec<_>>();
    assert_eq!(lag.len(), 2, "one lag line per configured sink: {text}");
    assert!(
        lag.iter()
            .any(|l| l.contains(&format!("sqs:{}", e.queue)) && l.contains("lag 0")),
        "{text}"
    );
    assert!(
        line(&text, "sqs").unwrap().contains("MaximumMessageSize"),
        "{text}"
    );
    assert!(line(&text, "geoip").unwrap().contains("located"), "{text}");

    // Nothing written: the journal is byte for byte the same, the checkpoint object too, and
    // the S3 probe is gone.
    assert_eq!(
        std::fs::read(&journal).unwrap(),
        before,
        "check changed the journal"
    );
    let cp_after = checkpoint_object(&s3, &e.bucket).await;
    assert_eq!(cp_before, cp_after);
    let keys: Vec<String> = s3
        .list_objects_v2()
        .bucket(&e.bucket)
        .send()
        .await
        .unwrap()
        .contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_string))
        .collect();
    assert_eq!(keys, vec!["last-action-timestamp".to_string()]);

    // --json: the same checks, all passing.
    let mut c = good(dir.path(), &sim, &e);
    check_args(&mut c, true);
    let out = run_async(c).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_no_secret(&out);
    let v = json_of(&out);
    assert_eq!(v["ok"], true);
    assert_eq!(v["failed"], 0);
    let checks = v["checks"].as_array().unwrap();
    assert_eq!(
        checks.len(),
        text.lines().count(),
        "the same checks as the text: {v:#}"
    );
    assert!(checks.iter().all(|c| c["status"] == "pass"), "{v:#}");

    // The span check: ten years behind with MAX_START_END_SPAN=3600 fails a harvest, not a run.
    let mut c = good(dir.path(), &sim, &e);
    c.env("MAX_START_END_SPAN", "3600");
    check_args(&mut c, false);
    let out = run_async(c).await;
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    let span = line(&text, "span").unwrap();
    assert!(
        span.starts_with('✗') && span.contains("--catch-up"),
        "{span}"
    );
    let mut c = good(dir.path(), &sim, &e);
    c.env("MAX_START_END_SPAN", "3600");
    check_args(&mut c, false);
    c.args(["--for", "run"]);
    let out = run_async(c).await;
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(line(&stdout(&out), "span").unwrap().contains("windows"));
}

/// Runs check with `tweak` applied to the good settings; expects exit 1 with a ✗ line for
/// `name` holding every one of `says`, in text and in JSON.
async fn expect_failure(
    dir: &Path,
    sim: &harvester::sim::SimHandle,
    e: &Env,
    tweak: impl Fn(&mut Command),
    name: &str,
    says: &[&str],
) {
    let mut c = good(dir, sim, e);
    tweak(&mut c);
    check_args(&mut c, false);
    let out = run_async(c).await;
    let text = stdout(&out);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{name}: {text}\n{}",
        stderr(&out)
    );
    assert_no_secret(&out);
    let l = line(&text, name).unwrap_or_else(|| panic!("no {name} line:\n{text}"));
    assert!(l.starts_with('✗'), "{l}");
    assert!(l.contains('→'), "a remedy: {l}");
    for s in says {
        assert!(l.contains(s), "{name} line lacks '{s}': {l}");
    }
    assert_eq!(
        text.lines().filter(|l| l.starts_with('✗')).count(),
        1,
        "only {name} fails:\n{text}"
    );

    let mut c = good(dir, sim, e);
    tweak(&mut c);
    check_args(&mut c, true);
    let out = run_async(c).await;
    assert_eq!(out.status.code(), Some(1), "{name} --json");
    assert_no_secret(&out);
    let v = json_of(&out);
    assert_eq!(v["ok"], false);
    assert_eq!(v["failed"], 1);
    assert_eq!(status_of(&v, name)[0], "fail", "{v:#}");
    let c = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap();
    assert!(c["remedy"].as_str().is_some_and(|r| !r.is_empty()), "{c}");
}

#[tokio::test(flavor = "multi_thread")]
async fn each_broken_service_is_exit_1_with_its_line_and_remedy() {
    let dir = scratch();
    let Some((e, _s3, _sqs)) = setup(dir.path()).await else {
        return;
    };
    let mut cfg = SimConfig::new(data(50, 600));
    cfg.password = OC_PASS.into();
    let sim = start_sim(cfg).await;
    let d = dir.path();

    expect_failure(
        d,
        &sim,
        &e,
        |c| {
            c.env("MATTERHORN_REST_PASS", WRONG_PASS);
        },
        "opencast",
        &["rejected the credentials", "MATTERHORN_REST_PASS"],
    )
    .await;
    let dead = format!("http://127.0.0.1:{}", free_port());
    expect_failure(
        d,
        &sim,
        &e,
        |c| {
            c.env("AWS_ENDPOINT_URL_SQS", &dead);
        },
        "sqs",
        &[&e.queue, "AWS_ENDPOINT_URL"],
    )
    .await;
    let missing = unique("check-missing").to_lowercase();
    expect_failure(
        d,
        &sim,
        &e,
        |c| {
            c.env("S3_HARVEST_TS_BUCKET", &missing);
        },
        "s3",
        &[&missing, "does not exist", "S3_HARVEST_TS_BUCKET"],
    )
    .await;
    let es_down = format!("http://elastic:{ES_PASS}@127.0.0.1:{}", free_port());
    expect_failure(
        d,
        &sim,
        &e,
        |c| {
            c.env("ELASTICSEARCH_HOST", &es_down);
        },
        "elasticsearch",
        &["unreachable", "ELASTICSEARCH_HOST"],
    )
    .await;
    let bad = d.join("garbage.mmdb");
    std::fs::write(&bad, b"this is not a MaxMind database").unwrap();
    expect_failure(
        d,
        &sim,
        &e,
        |c| {
            c.env("GEOIP_DATABASE", &bad);
        },
        "geoip",
        &["garbage.mmdb", "GEOIP_DATABASE"],
    )
    .await;
    // No journal yet is no failure (every run above passed it), and check did not create one.
    assert!(!journal_path(d).exists(), "check created the journal");
}

#[test]
fn bad_settings_and_usage_are_exit_2() {
    let dir = scratch();
    let base = |d: &Path| {
        let mut c = harvester(d);
        c.env("MATTERHORN_ENGAGE_HOST", "127.0.0.1:9")
            .env("MATTERHORN_REST_USER", USER)
            .env("MATTERHORN_REST_PASS", OC_PASS)
            .env("SQS_QUEUE_NAME", "q")
            .env(
                "ELASTICSEARCH_HOST",
                format!("http://elastic:{ES_PASS}@127.0.0.1:9"),
            );
        c
    };
    // An unknown flag.
    let mut c = base(dir.path());
    c.args(["check", "--no-such-flag"]);
    let out = run(c);
    assert_eq!(out.status.code(), Some(2));
    assert_no_secret(&out);
    // A number out of range: clap's message names the setting and the range.
    let mut c = base(dir.path());
    c.env("OPENCAST_TIMEOUT", "0").arg("check");
    let out = run(c);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("OPENCAST_TIMEOUT takes 1 to 3600"),
        "{}",
        stderr(&out)
    );
    assert_no_secret(&out);
    // Settings harvest refuses after parsing: every one is a ✗ settings line, and exit 2.
    let mut c = base(dir.path());
    c.env("OPENCAST_TIMEZONE", "Mars/Olympus")
        .env("ES_ACTION_INDEX", "")
        .args(["check", "-o", "sqs,bogus"]);
    let out = run(c);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(
        text.contains("✗ settings") && text.contains("OPENCAST_TIMEZONE"),
        "{text}"
    );
    assert!(text.contains("bogus"), "{text}");
    assert!(
        line(&text, "opencast").is_none(),
        "nothing else is checked: {text}"
    );
    assert_no_secret(&out);
    // The same as JSON.
    let mut c = base(dir.path());
    c.env("OPENCAST_TIMEZONE", "Mars/Olympus")
        .args(["check", "--json"]);
    let out = run(c);
    assert_eq!(out.status.code(), Some(2));
    let v = json_of(&out);
    assert_eq!(v["ok"], false);
    assert_eq!(status_of(&v, "settings"), vec!["fail"]);
    // .env is read as harvest reads it (the environment wins over it).
    std::fs::write(
        dir.path().join(".env"),
        "OPENCAST_TIMEZONE=Venus/Maxwell\nDEFAULT_INTERVAL=99999999\n",
    )
    .unwrap();
    let mut c = base(dir.path());
    c.arg("check");
    let out = run(c);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("DEFAULT_INTERVAL takes 1 to 525600"),
        "{}",
        stderr(&out)
    );
    std::fs::write(dir.path().join(".env"), "OPENCAST_TIMEZONE=Venus/Maxwell\n").unwrap();
    let mut c = base(dir.path());
    c.arg("check");
    let out = run(c);
    assert_eq!(out.status.code(), Some(2));
    assert!(stdout(&out).contains("Venus/Maxwell"), "{}", stdout(&out));
    std::fs::remove_file(dir.path().join(".env")).unwrap();
    // A password in the Opencast URL is refused without being shown.
    let mut c = base(dir.path());
    c.env(
        "MATTERHORN_ENGAGE_HOST",
        format!("http://admin:{OC_PASS}@127.0.0.1:9"),
    )
    .arg("check");
    let out = run(c);
    assert_eq!(out.status.code(), Some(2));
    assert_no_secret(&out);
    // --for run checks the service's own settings too.
    let mut c = base(dir.path());
    c.env("HARVESTER_API_TOKEN", "short")
        .env("METRICS_ADDR", "nowhere")
        .args(["check", "--for", "run"]);
    let out = run(c);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(
        text.contains("HARVESTER_API_TOKEN") && text.contains("METRICS_ADDR"),
        "{text}"
    );
}

/// The checkpoint object in S3, as stored.
async fn checkpoint_object(s3: &aws_sdk_s3::Client, bucket: &str) -> bytes::Bytes {
    s3.get_object()
        .bucket(bucket)
        .key("last-action-timestamp")
        .send()
        .await
        .unwrap()
        .body
        .collect()
        .await
        .unwrap()
        .into_bytes()
}
