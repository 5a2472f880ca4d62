//! Issue 21, point 1: pseudonymized ids and shortened addresses at every sink. A canary journal
//! of known ids and addresses goes out through stdout, SQS, Elasticsearch, a replay and the
//! xAPI dump with `PSEUDONYMIZE_KEY` and `IP_PRIVACY` set; none of its raw values may reach any
//! of them, the journal keeps them all, and the pseudonyms are what `openssl dgst -hmac` gives.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use harvester::journal::{codec, Journal, PageCommit};
use harvester::record::{ActionBlock, EpisodeBlock, Record};
use serde_json::{json, Value};

const KEY: &str = "canary-key-0123456789-abcdefghij-XYZ";

/// Raw values that must never leave through a sink.
const HUIDS: [&str; 3] = ["canary-huid-4711", "canary-huid-0815", "jdoe@example.edu"];
const SESSIONS: [&str; 3] = [
    "canarysession0001",
    "canarysession0002",
    "canarysession0003",
];
const ADDRESSES: [&str; 6] = [
    "128.103.1.1",
    "10.77.66.55",
    "2001:4860:4860::8888",
    "203.0.113.77",
    "198.51.100.23",
    "81.2.69.142",
];

fn record(id: i64, huid: Option<&str>, session: &str, chain: Option<&str>, kind: &str) -> Record {
    Record {
        action_id: id,
        created_us: 1_458_000_000_000_000 + id * 5_000_000,
        mpid: "mp-canary".into(),
        session_id: session.into(),
        huid: huid.map(str::to_string),
        useragent: Some("Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0".into()),
        action: ActionBlock {
            kind: Some(kind.into()),
            inpoint: Some(id * 5),
            outpoint: Some(id * 5 + 5),
            length: Some(5),
            is_playing: true,
        },
        ip_chain: chain.map(str::to_string),
        is_live: false,
        episode: Some(std::sync::Arc::new(EpisodeBlock {
            title: Some("Canary lecture".into()),
            duration: Some(600_000),
            start: Some("2016-03-01T10:00:00Z".into()),
            series: Some(("Course 101".into(), "20150320101".into())),
            kind: None,
            description: None,
        })),
    }
}

