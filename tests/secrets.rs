//! Credentials never leak (issue 10, point 8): every failing path, at `LOG_LEVEL=trace`, in text
//! and JSON logs, on stdout, and on `run`'s `/metrics` and `/healthz`, with marker secrets that
//! must appear nowhere.

mod common;

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use common::*;
use harvester::sim::{Faults, SimConfig, SimHandle};

const PW: &str = "MARKERpw1";
const AWS: &str = "MARKERaws2";
const ES: &str = "MARKERes3";
const LOGGLY: &str = "MARKERlog4";
// HARVESTER_API_TOKEN takes 16 to 4096 characters.
const API: &str = "MARKERapi5-0123456789";
const XAPI: &str = "MARKERxapi6";
// PSEUDONYMIZE_KEY takes at least 32 bytes.
const KEY: &str = "MARKERkey7-0123456789abcdefghijklmnop";
// A PSEUDONYMIZE_KEY too short to be taken: refused without being echoed.
const SHORT_KEY: &str = "MARKERshort8";
const MARKERS: [&str; 8] = [PW, AWS, ES, LOGGLY, API, XAPI, KEY, SHORT_KEY];

fn assert_clean(what: &str, text: &str) {
    for m in MARKERS {
        assert!(!text.contains(m), "{what}: secret {m} leaked in:\n{text}");
    }
}

fn sim_with(password: &str, faults: Faults) -> SimConfig {
    let mut cfg = SimConfig::new(data(200, 600));
    cfg.password = password.into();
    cfg.faults = faults;
    cfg
}

/// The harvester with every marker secret set, at trace level, in `format`.
fn marked(dir: &std::path::Path, format: &str, dead: &str) -> Command {
    let mut c = harvester(dir);
    c.env("LOG_LEVEL", "trace")
        .env("LOG_FORMAT", format)
        .env("MATTERHORN_REST_USER", USER)
        .env("MATTERHORN_REST_PASS", PW)
        .env("AWS_ACCESS_KEY_ID", "AKIDLEAKTEST")
        .env("AWS_SECRET_ACCESS_KEY", AWS)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("ELASTICSEARCH_HOST", format!("http://u:{ES}@{dead}"))
        .env("ES_ATTEMPTS", "1")
        .env("LOGGLY_TOKEN", LOGGLY)
        .env("LOGGLY_URL", format!("http://{dead}"))
        .env("HARVESTER_API_TOKEN", API)
        .env("XAPI_ENDPOINT", format!("http://{dead}/xAPI"))
        .env("XAPI_USERNAME", "lrs-user")
        .env("XAPI_PASSWORD", XAPI)
        .env("XAPI_ATTEMPTS", "1")
        .env("PSEUDONYMIZE_KEY", KEY)
        .env("OPENCAST_RETRIES", "1");
    c
}

fn window(c: &mut Command) {
    c.args(["-s", &compact(t0()), "-e", &compact(t0() + 600_000_000)]);
}

async fn run_async(c: Command) -> Output {
    tokio::task::spawn_blocking(move || run(c)).await.unwrap()
}

