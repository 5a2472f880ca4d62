//! What a sink cannot take, and crashes around sinks (issue 10, points 1 and 12): a record SQS
//! refuses is a dead letter and never jams the queue or moves a cursor without delivery;
//! characters SQS refuses arrive escaped; dead letters can be replayed once; stdout output keeps
//! whole lines across kills; `harvest -o` forwards while it harvests; the journal is closed
//! cleanly before the process ends.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use harvester::journal::{codec, DeadLetter, Journal, PageCommit, SinkRefusal};
use harvester::record::{ActionBlock, Record};
use harvester::sim::{Faults, SimConfig};

struct Aws {
    sqs: String,
}

fn aws() -> Option<Aws> {
    Some(Aws {
        sqs: service("HARVESTER_TEST_SQS_ENDPOINT")?,
    })
}

fn with_sqs(mut c: Command, endpoint: &str, queue: &str) -> Command {
    c.env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ENDPOINT_URL_SQS", endpoint)
        .env("SQS_QUEUE_NAME", queue);
    c
}

async fn sqs_client(a: &Aws) -> aws_sdk_sqs::Client {
    let creds = aws_sdk_sqs::config::Credentials::new("test", "test", None, None, "tests");
    let base = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(creds)
        .load()
        .await;
    aws_sdk_sqs::Client::from_conf(
        aws_sdk_sqs::config::Builder::from(&base)
            .endpoint_url(&a.sqs)
            .build(),
    )
}

fn unique(prefix: &str) -> String {
    use std::time::{SystemTime, UNIX_EPOCH};
    let n = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos()
        % 1_000_000_007;
    format!("{prefix}-{}-{n}", std::process::id())
}

async fn run_async(c: Command) -> std::process::Output {
    tokio::task::spawn_blocking(move || run(c)).await.unwrap()
}

/// A plain record with action id `id` and user agent `ua`.
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

/// Journals `records` as one page in the test's journal.
fn journal_with(dir: &Path, records: &[Record]) {
    let j = Journal::open(&journal_path(dir)).unwrap();
    j.commit_page(PageCommit {
        ids: records.iter().map(|r| r.action_id).collect(),
        block: Some(codec::encode_block(records)),
        ..PageCommit::default()
    })
    .unwrap();
}

fn dead_letter_lines(dir: &Path) -> Vec<serde_json::Value> {
    let mut c = harvester(dir);
    c.args(["journal", "dump", "--dead-letters"]);
    let o = run(c);
    assert_ok(&o);
    stdout_records(&o)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_record_too_large_for_sqs_is_a_dead_letter_and_the_rest_arrive() {
    let Some(a) = aws() else { return };
    let sqs = sqs_client(&a).await;
    let dir = scratch();
    let queue = unique("big");
    // 41 records; the 21st has a 300 KB user agent (over the queue's 256 KiB maximum).
    let mut records: Vec<Record> = (1..=41).map(|i| rec(i, "Mozilla/5.0")).collect();
    records[20].useragent = Some("x".repeat(300_000));
    journal_with(dir.path(), &records);

    let mut c = with_sqs(harvester(dir.path()), &a.sqs, &queue);
    c.args(["forward", "-o", "sqs"]);
    let o = run_async(c).await;
    assert_ok(&o);

    let (bodies, counts) = drain(&sqs, &queue_url(&sqs, &queue).await).await;
    let mut got: Vec<i64> = bodies.keys().copied().collect();
    got.sort_unstable();
    let want: Vec<i64> = (1..=41).filter(|i| *i != 21).collect();
    assert_eq!(got, want, "every other record arrives");
    assert!(counts.values().all(|n| *n == 1));
    for r in records.iter().filter(|r| r.action_id != 21) {
        assert_eq!(
            bodies[&r.action_id],
            r.to_json(),
            "bodies are the stdout JSON, byte for byte"
        );
    }
    let j = Journal::open(&journal_path(dir.path())).unwrap();
    assert_eq!(j.cursor(&format!("sqs:{queue}")).unwrap(), 41);
    drop(j);

    let dead = dead_letter_lines(dir.path());
    assert_eq!(dead.len(), 1, "{dead:?}");
    let d = &dead[0];
    assert_eq!(d["sink"], "sqs");
    assert_eq!(d["target"], queue.as_str());
    assert_eq!(d["action_id"], 21);
    assert_eq!(d["seq"], 20);
    assert!(d["delivered_at"].is_null());
    let reason = d["reason"].as_str().unwrap();
    assert!(
        reason.contains("MessageTooLong") && reason.contains("262144"),
        "SQS's reason and the limit: {reason}"
    );
    let raw: serde_json::Value = serde_json::from_str(d["raw"].as_str().unwrap()).unwrap();
    assert_eq!(raw["action_id"], 21);

    // The next forward goes on: nothing jams, nothing is sent twice.
    let mut c = with_sqs(harvester(dir.path()), &a.sqs, &queue);
    c.args(["forward", "-o", "sqs"]);
    assert_ok(&run_async(c).await);
    let (again, _) = drain(&sqs, &queue_url(&sqs, &queue).await).await;
    assert!(again.is_empty());
    assert_eq!(dead_letter_lines(dir.path()).len(), 1);

    // A replay to a queue that still cannot take it leaves it undelivered, and says so.
    let mut c = with_sqs(harvester(dir.path()), &a.sqs, &queue);
    c.args(["journal", "replay", "--dead-letters", "-o", "sqs"]);
    let o = run_async(c).await;
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("refused again"), "{}", stderr(&o));
    assert!(dead_letter_lines(dir.path())[0]["delivered_at"].is_null());
}

