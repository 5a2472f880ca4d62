//! Fault injection with a real fault proxy (Toxiproxy, started by `.ci/run`) between the harvester
//! and each service: connections cut mid-body, latency, a slow link, a service down and back up.
//! Whatever the fault, every action ends up journaled and delivered once, and no cursor or
//! checkpoint moves past what was not done.

mod common;

use common::toxi::Toxiproxy;
use common::*;
use harvester::journal::Journal;
use harvester::sim::{Release, RowOrder, SimConfig};
use serde_json::json;

async fn run_async(c: std::process::Command) -> std::process::Output {
    tokio::task::spawn_blocking(move || run(c)).await.unwrap()
}

fn ids_once(dir: &std::path::Path, n: usize) {
    let recs = journal_records(dir);
    let mut ids: Vec<i64> = recs.iter().map(|r| r.action_id).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(recs.len(), n, "every action journaled once");
    assert_eq!(ids.len(), n, "no action twice");
}

#[tokio::test(flavor = "multi_thread")]
async fn opencast_connections_cut_mid_body_are_retried_until_the_link_heals() {
    let Some(toxi) = Toxiproxy::from_env() else {
        return;
    };
    let sim = start_sim(SimConfig::new(data(2000, 600))).await;
    let proxy = toxi.proxy("opencast-cut", &sim.addr.to_string());
    // Every connection is cut after 20 KB: a page of 100 actions (~37 KB) never arrives whole.
    let cut = proxy.toxic("limit_data", "downstream", json!({"bytes": 20_000}));
    let dir = scratch();
    let mut c = harvester_for(dir.path(), &sim);
    c.env("MATTERHORN_ENGAGE_HOST", proxy.url())
        .env("OPENCAST_RETRIES", "40");
    harvest_window(&mut c, 600_000_000, "none");
    c.args(["-b", "100"]);
    let child = tokio::task::spawn_blocking(move || run(c));
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    proxy.remove_toxic(&cut);
    let out = child.await.unwrap();
    assert_ok(&out);
    let err = stderr(&out);
    assert!(!err.contains("failures=0"), "the cuts were retried: {err}");
    ids_once(dir.path(), 2000);
}

/// A stock Opencast (`day` queries) whose rows come in a different order at every query, behind
/// connections cut mid-body for a while: the day is still proven complete, every action once.
#[tokio::test(flavor = "multi_thread")]
async fn stock_opencast_cut_mid_body_with_shuffled_rows_gives_every_action_once() {
    let Some(toxi) = Toxiproxy::from_env() else {
        return;
    };
    let mut cfg = SimConfig::new(data(3000, 600));
    cfg.release = Release::parse("oc16-17").unwrap();
    cfg.order = RowOrder::Shuffled;
    let sim = start_sim(cfg).await;
    let proxy = toxi.proxy("opencast-stock-cut", &sim.addr.to_string());
    let cut = proxy.toxic("limit_data", "downstream", json!({"bytes": 20_000}));
    let dir = scratch();
    let mut c = harvester_for(dir.path(), &sim);
    c.env("MATTERHORN_ENGAGE_HOST", proxy.url())
        .env("OPENCAST_RETRIES", "40")
        .env("OPENCAST_API", "stock");
    harvest_window(&mut c, 600_000_000, "none");
    c.args(["-b", "100"]);
    let child = tokio::task::spawn_blocking(move || run(c));
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    proxy.remove_toxic(&cut);
    let out = child.await.unwrap();
    assert_ok(&out);
    let err = stderr(&out);
    assert!(err.contains("api=\"stock\""), "{err}");
    ids_once(dir.path(), 3000);
}

