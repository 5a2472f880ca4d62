//! Shared test helpers: the simulated Opencast, the harvester binary, and the real services.
#![allow(dead_code)]

pub mod toxi;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use harvester::journal::Journal;
use harvester::record::Record;
use harvester::sim::{self, DataConfig, SimConfig, SimHandle};
use harvester::timefmt;

pub const USER: &str = "opencast_system_account";
pub const PASS: &str = "CHANGE_ME";

/// 2016-03-01T12:00:00Z, the start of every test data set.
pub fn t0() -> i64 {
    timefmt::parse_compact("20160301120000", chrono_tz::Tz::UTC).unwrap()
}

pub fn compact(us: i64) -> String {
    timefmt::format_compact(us, chrono_tz::Tz::UTC)
}

/// Data of `n` actions over `secs` seconds from [`t0`].
pub fn data(n: u64, secs: i64) -> DataConfig {
    DataConfig::new(7, n, t0(), t0() + secs * 1_000_000)
}

pub async fn start_sim(cfg: SimConfig) -> SimHandle {
    sim::spawn(cfg, "127.0.0.1:0".parse().unwrap())
        .await
        .expect("simulator starts")
}

/// A scratch directory that is removed at the end of the test.
pub fn scratch() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

/// The harvester binary with a clean environment, run in `dir` (so no stray .env is read).
pub fn harvester(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_harvester"));
    c.env_clear()
        .current_dir(dir)
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("JOURNAL_PATH", dir.join("journal.redb"))
        .env("LOG_LEVEL", "info")
        // The simulated (and hand-made) Opencasts play the DCE build unless a test says
        // otherwise: its requests are the original's, without the probe of OPENCAST_API=auto
        // (tests/stock.rs tests `auto`).
        .env("OPENCAST_API", "windowed");
    c
}

/// The harvester pointed at a simulator with the right credentials.
pub fn harvester_for(dir: &Path, sim: &SimHandle) -> Command {
    let mut c = harvester(dir);
    c.env("MATTERHORN_ENGAGE_HOST", sim.url())
        .env("MATTERHORN_REST_USER", USER)
        .env("MATTERHORN_REST_PASS", PASS)
        .env("OPENCAST_RETRIES", "8");
    c
}

/// Adds `harvest -s t0 -e t0+end_us -o output` to `c` (the window most tests harvest).
pub fn harvest_window(c: &mut Command, end_us: i64, output: &str) {
    c.args([
        "harvest",
        "-s",
        &compact(t0()),
        "-e",
        &compact(t0() + end_us),
        "-o",
        output,
    ]);
}

pub fn run(mut c: Command) -> Output {
    let out = c.output().expect("harvester runs");
    if std::env::var_os("HARVESTER_TEST_VERBOSE").is_some() {
        eprintln!("--- stderr ---\n{}", String::from_utf8_lossy(&out.stderr));
    }
    out
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

pub fn assert_ok(o: &Output) {
    assert!(
        o.status.success(),
        "harvester failed ({:?}):\n{}",
        o.status.code(),
        stderr(o)
    );
}

pub fn stdout_records(o: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {l}"))
        })
        .collect()
}

pub fn journal_path(dir: &Path) -> PathBuf {
    dir.join("journal.redb")
}

/// Every record in the journal, in sequence order.
pub fn journal_records(dir: &Path) -> Vec<Record> {
    let j = Journal::open(&journal_path(dir)).expect("journal opens");
    j.read_from(0, usize::MAX).expect("journal reads").1
}

/// An endpoint of a real service started by `.ci/run`; fails (never skips silently) when absent,
/// unless HARVESTER_ALLOW_SKIP=1 says the caller knowingly runs without services.
pub fn service(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Some(v),
        _ => {
            if std::env::var("HARVESTER_ALLOW_SKIP").as_deref() == Ok("1") {
                eprintln!("SKIPPED: {var} is not set (HARVESTER_ALLOW_SKIP=1)");
                None
            } else {
                panic!(
                    "{var} is not set: this test needs the real service. Run the tests with `bash .ci/run` \
                     (it starts moto_server, ElasticMQ and Elasticsearch), or start them with `bash .ci/services.sh start` \
                     and export the variables it prints"
                );
            }
        }
    }
}

