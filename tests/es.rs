//! Elasticsearch against a real node started by `.ci/run` (Elasticsearch's own test distribution,
//! single node on loopback): the action sink, replays, partial bulk failures, a node that is down,
//! and `load-episodes` in its three selection modes, documents compared field by field.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use common::*;
use harvester::journal::Journal;
use harvester::sim::{DataConfig, SimConfig, SimHandle};
use serde_json::{json, Value};

fn es_url() -> Option<String> {
    service("HARVESTER_TEST_ES_URL")
}

/// A name no other test (or earlier run) uses: index names must be lowercase.
fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        rand::random::<u32>() % 1_000_000
    )
}

/// A small client of our own for checking what the node holds (independent of the harvester's).
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

    async fn refresh(&self, pattern: &str) {
        self.call(
            reqwest::Method::POST,
            &format!("{pattern}/_refresh?allow_no_indices=true"),
            None,
        )
        .await;
    }

    async fn count(&self, pattern: &str) -> u64 {
        self.refresh(pattern).await;
        let v = self
            .call(
                reqwest::Method::GET,
                &format!("{pattern}/_count?allow_no_indices=true"),
                None,
            )
            .await;
        v["count"].as_u64().unwrap()
    }

    /// Every document of the indices: `_id` → (index, version, source).
    async fn docs(&self, pattern: &str) -> BTreeMap<String, (String, u64, Value)> {
        self.refresh(pattern).await;
        // The tests' indices hold at most a few thousand documents: one page of 10,000.
        let q = json!({"size": 10_000, "version": true, "query": {"match_all": {}}});
        let v = self
            .call(
                reqwest::Method::POST,
                &format!("{pattern}/_search"),
                Some(q),
            )
            .await;
        assert!(v["hits"]["total"]["value"].as_u64().unwrap() < 10_000);
        let mut out = BTreeMap::new();
        for h in v["hits"]["hits"].as_array().unwrap() {
            out.insert(
                h["_id"].as_str().unwrap().to_string(),
                (
                    h["_index"].as_str().unwrap().to_string(),
                    h["_version"].as_u64().unwrap(),
                    h["_source"].clone(),
                ),
            );
        }
        out
    }
}

fn with_es(mut c: Command, url: &str, action_index: &str) -> Command {
    c.env("ELASTICSEARCH_HOST", url)
        .env("ES_ACTION_INDEX", action_index);
    c
}

/// The record of a simulated action as the Elasticsearch document: `is_live` as a boolean.
fn expected_doc(sim: &SimHandle, a: &harvester::sim::SimAction) -> Value {
    let mut r = expected_record(sim, a);
    r["is_live"] = json!(r["is_live"] == json!(1));
    r
}

fn day_of(us: i64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_micros(us)
        .unwrap()
        .format("%Y.%m.%d")
        .to_string()
}

