//! `harvester harvest` against a hostile Opencast: a lying `total`, a page cap below `-b`,
//! clocks in the year 9999, wrong shapes, rows committed late, and the load it puts on the
//! server (`--max-in-flight`). The server here is a few lines of axum, answering without
//! authentication (the client then sends none).

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};

use common::*;
use harvester::journal::Journal;
use harvester::timefmt;

/// What the hostile server holds and how it misbehaves.
#[derive(Default)]
struct Hostile {
    actions: Mutex<Vec<Value>>,
    /// At most this many rows per page, whatever `limit` asks.
    cap: Option<usize>,
    /// The `total` every page claims.
    bogus_total: Option<u64>,
    delay_ms: u64,
    action_requests: AtomicU64,
    in_flight: AtomicU64,
    max_in_flight: AtomicU64,
}

/// An action as Opencast sends it (`created` is an XSD dateTime).
fn action(id: i64, created: &str) -> Value {
    json!({"id": id, "mediapackageId": "mp-1",
           "sessionId": {"sessionId": format!("s{id}"), "userId": "u1", "userIp": "10.0.0.1",
                         "userAgent": "UA"},
           "inpoint": 1, "outpoint": 2, "length": 1, "type": "HEARTBEAT", "isPlaying": true,
           "created": created})
}

/// `created` of `t0() + secs`.
fn at(secs: i64) -> String {
    timefmt::format_utc_z(t0() + secs * 1_000_000)
}

fn created_us(a: &Value) -> i64 {
    timefmt::parse_xsd(a["created"].as_str().unwrap(), chrono_tz::Tz::UTC).unwrap()
}

/// Counts the requests in flight at the server while one is served.
struct InFlight<'a>(&'a Hostile);