/// The JSON record the compatibility table of opencast-api.md prescribes for a simulated action,
/// computed here independently of the harvester's own code.
pub fn expected_record(sim: &SimHandle, a: &harvester::sim::SimAction) -> serde_json::Value {
    use serde_json::{json, Map, Value};
    let d = chrono::DateTime::<chrono::Utc>::from_timestamp_micros(a.created_us).unwrap();
    let micros = a.created_us.rem_euclid(1_000_000);
    let ts = if micros == 0 {
        d.format("%Y-%m-%dT%H:%M:%S+00:00").to_string()
    } else {
        format!("{}.{:06}+00:00", d.format("%Y-%m-%dT%H:%M:%S"), micros)
    };
    let mut r = Map::new();
    r.insert("action_id".into(), json!(a.id));
    r.insert("timestamp".into(), json!(ts));
    r.insert("mpid".into(), json!(a.mpid));
    r.insert("session_id".into(), json!(a.session_id));
    r.insert(
        "huid".into(),
        json!(a.user_id.clone().unwrap_or_else(|| "None".into())),
    );
    r.insert("useragent".into(), json!(a.user_agent));
    r.insert(
        "action".into(),
        json!({"type": a.kind, "inpoint": a.inpoint, "outpoint": a.inpoint + 10, "length": 10,
               "is_playing": a.is_playing > 0}),
    );
    let ips: Vec<String> = a.user_ip.split(',').map(|s| s.trim().to_string()).collect();
    r.insert("ip".into(), json!(ips[0]));
    for (i, p) in ips.iter().skip(1).enumerate() {
        r.insert(format!("proxy{}", i + 1), json!(p));
    }
    r.insert(
        "is_live".into(),
        json!(if a.is_playing == 2 { 1 } else { 0 }),
    );
    let episode = match a.episode {
        None => json!({}),
        Some(k) => {
            let e = sim.data.episode_json(k);
            let mp = &e["mediapackage"];
            let s = |v: &Value| match v {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            };
            let mut ep = Map::new();
            ep.insert("title".into(), json!(s(&mp["title"])));
            ep.insert(
                "duration".into(),
                json!(s(&mp["duration"]).map(|d| d.parse::<i64>().unwrap())),
            );
            let start = s(&mp["start"]).or_else(|| {
                s(&e["dcCreated"]).map(|c| {
                    chrono::DateTime::parse_from_rfc3339(&c)
                        .unwrap()
                        .with_timezone(&chrono::Utc)
                        .format("%Y-%m-%dT%H:%M:%SZ")
                        .to_string()
                })
            });
            ep.insert("start".into(), json!(start));
            if let (Some(series), Some(title)) = (s(&mp["series"]), s(&mp["seriestitle"])) {
                ep.insert("course".into(), json!(title));
                ep.insert("series".into(), json!(series));
                // Only a DCE series id (eleven digits) holds a year, term and course number.
                if series.len() == 11 && series.bytes().all(|b| b.is_ascii_digit()) {
                    ep.insert("year".into(), json!(series[0..4]));
                    ep.insert("term".into(), json!(series[4..6]));
                    ep.insert("cdn".into(), json!(series[6..11]));
                }
            }
            if let Some(t) = s(&e["dcType"]) {
                ep.insert("type".into(), json!(t));
            }
            if let Some(t) = s(&e["dcDescription"]) {
                ep.insert("description".into(), json!(t));
            }
            Value::Object(ep)
        }
    };
    r.insert("episode".into(), episode);
    Value::Object(r)
}

/// A loopback port nobody listens on (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Drains a queue: body by action id, and how many times each id arrived.
pub async fn drain(
    sqs: &aws_sdk_sqs::Client,
    url: &str,
) -> (HashMap<i64, String>, HashMap<i64, usize>) {
    let mut bodies = HashMap::new();
    let mut counts = HashMap::new();
    let mut empty = 0;
    while empty < 3 {
        let out = sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .wait_time_seconds(0)
            .visibility_timeout(300)
            .send()
            .await
            .unwrap();
        let msgs = out.messages();
        if msgs.is_empty() {
            empty += 1;
            continue;
        }
        empty = 0;
        // Delete what was read: a FIFO group delivers nothing more while messages are in flight.
        let mut del = sqs.delete_message_batch().queue_url(url);
        for (i, m) in msgs.iter().enumerate() {
            del = del.entries(
                aws_sdk_sqs::types::DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(m.receipt_handle().unwrap())
                    .build()
                    .unwrap(),
            );
        }
        del.send().await.unwrap();
        for m in msgs {
            let body = m.body().unwrap().to_string();
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            let id = v["action_id"].as_i64().unwrap();
            *counts.entry(id).or_insert(0) += 1;
            bodies.insert(id, body);
        }
    }
    (bodies, counts)
}

/// The S3 and SQS endpoints of the test services.
pub struct Aws {
    pub s3: String,
    pub sqs: String,
}

pub fn aws() -> Option<Aws> {
    Some(Aws {
        s3: service("HARVESTER_TEST_S3_ENDPOINT")?,
        sqs: service("HARVESTER_TEST_SQS_ENDPOINT")?,
    })
}

