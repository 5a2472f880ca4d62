//! GeoIP and user-agent enrichment (issue 11): what the Logstash pipeline added, now added by
//! `-o es`. The MaxMind databases are written by the test (tests/enrich/make_mmdb.py, with PyPI's
//! mmdb-writer); the user agents are uap-core's own test cases (fixtures/uap-core).

mod common;

use std::path::{Path, PathBuf};

use common::*;
use harvester::enrich::{GeoIpDb, UaParser};
use harvester::journal::{codec, Journal, PageCommit};
use harvester::record::{ActionBlock, Record};
use serde_json::{json, Value};

/// Writes one of the test databases (`city-a`, `city-b`, `country`) into `dir`.
fn mmdb(dir: &Path, kind: &str) -> PathBuf {
    let out = dir.join(format!("{kind}.mmdb"));
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/enrich/make_mmdb.py");
    let st = std::process::Command::new("python3")
        .arg(&script)
        .arg(&out)
        .arg(kind)
        .status()
        .expect("python3 runs");
    assert!(
        st.success(),
        "{} failed: install PyPI's mmdb-writer (bash .ci/services.sh start does)",
        script.display()
    );
    out
}

fn record(id: i64, ip: Option<&str>, ua: Option<&str>) -> Record {
    Record {
        action_id: id,
        created_us: 1_458_000_000_000_000 + id * 1_000_000,
        mpid: "mp-1".into(),
        session_id: format!("s{}", id / 10),
        huid: Some("12345678".into()),
        useragent: ua.map(str::to_string),
        action: ActionBlock {
            kind: Some("HEARTBEAT".into()),
            inpoint: Some(10),
            outpoint: Some(20),
            length: Some(10),
            is_playing: true,
        },
        ip_chain: ip.map(str::to_string),
        is_live: false,
        episode: None,
    }
}

const CHROME: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.6099.109 Safari/537.36";
const IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 16_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/16.5 Mobile/15E148 Safari/604.1";

/// The records of the enrichment tests: every address case of the issue.
fn records() -> Vec<Record> {
    vec![
        record(1, Some("128.103.1.1"), Some(CHROME)), // city hit
        record(2, Some("81.2.69.142"), Some(IPHONE)), // country-only hit
        record(3, Some("2001:4860:4860::8888"), Some("")), // IPv6; empty agent
        record(4, Some("10.1.2.3"), None),            // private
        record(5, Some("-omitted-"), Some(CHROME)),   // not an address
        record(6, Some("128.103.1.1, 10.0.0.1"), Some(CHROME)), // proxy chain: ip is the first
        record(7, Some("10.9.9.9, 128.103.1.1"), Some(CHROME)), // private client behind a proxy
        record(8, Some("8.8.8.8"), Some(CHROME)),     // public, not in the database
        record(9, None, Some(CHROME)),                // no address at all
    ]
}

/// A journal in `dir` holding `records`.
fn journal_with(dir: &Path, records: &[Record]) {
    let j = Journal::open(&journal_path(dir)).unwrap();
    j.commit_page(PageCommit {
        ids: records.iter().map(|r| r.action_id).collect(),
        block: Some(codec::encode_block(records)),
        ..PageCommit::default()
    })
    .unwrap();
}

fn cambridge() -> Value {
    json!({
        "ip": "128.103.1.1", "country_code2": "US", "country_code3": "US",
        "country_name": "United States", "continent_code": "NA",
        "region_name": "Massachusetts", "region_code": "MA", "city_name": "Cambridge",
        "postal_code": "02138", "latitude": 42.3751, "longitude": -71.1056,
        "location": {"lat": 42.3751, "lon": -71.1056}, "timezone": "America/New_York",
        "dma_code": 506
    })
}

fn located(db: &GeoIpDb, ip: &str) -> Option<Value> {
    db.locate(ip)
        .map(|raw| serde_json::from_str(raw.get()).unwrap())
}