impl<'a> InFlight<'a> {
    fn enter(h: &'a Hostile) -> InFlight<'a> {
        let now = h.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        h.max_in_flight.fetch_max(now, Ordering::SeqCst);
        InFlight(h)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn actions(
    State(h): State<Arc<Hostile>>,
    Query(q): Query<HashMap<String, String>>,
) -> axum::response::Response {
    let _f = InFlight::enter(&h);
    h.action_requests.fetch_add(1, Ordering::SeqCst);
    if h.delay_ms > 0 {
        tokio::time::sleep(Duration::from_millis(h.delay_ms)).await;
    }
    let tz = chrono_tz::Tz::UTC;
    let start = timefmt::parse_compact(&q["start"], tz).unwrap();
    let end = timefmt::parse_compact(&q["end"], tz).unwrap() + 999_999;
    let limit: usize = q["limit"].parse().unwrap();
    let offset: usize = q["offset"].parse().unwrap();
    let all = h.actions.lock().unwrap().clone();
    // The 9999 action is the server's bad clock: it answers it for every window.
    let window: Vec<Value> = all
        .into_iter()
        .filter(|a| {
            let c = created_us(a);
            (start..=end).contains(&c) || c > 200_000_000_000_000_000
        })
        .collect();
    let n = limit.min(h.cap.unwrap_or(usize::MAX));
    let page: Vec<Value> = window.iter().skip(offset).take(n).cloned().collect();
    let total = h.bogus_total.unwrap_or(window.len() as u64);
    let body = json!({"actions": {"total": total.to_string(), "offset": offset.to_string(),
                                  "limit": limit.to_string(), "action": page}});
    json_response(body)
}

fn json_response(body: Value) -> axum::response::Response {
    let ct = [(axum::http::header::CONTENT_TYPE, "application/json")];
    axum::response::IntoResponse::into_response((ct, body.to_string()))
}

async fn episode(State(h): State<Arc<Hostile>>) -> axum::response::Response {
    if h.delay_ms > 0 {
        tokio::time::sleep(Duration::from_millis(h.delay_ms)).await;
    }
    json_response(json!({"search-results": {"total": "0", "limit": "1", "offset": "0"}}))
}

/// Serves `h` on a loopback port; returns its base URL.
async fn serve(h: Arc<Hostile>) -> String {
    let app = Router::new()
        .route("/usertracking/actions.json", get(actions))
        .route("/search/episode.json", get(episode))
        // The path the client asks its Digest challenge from (answers go unchecked here).
        .route(
            "/services/services.json",
            get(|| async {
                (
                    axum::http::StatusCode::UNAUTHORIZED,
                    [(
                        axum::http::header::WWW_AUTHENTICATE,
                        r#"Digest realm="Opencast", qop="auth", nonce="n1""#,
                    )],
                )
            }),
        )
        .with_state(h);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

fn harvester_at(dir: &std::path::Path, url: &str) -> std::process::Command {
    let mut c = harvester(dir);
    c.env("MATTERHORN_ENGAGE_HOST", url)
        .env("MATTERHORN_REST_USER", USER)
        .env("MATTERHORN_REST_PASS", PASS)
        .env("OPENCAST_RETRIES", "1");
    c
}

async fn run_async(c: std::process::Command) -> std::process::Output {
    tokio::task::spawn_blocking(move || run(c)).await.unwrap()
}

fn ids_in_journal(dir: &std::path::Path) -> Vec<i64> {
    let mut ids: Vec<i64> = journal_records(dir).iter().map(|r| r.action_id).collect();
    ids.sort();
    ids
}

fn checkpoint(dir: &std::path::Path) -> Option<i64> {
    let j = Journal::open(&journal_path(dir)).unwrap();
    j.checkpoint().unwrap().map(|c| c.last_action_us)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bogus_total_with_empty_pages_ends_the_window() {
    let h = Arc::new(Hostile {
        bogus_total: Some(1_000_000_000_000_000),
        ..Hostile::default()
    });
    let url = serve(h.clone()).await;
    let dir = scratch();
    let mut c = harvester_at(dir.path(), &url);
    harvest_window(&mut c, 3_600_000_000, "none");
    let out = tokio::time::timeout(Duration::from_secs(60), run_async(c))
        .await
        .expect("the harvest ends");
    assert_ok(&out);
    let requests = h.action_requests.load(Ordering::SeqCst);
    assert!(
        requests <= 2,
        "{requests} page requests for an empty window"
    );
    let err = stderr(&out);
    assert!(err.contains("empty page"), "a warning names the lie: {err}");

    // Full pages first, then empty ones: still a bounded number of requests.
    let h = Arc::new(Hostile {
        bogus_total: Some(1_000_000_000_000_000),
        actions: Mutex::new((1..=25).map(|i| action(i, &at(i))).collect()),
        ..Hostile::default()
    });
    let url = serve(h.clone()).await;
    let dir = scratch();
    let mut c = harvester_at(dir.path(), &url);
    harvest_window(&mut c, 3_600_000_000, "none");
    c.args(["-b", "10"]);
    let out = tokio::time::timeout(Duration::from_secs(60), run_async(c))
        .await
        .expect("the harvest ends");
    assert_ok(&out);
    assert_eq!(ids_in_journal(dir.path()), (1..=25).collect::<Vec<_>>());
    let requests = h.action_requests.load(Ordering::SeqCst);
    assert!(requests <= 60, "{requests} page requests");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_page_cap_below_the_batch_size_loses_nothing() {
    let h = Arc::new(Hostile {
        cap: Some(7),
        actions: Mutex::new((1..=50).map(|i| action(i, &at(i))).collect()),
        ..Hostile::default()
    });
    let url = serve(h.clone()).await;
    for wait in [None, Some("0.01")] {
        let dir = scratch();
        let mut c = harvester_at(dir.path(), &url);
        harvest_window(&mut c, 3_600_000_000, "none");
        c.args(["-b", "10"]);
        if let Some(w) = wait {
            c.args(["-w", w]);
        }
        let out = run_async(c).await;
        assert_ok(&out);
        assert_eq!(
            ids_in_journal(dir.path()),
            (1..=50).collect::<Vec<_>>(),
            "every action is journaled (wait {wait:?})"
        );
        let err = stderr(&out);
        assert!(err.contains("fewer rows than asked"), "{err}");
        assert_eq!(checkpoint(dir.path()), Some(t0() + 50_000_000));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_action_from_the_year_9999_never_becomes_the_checkpoint() {
    let mut all: Vec<Value> = (1..=5).map(|i| action(i, &at(i * 60))).collect();
    all.push(action(99, "9999-12-31T23:59:59Z"));
    let h = Arc::new(Hostile {
        actions: Mutex::new(all),
        ..Hostile::default()
    });
    let url = serve(h.clone()).await;
    let dir = scratch();
    let mut c = harvester_at(dir.path(), &url);
    harvest_window(&mut c, 3_600_000_000, "none");
    let out = run_async(c).await;
    assert_ok(&out);
    let err = stderr(&out);
    // Kept, counted and warned about.
    assert_eq!(ids_in_journal(dir.path()), vec![1, 2, 3, 4, 5, 99]);
    assert!(err.contains("outside_window=1"), "{err}");
    assert!(err.contains("outside the window"), "{err}");
    assert_eq!(checkpoint(dir.path()), Some(t0() + 300_000_000));

    // The next run (from the checkpoint, as from cron) works, and the checkpoint never goes
    // backwards even for a window that holds only older actions.
    let mut c = harvester_at(dir.path(), &url);
    c.args(["harvest", "-o", "none"]);
    let out = run_async(c).await;
    assert_ok(&out);
    assert_eq!(checkpoint(dir.path()), Some(t0() + 300_000_000));
    let mut c = harvester_at(dir.path(), &url);
    c.args([
        "harvest",
        "-s",
        &compact(t0()),
        "-e",
        &compact(t0() + 90_000_000),
        "-o",
        "none",
    ]);
    let out = run_async(c).await;
    assert_ok(&out);
    assert_eq!(
        checkpoint(dir.path()),
        Some(t0() + 300_000_000),
        "the checkpoint never moves backwards"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_shapes_are_dead_letters_never_altered_records() {
    let mut nested = action(2, &at(2));
    nested["type"] = json!({"nested": {"deeper": 1}});
    let mut array = action(4, &at(4));
    array["sessionId"]["userId"] = json!(["u1", "u2"]);
    let mut playing = action(5, &at(5));
    playing["isPlaying"] = json!(7);
    let mut dollar = action(6, &at(6));
    dollar["type"] = json!({"lang": "en", "$": "PLAY"});
    let all = vec![
        action(1, &at(1)),
        nested,
        action(-5, &at(3)),
        array,
        playing,
        dollar,
    ];
    let h = Arc::new(Hostile {
        actions: Mutex::new(all),
        ..Hostile::default()
    });
    let url = serve(h.clone()).await;
    let dir = scratch();
    let mut c = harvester_at(dir.path(), &url);
    harvest_window(&mut c, 3_600_000_000, "none");
    let out = run_async(c).await;
    assert_ok(&out);
    // Only the well-shaped ones are records; a `"$"` text is the quirk the reference allows.
    let recs = journal_records(dir.path());
    assert_eq!(
        recs.iter().map(|r| r.action_id).collect::<Vec<_>>(),
        vec![1, 6]
    );
    assert_eq!(recs[1].action.kind.as_deref(), Some("PLAY"));
    let j = Journal::open(&journal_path(dir.path())).unwrap();
    // Each dead letter keeps the action's exact text and the reason.
    let dead: Vec<(i64, String)> = j
        .dead_letters()
        .unwrap()
        .into_iter()
        .map(|(_, d)| {
            let raw: Value = serde_json::from_str(&d.raw).unwrap();
            (raw["id"].as_i64().unwrap(), d.reason)
        })
        .collect();
    let reason = |id: i64| {
        dead.iter()
            .find(|(k, _)| *k == id)
            .map(|(_, r)| r.clone())
            .unwrap_or_else(|| panic!("no dead letter {id} in {dead:?}"))
    };
    assert!(reason(2).contains("field type"), "{dead:?}");
    assert!(reason(-5).contains("positive"), "{dead:?}");
    assert!(reason(4).contains("userId"), "{dead:?}");
    assert!(reason(5).contains("isPlaying"), "{dead:?}");
    assert_eq!(dead.len(), 4, "{dead:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn late_rows_within_the_overlap_are_harvested_by_the_next_run() {
    let h = Arc::new(Hostile {
        actions: Mutex::new((1..=10).map(|i| action(i, &at(i * 10))).collect()),
        ..Hostile::default()
    });
    let url = serve(h.clone()).await;
    let dir = scratch();
    // The first run sets the checkpoint at t0 + 100 s.
    let mut c = harvester_at(dir.path(), &url);
    c.args([
        "harvest",
        "-s",
        &compact(t0()),
        "-e",
        &compact(t0() + 120_000_000),
        "-o",
        "none",
    ]);
    assert_ok(&run_async(c).await);
    assert_eq!(checkpoint(dir.path()), Some(t0() + 100_000_000));
    // Opencast commits a row late: created 30 s before the checkpoint.
    h.actions.lock().unwrap().push(action(11, &at(70)));
    // The next run starts at the checkpoint minus the overlap, reads the late row, and counts
    // the rows it had already as duplicates.
    let mut c = harvester_at(dir.path(), &url);
    c.env("HARVEST_OVERLAP", "60").args([
        "harvest",
        "-e",
        &compact(t0() + 180_000_000),
        "-o",
        "none",
    ]);
    let out = run_async(c).await;
    assert_ok(&out);
    assert_eq!(ids_in_journal(dir.path()), (1..=11).collect::<Vec<_>>());
    let err = stderr(&out);
    // Re-read: ids 4..=10 (t0+40 s ..= t0+100 s).
    assert!(err.contains("duplicates_skipped=7"), "{err}");
    assert!(err.contains("actions=1 "), "{err}");
    assert!(err.contains("HARVEST_OVERLAP"), "{err}");
    assert_eq!(checkpoint(dir.path()), Some(t0() + 100_000_000));

    // Without an overlap (the old behaviour) the late row would have been missed.
    let dir = scratch();
    h.actions.lock().unwrap().pop();
    let mut c = harvester_at(dir.path(), &url);
    c.args([
        "harvest",
        "-s",
        &compact(t0()),
        "-e",
        &compact(t0() + 120_000_000),
        "-o",
        "none",
    ]);
    assert_ok(&run_async(c).await);
    h.actions.lock().unwrap().push(action(11, &at(70)));
    let mut c = harvester_at(dir.path(), &url);
    c.args([
        "harvest",
        "--overlap",
        "0",
        "-e",
        &compact(t0() + 180_000_000),
    ])
    .args(["-o", "none"]);
    assert_ok(&run_async(c).await);
    assert_eq!(ids_in_journal(dir.path()), (1..=10).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread")]
async fn max_in_flight_bounds_the_requests_at_the_server() {
    for n in [1u64, 3] {
        let h = Arc::new(Hostile {
            delay_ms: 20,
            actions: Mutex::new((1..=200).map(|i| action(i, &at(i))).collect()),
            ..Hostile::default()
        });
        let url = serve(h.clone()).await;
        let dir = scratch();
        let mut c = harvester_at(dir.path(), &url);
        harvest_window(&mut c, 3_600_000_000, "none");
        c.args(["-b", "10", "--max-in-flight", &n.to_string()]);
        let out = run_async(c).await;
        assert_ok(&out);
        assert_eq!(ids_in_journal(dir.path()).len(), 200);
        let max = h.max_in_flight.load(Ordering::SeqCst);
        assert!(
            max <= n,
            "{max} requests in flight with --max-in-flight {n}"
        );
        if n > 1 {
            assert!(max > 1, "pages are still fetched in parallel ({max})");
        }
    }
}

#[test]
fn bad_pace_settings_exit_2_naming_the_setting_and_its_range() {
    let dir = scratch();
    for (flag, value, name) in [
        ("--max-in-flight", "0", "--max-in-flight"),
        ("--max-in-flight", "65", "--max-in-flight"),
        ("--max-in-flight", "-1", "--max-in-flight"),
        ("--max-in-flight", "1e3", "--max-in-flight"),
        ("--overlap", "86401", "--overlap"),
        ("--overlap", "-5", "--overlap"),
    ] {
        for cmd in ["harvest", "run"] {
            let mut c = harvester(dir.path());
            c.args([cmd, &format!("{flag}={value}"), "-o", "none"]);
            let out = run(c);
            assert_eq!(out.status.code(), Some(2), "{cmd} {flag} {value}");
            let err = stderr(&out);
            assert!(err.contains(name) && err.contains(" to "), "{err}");
        }
    }
    let mut c = harvester(dir.path());
    c.env("OPENCAST_MAX_IN_FLIGHT", "100")
        .args(["harvest", "-o", "none"]);
    let out = run(c);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("OPENCAST_MAX_IN_FLIGHT"));
}