fn cursor(dir: &Path, name: &str) -> u64 {
    let j = Journal::open(&journal_path(dir)).unwrap();
    j.cursor(name).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn sink_indexes_each_record_once_into_daily_indices() {
    let Some(url) = es_url() else { return };
    let es = Es::new(&url);
    // 3,000 actions over two days from 2016-03-01T12:00Z: three UTC days of indices.
    let sim = start_sim(SimConfig::new(data(3000, 2 * 86_400))).await;
    let dir = scratch();
    let prefix = unique("t-sink");
    let pattern = format!("{prefix}-%Y.%m.%d");
    let mut c = with_es(harvester_for(dir.path(), &sim), &url, &pattern);
    // "-,es": a leading "-" is a value of -o here, not a flag.
    harvest_window(&mut c, 2 * 86_400_000_000, "-,es");
    let out = run(c);
    assert_ok(&out);
    assert_eq!(
        stdout_records(&out).len(),
        3000,
        "stdout got every record too"
    );

    let docs = es.docs(&format!("{prefix}-*")).await;
    assert_eq!(docs.len(), 3000);
    let mut per_day: BTreeMap<String, u64> = BTreeMap::new();
    for i in 0..3000 {
        let a = sim.data.action(i);
        let (index, version, source) = docs
            .get(&a.id.to_string())
            .unwrap_or_else(|| panic!("action {} not indexed", a.id));
        assert_eq!(index, &format!("{prefix}-{}", day_of(a.created_us)));
        assert_eq!(*version, 1);
        assert_eq!(source, &expected_doc(&sim, &a), "action {}", a.id);
        *per_day.entry(index.clone()).or_default() += 1;
    }
    assert_eq!(per_day.len(), 3, "{per_day:?}");

    // The template made the types the successor's templates had.
    let m = es
        .call(
            reqwest::Method::GET,
            &format!("{prefix}-2016.03.01/_mapping"),
            None,
        )
        .await;
    let props = &m[format!("{prefix}-2016.03.01")]["mappings"]["properties"];
    assert_eq!(props["ip"]["type"], "ip");
    assert_eq!(props["is_live"]["type"], "boolean");
    assert_eq!(props["timestamp"]["type"], "date");
    assert_eq!(props["mpid"]["type"], "keyword");
    assert_eq!(props["huid"]["type"], "keyword");
    assert_eq!(
        props["action"]["properties"]["is_playing"]["type"],
        "boolean"
    );
    assert_eq!(props["episode"]["properties"]["title"]["type"], "keyword");

    // Forwarding again sends nothing; the cursor stands at the end.
    let mut c = with_es(harvester(dir.path()), &url, &pattern);
    c.args(["forward", "-o", "es"]);
    let out = run(c);
    assert_ok(&out);
    assert!(stderr(&out).contains("forwarded=0"), "{}", stderr(&out));
    assert_eq!(cursor(dir.path(), &format!("es:{pattern}")), 3000);
}

#[tokio::test(flavor = "multi_thread")]
async fn replay_of_the_same_range_changes_nothing_and_can_fill_a_new_index() {
    let Some(url) = es_url() else { return };
    let es = Es::new(&url);
    let sim = start_sim(SimConfig::new(data(1500, 3600))).await;
    let dir = scratch();
    let prefix = unique("t-replay");
    let pattern = format!("{prefix}-%Y.%m.%d");
    let mut c = with_es(harvester_for(dir.path(), &sim), &url, &pattern);
    harvest_window(&mut c, 3_600_000_000, "es");
    assert_ok(&run(c));
    let before = es.docs(&format!("{prefix}-*")).await;
    assert_eq!(before.len(), 1500);

    // Replay the same range into the same index: same count, same versions, same sources.
    let replay = |extra: &[&str]| {
        let mut c = with_es(harvester(dir.path()), &url, &pattern);
        c.args([
            "journal",
            "replay",
            "--from",
            &compact(t0()),
            "--to",
            &compact(t0() + 3_600_000_000),
            "-o",
            "es",
        ]);
        c.args(extra);
        run(c)
    };
    let out = replay(&[]);
    assert_ok(&out);
    let after = es.docs(&format!("{prefix}-*")).await;
    assert_eq!(
        before, after,
        "a replay into the same index changed documents"
    );

    // Into a new index: exactly the range, once.
    let new_index = format!("{prefix}-new");
    let out = replay(&["--es-index", &new_index]);
    assert_ok(&out);
    let fresh = es.docs(&new_index).await;
    assert_eq!(fresh.len(), 1500);
    for (id, (_, v, src)) in &fresh {
        assert_eq!(*v, 1);
        assert_eq!(src, &before[id].2);
    }
    // The regular cursor did not move; the replay's own one did.
    assert_eq!(cursor(dir.path(), &format!("es:{pattern}")), 1500);
}

#[tokio::test(flavor = "multi_thread")]
async fn content_rejections_become_dead_letters_and_passing_failures_are_retried_alone() {
    let Some(url) = es_url() else { return };
    let es = Es::new(&url);
    // 2016-03-01T12:00Z plus 100,000 s: two UTC days, the second starting at record 864, in
    // the middle of a bulk request (so a request holds records of both days).
    let sim = start_sim(SimConfig::new(data(2000, 100_000))).await;
    let dir = scratch();
    let prefix = unique("t-partial");
    let pattern = format!("{prefix}-%Y.%m.%d");
    let mut c = harvester_for(dir.path(), &sim);
    harvest_window(&mut c, 100_000_000_000, "none");
    assert_ok(&run(c));
    let records = journal_records(dir.path());
    assert_eq!(records.len(), 2000);
    let day1 = format!("{prefix}-2016.03.01");
    let day2 = format!("{prefix}-2016.03.02");

    // Day 1's index exists already with `huid` as a number: the records whose huid is not one
    // are rejected for their content. Day 2's index refuses writes for now (a passing failure).
    es.call(
        reqwest::Method::PUT,
        &day1,
        Some(json!({"mappings": {"properties": {"huid": {"type": "long"}}}})),
    )
    .await;
    es.call(reqwest::Method::PUT, &day2, None).await;
    es.call(
        reqwest::Method::PUT,
        &format!("{day2}/_settings"),
        Some(json!({"index.blocks.write": true})),
    )
    .await;
    let in_day1: Vec<_> = records
        .iter()
        .filter(|r| format!("{prefix}-{}", day_of(r.created_us)) == day1)
        .collect();
    let bad: BTreeSet<i64> = in_day1
        .iter()
        .filter(|r| {
            r.huid
                .as_deref()
                .map(|h| h.parse::<i64>().is_err())
                .unwrap_or(true)
        })
        .map(|r| r.action_id)
        .collect();
    assert!(!bad.is_empty() && bad.len() < in_day1.len());
    let first_day2 = records
        .iter()
        .position(|r| format!("{prefix}-{}", day_of(r.created_us)) == day2)
        .unwrap();

    let forward = || {
        let mut c = with_es(harvester(dir.path()), &url, &pattern);
        c.env("ES_ATTEMPTS", "2")
            .env("ES_BULK_DOCS", "700")
            .args(["forward", "-o", "es"]);
        run(c)
    };
    let out = forward();
    assert!(!out.status.success(), "a blocked index must fail the run");
    let err = stderr(&out);
    assert!(err.contains("cluster_block_exception"), "{err}");
    assert!(err.contains("retrying the failed items"), "{err}");
    // Only the blocked records were retried, not the request around them: the second request
    // (records 700..1400; two requests of 700 are in flight at once) holds both days.
    assert!(first_day2 > 700 && first_day2 < 1400, "{first_day2}");
    assert!(
        err.contains(&format!(
            "retrying={} error={} of 700",
            1400 - first_day2,
            1400 - first_day2
        )),
        "expected only the {} blocked records of the request to be resent: {err}",
        1400 - first_day2
    );
    // The cursor stands at the first record that is neither indexed nor dead-lettered.
    assert_eq!(
        cursor(dir.path(), &format!("es:{pattern}")),
        first_day2 as u64
    );
    assert_eq!(
        es.count(&day1).await as usize,
        in_day1.len() - bad.len(),
        "day 1 holds every acceptable record"
    );
    let j = Journal::open(&journal_path(dir.path())).unwrap();
    let dead: BTreeSet<i64> = j
        .dead_letters()
        .unwrap()
        .into_iter()
        .map(|(_, d)| {
            assert!(
                d.reason.contains("Elasticsearch rejected action"),
                "{}",
                d.reason
            );
            assert!(d.reason.contains("huid"), "{}", d.reason);
            let v: Value = serde_json::from_str(&d.raw).unwrap();
            v["action_id"].as_i64().unwrap()
        })
        .collect();
    drop(j);
    assert_eq!(dead, bad, "exactly the rejected records are dead letters");

    // The block goes away: the rest arrives, nothing twice, no new dead letters.
    es.call(
        reqwest::Method::PUT,
        &format!("{day2}/_settings"),
        Some(json!({"index.blocks.write": false})),
    )
    .await;
    let out = forward();
    assert_ok(&out);
    assert_eq!(cursor(dir.path(), &format!("es:{pattern}")), 2000);
    assert_eq!(
        es.count(&format!("{prefix}-*")).await as usize,
        2000 - bad.len()
    );
    let j = Journal::open(&journal_path(dir.path())).unwrap();
    assert_eq!(j.dead_letters().unwrap().len(), bad.len());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_that_is_down_is_a_clear_error_and_moves_no_cursor() {
    let Some(_) = es_url() else { return };
    let sim = start_sim(SimConfig::new(data(300, 600))).await;
    let dir = scratch();
    let down = format!("127.0.0.1:{}", free_port());
    let mut c = with_es(harvester_for(dir.path(), &sim), &down, "t-down-%Y.%m.%d");
    harvest_window(&mut c, 600_000_000, "es");
    let out = run(c);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("Elasticsearch at http://{down} is unreachable")),
        "{err}"
    );
    // Harvested all the same: the records wait in the journal.
    assert_eq!(journal_records(dir.path()).len(), 300);
    assert_eq!(cursor(dir.path(), "es:t-down-%Y.%m.%d"), 0);

    let mut c = with_es(harvester(dir.path()), &down, "t-down-%Y.%m.%d");
    c.args(["forward", "-o", "es"]);
    let out = run(c);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("unreachable"), "{}", stderr(&out));
    assert_eq!(cursor(dir.path(), "es:t-down-%Y.%m.%d"), 0);

    // load-episodes fails before it asks Opencast anything.
    let searches = sim
        .stats
        .search_requests
        .load(std::sync::atomic::Ordering::Relaxed);
    let mut c = harvester_for(dir.path(), &sim);
    c.env("MATTERHORN_ADMIN_HOST", sim.url())
        .env("ELASTICSEARCH_HOST", &down)
        .args(["load-episodes", "-c", "1"]);
    let out = run(c);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("unreachable"), "{}", stderr(&out));
    assert_eq!(
        sim.stats
            .search_requests
            .load(std::sync::atomic::Ordering::Relaxed),
        searches
    );
}