#[test]
fn geoip_city_country_ipv6_private_omitted_unknown() {
    let dir = scratch();
    let db = GeoIpDb::open(&mmdb(dir.path(), "city-a")).unwrap();
    assert_eq!(located(&db, "128.103.1.1"), Some(cambridge()));
    // With a port, and mapped into IPv6: located as the address (they were not, while
    // IP_PRIVACY=truncate read them).
    for form in [
        "128.103.1.1:5678",
        "[::ffff:128.103.1.1]:443",
        "::ffff:128.103.1.1",
    ] {
        let g = located(&db, form).unwrap_or_else(|| panic!("{form} not located"));
        assert_eq!(g["city_name"], "Cambridge", "{form}");
    }
    // Country-only entry: the fields the database has, nothing invented.
    assert_eq!(
        located(&db, "81.2.69.142"),
        Some(json!({
            "ip": "81.2.69.142", "country_code2": "GB", "country_code3": "GB",
            "country_name": "United Kingdom", "continent_code": "EU"
        }))
    );
    assert_eq!(
        located(&db, "2001:4860:4860::8888"),
        Some(json!({
            "ip": "2001:4860:4860::8888", "country_code2": "US", "country_code3": "US",
            "country_name": "United States", "continent_code": "NA",
            "region_name": "California", "region_code": "CA", "city_name": "Mountain View",
            "latitude": 37.386, "longitude": -122.0838,
            "location": {"lat": 37.386, "lon": -122.0838}, "timezone": "America/Los_Angeles"
        }))
    );
    for none in [
        "10.1.2.3",
        "192.168.0.1",
        "127.0.0.1",
        "fe80::1",
        "-omitted-",
        "",
        "8.8.8.8",
        "not an ip",
    ] {
        assert_eq!(located(&db, none), None, "{none}");
    }
}

#[test]
fn geoip_country_database() {
    let dir = scratch();
    let db = GeoIpDb::open(&mmdb(dir.path(), "country")).unwrap();
    assert_eq!(
        located(&db, "128.103.1.1"),
        Some(json!({
            "ip": "128.103.1.1", "country_code2": "US", "country_code3": "US",
            "country_name": "United States", "continent_code": "NA"
        }))
    );
}

#[test]
fn a_database_that_cannot_be_opened_is_a_setting_error_at_start() {
    let dir = scratch();
    journal_with(dir.path(), &records());
    let bad = dir.path().join("bad.mmdb");
    std::fs::write(&bad, b"this is not a MaxMind database").unwrap();
    for path in [bad.clone(), dir.path().join("missing.mmdb")] {
        let mut c = harvester(dir.path());
        c.env("GEOIP_DATABASE", &path).args(["forward", "-o", "-"]);
        let out = run(c);
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        assert!(stderr(&out).contains("GEOIP_DATABASE"), "{}", stderr(&out));
        assert!(out.stdout.is_empty());
    }
    // Nothing was forwarded: the records are still there for a run with a good database.
    let mut c = harvester(dir.path());
    c.args(["forward", "-o", "-"]);
    assert_eq!(stdout_records(&run(c)).len(), records().len());
    let mut c = harvester(dir.path());
    c.env("PARSE_USERAGENT", "maybe")
        .args(["forward", "-o", "-"]);
    let out = run(c);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("PARSE_USERAGENT"), "{}", stderr(&out));
    let mut c = harvester(dir.path());
    c.env("ENRICH_SINKS", "sqs").args(["forward", "-o", "-"]);
    let out = run(c);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("ENRICH_SINKS"), "{}", stderr(&out));
}

