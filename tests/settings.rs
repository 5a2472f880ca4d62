//! Settings do what they say (issue 10): a bad number is exit 2 with a message that names the
//! setting and its range, never a panic, an overflow or a value quietly made into another
//! (point 9); a base URL's path is kept (point 11).

mod common;

use std::sync::{Arc, Mutex};

use common::*;

/// One bad setting: the command line, the environment, and what the message must say.
struct Case {
    args: &'static [&'static str],
    env: &'static [(&'static str, &'static str)],
    says: &'static [&'static str],
}

const fn case(
    args: &'static [&'static str],
    env: &'static [(&'static str, &'static str)],
    says: &'static [&'static str],
) -> Case {
    Case { args, env, says }
}

const WAIT: &str = "--wait takes 0 to 3600 seconds";
const INTERVAL: &str = "DEFAULT_INTERVAL takes 1 to 525600 minutes";
const EVERY: &str = "HARVEST_EVERY takes 0.1 to 86400 seconds";
const RETRIES: &str = "OPENCAST_RETRIES takes 0 to 100 retries";
const TIMEOUT: &str = "OPENCAST_TIMEOUT takes 1 to 3600 seconds";
const SPAN: &str = "MAX_START_END_SPAN takes 0 to 3155760000 seconds";
const CACHE: &str = "EPISODE_CACHE_EXPIRE takes 0 to 2592000 seconds";

const CASES: &[Case] = &[
    // Observed panics (exit 101) and overflows.
    case(&["harvest", "-w", "1e300"], &[], &[WAIT]),
    case(&["harvest", "-w", "18446744073709551615"], &[], &[WAIT]),
    case(&["harvest", "-w", "NaN"], &[], &[WAIT]),
    case(&["harvest", "-w=-1"], &[], &[WAIT]),
    case(&["harvest", "-w", "inf"], &[], &[WAIT]),
    case(&["run", "--every", "1e300"], &[], &[EVERY]),
    case(&["run"], &[("HARVEST_EVERY", "1e300")], &[EVERY]),
    case(&["run", "--every", "0"], &[], &[EVERY]),
    case(
        &["harvest", "--opencast-retries", "4294967295"],
        &[],
        &[RETRIES],
    ),
    case(&["harvest"], &[("OPENCAST_RETRIES", "101")], &[RETRIES]),
    case(&["harvest", "-i", "100000000000"], &[], &[INTERVAL]),
    case(&["harvest", "-i", "18446744073709551615"], &[], &[INTERVAL]),
    case(&["harvest", "-i", "0"], &[], &[INTERVAL]),
    case(
        &["run"],
        &[("DEFAULT_INTERVAL", "18446744073709551616")],
        &[INTERVAL],
    ),
    case(
        &["harvest"],
        &[("DEFAULT_INTERVAL", "-3")],
        &[INTERVAL, "whole number"],
    ),
    case(&["harvest"], &[("OPENCAST_TIMEOUT", "0")], &[TIMEOUT]),
    case(
        &["load-episodes"],
        &[("OPENCAST_TIMEOUT", "99999999999")],
        &[TIMEOUT],
    ),
    case(&["harvest"], &[("MAX_START_END_SPAN", "-5")], &[SPAN]),
    case(
        &["run"],
        &[("MAX_START_END_SPAN", "9223372036854775807")],
        &[SPAN],
    ),
    case(&["harvest"], &[("EPISODE_CACHE_EXPIRE", "1e9")], &[CACHE]),
    case(
        &["run"],
        &[("EPISODE_CACHE_EXPIRE", "18446744073709551615")],
        &[CACHE],
    ),
    case(
        &["run"],
        &[("JOURNAL_WARN_SIZE", "0")],
        &["JOURNAL_WARN_SIZE takes 1048576 to 1125899906842624 bytes"],
    ),
    case(
        &["harvest", "-b", "0"],
        &[],
        &["--batch-size takes 1 to 1000000 actions"],
    ),
    case(
        &["forward"],
        &[("SQS_MAX_BATCH_BYTES", "10")],
        &["SQS_MAX_BATCH_BYTES takes 1024 to 1048576 bytes"],
    ),
    case(
        &["forward"],
        &[("ES_BULK_DOCS", "0")],
        &["ES_BULK_DOCS takes 1 to 100000 documents"],
    ),
    case(
        &["forward"],
        &[("ES_BULK_BYTES", "18446744073709551615")],
        &["ES_BULK_BYTES takes 1024 to 104857600 bytes"],
    ),
    case(
        &["forward"],
        &[("ES_TIMEOUT", "0")],
        &["ES_TIMEOUT takes 1 to 3600 seconds"],
    ),
    case(
        &["load-episodes"],
        &[("ES_ATTEMPTS", "4294967295")],
        &["ES_ATTEMPTS takes 1 to 100 attempts"],
    ),
    case(&["load-episodes", "-w", "1e300"], &[], &[WAIT]),
    case(
        &["load-episodes", "-c", "99999999999"],
        &[],
        &["--created-from-days-ago takes 0 to 36500 days"],
    ),
    case(
        &["sim", "--delay-ms", "18446744073709551615"],
        &[],
        &["--delay-ms takes 0 to 600000 milliseconds"],
    ),
    case(
        &["demo", "--episodes", "10000000000"],
        &[],
        &["--episodes takes 0 to 1000000 episodes"],
    ),
    case(
        &[
            "bench-fetch",
            "-s",
            "20160301000000",
            "-e",
            "20160301010000",
            "-b",
            "0",
        ],
        &[],
        &["--batch-size takes 1 to 1000000 actions"],
    ),
    // A cutoff of now minus more than i64 microseconds wrapped around (and could prune all).
    case(
        &["journal", "prune", "--older-than", "9999999999999w"],
        &[],
        &["--older-than", "at most 36500d"],
    ),
    // A seconds field of 60 is not quietly the next minute.
    case(
        &[
            "harvest",
            "-s",
            "20160301000060",
            "-e",
            "20160301010000",
            "-o",
            "-",
        ],
        &[
            ("MATTERHORN_ENGAGE_HOST", "127.0.0.1:1"),
            ("MATTERHORN_REST_USER", "u"),
            ("MATTERHORN_REST_PASS", "p"),
        ],
        &["20160301000060", "YYYYMMDDHHmmss"],
    ),
    case(
        &["checkpoint", "--set", "20160301235960"],
        &[],
        &["20160301235960", "YYYYMMDDHHmmss"],
    ),
];

