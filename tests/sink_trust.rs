//! Issue 19, the sinks: what a hostile world did to SQS, stdout and Elasticsearch, each against
//! the real service (ElasticMQ, Elasticsearch) with a small HTTP proxy of the test's own in front
//! of it where the fault is the proxy's (a real SQS refusing a whole batch, nginx's 413).
//!
//! - point 1: SQS refuses a whole `SendMessageBatch` for one record: that record is found and
//!   dead-lettered, the rest delivered once; batches delivered past a failure are not re-sent;
//! - point 3: `run` recreates an SQS queue deleted under it;
//! - point 5: the stdout sink never cuts bytes it did not write;
//! - point 6: errors about the index (closed, an alias without a write index) stop the sink with
//!   the cursor kept instead of dead-lettering every record; dead letters are replayed in bulk;
//! - point 7: a 413 from a proxy in front of Elasticsearch splits the request;
//! - point 10: Elasticsearch's reasons (which quote field values) stay in the dead-letter table.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{request::Parts, HeaderMap, Response, StatusCode};
use common::*;
use harvester::journal::{codec, Journal, PageCommit};
use harvester::record::{ActionBlock, Record};
use serde_json::{json, Value};

// ---------------------------------------------------------------------------------------------
// A small HTTP proxy: forwards to `upstream`, unless its rule answers a request itself.

type Rule = Arc<dyn Fn(&Parts, &[u8]) -> Option<Response<Body>> + Send + Sync>;

/// A request the proxy saw: method, path and query, body.
type Seen = (String, String, Vec<u8>);