fn all_output(o: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The failing one-shot commands: each must fail, and say nothing secret.
fn failing_commands(
    dir: &std::path::Path,
    format: &str,
    dead: &str,
    good: &SimHandle,
    wrong: &SimHandle,
    flaky: &SimHandle,
) -> Vec<(&'static str, Command)> {
    let mut out = Vec::new();

    let mut c = marked(dir, format, dead);
    c.env("MATTERHORN_ENGAGE_HOST", wrong.url())
        .args(["harvest", "-o", "-"]);
    window(&mut c);
    out.push(("wrong password", c));

    let mut c = marked(dir, format, dead);
    c.env("MATTERHORN_ENGAGE_HOST", flaky.url())
        .args(["harvest", "-o", "-"]);
    window(&mut c);
    out.push(("503s", c));

    let mut c = marked(dir, format, dead);
    c.env("MATTERHORN_ENGAGE_HOST", good.url())
        .env("S3_HARVEST_TS_BUCKET", "leak-test")
        .env("AWS_ENDPOINT_URL", format!("http://{dead}"))
        .args(["harvest", "-o", "-", "--no-update-last-ts"]);
    out.push(("S3 down", c));

    let mut c = marked(dir, format, dead);
    c.args(["forward", "-o", "es"]);
    out.push(("ES down", c));

    let mut c = marked(dir, format, dead);
    c.env("MATTERHORN_ENGAGE_HOST", good.url())
        .args(["harvest", "-o", "es"]);
    window(&mut c);
    out.push(("harvest into ES down", c));

    let mut c = marked(dir, format, dead);
    c.env("MATTERHORN_ENGAGE_HOST", good.url())
        .args(["harvest", "-o", "xapi"]);
    window(&mut c);
    out.push(("harvest into an LRS down", c));

    let mut c = marked(dir, format, dead);
    c.env("MATTERHORN_ENGAGE_HOST", good.url())
        .env("XAPI_ENDPOINT", format!("http://u:{XAPI}@{dead}/xAPI"))
        .args(["forward", "-o", "xapi"]);
    out.push(("URL credentials (LRS)", c));

    let mut c = marked(dir, format, dead);
    c.env("PSEUDONYMIZE_KEY", SHORT_KEY)
        .args(["journal", "dump", "--pseudonymize"]);
    out.push(("a short PSEUDONYMIZE_KEY", c));

    let mut c = marked(dir, format, dead);
    let host = good
        .url()
        .replace("http://", &format!("http://admin:{PW}@"));
    c.args(["harvest", "-o", "-", "-H", &host]);
    window(&mut c);
    out.push(("URL credentials (engage)", c));

    let mut c = marked(dir, format, dead);
    c.env("MATTERHORN_ENGAGE_HOST", good.url())
        .env("MATTERHORN_ADMIN_HOST", format!("u:{PW}@{dead}"))
        .args(["load-episodes", "--mpid", "x"]);
    out.push(("URL credentials (admin)", c));

    let mut c = marked(dir, format, dead);
    c.env("MATTERHORN_ENGAGE_HOST", format!("http://admin:{PW}@"))
        .args(["harvest", "-o", "-"]);
    out.push(("URL credentials (unparseable)", c));

    out
}

#[tokio::test(flavor = "multi_thread")]
async fn no_failing_path_shows_a_secret() {
    let good = start_sim(sim_with(PW, Faults::default())).await;
    let wrong = start_sim(sim_with("the-right-one", Faults::default())).await;
    let flaky = start_sim(sim_with(
        PW,
        Faults {
            fail_every: 1,
            ..Faults::default()
        },
    ))
    .await;
    let dead = format!("127.0.0.1:{}", free_port());
    for format in ["text", "json"] {
        let dir = scratch();
        for (what, c) in failing_commands(dir.path(), format, &dead, &good, &wrong, &flaky) {
            let o = run_async(c).await;
            assert!(
                !o.status.success() && o.status.code() != Some(101),
                "{what} ({format}): exit {:?}\n{}",
                o.status.code(),
                all_output(&o)
            );
            assert_clean(&format!("{what} ({format})"), &all_output(&o));
        }

        // A .env line the parser rejects.
        let env_dir = scratch();
        std::fs::write(
            env_dir.path().join(".env"),
            format!("MATTERHORN_REST_USER=u\nMATTERHORN_REST_PASS={PW} x\"\n"),
        )
        .unwrap();
        let mut c = harvester(env_dir.path());
        c.env("LOG_LEVEL", "trace")
            .env("LOG_FORMAT", format)
            .args(["harvest", "-o", "-"]);
        let o = run_async(c).await;
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(
            err.contains("line 2") && err.contains("MATTERHORN_REST_PASS"),
            "{err}"
        );
        assert_clean(&format!("bad .env ({format})"), &all_output(&o));
    }
}

async fn get(url: &str) -> String {
    match reqwest::get(url).await {
        Ok(r) => {
            let status = r.status();
            format!("{status} {}", r.text().await.unwrap_or_default())
        }
        Err(e) => format!("unreachable: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn run_shows_no_secret_in_logs_or_endpoints() {
    let wrong = start_sim(sim_with("the-right-one", Faults::default())).await;
    let dead = format!("127.0.0.1:{}", free_port());
    for format in ["text", "json"] {
        let dir = scratch();
        let addr = format!("127.0.0.1:{}", free_port());
        let mut c = marked(dir.path(), format, &dead);
        c.env("MATTERHORN_ENGAGE_HOST", wrong.url())
            .args(["run", "-o", "-", "--every", "0.5", "--metrics-addr", &addr])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let child = c.spawn().unwrap();
        // Wait for a failed harvest to show on /healthz.
        let t = Instant::now();
        let mut health = String::new();
        while t.elapsed() < Duration::from_secs(20) {
            health = get(&format!("http://{addr}/healthz")).await;
            if health.starts_with("503") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(
            health.starts_with("503"),
            "no failed harvest on /healthz: {health}"
        );
        let metrics = get(&format!("http://{addr}/metrics")).await;
        assert!(metrics.starts_with("200"), "{metrics}");
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let o = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
            .await
            .unwrap();
        assert_clean(&format!("run /healthz ({format})"), &health);
        assert_clean(&format!("run /metrics ({format})"), &metrics);
        assert_clean(&format!("run output ({format})"), &all_output(&o));
    }
}

#[test]
fn parsed_settings_never_print_secrets() {
    let cli = harvester::cli::Cli::try_parse_from([
        "harvester",
        "--loggly-token",
        LOGGLY,
        "harvest",
        "-p",
        PW,
        "-u",
        "u",
    ])
    .unwrap();
    assert_clean("Cli Debug", &format!("{cli:?}"));
    let cfg = sim_with(PW, Faults::default());
    assert_clean("SimConfig Debug", &format!("{cfg:?}"));
    let cfg = harvester::opencast::ClientConfig::new("u", PW);
    assert_clean("ClientConfig Debug", &format!("{cfg:?}"));
    let cfg = harvester::logging::LogglyConfig {
        token: LOGGLY.into(),
        tags: None,
        url: None,
    };
    assert_clean("LogglyConfig Debug", &format!("{cfg:?}"));
}