/// The episode document of opencast-api.md for simulated episode `k`, computed here from the
/// simulator's raw JSON (search result and workflows), independently of the harvester's code.
fn expected_episode(sim: &SimHandle, k: u64) -> Value {
    let e = sim.data.episode_json(k);
    let mp = &e["mediapackage"];
    let s = |v: &Value| match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    };
    // Python's datetime.isoformat() in UTC, as the original load_episodes wrote the times:
    // six fraction digits only when there are milliseconds.
    let isoformat = |d: chrono::DateTime<chrono::Utc>| {
        if d.timestamp_subsec_micros() == 0 {
            d.format("%Y-%m-%dT%H:%M:%S+00:00").to_string()
        } else {
            d.format("%Y-%m-%dT%H:%M:%S%.6f+00:00").to_string()
        }
    };
    let utc = |t: &str| {
        isoformat(
            chrono::DateTime::parse_from_rfc3339(t)
                .unwrap()
                .with_timezone(&chrono::Utc),
        )
    };
    let ms = |v: &Value| -> i64 { s(v).unwrap().parse().unwrap() };
    let ms_utc =
        |m: i64| isoformat(chrono::DateTime::<chrono::Utc>::from_timestamp_millis(m).unwrap());
    let mut d = serde_json::Map::new();
    d.insert("mpid".into(), json!(s(&mp["id"]).unwrap()));
    if let Some(t) = s(&mp["title"]).or_else(|| s(&e["dcTitle"])) {
        d.insert("title".into(), json!(t));
    }
    if let Some(x) = s(&mp["duration"]) {
        d.insert("duration".into(), json!(x.parse::<i64>().unwrap()));
    }
    if let Some(st) = s(&mp["start"]).or_else(|| s(&e["dcCreated"])) {
        d.insert("start".into(), json!(utc(&st)));
    }
    if let Some(t) = s(&mp["seriestitle"]) {
        d.insert("course".into(), json!(t));
    }
    if let Some(series) = s(&mp["series"]) {
        d.insert("series".into(), json!(series));
        d.insert("year".into(), json!(series[0..4]));
        d.insert("term".into(), json!(series[4..6]));
        d.insert("crn".into(), json!(series[6..11]));
    }
    if let Some(t) = s(&e["dcType"]) {
        d.insert("type".into(), json!(t));
    }
    if let Some(t) = s(&e["dcDescription"]) {
        d.insert("description".into(), json!(t));
    }
    let atts = match &mp["attachments"]["attachment"] {
        Value::Array(a) => a.clone(),
        Value::Object(_) => vec![mp["attachments"]["attachment"].clone()],
        _ => vec![],
    };
    let still = |kind: &str| {
        atts.iter()
            .find(|a| a["type"] == kind)
            .and_then(|a| s(&a["url"]))
    };
    if let Some(u) = still("presenter/player+preview") {
        d.insert("presenter_still".into(), json!(u));
    }
    if let Some(u) = still("presentation/player+preview") {
        d.insert("presentation_still".into(), json!(u));
    }
    let slides: Vec<Value> = atts
        .iter()
        .filter(|a| a["type"] == "presentation/segment+preview")
        .map(|a| {
            let r = s(&a["ref"]).unwrap();
            json!({"img": s(&a["url"]).unwrap(), "time": r.split(";time=").nth(1).unwrap()})
        })
        .collect();
    if !slides.is_empty() {
        d.insert("slides".into(), json!(slides));
    }
    let wfs = sim.data.workflows_json(k);
    let newest = wfs
        .iter()
        .max_by_key(|w| s(&w["id"]).unwrap().parse::<i64>().unwrap())
        .unwrap();
    let ops = match &newest["operations"]["operation"] {
        Value::Array(a) => a.clone(),
        o => vec![o.clone()],
    };
    let op = |id: &str| ops.iter().find(|o| o["id"] == id);
    match op("capture") {
        Some(c) => {
            d.insert("live_stream".into(), json!(true));
            d.insert("live_start".into(), json!(ms_utc(ms(&c["started"]))));
            d.insert("live_end".into(), json!(ms_utc(ms(&c["completed"]))));
            d.insert(
                "live_duration".into(),
                json!(ms(&c["completed"]) - ms(&c["started"])),
            );
        }
        None => {
            d.insert("live_stream".into(), json!(false));
        }
    }
    if let Some(r) = op("retract-element") {
        d.insert("available".into(), json!(ms_utc(ms(&r["completed"]))));
    }
    Value::Object(d)
}