/// Every case: logged-in users, the not-logged-in markers, IPv4, IPv6, a proxy chain, a port,
/// a forged chain element, `-omitted-`, no address.
fn records() -> Vec<Record> {
    vec![
        record(
            1,
            Some(HUIDS[0]),
            SESSIONS[0],
            Some("128.103.1.1, 10.77.66.55"),
            "PLAY",
        ),
        record(
            2,
            Some(HUIDS[0]),
            SESSIONS[0],
            Some("128.103.1.1, 10.77.66.55"),
            "HEARTBEAT",
        ),
        record(
            3,
            Some(HUIDS[1]),
            SESSIONS[1],
            Some("2001:4860:4860::8888"),
            "PAUSE",
        ),
        record(
            4,
            Some(HUIDS[2]),
            SESSIONS[2],
            Some("203.0.113.77:51234"),
            "SEEK",
        ),
        record(
            5,
            Some("anonymous"),
            SESSIONS[2],
            Some("198.51.100.23, evil-header"),
            "PLAY",
        ),
        record(
            6,
            Some("-omitted-"),
            "-omitted-",
            Some("-omitted-"),
            "HEARTBEAT",
        ),
        record(7, None, SESSIONS[1], None, "PLAY"),
        record(8, Some(HUIDS[1]), SESSIONS[1], Some("81.2.69.142"), "PAUSE"),
    ]
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

fn mmdb(dir: &Path) -> PathBuf {
    let out = dir.join("city-a.mmdb");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/enrich/make_mmdb.py");
    let st = Command::new("python3")
        .arg(&script)
        .arg(&out)
        .arg("city-a")
        .status()
        .expect("python3 runs");
    assert!(
        st.success(),
        "{} failed: install mmdb-writer",
        script.display()
    );
    out
}

/// The harvester with the privacy settings on.
fn private(dir: &Path, ip: &str) -> Command {
    let mut c = harvester(dir);
    c.env("PSEUDONYMIZE_KEY", KEY).env("IP_PRIVACY", ip);
    c
}

/// What `openssl dgst -sha256 -hmac KEY` says of `value`.
fn openssl_hmac(value: &str) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(r#"printf %s "$V" | openssl dgst -sha256 -hmac "$K""#)
        .env("V", value)
        .env("K", KEY)
        .output()
        .expect("openssl runs");
    assert!(out.status.success());
    let s = String::from_utf8(out.stdout).unwrap();
    s.trim().rsplit(' ').next().unwrap().to_string()
}

/// Fails when any raw id or address of the canary journal is in `text` (`what` says where).
fn assert_no_canary(what: &str, text: &str) {
    assert!(!text.is_empty(), "{what}: nothing arrived");
    for raw in HUIDS.iter().chain(&SESSIONS).chain(&ADDRESSES) {
        assert!(
            !text.contains(raw),
            "{what} holds the raw value {raw}:\n{text}"
        );
    }
    // Nor the full forms of the truncated addresses' hosts.
    for host in ["10.77.66.55", ":8888", "51234"] {
        assert!(!text.contains(host), "{what} holds {host}:\n{text}");
    }
}

fn lines(o: &std::process::Output) -> Vec<Value> {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// stdout, a replay and `journal dump --pseudonymize` show the same thing, and it holds no raw
/// value; the pseudonyms are openssl's; the markers stay; GeoIP is looked up before the address
/// is cut; the journal still holds everything as Opencast sent it.
#[test]
fn no_raw_id_or_address_reaches_stdout_replay_or_dump() {
    let dir = scratch();
    journal_with(dir.path(), &records());
    let db = mmdb(dir.path());

    let mut c = private(dir.path(), "truncate");
    c.env("GEOIP_DATABASE", &db)
        .env("ENRICH_SINKS", "all")
        .args(["forward", "-o", "-"]);
    let out = run(c);
    assert_ok(&out);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert_no_canary("forward -o -", &text);
    assert_no_canary("the log", &stderr(&out));
    let recs = lines(&out);
    assert_eq!(recs.len(), 8);

    assert_eq!(recs[0]["huid"], openssl_hmac(HUIDS[0]));
    assert_eq!(recs[0]["session_id"], openssl_hmac(SESSIONS[0]));
    assert_eq!(recs[0]["ip"], "128.103.1.0");
    assert_eq!(recs[0]["proxy1"], "10.77.66.0");
    // Located from the full address (the test database knows 128.103.1.1 as Cambridge, MA), with
    // the object's own `ip` cut as well.
    assert_eq!(recs[0]["geoip"]["city_name"], "Cambridge", "{}", recs[0]);
    assert_eq!(recs[0]["geoip"]["ip"], "128.103.1.0");
    assert_eq!(recs[2]["ip"], "2001:4860:4860::");
    assert_eq!(recs[3]["huid"], openssl_hmac(HUIDS[2]));
    assert_eq!(recs[3]["ip"], "203.0.113.0");
    // A chain with an element that is no address is not sent at all.
    assert_eq!(recs[4]["huid"], "anonymous");
    assert_eq!(recs[4]["ip"], Value::Null);
    assert!(recs[4].get("proxy1").is_none());
    assert_eq!(recs[5]["huid"], "-omitted-");
    assert_eq!(recs[5]["session_id"], "-omitted-");
    assert_eq!(recs[5]["ip"], "-omitted-");
    assert_eq!(recs[6]["huid"], "None");
    assert_eq!(recs[6]["ip"], Value::Null);
    // Everything else is the record as it was.
    assert_eq!(recs[0]["action_id"], 1);
    assert_eq!(recs[0]["episode"]["title"], "Canary lecture");
    assert_eq!(
        recs[0]["useragent"],
        json!("Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0")
    );

    // `journal dump --pseudonymize` shows exactly what the sink got (without enrichment).
    let mut c = private(dir.path(), "truncate");
    c.args(["journal", "dump", "--pseudonymize"]);
    let dump = run(c);
    assert_ok(&dump);
    let dumped = lines(&dump);
    for (d, r) in dumped.iter().zip(&recs) {
        let mut r = r.clone();
        r.as_object_mut().unwrap().remove("geoip");
        r.as_object_mut().unwrap().remove("ua");
        assert_eq!(*d, r);
    }
    // CSV too.
    let mut c = private(dir.path(), "truncate");
    c.args(["journal", "dump", "--pseudonymize", "--format", "csv"]);
    let csv = run(c);
    assert_ok(&csv);
    assert_no_canary(
        "journal dump --pseudonymize --format csv",
        &String::from_utf8_lossy(&csv.stdout),
    );

    // A replay gets the same treatment, and `drop` leaves no address at all.
    let mut c = private(dir.path(), "drop");
    c.args(["journal", "replay", "--seq", "0..", "-o", "-"]);
    let replay = run(c);
    assert_ok(&replay);
    assert_no_canary(
        "journal replay -o -",
        &String::from_utf8_lossy(&replay.stdout),
    );
    for r in lines(&replay) {
        assert_eq!(r["ip"], Value::Null, "{r}");
        assert!(
            !r.as_object()
                .unwrap()
                .keys()
                .any(|k| k.starts_with("proxy")),
            "{r}"
        );
    }

    // The journal keeps what Opencast sent.
    let mut c = harvester(dir.path());
    c.args(["journal", "dump"]);
    let raw = run(c);
    let raw = String::from_utf8_lossy(&raw.stdout);
    for v in HUIDS.iter().chain(&SESSIONS) {
        assert!(raw.contains(v), "the journal lost {v}");
    }
}

/// SQS and Elasticsearch get the same treatment (the real ElasticMQ and node).
#[tokio::test(flavor = "multi_thread")]
async fn no_raw_id_or_address_reaches_sqs_or_elasticsearch() {
    let (Some(a), Some(es)) = (aws(), service("HARVESTER_TEST_ES_URL")) else {
        return;
    };
    let dir = scratch();
    journal_with(dir.path(), &records());
    let db = mmdb(dir.path());
    let queue = unique("t-pseudo");
    let index = unique("t-pseudo").to_lowercase();
    let mut c = with_aws(private(dir.path(), "truncate"), &a);
    c.env("SQS_QUEUE_NAME", &queue)
        .env("ELASTICSEARCH_HOST", &es)
        .env("ES_ACTION_INDEX", &index)
        .env("GEOIP_DATABASE", &db)
        .args(["forward", "-o", "sqs,es"]);
    let out = run(c);
    assert_ok(&out);
    assert_no_canary("the log", &stderr(&out));

    let (_, sqs) = sdk(&a).await;
    let url = queue_url(&sqs, &queue).await;
    let (bodies, counts) = drain(&sqs, &url).await;
    assert_eq!(counts.len(), 8);
    let all: String = bodies.values().cloned().collect::<Vec<_>>().join("\n");
    assert_no_canary("the SQS messages", &all);
    let one: Value = serde_json::from_str(&bodies[&1]).unwrap();
    assert_eq!(one["huid"], openssl_hmac(HUIDS[0]));

    let http = reqwest::Client::new();
    let base = es.trim_end_matches('/');
    http.post(format!("{base}/{index}/_refresh"))
        .send()
        .await
        .unwrap();
    let v: Value = http
        .post(format!("{base}/{index}/_search"))
        .json(&json!({"size": 100}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let hits = v["hits"]["hits"].as_array().expect("hits");
    assert_eq!(hits.len(), 8, "{v}");
    assert_no_canary("the Elasticsearch documents", &v.to_string());
    let doc = hits
        .iter()
        .find(|h| h["_id"] == "1")
        .map(|h| &h["_source"])
        .unwrap();
    assert_eq!(doc["ip"], "128.103.1.0");
    assert_eq!(doc["geoip"]["city_name"], "Cambridge");

    // The xAPI dump and the LRS (Ralph): actors and session ids are pseudonyms.
    let (Some(lrs), Some(user), Some(pass)) = (
        service("HARVESTER_TEST_XAPI_URL"),
        service("HARVESTER_TEST_XAPI_USER"),
        service("HARVESTER_TEST_XAPI_PASS"),
    ) else {
        return;
    };
    let home = format!("https://{}.example.edu/", unique("t-pseudo-xapi"));
    let xapi = |args: &[&str]| {
        let mut c = private(dir.path(), "truncate");
        c.env("XAPI_ENDPOINT", &lrs)
            .env("XAPI_USERNAME", &user)
            .env("XAPI_PASSWORD", &pass)
            .env("XAPI_HOME_PAGE", &home)
            .args(args);
        run(c)
    };
    let dump = xapi(&["journal", "dump", "--format", "xapi"]);
    assert_ok(&dump);
    let text = String::from_utf8_lossy(&dump.stdout).to_string();
    assert_no_canary("journal dump --format xapi", &text);
    assert!(text.contains(&openssl_hmac(HUIDS[0])), "{text}");
    let out = xapi(&["forward", "-o", "xapi"]);
    assert_ok(&out);
    assert_no_canary("the log", &stderr(&out));
    let activity = format!("{home}play/mp-canary");
    let v: Value = http
        .get(format!("{}/statements", lrs.trim_end_matches('/')))
        .query(&[("activity", activity.as_str()), ("limit", "100")])
        .basic_auth(&user, Some(&pass))
        .header("X-Experience-API-Version", "1.0.3")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let n = v["statements"].as_array().map_or(0, Vec::len);
    assert_eq!(n, text.lines().count(), "{v}");
    assert_no_canary("the LRS's statements", &v.to_string());
}

/// Bad settings stop the command with exit 2 naming the setting, and the key never prints.
#[test]
fn bad_privacy_settings_are_refused_and_the_key_never_prints() {
    let dir = scratch();
    journal_with(dir.path(), &records());
    for (key, ip, want) in [
        ("too-short", "keep", "PSEUDONYMIZE_KEY is 9 bytes"),
        ("", "keep", "PSEUDONYMIZE_KEY is set but empty"),
        (KEY, "hash", "IP_PRIVACY"),
    ] {
        let mut c = harvester(dir.path());
        c.env("PSEUDONYMIZE_KEY", key)
            .env("IP_PRIVACY", ip)
            .args(["forward", "-o", "-"]);
        let out = run(c);
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        let e = stderr(&out);
        assert!(e.contains(want), "{e}");
        assert!(out.stdout.is_empty());
        if !key.is_empty() {
            assert!(!e.contains(key), "the key was printed: {e}");
        }
    }
    // Neither setting: --pseudonymize has nothing to show.
    let mut c = harvester(dir.path());
    c.env_remove("PSEUDONYMIZE_KEY")
        .env_remove("IP_PRIVACY")
        .args(["journal", "dump", "--pseudonymize"]);
    let out = run(c);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("PSEUDONYMIZE_KEY"));
    // The key in `.env` works like the environment, and never shows in `check`'s output.
    std::fs::write(dir.path().join(".env"), format!("PSEUDONYMIZE_KEY={KEY}\n")).unwrap();
    let mut c = harvester(dir.path());
    c.current_dir(dir.path())
        .args(["journal", "dump", "--pseudonymize"]);
    let out = run(c);
    assert_ok(&out);
    let text = String::from_utf8_lossy(&out.stdout);
    for raw in HUIDS.iter().chain(&SESSIONS) {
        assert!(!text.contains(raw), "dump with the key in .env holds {raw}");
    }
    // IP_PRIVACY is not set: the addresses go as they are.
    assert!(text.contains("128.103.1.1"));
    assert!(!stderr(&out).contains(KEY));
}