/// `journal dump --enrich`: each record as the Elasticsearch document `-o es` would send.
#[test]
fn dump_enrich_shows_the_documents() {
    let dir = scratch();
    let db = mmdb(dir.path(), "city-a");
    journal_with(dir.path(), &records());
    let mut c = harvester(dir.path());
    c.env("GEOIP_DATABASE", &db)
        .env("PARSE_USERAGENT", "1")
        .args(["journal", "dump", "--enrich"]);
    let out = run(c);
    assert_ok(&out);
    let docs = stdout_records(&out);
    assert_eq!(docs.len(), 9);
    let geo: Vec<Option<&str>> = docs.iter().map(|d| d["geoip"]["ip"].as_str()).collect();
    assert_eq!(
        geo,
        [
            Some("128.103.1.1"),
            Some("81.2.69.142"),
            Some("2001:4860:4860::8888"),
            None,
            None,
            Some("128.103.1.1"), // the record's ip, the first of the chain
            None,                // the record's ip is the private client
            None,
            None
        ]
    );
    assert_eq!(docs[0]["geoip"], cambridge());
    assert_eq!(docs[5]["geoip"], cambridge());
    assert_eq!(docs[5]["proxy1"], "10.0.0.1");
    assert_eq!(
        docs[0]["ua"],
        json!({"name": "Chrome", "major": "120", "minor": "0", "patch": "6099", "build": "109",
               "os": "Windows", "os_name": "Windows", "os_major": "10", "device": "Other"})
    );
    assert_eq!(
        docs[1]["ua"],
        json!({"name": "Mobile Safari", "major": "16", "minor": "5",
               "os": "iOS", "os_name": "iOS", "os_major": "16", "os_minor": "5", "device": "iPhone"})
    );
    // No agent, or an empty one: no `ua` (Logstash's filter ran only on a non-empty one).
    assert!(docs[2].get("ua").is_none() && docs[3].get("ua").is_none());
    // The Elasticsearch document: is_live a boolean, the raw agent kept by default.
    assert_eq!(docs[0]["is_live"], false);
    assert_eq!(docs[0]["useragent"], CHROME);
    // Without enrichment settings, --enrich shows the plain document.
    let mut c = harvester(dir.path());
    c.args(["journal", "dump", "--enrich", "--limit", "1"]);
    let plain = stdout_records(&run(c));
    assert!(plain[0].get("geoip").is_none() && plain[0].get("ua").is_none());
    assert_eq!(plain[0]["is_live"], false);
    // ES_DROP_USERAGENT leaves the raw string out, as the pipeline did.
    let mut c = harvester(dir.path());
    c.env("PARSE_USERAGENT", "true")
        .env("ES_DROP_USERAGENT", "1")
        .args(["journal", "dump", "--enrich", "--limit", "1"]);
    let dropped = stdout_records(&run(c));
    assert!(dropped[0].get("useragent").is_none(), "{}", dropped[0]);
    assert_eq!(dropped[0]["ua"]["name"], "Chrome");
}

/// SQS/stdout records stay byte-identical to the original's unless ENRICH_SINKS=all.
#[test]
fn stdout_records_are_unchanged_unless_enrich_sinks_all() {
    let dir = scratch();
    let db = mmdb(dir.path(), "city-a");
    journal_with(dir.path(), &records());
    let want: Vec<u8> = records()
        .iter()
        .flat_map(|r| {
            let mut l = r.to_json().into_bytes();
            l.push(b'\n');
            l
        })
        .collect();
    let mut c = harvester(dir.path());
    c.env("GEOIP_DATABASE", &db)
        .env("PARSE_USERAGENT", "1")
        .env("ES_DROP_USERAGENT", "1")
        .args(["forward", "-o", "-"]);
    let out = run(c);
    assert_ok(&out);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&want)
    );

    let mut c = harvester(dir.path());
    c.env("GEOIP_DATABASE", &db)
        .env("PARSE_USERAGENT", "1")
        .env("ES_DROP_USERAGENT", "1")
        .env("ENRICH_SINKS", "all")
        .args(["journal", "replay", "--seq", "0..", "-o", "-"]);
    let out = run(c);
    assert_ok(&out);
    let recs = stdout_records(&out);
    assert_eq!(recs.len(), 9);
    assert_eq!(recs[0]["geoip"], cambridge());
    assert_eq!(recs[0]["ua"]["name"], "Chrome");
    // A record keeps its own shape (is_live 0/1, the raw agent) with the objects added.
    assert_eq!(recs[0]["is_live"], 0);
    assert_eq!(recs[0]["useragent"], CHROME);
    assert!(stderr(&out).contains("located=4"), "{}", stderr(&out));
}