#[tokio::test(flavor = "multi_thread")]
async fn opencast_behind_latency_and_a_slow_link_gives_every_action_once() {
    let Some(toxi) = Toxiproxy::from_env() else {
        return;
    };
    let sim = start_sim(SimConfig::new(data(1500, 600))).await;
    let proxy = toxi.proxy("opencast-slow", &sim.addr.to_string());
    proxy.toxic(
        "latency",
        "downstream",
        json!({"latency": 40, "jitter": 20}),
    );
    proxy.toxic("bandwidth", "downstream", json!({"rate": 2000})); // KB/s
    proxy.toxic(
        "slicer",
        "downstream",
        json!({"average_size": 700, "size_variation": 300, "delay": 50}),
    );
    let dir = scratch();
    let mut c = harvester_for(dir.path(), &sim);
    c.env("MATTERHORN_ENGAGE_HOST", proxy.url());
    harvest_window(&mut c, 600_000_000, "-");
    c.args(["-b", "200"]);
    let out = run_async(c).await;
    assert_ok(&out);
    assert_eq!(stdout_records(&out).len(), 1500);
    ids_once(dir.path(), 1500);
}

#[tokio::test(flavor = "multi_thread")]
async fn sqs_down_then_up_behind_the_proxy_delivers_each_record_once() {
    let (Some(toxi), Some(a)) = (Toxiproxy::from_env(), aws()) else {
        return;
    };
    let (_, sqs) = sdk(&a).await;
    let sim = start_sim(SimConfig::new(data(400, 300))).await;
    let dir = scratch();
    let mut c = harvester_for(dir.path(), &sim);
    harvest_window(&mut c, 300_000_000, "none");
    assert_ok(&run_async(c).await);

    let proxy = toxi.proxy("sqs", a.sqs.trim_start_matches("http://"));
    let queue = unique("faults");
    proxy.set_enabled(false);
    let mut c = with_aws(harvester(dir.path()), &a);
    c.env("AWS_ENDPOINT_URL_SQS", proxy.url())
        .env("AWS_MAX_ATTEMPTS", "1")
        .env("SQS_QUEUE_NAME", &queue)
        .args(["forward", "-o", "sqs"]);
    let out = run_async(c).await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    // Issue 19 point 15: the cause is named, not "(no message)".
    assert!(!stderr(&out).contains("(no message)"), "{}", stderr(&out));
    let j = Journal::open(&journal_path(dir.path())).unwrap();
    assert_eq!(
        j.cursor(&format!("sqs:{queue}")).unwrap(),
        0,
        "nothing acknowledged"
    );
    drop(j);

    proxy.set_enabled(true);
    proxy.toxic(
        "latency",
        "downstream",
        json!({"latency": 30, "jitter": 10}),
    );
    let mut c = with_aws(harvester(dir.path()), &a);
    c.env("AWS_ENDPOINT_URL_SQS", proxy.url())
        .env("SQS_QUEUE_NAME", &queue)
        .args(["forward", "-o", "sqs"]);
    assert_ok(&run_async(c).await);
    let url = queue_url(&sqs, &queue).await;
    let (bodies, counts) = drain(&sqs, &url).await;
    assert_eq!(bodies.len(), 400);
    assert!(counts.values().all(|n| *n == 1), "a record arrived twice");
}

#[tokio::test(flavor = "multi_thread")]
async fn s3_resetting_connections_keeps_the_checkpoint_in_the_journal_until_it_heals() {
    let (Some(toxi), Some(a)) = (Toxiproxy::from_env(), aws()) else {
        return;
    };
    let (s3, _) = sdk(&a).await;
    let sim = start_sim(SimConfig::new(data(200, 300))).await;
    let proxy = toxi.proxy("s3", a.s3.trim_start_matches("http://"));
    let reset = proxy.toxic("reset_peer", "upstream", json!({"timeout": 0}));
    let bucket = unique("faults-cp");
    let dir = scratch();
    let mut c = with_aws(harvester_for(dir.path(), &sim), &a);
    c.env("AWS_ENDPOINT_URL_S3", proxy.url())
        .env("AWS_MAX_ATTEMPTS", "1")
        .env("S3_HARVEST_TS_BUCKET", &bucket);
    harvest_window(&mut c, 300_000_000, "none");
    let out = run_async(c).await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let j = Journal::open(&journal_path(dir.path())).unwrap();
    let cp = j
        .checkpoint()
        .unwrap()
        .expect("checkpoint kept in the journal");
    assert!(!cp.synced_to_s3);
    assert_eq!(j.next_seq().unwrap(), 200);
    drop(j);

    proxy.remove_toxic(&reset);
    let mut c = with_aws(harvester(dir.path()), &a);
    c.env("AWS_ENDPOINT_URL_S3", proxy.url())
        .env("S3_HARVEST_TS_BUCKET", &bucket)
        .args(["checkpoint"]);
    // `checkpoint` shows both copies; the next harvest (here: an empty window) writes S3.
    let mut h = with_aws(harvester_for(dir.path(), &sim), &a);
    h.env("AWS_ENDPOINT_URL_S3", proxy.url())
        .env("S3_HARVEST_TS_BUCKET", &bucket)
        .args([
            "harvest",
            "-s",
            &compact(t0() + 400_000_000),
            "-e",
            &compact(t0() + 401_000_000),
            "-o",
            "none",
        ]);
    assert_ok(&run_async(h).await);
    let o = s3
        .get_object()
        .bucket(&bucket)
        .key("last-action-timestamp")
        .send()
        .await
        .expect("checkpoint written once S3 answers");
    let text = String::from_utf8(o.body.collect().await.unwrap().into_bytes().to_vec()).unwrap();
    assert_eq!(text.len(), 14, "{text}");
    let out = run_async(c).await;
    assert_ok(&out);
}

