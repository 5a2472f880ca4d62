//! `harvester run`: the service under SIGTERM, its endpoints, and a sink outage it survives.

mod common;

use std::collections::HashSet;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use harvester::sim::SimConfig;
use harvester::timefmt;

/// Simulated actions over the last five minutes, so a service harvesting "now" finds them all.
async fn recent_sim(n: u64) -> harvester::sim::SimHandle {
    let now = timefmt::floor_second(timefmt::now_us());
    start_sim(SimConfig::new(harvester::sim::DataConfig::new(
        3,
        n,
        now - 300_000_000,
        now - 1_000_000,
    )))
    .await
}

/// `n` actions over the last ten minutes, each answer delayed by `delay`.
async fn slow_sim(n: u64, delay: Duration) -> harvester::sim::SimHandle {
    let now = timefmt::now_us();
    let mut cfg = SimConfig::new(harvester::sim::DataConfig::new(
        3,
        n,
        now - 600_000_000,
        now - 1_000_000,
    ));
    cfg.faults.delay = delay;
    start_sim(cfg).await
}

fn sigterm(child: &Child) {
    let ok = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

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

/// Waits until `name` reaches `want` on the metrics endpoint.
async fn wait_metric(addr: &str, name: &str, want: f64, secs: u64) {
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(secs) {
        if metric(addr, name).await == Some(want) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "{name} did not reach {want} within {secs} s (now {:?})",
        metric(addr, name).await
    );
}

async fn wait_exit(mut child: Child, secs: u64) -> std::process::ExitStatus {
    let t = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        assert!(
            t.elapsed() < Duration::from_secs(secs),
            "did not exit within {secs} s of SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_commits_and_exits_zero_with_everything_forwarded() {
    let sim = recent_sim(3000).await;
    let dir = scratch();
    let addr = format!("127.0.0.1:{}", free_port());
    let mut c = harvester_for(dir.path(), &sim);
    c.args(run_service_args("-", &addr));
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    // Drain stdout while the service runs (a full pipe would stall the stdout sink).
    let mut pipe = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut pipe, &mut buf).unwrap();
        buf
    });
    wait_metric(&addr, "harvester_journal_records_total", 3000.0, 20).await;
    wait_metric(&addr, "harvester_sink_lag{sink=\"stdout\"}", 0.0, 20).await;
    let health = reqwest::get(format!("http://{addr}/healthz"))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    sigterm(&child);
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = std::process::Output {
        stdout: reader.join().unwrap(),
        ..out
    };
    let recs = stdout_records(&out);
    let ids: HashSet<i64> = recs
        .iter()
        .map(|r| r["action_id"].as_i64().unwrap())
        .collect();
    assert_eq!((recs.len(), ids.len()), (3000, 3000));
    assert_eq!(journal_records(dir.path()).len(), 3000);
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_mid_harvest_stops_within_seconds() {
    let sim = slow_sim(50_000, Duration::from_millis(200)).await;
    let dir = scratch();
    let addr = format!("127.0.0.1:{}", free_port());
    let mut c = harvester_for(dir.path(), &sim);
    c.args([
        "run",
        "-o",
        "none",
        "-i",
        "20",
        "-b",
        "500",
        "--metrics-addr",
        &addr,
    ]);
    c.stdout(Stdio::null()).stderr(Stdio::null());
    let child = c.spawn().unwrap();
    // Wait until some pages are journaled (each page and look-up takes 200 ms here).
    let t = Instant::now();
    while metric(&addr, "harvester_journal_records_total")
        .await
        .unwrap_or(0.0)
        < 1.0
    {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "nothing journaled within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let t = Instant::now();
    sigterm(&child);
    let status = wait_exit(child, 5).await;
    assert_eq!(status.code(), Some(0));
    eprintln!("stopped {:?} after SIGTERM", t.elapsed());
    // Part of the window is journaled, the checkpoint has not moved past it.
    let j = harvester::journal::Journal::open(&journal_path(dir.path())).unwrap();
    let n = j.next_seq().unwrap();
    assert!(n > 0 && n < 50_000, "{n}");
    assert!(j.checkpoint().unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn sqs_outage_then_back_loses_nothing() {
    let Some(sqs_endpoint) = service("HARVESTER_TEST_SQS_ENDPOINT") else {
        return;
    };
    let sim = recent_sim(2500).await;
    let dir = scratch();
    let addr = format!("127.0.0.1:{}", free_port());
    // The harvester talks to SQS through a port where nothing listens yet.
    let port = free_port();
    let queue = format!("outage-run-{}", std::process::id());
    let mut c = harvester_for(dir.path(), &sim);
    c.env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ENDPOINT_URL_SQS", format!("http://127.0.0.1:{port}"))
        .env("AWS_MAX_ATTEMPTS", "1")
        .env("SQS_QUEUE_NAME", &queue);
    c.args(run_service_args("sqs", &addr));
    c.stdout(Stdio::null()).stderr(Stdio::piped());
    let child = c.spawn().unwrap();
    // Harvesting goes on while SQS is down: the journal grows.
    wait_metric(&addr, "harvester_journal_records_total", 2500.0, 20).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        metric(&addr, "harvester_sink_errors_total{sink=\"sqs")
            .await
            .unwrap_or(0.0)
            >= 1.0
            || metric(&addr, "harvester_sink_errors_total")
                .await
                .unwrap_or(0.0)
                >= 1.0
    );
    // SQS comes back: a proxy to ElasticMQ opens on that port.
    let target = sqs_endpoint.trim_start_matches("http://").to_string();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut inbound, _)) = listener.accept().await else {
                return;
            };
            let t = target.clone();
            tokio::spawn(async move {
                if let Ok(mut out) = tokio::net::TcpStream::connect(t).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                }
            });
        }
    });
    wait_metric(
        &addr,
        &format!("harvester_sink_lag{{sink=\"sqs:{queue}\"}}"),
        0.0,
        60,
    )
    .await;
    sigterm(&child);
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // Every journaled record is in the queue.
    let creds = aws_sdk_sqs::config::Credentials::new("test", "test", None, None, "tests");
    let conf = aws_sdk_sqs::config::Builder::new()
        .behavior_version(aws_sdk_sqs::config::BehaviorVersion::latest())
        .region(aws_sdk_sqs::config::Region::new("us-east-1"))
        .credentials_provider(creds)
        .endpoint_url(&sqs_endpoint)
        .build();
    let sqs = aws_sdk_sqs::Client::from_conf(conf);
    let url = queue_url(&sqs, &queue).await;
    let (bodies, _) = drain(&sqs, &url).await;
    let got: HashSet<i64> = bodies.keys().copied().collect();
    let want: HashSet<i64> = journal_records(dir.path())
        .iter()
        .map(|r| r.action_id)
        .collect();
    assert_eq!(want.len(), 2500);
    assert_eq!(got, want);
}