/// The harvester command with the test services' AWS settings.
pub fn with_aws(mut c: Command, a: &Aws) -> Command {
    c.env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ENDPOINT_URL_S3", &a.s3)
        .env("AWS_ENDPOINT_URL_SQS", &a.sqs);
    c
}

/// SDK clients of the test S3 and SQS.
pub async fn sdk(a: &Aws) -> (aws_sdk_s3::Client, aws_sdk_sqs::Client) {
    let creds = aws_sdk_s3::config::Credentials::new("test", "test", None, None, "tests");
    let base = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(creds)
        .load()
        .await;
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&base)
            .endpoint_url(&a.s3)
            .force_path_style(true)
            .build(),
    );
    let sqs = aws_sdk_sqs::Client::from_conf(
        aws_sdk_sqs::config::Builder::from(&base)
            .endpoint_url(&a.sqs)
            .build(),
    );
    (s3, sqs)
}

/// A name no other test run uses.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}-{}", std::process::id(), rand_suffix())
}

fn rand_suffix() -> u64 {
    use std::time::{SystemTime, UNIX_EPOCH};
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        % 1_000_000_007
}

/// The cells `journal dump --format csv` promises for a record's JSON (README, "CSV"): nested
/// objects flattened into dotted names, a string as it is, a number in decimal, a boolean as
/// `true`/`false`, proxies past `proxy4` as a JSON array in `more_proxies`. `null`, a missing
/// field and `""` are all the empty cell, so empty cells are left out of the map.
pub fn csv_cells_of_json(rec: &serde_json::Value) -> std::collections::BTreeMap<String, String> {
    use serde_json::Value;
    fn text(v: &Value) -> String {
        match v {
            Value::Null => String::new(),
            Value::String(s) => s.clone(),
            Value::Bool(b) => b.to_string(),
            Value::Number(n) => n.to_string(),
            other => other.to_string(),
        }
    }
    let mut cells = std::collections::BTreeMap::new();
    let mut more: Vec<(u64, String)> = Vec::new();
    for (k, v) in rec.as_object().expect("a record is an object") {
        if let Value::Object(inner) = v {
            for (ik, iv) in inner {
                cells.insert(format!("{k}.{ik}"), text(iv));
            }
        } else if let Some(n) = k
            .strip_prefix("proxy")
            .and_then(|n| n.parse::<u64>().ok())
            .filter(|n| *n > 4)
        {
            more.push((n, text(v)));
        } else {
            cells.insert(k.clone(), text(v));
        }
    }
    if !more.is_empty() {
        more.sort();
        let list: Vec<String> = more.into_iter().map(|(_, s)| s).collect();
        cells.insert("more_proxies".into(), serde_json::to_string(&list).unwrap());
    }
    cells.retain(|_, v| !v.is_empty());
    cells
}

/// Parses `journal dump --format csv` output with a CSV reader and checks it holds the same
/// records as `json` (the JSON dump), row for row; returns the header.
pub fn assert_csv_equals_json(csv: &[u8], json: &[serde_json::Value]) -> Vec<String> {
    let mut r = csv::ReaderBuilder::new().from_reader(csv);
    let header: Vec<String> = r.headers().unwrap().iter().map(str::to_string).collect();
    let rows: Vec<csv::StringRecord> = r.records().map(|r| r.unwrap()).collect();
    assert_eq!(rows.len(), json.len(), "as many rows as records");
    for (n, (row, rec)) in rows.iter().zip(json).enumerate() {
        assert_eq!(row.len(), header.len(), "row {n} has every column");
        let mut got: std::collections::BTreeMap<String, String> = header
            .iter()
            .cloned()
            .zip(row.iter().map(str::to_string))
            .collect();
        got.retain(|_, v| !v.is_empty());
        let want = csv_cells_of_json(rec);
        for k in want.keys() {
            assert!(header.contains(k), "the JSON field {k} has no column");
        }
        assert_eq!(got, want, "row {n}");
    }
    header
}

/// The URL of the SQS queue named `name`.
pub async fn queue_url(sqs: &aws_sdk_sqs::Client, name: &str) -> String {
    sqs.get_queue_url()
        .queue_name(name)
        .send()
        .await
        .unwrap()
        .queue_url()
        .unwrap()
        .to_string()
}

/// The arguments of `harvester run` as the service tests start it: to `output`, 10-second
/// windows, a harvest every half second, metrics (and the API) on `addr`.
pub fn run_service_args<'a>(output: &'a str, addr: &'a str) -> [&'a str; 9] {
    [
        "run",
        "-o",
        output,
        "-i",
        "10",
        "--every",
        "0.5",
        "--metrics-addr",
        addr,
    ]
}