fn load_episodes(
    dir: &Path,
    sim: &SimHandle,
    url: &str,
    index: &str,
    args: &[&str],
) -> std::process::Output {
    let mut c = harvester_for(dir, sim);
    c.env("MATTERHORN_ADMIN_HOST", sim.url())
        .env("ELASTICSEARCH_HOST", url)
        .env("EPISODE_INDEX_NAME", index)
        .arg("load-episodes")
        .args(args);
    run(c)
}

fn check_episodes(
    sim: &SimHandle,
    docs: &BTreeMap<String, (String, u64, Value)>,
    want: &BTreeSet<u64>,
) {
    let mpids: BTreeSet<String> = want.iter().map(|k| sim.data.episode(*k).mpid).collect();
    assert_eq!(docs.keys().cloned().collect::<BTreeSet<_>>(), mpids);
    for k in want {
        let e = sim.data.episode(*k);
        assert_eq!(docs[&e.mpid].2, expected_episode(sim, *k), "episode {k}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn load_episodes_created_since_n_days_ago() {
    let Some(url) = es_url() else { return };
    let es = Es::new(&url);
    // Episodes are created an hour apart, the newest 30 min before now.
    let now = harvester::timefmt::floor_second(harvester::timefmt::now_us());
    let mut d = DataConfig::new(11, 100, now - 1_800_000_000, now);
    d.episodes = 150;
    let sim = start_sim(SimConfig::new(d)).await;
    let dir = scratch();
    let index = unique("t-episodes");
    let out = load_episodes(dir.path(), &sim, &url, &index, &[]);
    assert_ok(&out);
    // -c defaults to 1 day: the 23 episodes created within the last day.
    let within = |days: i64| -> BTreeSet<u64> {
        (0..150)
            .filter(|k| sim.data.episode(*k).created_us >= now - days * 86_400_000_000)
            .collect()
    };
    let docs = es.docs(&index).await;
    check_episodes(&sim, &docs, &within(1));
    assert_eq!(docs.len(), 23);

    // Five days: more than one page of 100; a rerun updates, never duplicates.
    let out = load_episodes(
        dir.path(),
        &sim,
        &url,
        &index,
        &["-c", "5", "--wait", "0.01"],
    );
    assert_ok(&out);
    let docs = es.docs(&index).await;
    check_episodes(&sim, &docs, &within(5));
    assert_eq!(docs.len(), 119);
    // The documents are journaled too, and the episodes' metadata warms the harvest's cache.
    let j = Journal::open(&journal_path(dir.path())).unwrap();
    assert_eq!(j.episode_docs().unwrap().len(), 119);
    assert!(j
        .episode(&sim.data.episode(149).mpid)
        .unwrap()
        .unwrap()
        .meta
        .is_some());
    drop(j);
    // `journal dump --episode-docs` shows exactly what was indexed.
    let mut c = harvester_for(dir.path(), &sim);
    c.args(["journal", "dump", "--episode-docs"]);
    let out = run(c);
    assert_ok(&out);
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 119);
    for l in &lines {
        let mpid = l["mpid"].as_str().unwrap();
        assert_eq!(l["document"], docs[mpid].2, "{mpid}");
        assert!(l["built_at"].as_str().unwrap().ends_with('Z'));
    }

    // The template's types.
    let m = es
        .call(reqwest::Method::GET, &format!("{index}/_mapping"), None)
        .await;
    let props = &m[&index]["mappings"]["properties"];
    assert_eq!(props["live_stream"]["type"], "boolean");
    assert_eq!(props["start"]["type"], "date");
    assert_eq!(props["available"]["type"], "date");
    assert_eq!(props["title"]["type"], "keyword");
}

#[tokio::test(flavor = "multi_thread")]
async fn load_episodes_by_id_and_from_action_indices() {
    let Some(url) = es_url() else { return };
    let es = Es::new(&url);
    let sim = start_sim(SimConfig::new(data(2000, 3600))).await;
    let dir = scratch();
    let prefix = unique("t-src");
    let index = format!("{prefix}-episodes");

    // --mpid, repeatable: exactly these; an unknown one is reported, not fatal. The first two
    // episodes are the real recorded responses (quirks and all).
    let ids = [0u64, 1, 3, 13];
    let mut args = vec![];
    for k in ids {
        args.push("--mpid".to_string());
        args.push(sim.data.episode(k).mpid);
    }
    args.push("--mpid".into());
    args.push("no-such-episode".into());
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = load_episodes(dir.path(), &sim, &url, &index, &argv);
    assert_ok(&out);
    assert!(stderr(&out).contains("no-such-episode"), "{}", stderr(&out));
    let docs = es.docs(&index).await;
    check_episodes(&sim, &docs, &ids.into_iter().collect());

    // -s: every media package id referenced by actions in the action indices.
    let actions = format!("{prefix}-ua-%Y.%m.%d");
    let mut c = with_es(harvester_for(dir.path(), &sim), &url, &actions);
    harvest_window(&mut c, 3_600_000_000, "es");
    assert_ok(&run(c));
    es.refresh(&format!("{prefix}-ua-*")).await;
    let index2 = format!("{prefix}-episodes2");
    let out = load_episodes(
        dir.path(),
        &sim,
        &url,
        &index2,
        &["-s", &format!("{prefix}-ua-*")],
    );
    assert_ok(&out);
    let mut known = BTreeSet::new();
    let mut unknown = BTreeSet::new();
    for i in 0..2000 {
        let a = sim.data.action(i);
        match a.episode {
            Some(k) => known.insert(k),
            None => unknown.insert(a.mpid),
        };
    }
    assert!(!unknown.is_empty());
    let docs = es.docs(&index2).await;
    check_episodes(&sim, &docs, &known);
    assert!(
        stderr(&out).contains(&format!("unknown={}", unknown.len())),
        "{}",
        stderr(&out)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_hourly_pattern_puts_each_record_in_its_own_hour() {
    // Issue 10, point 11: the index name was cached per UTC day, so an hourly pattern sent
    // most records of a day to the index of its first record's hour.
    let Some(url) = es_url() else { return };
    let es = Es::new(&url);
    // 1,200 actions over six hours: six hourly indices.
    let sim = start_sim(SimConfig::new(data(1200, 6 * 3600))).await;
    let dir = scratch();
    let prefix = unique("t-hourly");
    let pattern = format!("{prefix}-%Y.%m.%d-%H");
    let mut c = with_es(harvester_for(dir.path(), &sim), &url, &pattern);
    harvest_window(&mut c, 6 * 3_600_000_000, "es");
    let out = run(c);
    assert_ok(&out);
    let docs = es.docs(&format!("{prefix}-*")).await;
    assert_eq!(docs.len(), 1200);
    let mut per_hour: BTreeSet<String> = BTreeSet::new();
    for i in 0..1200 {
        let a = sim.data.action(i);
        let hour = chrono::DateTime::<chrono::Utc>::from_timestamp_micros(a.created_us)
            .unwrap()
            .format("%Y.%m.%d-%H")
            .to_string();
        let (index, _, _) = &docs[&a.id.to_string()];
        assert_eq!(index, &format!("{prefix}-{hour}"), "action {}", a.id);
        per_hour.insert(index.clone());
    }
    assert_eq!(per_hour.len(), 6, "{per_hour:?}");
}