/// uap-core's own test cases (a selection in fixtures/uap-core/cases.json).
#[test]
fn user_agents_parse_as_uap_core_says() {
    let p = UaParser::new();
    let cases: Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/uap-core/cases.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let s = |v: &Value| v.as_str().filter(|s| !s.is_empty()).map(str::to_string);
    let mut n = 0;
    for c in cases["user_agent"].as_array().unwrap() {
        let ua = c["user_agent_string"].as_str().unwrap();
        let got = p.parse_with(ua, |f| {
            (
                f.name.to_string(),
                f.major.map(str::to_string),
                f.minor.map(str::to_string),
                f.patch.map(str::to_string),
            )
        });
        assert_eq!(
            got,
            (
                s(&c["family"]).unwrap(),
                s(&c["major"]),
                s(&c["minor"]),
                s(&c["patch"])
            ),
            "{ua}"
        );
        n += 1;
    }
    for c in cases["os"].as_array().unwrap() {
        let ua = c["user_agent_string"].as_str().unwrap();
        let got = p.parse_with(ua, |f| {
            (
                f.os_name.to_string(),
                f.os_major.map(str::to_string),
                f.os_minor.map(str::to_string),
            )
        });
        assert_eq!(
            got,
            (s(&c["family"]).unwrap(), s(&c["major"]), s(&c["minor"])),
            "{ua}"
        );
        n += 1;
    }
    for c in cases["device"].as_array().unwrap() {
        let ua = c["user_agent_string"].as_str().unwrap();
        assert_eq!(
            p.parse_with(ua, |f| f.device.to_string()),
            s(&c["family"]).unwrap(),
            "{ua}"
        );
        n += 1;
    }
    assert!(n >= 50, "{n} cases");
    // The empty string gives no `ua` object; a 100 KB string parses (to Other) without failing.
    assert!(p.parse("").is_none());
    let huge = "Mozilla/5.0 ".repeat(100 * 1024 / 12);
    let v: Value = serde_json::from_str(p.parse(&huge).unwrap().get()).unwrap();
    assert!(v["name"].is_string(), "{v}");
    let junk: String = (0..100 * 1024)
        .map(|i| char::from(b' ' + (i % 90) as u8))
        .collect();
    assert!(p.parse(&junk).is_some());
}

/// GET `path` (POST with `body` when given); fails the test on an error status.
async fn es_get(url: &str, path: &str, body: Option<Value>) -> Value {
    let http = reqwest::Client::new();
    let at = format!("{}/{path}", url.trim_end_matches('/'));
    let r = match body {
        Some(b) => http.post(at).json(&b),
        None => http.get(at),
    };
    let resp = r.send().await.expect("node answers");
    let status = resp.status();
    let v: Value = resp.json().await.unwrap_or(Value::Null);
    assert!(status.is_success(), "{path}: {status} {v}");
    v
}

async fn es_refresh(url: &str, index: &str) {
    let resp = reqwest::Client::new()
        .post(format!("{}/{index}/_refresh", url.trim_end_matches('/')))
        .send()
        .await
        .expect("node answers");
    assert!(
        resp.status().is_success(),
        "refresh {index}: {}",
        resp.status()
    );
}