#[tokio::test(flavor = "multi_thread")]
async fn journal_dump_and_stats_work_while_run_holds_the_journal() {
    let sim = recent_sim(1200).await;
    let dir = scratch();
    let addr = format!("127.0.0.1:{}", free_port());
    let mut c = harvester_for(dir.path(), &sim);
    c.args(run_service_args("none", &addr));
    c.stdout(Stdio::null()).stderr(Stdio::null());
    let child = c.spawn().unwrap();
    wait_metric(&addr, "harvester_journal_records_total", 1200.0, 20).await;
    let run_cmd = |args: &[&str]| {
        let mut c = harvester(dir.path());
        c.arg("journal").args(args);
        c
    };
    let out = tokio::task::spawn_blocking({
        let c = run_cmd(&["stats", "--json"]);
        move || run(c)
    })
    .await
    .unwrap();
    assert_ok(&out);
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["actions"], 1200);
    let out = tokio::task::spawn_blocking({
        let c = run_cmd(&["dump", "--type", "PLAY"]);
        move || run(c)
    })
    .await
    .unwrap();
    assert_ok(&out);
    let recs = stdout_records(&out);
    assert_eq!(recs.len(), 1200 / 25, "one PLAY per simulated session");
    // The CSV dump: the service's JSON lines, turned into rows by the command.
    let out = tokio::task::spawn_blocking({
        let c = run_cmd(&["dump", "--type", "PLAY", "--format", "csv"]);
        move || run(c)
    })
    .await
    .unwrap();
    assert_ok(&out);
    assert_csv_equals_json(&out.stdout, &recs);
    // What cannot be served names the process that holds the journal.
    let out = tokio::task::spawn_blocking({
        let c = run_cmd(&["verify"]);
        move || run(c)
    })
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(&format!("held by pid {}", child.id())),
        "{}",
        stderr(&out)
    );
    sigterm(&child);
    assert_eq!(wait_exit(child, 5).await.code(), Some(0));
}

