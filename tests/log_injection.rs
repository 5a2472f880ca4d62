//! Issue 19 point 12: text from outside cannot forge or erase log lines, nor drive the terminal.
//! A viewer's player sends the media package id; here it carries a line break and a forged
//! `ERROR` line, a carriage return, and escape sequences that set the terminal's title and erase
//! the line. Before, the id reached stderr raw through the `mpid` field (only the log message
//! was escaped).

mod common;

use axum::routing::get;
use axum::Router;
use serde_json::json;

use common::*;
use harvester::timefmt;

const HOSTILE_MPID: &str =
    "mp-1\n2026-12-03T00:00:00.000000Z ERROR forged: database dropped\r\u{1b}]0;owned\u{7}\u{1b}[2K";

/// An Opencast that answers one action with the hostile media package id, and knows no episode.
async fn serve() -> String {
    let created = timefmt::format_utc_z(t0() + 30_000_000);
    let action = json!({"id": 1, "mediapackageId": HOSTILE_MPID,
        "sessionId": {"sessionId": "s1", "userId": "u1", "userIp": "10.0.0.1", "userAgent": "UA"},
        "inpoint": 1, "outpoint": 2, "length": 1, "type": "HEARTBEAT", "isPlaying": true,
        "created": created});
    let page = json!({"actions": {"total": "1", "offset": "0", "limit": "1000",
                                  "action": [action]}});
    let none = json!({"search-results": {"total": "0", "limit": "1", "offset": "0"}});
    let app = Router::new()
        .route(
            "/usertracking/actions.json",
            get(move || {
                let p = page.to_string();
                async move { ([("content-type", "application/json")], p) }
            }),
        )
        .route(
            "/search/episode.json",
            get(move || {
                let n = none.to_string();
                async move { ([("content-type", "application/json")], n) }
            }),
        )
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
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hostile_media_package_id_is_escaped_in_every_log_field() {
    let url = serve().await;
    let dir = scratch();
    let mut c = harvester(dir.path());
    c.env("MATTERHORN_ENGAGE_HOST", &url)
        .env("MATTERHORN_REST_USER", USER)
        .env("MATTERHORN_REST_PASS", PASS)
        .env("OPENCAST_RETRIES", "0")
        .env("LOG_LEVEL", "debug");
    harvest_window(&mut c, 60_000_000, "none");
    let out = tokio::task::spawn_blocking(move || run(c)).await.unwrap();
    assert_ok(&out);
    assert_eq!(
        journal_records(dir.path()).len(),
        1,
        "the record is kept as it is"
    );
    let err = stderr(&out);
    assert!(
        err.contains("episode not found"),
        "the id was logged:\n{err}"
    );
    for (what, c) in [("ESC", '\u{1b}'), ("BEL", '\u{7}'), ("CR", '\r')] {
        assert!(!err.contains(c), "a raw {what} reached stderr: {err:?}");
    }
    assert!(
        !err.lines()
            .any(|l| l.starts_with("2026-12-03T00:00:00.000000Z ERROR forged")),
        "a forged log line:\n{err}"
    );
    assert!(err.contains("mp-1\\n2026-12-03"), "{err}");
}