/// `_id` → `_source` of every document of `index`.
async fn es_docs(url: &str, index: &str) -> std::collections::BTreeMap<String, Value> {
    es_refresh(url, index).await;
    let v = es_get(url, &format!("{index}/_search"), Some(json!({"size": 100}))).await;
    v["hits"]["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| (h["_id"].as_str().unwrap().to_string(), h["_source"].clone()))
        .collect()
}

/// On the real node: the enriched fields have the template's types (`geo_point` answers a
/// `geo_distance` query), and a replay into a new index with another database changes exactly
/// the enriched fields.
#[tokio::test(flavor = "multi_thread")]
async fn es_documents_are_enriched_and_a_replay_re_enriches() {
    let Some(url) = service("HARVESTER_TEST_ES_URL") else {
        return;
    };
    let dir = scratch();
    let (db_a, db_b) = (mmdb(dir.path(), "city-a"), mmdb(dir.path(), "city-b"));
    journal_with(dir.path(), &records());
    let tag = format!(
        "{}-{}",
        std::process::id(),
        rand::random::<u32>() % 1_000_000
    );
    let (index_a, index_b) = (format!("t-enrich-a-{tag}"), format!("t-enrich-b-{tag}"));
    let mut c = harvester(dir.path());
    c.env("ELASTICSEARCH_HOST", &url)
        .env("ES_ACTION_INDEX", &index_a)
        .env("GEOIP_DATABASE", &db_a)
        .env("PARSE_USERAGENT", "1")
        .args(["forward", "-o", "es"]);
    assert_ok(&run(c));

    let m = es_get(&url, &format!("{index_a}/_mapping"), None).await;
    let props = &m[&index_a]["mappings"]["properties"];
    let geo = &props["geoip"]["properties"];
    assert_eq!(geo["location"]["type"], "geo_point", "{props}");
    assert_eq!(geo["ip"]["type"], "ip");
    assert_eq!(geo["latitude"]["type"], "float");
    assert_eq!(geo["dma_code"]["type"], "integer");
    assert_eq!(geo["city_name"]["type"], "keyword");
    assert_eq!(props["ua"]["properties"]["name"]["type"], "keyword");
    assert_eq!(props["ua"]["properties"]["major"]["type"], "keyword");

    es_refresh(&url, &index_a).await;
    let near = es_get(
        &url,
        &format!("{index_a}/_search"),
        Some(json!({"size": 100, "query": {"geo_distance": {
            "distance": "10km", "geoip.location": {"lat": 42.37, "lon": -71.11}}}})),
    )
    .await;
    let mut ids: Vec<&str> = near["hits"]["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["_id"].as_str().unwrap())
        .collect();
    ids.sort();
    assert_eq!(ids, ["1", "6"]);
    // The other enriched fields are kept out of the inverted index (doc values only, for a
    // cheaper indexing): filters and aggregations on them still answer.
    let by_field = es_get(
        &url,
        &format!("{index_a}/_search"),
        Some(json!({"size": 0,
            "query": {"bool": {"filter": [
                {"term": {"geoip.country_code2": "US"}},
                {"exists": {"field": "ua.name"}}]}},
            "aggs": {"browsers": {"terms": {"field": "ua.name"}},
                     "cities": {"terms": {"field": "geoip.city_name"}}}})),
    )
    .await;
    assert!(
        by_field["hits"]["total"]["value"].as_u64().unwrap() > 0,
        "{by_field}"
    );
    assert!(
        !by_field["aggregations"]["browsers"]["buckets"]
            .as_array()
            .unwrap()
            .is_empty(),
        "{by_field}"
    );

    let mut c = harvester(dir.path());
    c.env("ELASTICSEARCH_HOST", &url)
        .env("GEOIP_DATABASE", &db_b)
        .env("PARSE_USERAGENT", "1")
        .args([
            "journal",
            "replay",
            "--seq",
            "0..",
            "-o",
            "es",
            "--es-index",
            &index_b,
        ]);
    assert_ok(&run(c));
    let (a, b) = (es_docs(&url, &index_a).await, es_docs(&url, &index_b).await);
    assert_eq!(a.len(), 9);
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    for (id, da) in &a {
        let db = &b[id];
        let mut changed: Vec<String> = Vec::new();
        for (k, v) in da.as_object().unwrap() {
            if k == "geoip" {
                for (gk, gv) in v.as_object().unwrap() {
                    if db["geoip"][gk] != *gv {
                        changed.push(format!("geoip.{gk}"));
                    }
                }
            } else {
                assert_eq!(db[k], *v, "doc {id} field {k}");
            }
        }
        changed.sort();
        let want: Vec<&str> = if id == "1" || id == "6" {
            vec![
                "geoip.city_name",
                "geoip.latitude",
                "geoip.location",
                "geoip.longitude",
                "geoip.postal_code",
            ]
        } else {
            vec![]
        };
        assert_eq!(changed, want, "doc {id}");
    }
    assert_eq!(b["1"]["geoip"]["city_name"], "Boston");
}

/// `journal stats --enrich`: how many records enrichment locates and parses, and the caches.
#[test]
fn stats_enrich_counts_located_parsed_and_cache_hits() {
    let dir = scratch();
    let db = mmdb(dir.path(), "city-a");
    journal_with(dir.path(), &records());
    let mut c = harvester(dir.path());
    c.env("GEOIP_DATABASE", &db)
        .env("PARSE_USERAGENT", "1")
        .args(["journal", "stats", "--enrich", "--json"]);
    let out = run(c);
    assert_ok(&out);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["enrichment"],
        json!({
            "located": 4, "not_located": 5, "ua_parsed": 7, "ua_missing": 2,
            // 8 addresses, 7 distinct (no address at all is not looked up); 7 agents, 2 distinct.
            "ip_cache_hits": 1, "ip_cache_misses": 7, "ua_cache_hits": 5, "ua_cache_misses": 2
        })
    );
}