#[test]
fn every_bad_number_is_exit_2_naming_the_setting_and_its_range() {
    let dir = scratch();
    let mut failures = Vec::new();
    for c in CASES {
        let mut cmd = harvester(dir.path());
        cmd.args(c.args);
        for (k, v) in c.env {
            cmd.env(k, v);
        }
        let out = run(cmd);
        let err = stderr(&out);
        let code = out.status.code();
        if code != Some(2) || !c.says.iter().all(|s| err.contains(s)) {
            failures.push(format!(
                "{:?} {:?}: exit {code:?} (want 2), stderr:\n{err}",
                c.env, c.args
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n---\n"));
}

#[test]
fn a_bad_value_in_dot_env_names_the_variable() {
    let dir = scratch();
    std::fs::write(dir.path().join(".env"), "DEFAULT_INTERVAL=100000000000\n").unwrap();
    let mut cmd = harvester(dir.path());
    cmd.arg("harvest");
    let out = run(cmd);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains(INTERVAL), "{err}");
}

#[test]
fn good_values_at_the_edges_are_accepted() {
    // `--help` after the flags: clap parses every value first, then prints the help.
    let dir = scratch();
    for args in [
        &[
            "harvest",
            "-w",
            "3600",
            "-i",
            "525600",
            "--opencast-retries",
            "100",
            "--help",
        ][..],
        &[
            "harvest",
            "-w",
            "0.25",
            "-i",
            "1",
            "--opencast-retries",
            "0",
            "--help",
        ][..],
        &[
            "run",
            "--every",
            "0.5",
            "--journal-warn-size",
            "1048576",
            "--help",
        ][..],
    ] {
        let mut cmd = harvester(dir.path());
        cmd.args(args).env("MAX_START_END_SPAN", "0");
        let out = run(cmd);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    }
}

/// A server that records every path it is asked and answers Opencast's two harvest endpoints
/// only under `prefix`.
async fn prefixed_opencast(prefix: &'static str) -> (String, Arc<Mutex<Vec<String>>>) {
    use axum::http::{StatusCode, Uri};
    use axum::response::IntoResponse;
    let asked = Arc::new(Mutex::new(Vec::new()));
    let a = asked.clone();
    let app = axum::Router::new().fallback(move |uri: Uri| {
        let a = a.clone();
        async move {
            let path = uri.path().to_string();
            a.lock().unwrap().push(path.clone());
            let root = env!("CARGO_MANIFEST_DIR");
            let file = match path.strip_prefix(prefix) {
                Some("usertracking/actions.json") => "actions-page-one.json",
                Some("search/episode.json") => "search-episode-none.json",
                // The path the client asks its Digest challenge from (answers go unchecked).
                Some("services/services.json") => {
                    return (
                        StatusCode::UNAUTHORIZED,
                        [(
                            axum::http::header::WWW_AUTHENTICATE,
                            r#"Digest realm="Opencast", qop="auth", nonce="n1""#,
                        )],
                        String::new(),
                    )
                        .into_response()
                }
                _ => {
                    return (StatusCode::NOT_FOUND, String::from("no such endpoint"))
                        .into_response()
                }
            };
            let body = std::fs::read_to_string(format!("{root}/fixtures/{file}")).unwrap();
            (StatusCode::OK, body).into_response()
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, asked)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_base_url_keeps_its_path() {
    for (prefix, host_path) in [
        ("/opencast/", "/opencast/"),
        ("/opencast/", "/opencast"),
        ("/a/b/", "/a/b/"),
    ] {
        let (url, asked) = prefixed_opencast(prefix).await;
        let dir = scratch();
        let mut c = harvester(dir.path());
        c.env("MATTERHORN_ENGAGE_HOST", format!("{url}{host_path}"))
            .env("MATTERHORN_REST_USER", "u")
            .env("MATTERHORN_REST_PASS", "p")
            .env("OPENCAST_RETRIES", "0")
            .args([
                "harvest",
                "-s",
                "20160301115900",
                "-e",
                "20160301120100",
                "-o",
                "-",
            ]);
        let out = tokio::task::spawn_blocking(move || run(c)).await.unwrap();
        let asked = asked.lock().unwrap().clone();
        assert_ok(&out);
        assert_eq!(stdout_records(&out).len(), 1, "{}", stderr(&out));
        assert!(!asked.is_empty());
        for p in &asked {
            assert!(p.starts_with(prefix), "{host_path}: asked {p} ({asked:?})");
        }
    }
}