/// A TCP front of `upstream` whose first connection is taken and never answered (kept open,
/// read from, silent); every later connection is passed through.
async fn silent_first_connection(upstream: String) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut first = true;
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                return;
            };
            if std::mem::take(&mut first) {
                tokio::spawn(async move {
                    let mut sink = tokio::io::sink();
                    let _ = tokio::io::copy(&mut conn, &mut sink).await;
                });
                continue;
            }
            let upstream = upstream.clone();
            tokio::spawn(async move {
                if let Ok(mut up) = tokio::net::TcpStream::connect(&upstream).await {
                    let _ = tokio::io::copy_bidirectional(&mut conn, &mut up).await;
                }
            });
        }
    });
    format!("http://{addr}")
}

/// An SQS endpoint that takes the connection and never answers (a service out of memory, a
/// proxy gone silent): the attempt is abandoned after `ATTEMPT_TIMEOUT` and sent again, instead
/// of holding the forward there for good (as it did while the SDK had no read timeout).
#[tokio::test(flavor = "multi_thread")]
async fn sqs_that_never_answers_is_abandoned_and_retried() {
    let Some(a) = aws() else {
        return;
    };
    let (_, sqs) = sdk(&a).await;
    let sim = start_sim(SimConfig::new(data(300, 300))).await;
    let dir = scratch();
    let mut c = harvester_for(dir.path(), &sim);
    harvest_window(&mut c, 300_000_000, "none");
    assert_ok(&run_async(c).await);

    let queue = unique("faults-hang");
    sqs.create_queue().queue_name(&queue).send().await.unwrap();
    let front = silent_first_connection(a.sqs.trim_start_matches("http://").to_string()).await;
    let mut c = with_aws(harvester(dir.path()), &a);
    c.env("AWS_ENDPOINT_URL_SQS", &front)
        .env("SQS_QUEUE_NAME", &queue)
        .args(["forward", "-o", "sqs"])
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("stderr.log")).unwrap());
    let mut child = c.spawn().unwrap();
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if started.elapsed() > std::time::Duration::from_secs(120) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the forward still waits for an answer that never comes, two minutes on");
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    let log = std::fs::read_to_string(dir.path().join("stderr.log")).unwrap();
    assert!(status.success(), "{log}");
    assert!(
        started.elapsed() >= harvester_attempt_timeout(),
        "the silent connection was not the one used first"
    );
    let url = queue_url(&sqs, &queue).await;
    let (bodies, counts) = drain(&sqs, &url).await;
    assert_eq!(bodies.len(), 300);
    assert!(counts.values().all(|n| *n == 1), "a record arrived twice");
}

/// `harvester::aws::ATTEMPT_TIMEOUT` (the module is private to the crate).
fn harvester_attempt_timeout() -> std::time::Duration {
    std::time::Duration::from_secs(20)
}