/// An Opencast that does not answer (each answer delayed a minute): SIGTERM used to wait for
/// the request and its retries (three minutes with the defaults, past systemd's 90 s stop
/// timeout); the harvest now gets a short grace to finish its page and is then left.
#[tokio::test(flavor = "multi_thread")]
async fn sigterm_while_opencast_does_not_answer_stops_within_seconds() {
    let sim = slow_sim(1_000, Duration::from_secs(60)).await;
    let dir = scratch();
    let addr = format!("127.0.0.1:{}", free_port());
    let mut c = harvester_for(dir.path(), &sim);
    c.args(run_service_args("none", &addr));
    c.stdout(Stdio::null()).stderr(Stdio::null());
    let child = c.spawn().unwrap();
    // The service is up and its first page request is waiting for an answer.
    let t = Instant::now();
    while metric(&addr, "harvester_harvest_runs_total")
        .await
        .is_none()
    {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "no /metrics within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let t = Instant::now();
    sigterm(&child);
    let status = wait_exit(child, 30).await;
    assert_eq!(status.code(), Some(0));
    eprintln!("stopped {:?} after SIGTERM", t.elapsed());
    let j = harvester::journal::Journal::open(&journal_path(dir.path())).unwrap();
    assert_eq!(
        j.next_seq().unwrap(),
        0,
        "nothing was answered, nothing journaled"
    );
}

/// Sends a dump request on the Unix socket of the journal in `dir` and reads the status line
/// and headers only: the client then stops reading, as a stalled `curl | less` does.
async fn stalled_dump(sock: &std::path::Path) -> (tokio::net::UnixStream, String) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut s = tokio::net::UnixStream::connect(sock).await.unwrap();
    s.write_all(b"GET /journal/dump HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read(&mut b).await.unwrap() == 0 {
            break;
        }
        head.push(b[0]);
    }
    (s, String::from_utf8_lossy(&head).to_string())
}