#[tokio::test(flavor = "multi_thread")]
async fn characters_sqs_refuses_arrive_escaped_and_parse_to_the_same_value() {
    let Some(a) = aws() else { return };
    let sqs = sqs_client(&a).await;
    let dir = scratch();
    let queue = unique("nonchar");
    let odd = "agent \u{FFFE} and \u{FFFF}, \u{FDD0}, \u{10FFFF} \u{7F} end";
    let records = vec![rec(1, "plain"), rec(2, odd), rec(3, "plain too")];
    journal_with(dir.path(), &records);

    let mut c = with_sqs(harvester(dir.path()), &a.sqs, &queue);
    c.args(["forward", "-o", "sqs"]);
    let o = run_async(c).await;
    assert_ok(&o);

    let (bodies, _) = drain(&sqs, &queue_url(&sqs, &queue).await).await;
    assert_eq!(bodies.len(), 3);
    let v: serde_json::Value = serde_json::from_str(&bodies[&2]).unwrap();
    assert_eq!(v["useragent"], odd, "the value survives");
    let want: serde_json::Value = serde_json::from_str(&records[1].to_json()).unwrap();
    assert_eq!(v, want);
    assert!(bodies[&2].contains("\\ufffe") && bodies[&2].contains("\\uffff"));
    assert_eq!(
        bodies[&1],
        records[0].to_json(),
        "other bodies are unchanged"
    );
    assert!(dead_letter_lines(dir.path()).is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dead_letter_is_replayed_once_its_cause_is_fixed() {
    let Some(a) = aws() else { return };
    let sqs = sqs_client(&a).await;
    let dir = scratch();
    let queue = unique("replay");
    let records: Vec<Record> = (1..=3).map(|i| rec(i, "ua")).collect();
    journal_with(dir.path(), &records);
    // A record SQS refused earlier for a cause since fixed (a queue limit raised, say).
    let j = Journal::open(&journal_path(dir.path())).unwrap();
    j.add_sink_dead_letters(vec![(
        DeadLetter {
            source: format!("sqs queue {queue}"),
            raw: records[1].to_json(),
            reason: "SQS refused action 2: MessageTooLong".into(),
            at_us: t0(),
        },
        SinkRefusal {
            sink: "sqs".into(),
            target: queue.clone(),
            action_id: 2,
            seq: 1,
            key: format!("sqs:{queue}:2"),
            delivered_at_us: None,
        },
    )])
    .unwrap();
    drop(j);

    // `-o -` is not where dead letters go.
    let mut c = harvester(dir.path());
    c.args(["journal", "replay", "--dead-letters", "-o", "-"]);
    assert_eq!(run(c).status.code(), Some(2));

    for round in 0..2 {
        let mut c = with_sqs(harvester(dir.path()), &a.sqs, &queue);
        c.args(["journal", "replay", "--dead-letters", "-o", "sqs"]);
        assert_ok(&run_async(c).await);
        let (bodies, _) = drain(&sqs, &queue_url(&sqs, &queue).await).await;
        if round == 0 {
            assert_eq!(bodies.keys().copied().collect::<Vec<_>>(), vec![2]);
            assert_eq!(bodies[&2], records[1].to_json());
        } else {
            assert!(
                bodies.is_empty(),
                "a delivered dead letter is never sent twice"
            );
        }
    }
    let dead = dead_letter_lines(dir.path());
    assert_eq!(dead.len(), 1);
    assert!(dead[0]["delivered_at"].is_string(), "{dead:?}");
    // The regular cursor did not move.
    let j = Journal::open(&journal_path(dir.path())).unwrap();
    assert_eq!(j.cursor(&format!("sqs:{queue}")).unwrap(), 0);
}

/// Runs `forward -o -` appending to `out` (as `>> out` does).
fn forward_to_file(dir: &Path, out: &Path) -> Command {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(out)
        .unwrap();
    let mut c = harvester(dir);
    c.args(["forward", "-o", "-"])
        .stdout(Stdio::from(f))
        .stderr(Stdio::null());
    c
}

/// Every line of `out` is a whole JSON record; returns how often each action id appears.
fn whole_lines(out: &Path) -> HashMap<i64, usize> {
    let text = std::fs::read_to_string(out).unwrap();
    assert!(text.is_empty() || text.ends_with('\n'));
    let mut ids = HashMap::new();
    for (n, l) in text.lines().enumerate() {
        let v: serde_json::Value = serde_json::from_str(l)
            .unwrap_or_else(|e| panic!("line {} is torn ({e}): {:.120}", n + 1, l));
        *ids.entry(v["action_id"].as_i64().unwrap()).or_insert(0) += 1;
    }
    ids
}

#[test]
fn forward_to_a_file_with_a_torn_last_line_writes_whole_lines() {
    let dir = scratch();
    let records: Vec<Record> = (1..=50).map(|i| rec(i, "ua")).collect();
    journal_with(dir.path(), &records);
    let out = dir.path().join("out.jsonl");
    // What a kill in the middle of a write leaves: whole lines, then half a record.
    let half = records[0].to_json();
    std::fs::write(&out, format!("{}\n{}", records[0].to_json(), &half[..40])).unwrap();
    let o = forward_to_file(dir.path(), &out)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert_ok(&o);
    let ids = whole_lines(&out);
    assert_eq!(ids.len(), 50);
    assert_eq!(ids[&1], 2, "the earlier whole line stays");
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_during_forward_to_a_file_leaves_only_whole_lines() {
    let dir = scratch();
    let ua = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko)".repeat(4);
    let records: Vec<Record> = (1..=60_000).map(|i| rec(i, &ua)).collect();
    journal_with(dir.path(), &records);
    let out = dir.path().join("out.jsonl");
    for kill_ms in [40u64, 90, 150, 60, 250, 120, 30, 200] {
        let mut child = forward_to_file(dir.path(), &out).spawn().unwrap();
        tokio::time::sleep(Duration::from_millis(kill_ms)).await;
        let _ = child.kill();
        let _ = tokio::task::spawn_blocking(move || child.wait())
            .await
            .unwrap();
    }
    let o = forward_to_file(dir.path(), &out).status().unwrap();
    assert!(o.success());
    let ids = whole_lines(&out);
    assert_eq!(ids.len(), 60_000, "every record arrived at least once");
}

#[tokio::test(flavor = "multi_thread")]
async fn harvest_forwards_while_it_harvests_so_a_killed_run_made_progress() {
    let Some(a) = aws() else { return };
    let sqs = sqs_client(&a).await;
    const N: u64 = 3000;
    let mut cfg = SimConfig::new(data(N, 3600));
    // Slow pages: the window takes far longer than the kill below.
    cfg.faults = Faults {
        delay: Duration::from_millis(300),
        ..Faults::default()
    };
    let sim = start_sim(cfg).await;
    let dir = scratch();
    let queue = unique("follow");
    let harvest = |dir: &Path| {
        let mut c = with_sqs(harvester_for(dir, &sim), &a.sqs, &queue);
        harvest_window(&mut c, 3_600_000_000, "sqs");
        c.args(["-b", "10"]);
        c
    };
    let mut c = harvest(dir.path());
    c.stdout(Stdio::null()).stderr(Stdio::null());
    let mut child = c.spawn().unwrap();
    // Forwarding shows in the queue while the window is still being fetched.
    let started = Instant::now();
    let url = loop {
        if let Ok(o) = sqs.get_queue_url().queue_name(&queue).send().await {
            break o.queue_url().unwrap().to_string();
        }
        assert!(child.try_wait().unwrap().is_none(), "harvest ended early");
        assert!(started.elapsed() < Duration::from_secs(30));
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    loop {
        let n = sqs
            .get_queue_attributes()
            .queue_url(&url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
            .send()
            .await
            .unwrap()
            .attributes()
            .and_then(|m| {
                m.get(&aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
                    .cloned()
            })
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        if n > 0 {
            // The cursor is committed right after SQS acknowledges: give it that moment, so
            // the kill below does not fall between the two.
            tokio::time::sleep(Duration::from_millis(1000)).await;
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the harvest ended before anything was forwarded: forwarding waited for the whole window"
        );
        assert!(started.elapsed() < Duration::from_secs(60));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = child.kill();
    let _ = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap();
    let j = Journal::open(&journal_path(dir.path())).unwrap();
    let cursor = j.cursor(&format!("sqs:{queue}")).unwrap();
    let journaled = j.next_seq().unwrap();
    drop(j);
    assert!(cursor > 0, "the killed run moved the SQS cursor");
    assert!(journaled < N, "killed before the whole window was fetched");

    // The rerun completes; every action arrives.
    let o = run_async(harvest(dir.path())).await;
    assert_ok(&o);
    let (bodies, _) = drain(&sqs, &url).await;
    assert_eq!(bodies.len() as u64, N);
    let j = Journal::open(&journal_path(dir.path())).unwrap();
    assert_eq!(j.cursor(&format!("sqs:{queue}")).unwrap(), N);
}

/// A TCP server that accepts connections and never answers: a sink that hangs.
fn black_hole() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in l.incoming().flatten() {
            held.push(s);
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread")]
async fn run_stopped_while_a_sink_hangs_closes_the_journal_cleanly() {
    let now = harvester::timefmt::floor_second(harvester::timefmt::now_us());
    let sim = start_sim(SimConfig::new(harvester::sim::DataConfig::new(
        3,
        200,
        now - 300_000_000,
        now - 1_000_000,
    )))
    .await;
    let dir = scratch();
    let port = black_hole();
    let addr = format!("127.0.0.1:{}", free_port());
    let mut c = with_sqs(
        harvester_for(dir.path(), &sim),
        &format!("http://127.0.0.1:{port}"),
        "hangs",
    );
    c.args(["run", "-o", "sqs", "-i", "10", "--metrics-addr", &addr])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = c.spawn().unwrap();
    // Wait until the harvest is journaled and the forwarder is stuck in its call to the sink.
    let t = Instant::now();
    loop {
        let ok = reqwest::get(format!("http://{addr}/metrics"))
            .await
            .ok()
            .map(|r| r.status().is_success())
            .unwrap_or(false);
        if ok {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(20), "run did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let ok = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    let t = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(t.elapsed() < Duration::from_secs(40), "run did not stop");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(status.success(), "{status:?}");

    // redb calls the repair callback only when the file was not closed cleanly.
    let repaired = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = repaired.clone();
    let db = redb::Database::builder()
        .set_repair_callback(move |_| flag.store(true, std::sync::atomic::Ordering::SeqCst))
        .open(journal_path(dir.path()))
        .unwrap();
    drop(db);
    assert!(
        !repaired.load(std::sync::atomic::Ordering::SeqCst),
        "the journal was left open at exit: redb had to repair it"
    );
    let j = Journal::open(&journal_path(dir.path())).unwrap();
    assert_eq!(j.next_seq().unwrap(), 200);
    assert_eq!(j.cursor("sqs:hangs").unwrap(), 0);
}