struct Proxy {
    url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Proxy {
    /// Requests seen whose path starts with `path`.
    fn count(&self, path: &str) -> usize {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, p, _)| p.starts_with(path))
            .count()
    }

    /// Every body seen, as text.
    fn bodies(&self) -> String {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .map(|(_, _, b)| String::from_utf8_lossy(b).into_owned())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

async fn proxy(upstream: &str, rule: Rule) -> Proxy {
    let upstream = upstream.trim_end_matches('/').to_string();
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let http = reqwest::Client::new();
    let s = seen.clone();
    let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
        let (rule, seen, http, upstream) =
            (rule.clone(), s.clone(), http.clone(), upstream.clone());
        async move {
            let (parts, body) = req.into_parts();
            let body = axum::body::to_bytes(body, 256 << 20)
                .await
                .unwrap_or_default();
            let path = parts
                .uri
                .path_and_query()
                .map(|p| p.as_str().to_string())
                .unwrap_or_else(|| "/".into());
            seen.lock()
                .unwrap()
                .push((parts.method.to_string(), path.clone(), body.to_vec()));
            if let Some(r) = rule(&parts, &body) {
                return r;
            }
            let mut rb = http.request(parts.method.clone(), format!("{upstream}{path}"));
            for (k, v) in parts.headers.iter() {
                if !matches!(k.as_str(), "host" | "content-length" | "connection") {
                    rb = rb.header(k, v);
                }
            }
            match rb.body(body).send().await {
                Ok(resp) => {
                    let mut out = Response::builder().status(resp.status());
                    for (k, v) in resp.headers() {
                        if !matches!(
                            k.as_str(),
                            "content-length" | "transfer-encoding" | "connection"
                        ) {
                            out = out.header(k, v);
                        }
                    }
                    let bytes = resp.bytes().await.unwrap_or_default();
                    out.body(Body::from(bytes)).unwrap()
                }
                Err(e) => Response::builder()
                    .status(StatusCode::BAD_GATEWAY)
                    .body(Body::from(e.to_string()))
                    .unwrap(),
            }
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    Proxy { url, seen }
}

fn answer(status: u16, headers: &[(&str, &str)], body: &str) -> Response<Body> {
    let mut b = Response::builder().status(status);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(Body::from(body.to_string())).unwrap()
}

fn is_sqs_batch(p: &Parts) -> bool {
    header(&p.headers, "x-amz-target").ends_with("SendMessageBatch")
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> &'a str {
    h.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

fn contains(body: &[u8], marker: &str) -> bool {
    body.windows(marker.len()).any(|w| w == marker.as_bytes())
}

// ---------------------------------------------------------------------------------------------
// Records, journals, services.

/// A plain record with action id `id` and user agent `ua` (all on 2016-03-01, UTC).
fn rec(id: i64, ua: &str) -> Record {
    Record {
        action_id: id,
        created_us: t0() + id * 1_000_000,
        mpid: "83ebde9d-0812-4071-8fb7-a97c1472ceb9".into(),
        session_id: format!("session-{}", id / 10),
        huid: Some(format!("student{id}")),
        useragent: Some(ua.to_string()),
        action: ActionBlock {
            kind: Some("PLAY".into()),
            inpoint: Some(id),
            outpoint: Some(id + 10),
            length: Some(10),
            is_playing: true,
        },
        ip_chain: Some("10.0.0.1".into()),
        is_live: false,
        episode: None,
    }
}

fn journal_with(dir: &Path, records: &[Record]) {
    let j = Journal::open(&journal_path(dir)).unwrap();
    j.commit_page(PageCommit {
        ids: records.iter().map(|r| r.action_id).collect(),
        block: Some(codec::encode_block(records)),
        ..PageCommit::default()
    })
    .unwrap();
}

fn cursor(dir: &Path, name: &str) -> u64 {
    Journal::open(&journal_path(dir))
        .unwrap()
        .cursor(name)
        .unwrap()
}

fn dead_letters(dir: &Path) -> Vec<harvester::journal::DeadLetter> {
    Journal::open(&journal_path(dir))
        .unwrap()
        .dead_letters()
        .unwrap()
        .into_iter()
        .map(|(_, d)| d)
        .collect()
}

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        rand::random::<u32>() % 1_000_000
    )
}

async fn run_async(c: Command) -> std::process::Output {
    tokio::task::spawn_blocking(move || run(c)).await.unwrap()
}

fn with_sqs(mut c: Command, endpoint: &str, queue: &str) -> Command {
    c.env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ENDPOINT_URL_SQS", endpoint)
        .env("SQS_QUEUE_NAME", queue);
    c
}

async fn sqs_client(endpoint: &str) -> aws_sdk_sqs::Client {
    let creds = aws_sdk_sqs::config::Credentials::new("test", "test", None, None, "tests");
    let conf = aws_sdk_sqs::config::Builder::new()
        .behavior_version(aws_sdk_sqs::config::BehaviorVersion::latest())
        .region(aws_sdk_sqs::config::Region::new("us-east-1"))
        .credentials_provider(creds)
        .endpoint_url(endpoint)
        .build();
    aws_sdk_sqs::Client::from_conf(conf)
}

/// How often each action id is in `queue` (drained).
async fn queue_counts(sqs: &aws_sdk_sqs::Client, queue: &str) -> HashMap<i64, usize> {
    drain(sqs, &queue_url(sqs, queue).await).await.1
}

// ---------------------------------------------------------------------------------------------
// Point 1: SQS refuses a whole batch.

/// What SQS answers to a `SendMessageBatch` holding a body with characters it refuses: the
/// whole request fails (awsJson1.0 error, query-compatible code), no entry is taken.
fn invalid_message_contents() -> Response<Body> {
    answer(
        400,
        &[
            ("content-type", "application/x-amz-json-1.0"),
            (
                "x-amzn-query-error",
                "AWS.SimpleQueueService.InvalidMessageContents;Sender",
            ),
        ],
        r#"{"__type":"com.amazonaws.sqs#InvalidMessageContents","message":"Invalid binary character '#x1' was found in the message body, the set of allowed characters is #x9 | #xA | #xD | #x20-#xD7FF | #xE000-#xFFFD | #x10000-#x10FFFF"}"#,
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn sqs_refusing_a_whole_batch_dead_letters_the_one_record_and_delivers_the_rest_once() {
    let Some(endpoint) = service("HARVESTER_TEST_SQS_ENDPOINT") else {
        return;
    };
    let sqs = sqs_client(&endpoint).await;
    let front = proxy(
        &endpoint,
        Arc::new(|p: &Parts, body: &[u8]| {
            (is_sqs_batch(p) && contains(body, "POISON")).then(invalid_message_contents)
        }),
    )
    .await;
    let dir = scratch();
    let queue = unique("wholebatch");
    // 60 records, six batches of ten; the second batch holds the one SQS refuses.
    let records: Vec<Record> = (1..=60)
        .map(|i| {
            rec(
                i,
                if i == 15 {
                    "POISON agent"
                } else {
                    "Mozilla/5.0"
                },
            )
        })
        .collect();
    journal_with(dir.path(), &records);
    for round in 0..3 {
        let mut c = with_sqs(harvester(dir.path()), &front.url, &queue);
        c.env("AWS_MAX_ATTEMPTS", "1")
            .args(["forward", "-o", "sqs"]);
        let o = run_async(c).await;
        assert_ok(&o);
        let counts = queue_counts(&sqs, &queue).await;
        if round == 0 {
            let want: BTreeSet<i64> = (1..=60).filter(|i| *i != 15).collect();
            assert_eq!(counts.keys().copied().collect::<BTreeSet<_>>(), want);
            assert!(counts.values().all(|n| *n == 1), "{counts:?}");
        } else {
            assert!(counts.is_empty(), "run {round} sent again: {counts:?}");
        }
    }
    assert_eq!(cursor(dir.path(), &format!("sqs:{queue}")), 60);
    let dead = dead_letters(dir.path());
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert!(dead[0].reason.contains("action 15"), "{}", dead[0].reason);
    assert!(
        dead[0].reason.contains("InvalidMessageContents"),
        "SQS's reason: {}",
        dead[0].reason
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn batches_delivered_past_a_failed_one_are_not_sent_again_next_run() {
    let Some(endpoint) = service("HARVESTER_TEST_SQS_ENDPOINT") else {
        return;
    };
    let sqs = sqs_client(&endpoint).await;
    let broken = Arc::new(AtomicBool::new(true));
    let b = broken.clone();
    // A passing failure for the batch holding record 15 (SQS failing for a while).
    let front = proxy(
        &endpoint,
        Arc::new(move |p: &Parts, body: &[u8]| {
            (b.load(Ordering::SeqCst) && is_sqs_batch(p) && contains(body, "STALL")).then(|| {
                answer(
                    500,
                    &[("content-type", "application/x-amz-json-1.0")],
                    r#"{"__type":"com.amazonaws.sqs#InternalError","message":"We encountered an internal error."}"#,
                )
            })
        }),
    )
    .await;
    let dir = scratch();
    let queue = unique("ahead");
    let records: Vec<Record> = (1..=60)
        .map(|i| {
            rec(
                i,
                if i == 15 {
                    "STALL agent"
                } else {
                    "Mozilla/5.0"
                },
            )
        })
        .collect();
    journal_with(dir.path(), &records);
    let forward = || {
        let mut c = with_sqs(harvester(dir.path()), &front.url, &queue);
        c.env("AWS_MAX_ATTEMPTS", "1")
            .args(["forward", "-o", "sqs"]);
        run_async(c)
    };
    let o = forward().await;
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert_eq!(cursor(dir.path(), &format!("sqs:{queue}")), 10);
    // The batches in flight beside the failed one did arrive.
    let mut counts = queue_counts(&sqs, &queue).await;
    assert!(!counts.contains_key(&15));
    assert!(counts.len() >= 10, "{counts:?}");

    broken.store(false, Ordering::SeqCst);
    let o = forward().await;
    assert_ok(&o);
    for (id, n) in queue_counts(&sqs, &queue).await {
        *counts.entry(id).or_insert(0) += n;
    }
    let ids: BTreeSet<i64> = counts.keys().copied().collect();
    assert_eq!(ids, (1..=60).collect::<BTreeSet<_>>());
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "sent twice: {twice:?}");
    assert_eq!(cursor(dir.path(), &format!("sqs:{queue}")), 60);
    assert!(dead_letters(dir.path()).is_empty());
}

// ---------------------------------------------------------------------------------------------
// Point 3: `run` recreates a deleted queue.

async fn metric(addr: &str, name: &str) -> Option<f64> {
    let text = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

async fn wait_metric(addr: &str, name: &str, want: f64, secs: u64) {
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(secs) {
        if metric(addr, name).await == Some(want) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!(
        "{name} did not reach {want} within {secs} s (now {:?})",
        metric(addr, name).await
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn run_recreates_an_sqs_queue_deleted_under_it() {
    let Some(endpoint) = service("HARVESTER_TEST_SQS_ENDPOINT") else {
        return;
    };
    let sqs = sqs_client(&endpoint).await;
    // Actions keep coming for the next 20 seconds.
    let now = harvester::timefmt::floor_second(harvester::timefmt::now_us());
    let sim = start_sim(harvester::sim::SimConfig::new(
        harvester::sim::DataConfig::new(3, 1500, now - 5_000_000, now + 20_000_000),
    ))
    .await;
    let dir = scratch();
    let addr = format!("127.0.0.1:{}", free_port());
    let queue = unique("deleted");
    let mut c = with_sqs(harvester_for(dir.path(), &sim), &endpoint, &queue);
    c.env("AWS_MAX_ATTEMPTS", "1")
        .args(run_service_args("sqs", &addr))
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let child = c.spawn().unwrap();
    let lag = format!("harvester_sink_lag{{sink=\"sqs:{queue}\"}}");
    // Forwarding works, then the queue is deleted while actions still arrive.
    let t = Instant::now();
    while metric(&addr, "harvester_journal_records_total")
        .await
        .unwrap_or(0.0)
        < 1.0
    {
        assert!(t.elapsed() < Duration::from_secs(20), "nothing harvested");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    wait_metric(&addr, &lag, 0.0, 20).await;
    let url = queue_url(&sqs, &queue).await;
    sqs.delete_queue().queue_url(&url).send().await.unwrap();
    // Every action is harvested, and forwarded to the queue made again.
    wait_metric(&addr, "harvester_journal_records_total", 1500.0, 60).await;
    wait_metric(&addr, &lag, 0.0, 60).await;
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let counts = queue_counts(&sqs, &queue).await;
    let last = journal_records(dir.path()).last().unwrap().action_id;
    assert!(
        counts.contains_key(&last),
        "the queue was made again and holds the latest record ({} records)",
        counts.len()
    );
}

// ---------------------------------------------------------------------------------------------
// Point 5: the stdout sink and other people's files.

/// `forward -o -` appending to `out` (as `>> out` does); returns its stderr.
fn forward_appending(dir: &Path, out: &Path) -> String {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(out)
        .unwrap();
    let mut c = harvester(dir);
    c.args(["forward", "-o", "-"]).stdout(Stdio::from(f));
    let o = run(c);
    assert_ok(&o);
    stderr(&o)
}

fn lines_of(records: &[Record]) -> String {
    records.iter().map(|r| r.to_json() + "\n").collect()
}

#[test]
fn stdout_never_cuts_a_file_it_did_not_write() {
    let dir = scratch();
    let records: Vec<Record> = (1..=5).map(|i| rec(i, "ua")).collect();
    journal_with(dir.path(), &records);
    // A notes file of 64 bytes without a final newline.
    let notes = "meeting notes: ask about the export; call the registrar on Monday";
    let notes = &notes[..64];
    let out = dir.path().join("notes.txt");
    std::fs::write(&out, notes).unwrap();
    let err = forward_appending(dir.path(), &out);
    let got = std::fs::read_to_string(&out).unwrap();
    assert_eq!(got, format!("{notes}\n{}", lines_of(&records)));
    assert!(!err.contains("killed"), "{err}");
    assert!(
        err.contains("new line"),
        "the warning says what was done: {err}"
    );
}

#[test]
fn stdout_keeps_a_last_record_of_another_export() {
    let dir = scratch();
    let records: Vec<Record> = (1..=5).map(|i| rec(i, "ua")).collect();
    journal_with(dir.path(), &records);
    // An export of other records whose last line has no newline: whole, and not ours.
    let other = format!("{}\n{}", rec(998, "ua").to_json(), rec(999, "ua").to_json());
    let out = dir.path().join("export.jsonl");
    std::fs::write(&out, &other).unwrap();
    forward_appending(dir.path(), &out);
    let got = std::fs::read_to_string(&out).unwrap();
    assert_eq!(got, format!("{other}\n{}", lines_of(&records)));
}

#[test]
fn stdout_removes_its_own_torn_batch_and_writes_it_once() {
    let dir = scratch();
    let records: Vec<Record> = (1..=5).map(|i| rec(i, "ua")).collect();
    journal_with(dir.path(), &records);
    // A run killed mid-write: record 1 whole, record 2 cut; the cursor is still at record 1.
    let before = "earlier line\n";
    let torn = format!("{}\n{}", records[0].to_json(), &records[1].to_json()[..30]);
    let out = dir.path().join("out.jsonl");
    std::fs::write(&out, format!("{before}{torn}")).unwrap();
    let err = forward_appending(dir.path(), &out);
    let got = std::fs::read_to_string(&out).unwrap();
    assert_eq!(got, format!("{before}{}", lines_of(&records)));
    assert!(err.contains("unfinished write"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Elasticsearch (points 6, 7, 10).

struct Es {
    url: String,
    http: reqwest::Client,
}

impl Es {
    fn new(url: &str) -> Es {
        Es {
            url: url.trim_end_matches('/').to_string(),
            http: reqwest::Client::new(),
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut r = self.http.request(method, format!("{}/{path}", self.url));
        if let Some(b) = body {
            r = r.json(&b);
        }
        let resp = r.send().await.expect("node answers");
        let status = resp.status();
        let v: Value = resp.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "{path}: {status} {v}");
        v
    }

    async fn count(&self, pattern: &str) -> u64 {
        self.call(
            reqwest::Method::POST,
            &format!("{pattern}/_refresh?allow_no_indices=true"),
            None,
        )
        .await;
        let v = self
            .call(
                reqwest::Method::GET,
                &format!("{pattern}/_count?allow_no_indices=true"),
                None,
            )
            .await;
        v["count"].as_u64().unwrap()
    }
}

fn with_es(mut c: Command, url: &str, pattern: &str) -> Command {
    c.env("ELASTICSEARCH_HOST", url)
        .env("ES_ACTION_INDEX", pattern)
        .env("ES_ATTEMPTS", "2");
    c
}

fn forward_es(dir: &Path, url: &str, pattern: &str) -> Command {
    let mut c = with_es(harvester(dir), url, pattern);
    c.args(["forward", "-o", "es"]);
    c
}

#[tokio::test(flavor = "multi_thread")]
async fn a_closed_index_stops_the_sink_and_dead_letters_nothing() {
    let Some(url) = service("HARVESTER_TEST_ES_URL") else {
        return;
    };
    let es = Es::new(&url);
    let dir = scratch();
    let prefix = unique("t-closed");
    let pattern = format!("{prefix}-%Y.%m.%d");
    let day = format!("{prefix}-2016.03.01");
    let records: Vec<Record> = (1..=50).map(|i| rec(i, "ua")).collect();
    journal_with(dir.path(), &records);
    es.call(reqwest::Method::PUT, &day, None).await;
    es.call(reqwest::Method::POST, &format!("{day}/_close"), None)
        .await;

    let o = run_async(forward_es(dir.path(), &url, &pattern)).await;
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains(&day), "the message names the index: {err}");
    assert!(err.contains("index_closed_exception"), "{err}");
    assert!(dead_letters(dir.path()).is_empty());
    assert_eq!(cursor(dir.path(), &format!("es:{pattern}")), 0);

    es.call(reqwest::Method::POST, &format!("{day}/_open"), None)
        .await;
    assert_ok(&run_async(forward_es(dir.path(), &url, &pattern)).await);
    assert_eq!(es.count(&day).await, 50);
    assert!(dead_letters(dir.path()).is_empty());
    assert_eq!(cursor(dir.path(), &format!("es:{pattern}")), 50);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_alias_without_a_write_index_stops_the_sink_and_dead_letters_nothing() {
    let Some(url) = service("HARVESTER_TEST_ES_URL") else {
        return;
    };
    let es = Es::new(&url);
    let dir = scratch();
    let prefix = unique("t-alias");
    let pattern = format!("{prefix}-%Y.%m.%d");
    let alias = format!("{prefix}-2016.03.01");
    let records: Vec<Record> = (1..=50).map(|i| rec(i, "ua")).collect();
    journal_with(dir.path(), &records);
    for ix in ["a1", "a2"] {
        es.call(reqwest::Method::PUT, &format!("{prefix}-{ix}"), None)
            .await;
    }
    es.call(
        reqwest::Method::POST,
        "_aliases",
        Some(json!({"actions": [
            {"add": {"index": format!("{prefix}-a1"), "alias": alias}},
            {"add": {"index": format!("{prefix}-a2"), "alias": alias}},
        ]})),
    )
    .await;
    let o = run_async(forward_es(dir.path(), &url, &pattern)).await;
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains(&alias), "{err}");
    assert!(err.contains("no write index"), "{err}");
    assert!(dead_letters(dir.path()).is_empty());
    assert_eq!(cursor(dir.path(), &format!("es:{pattern}")), 0);
}

/// Records bodies posted to a fake Loggly.
async fn loggly() -> Proxy {
    proxy(
        "http://127.0.0.1:9",
        Arc::new(|_: &Parts, _: &[u8]| Some(answer(200, &[], "{\"response\":\"ok\"}"))),
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn refused_values_stay_in_the_dead_letter_table_and_replay_goes_in_bulk() {
    let Some(url) = service("HARVESTER_TEST_ES_URL") else {
        return;
    };
    let es = Es::new(&url);
    let front = proxy(&url, Arc::new(|_: &Parts, _: &[u8]| None)).await;
    let logs = loggly().await;
    let dir = scratch();
    let prefix = unique("t-values");
    let pattern = format!("{prefix}-%Y.%m.%d");
    let day = format!("{prefix}-2016.03.01");
    let records: Vec<Record> = (1..=50).map(|i| rec(i, "ua")).collect();
    journal_with(dir.path(), &records);
    // `huid` mapped as a number: every "studentN" is refused, and ES's reason quotes it.
    es.call(
        reqwest::Method::PUT,
        &day,
        Some(json!({"mappings": {"properties": {"huid": {"type": "long"}}}})),
    )
    .await;
    let logged = |c: &mut Command| {
        c.env("LOGGLY_TOKEN", "token-of-the-test")
            .env("LOGGLY_URL", &logs.url);
    };
    let mut c = forward_es(dir.path(), &url, &pattern);
    logged(&mut c);
    let o = run_async(c).await;
    assert_ok(&o);
    let dead = dead_letters(dir.path());
    assert_eq!(dead.len(), 50);
    assert!(
        dead.iter()
            .all(|d| d.reason.contains("Preview of field's value")),
        "the full reason is kept in the table: {}",
        dead[0].reason
    );
    let mut err = stderr(&o);

    // A replay while the mapping is still wrong: refused again, said by type and action id.
    let mut c = with_es(harvester(dir.path()), &front.url, &pattern);
    c.args(["journal", "replay", "--dead-letters", "-o", "es"]);
    logged(&mut c);
    let o = run_async(c).await;
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let replay_err = stderr(&o);
    assert!(
        replay_err.contains("document_parsing_exception"),
        "{replay_err}"
    );
    assert!(replay_err.contains("action_id=7"), "{replay_err}");
    err.push_str(&replay_err);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let events = logs.bodies();
    assert!(
        events.contains("document_parsing_exception"),
        "Loggly got the events: {events}"
    );
    for (what, text) in [("stderr", &err), ("Loggly", &events)] {
        assert!(
            !text.contains("student") && !text.contains("Preview"),
            "{what} quotes a refused value: {text}"
        );
    }
    let bulks_refused = front.count("/_bulk");
    assert!(
        (1..=2).contains(&bulks_refused),
        "50 dead letters replayed in {bulks_refused} bulk requests"
    );

    // The mapping fixed (the index made again from the template): one replay delivers all.
    es.call(reqwest::Method::DELETE, &day, None).await;
    let mut c = with_es(harvester(dir.path()), &front.url, &pattern);
    c.args(["journal", "replay", "--dead-letters", "-o", "es"]);
    assert_ok(&run_async(c).await);
    assert_eq!(es.count(&day).await, 50);
    let bulks = front.count("/_bulk") - bulks_refused;
    assert!((1..=2).contains(&bulks), "{bulks} bulk requests");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_413_from_a_proxy_splits_the_request_and_names_es_bulk_bytes() {
    let Some(url) = service("HARVESTER_TEST_ES_URL") else {
        return;
    };
    let es = Es::new(&url);
    const LIMIT: usize = 64 * 1024;
    let nginx = "<html>\r\n<head><title>413 Request Entity Too Large</title></head>\r\n<body>\r\n<center><h1>413 Request Entity Too Large</h1></center>\r\n<hr><center>nginx/1.24.0</center>\r\n</body>\r\n</html>\r\n";
    let front = proxy(
        &url,
        Arc::new(move |p: &Parts, body: &[u8]| {
            (p.uri.path().starts_with("/_bulk") && body.len() > LIMIT)
                .then(|| answer(413, &[("content-type", "text/html")], nginx))
        }),
    )
    .await;
    let dir = scratch();
    let prefix = unique("t-413");
    let pattern = format!("{prefix}-%Y.%m.%d");
    let records: Vec<Record> = (1..=600).map(|i| rec(i, "Mozilla/5.0")).collect();
    journal_with(dir.path(), &records);
    let o = run_async(forward_es(dir.path(), &front.url, &pattern)).await;
    assert_ok(&o);
    let err = stderr(&o);
    assert!(err.contains("ES_BULK_BYTES"), "{err}");
    assert!(!err.contains("<html>"), "{err}");
    assert_eq!(es.count(&format!("{prefix}-*")).await, 600);
    assert_eq!(cursor(dir.path(), &format!("es:{pattern}")), 600);
    assert!(dead_letters(dir.path()).is_empty());
    let seen = front.seen.lock().unwrap();
    let big = seen
        .iter()
        .filter(|(_, p, b)| p.starts_with("/_bulk") && b.len() > LIMIT)
        .count();
    // Halving from 600 records to requests under the limit, then the learned size.
    assert!(
        big <= 7,
        "the sink learns the limit: {big} requests over it"
    );
}