/// Issue 19 point 2: 520 connections to `/journal/dump` that never read stopped harvesting
/// (every blocking thread waited on a client), memory went from 30 MB to 923 MB, and /healthz
/// said "ok". Now a few dumps run at once and the others are told to come back; a dump whose
/// client takes nothing is ended after the write timeout, and its place is free again.
#[tokio::test(flavor = "multi_thread")]
async fn stalled_dump_clients_are_bounded_and_timed_out() {
    let sim = recent_sim(20_000).await;
    let dir = scratch();
    let addr = format!("127.0.0.1:{}", free_port());
    let mut c = harvester_for(dir.path(), &sim);
    c.args(run_service_args("none", &addr));
    c.stdout(Stdio::null()).stderr(Stdio::null());
    let child = c.spawn().unwrap();
    wait_metric(&addr, "harvester_journal_records_total", 20_000.0, 60).await;
    let sock = dir.path().join("journal.redb.sock");
    let mut held = Vec::new();
    let (mut ok, mut busy) = (0, 0);
    for _ in 0..40 {
        let (s, head) = stalled_dump(&sock).await;
        if head.starts_with("HTTP/1.1 200") {
            ok += 1;
        } else {
            assert!(head.starts_with("HTTP/1.1 503"), "{head}");
            assert!(
                head.to_ascii_lowercase().contains("retry-after: "),
                "{head}"
            );
            busy += 1;
        }
        held.push(s);
    }
    assert_eq!(
        (ok, busy),
        (4, 36),
        "four dumps at once, the others told to retry"
    );
    // The service goes on: health and figures answer, and harvest cycles keep running.
    let runs = metric(&addr, "harvester_harvest_runs_total").await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(metric(&addr, "harvester_harvest_runs_total").await.unwrap() > runs);
    let health = reqwest::get(format!("http://{addr}/healthz"))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    // Gone clients free their places at once.
    held.truncate(2);
    let t = Instant::now();
    loop {
        let (s, head) = stalled_dump(&sock).await;
        if head.starts_with("HTTP/1.1 200") {
            held.push(s);
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "no place freed: {head}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Every place taken again, by clients that hold on but take nothing...
    loop {
        let (s, head) = stalled_dump(&sock).await;
        if !head.starts_with("HTTP/1.1 200") {
            break;
        }
        held.push(s);
    }
    assert_eq!(held.len(), 4);
    // ...which are ended after the write timeout (30 s).
    let t = Instant::now();
    loop {
        let (s, head) = stalled_dump(&sock).await;
        drop(s);
        if head.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(45),
            "stalled dumps never ended: {head}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    eprintln!(
        "a stalled dump's place was free {:?} after it was taken",
        t.elapsed()
    );
    drop(held);
    sigterm(&child);
    assert_eq!(wait_exit(child, 10).await.code(), Some(0));
}

/// Issue 19 point 2: /healthz said "ok" while the harvest made no progress at all. A cycle that
/// goes without progress for HARVEST_STALL_AFTER now shows there.
#[tokio::test(flavor = "multi_thread")]
async fn healthz_says_so_when_the_harvest_is_stuck() {
    let sim = slow_sim(1_000, Duration::from_secs(60)).await;
    let dir = scratch();
    let addr = format!("127.0.0.1:{}", free_port());
    let mut c = harvester_for(dir.path(), &sim);
    c.env("HARVEST_STALL_AFTER", "5");
    c.args(run_service_args("none", &addr));
    c.stdout(Stdio::null()).stderr(Stdio::null());
    let child = c.spawn().unwrap();
    let t = Instant::now();
    let body = loop {
        if let Ok(r) = reqwest::get(format!("http://{addr}/healthz")).await {
            let status = r.status();
            let body = r.text().await.unwrap_or_default();
            if status == 503 {
                break body;
            }
        }
        assert!(t.elapsed() < Duration::from_secs(30), "/healthz stayed ok");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        body.contains("stuck") && body.contains("HARVEST_STALL_AFTER"),
        "{body}"
    );
    assert!(t.elapsed() >= Duration::from_secs(4), "{:?}", t.elapsed());
    sigterm(&child);
    assert_eq!(wait_exit(child, 30).await.code(), Some(0));
}

/// Issue 19 point 15: SIGHUP killed `run` at once. It now stops as SIGTERM does: the work in
/// hand is committed and the exit is 0 (a service manager then restarts it with the settings
/// read again).
#[tokio::test(flavor = "multi_thread")]
async fn sighup_stops_the_service_gracefully() {
    let sim = recent_sim(500).await;
    let dir = scratch();
    let addr = format!("127.0.0.1:{}", free_port());
    let mut c = harvester_for(dir.path(), &sim);
    c.args(run_service_args("none", &addr));
    c.stdout(Stdio::null()).stderr(Stdio::piped());
    let child = c.spawn().unwrap();
    wait_metric(&addr, "harvester_journal_records_total", 500.0, 20).await;
    let ok = Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).contains("SIGHUP"), "{}", stderr(&out));
    assert_eq!(journal_records(dir.path()).len(), 500);
}
