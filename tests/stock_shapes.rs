//! Every Opencast release's shapes, Matterhorn 1.4 to Opencast 17 (issue 18, points 5 and 6):
//! flat 1.4 sessions, string or number attributes, `-omitted-` values, the 16+ search result,
//! the 12+ workflow endpoint, UUID series ids, and `load-episodes -c` on releases that have no
//! `createdFrom`. Records and episode documents come out the same whatever the release; decode
//! errors are final, truncated bodies are retried.
//!
//! Harvests against a stock simulator run with `OPENCAST_API=windowed` over a window that holds
//! the whole data set, so that they do not depend on how actions are asked for.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use chrono_tz::Tz;
use common::*;
use harvester::opencast::{
    parse_search_body, parse_search_hits, parse_workflows_body, Action, ActionsPage, JudgedPage,
};
use harvester::record::Record;
use harvester::sim::{Data, DataConfig, Release, SimConfig, SimHandle, FAMILIES};
use serde_json::{json, Value};

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

async fn run_async(c: std::process::Command) -> std::process::Output {
    tokio::task::spawn_blocking(move || run(c)).await.unwrap()
}

fn release(family: &str) -> Release {
    FAMILIES.iter().find(|(n, _)| *n == family).unwrap().1
}

async fn sim_of(release: Release, data: DataConfig, log_all: bool) -> SimHandle {
    let mut cfg = SimConfig::new(data);
    cfg.release = release;
    cfg.log_all = log_all;
    start_sim(cfg).await
}

/// Harvests the whole data set of `sim` (an hour from t0) to stdout.
async fn harvest_records(sim: &SimHandle) -> Vec<Value> {
    let dir = scratch();
    let mut c = harvester_for(dir.path(), sim);
    c.env("OPENCAST_API", "windowed");
    harvest_window(&mut c, 3_600_000_000, "-");
    let out = run_async(c).await;
    assert_ok(&out);
    stdout_records(&out)
}

fn without(v: &Value, keys: &[&str]) -> Value {
    let mut v = v.clone();
    if let Some(o) = v.as_object_mut() {
        for k in keys {
            o.remove(*k);
        }
    }
    v
}

// ---------------------------------------------------------------------------------------------
// Records

/// Every family's actions become records, field for field what the contract prescribes for
/// what that release sent; the episode part is the same whatever the release (a stock series
/// id is a UUID, which holds no year, term or course number).
#[tokio::test(flavor = "multi_thread")]
async fn records_come_out_the_same_on_every_release() {
    let mut episodes: BTreeMap<&str, BTreeMap<i64, Value>> = BTreeMap::new();
    for (family, r) in FAMILIES {
        let sim = sim_of(*r, data(300, 3600), true).await;
        let recs = harvest_records(&sim).await;
        assert_eq!(recs.len(), 300, "{family}: every action is a record");
        for rec in &recs {
            let i = (rec["action_id"].as_i64().unwrap() - 1000) as u64;
            let a = sim.data.action(i);
            assert_eq!(
                rec,
                &expected_record(&sim, &a),
                "{family}: action index {i}"
            );
            if r.is_stock() {
                assert_eq!(rec["is_live"], 0, "{family}: stock sends no live flag");
                for k in ["year", "term", "cdn"] {
                    assert!(
                        rec["episode"].get(k).is_none(),
                        "{family}: {k} from a UUID: {rec}"
                    );
                }
            }
            if r.flat_session() {
                assert_eq!(
                    rec["useragent"],
                    Value::Null,
                    "{family}: 1.4 has no user agent"
                );
            }
        }
        let blocks = recs
            .iter()
            .map(|r| (r["action_id"].as_i64().unwrap(), r["episode"].clone()))
            .collect();
        episodes.insert(family, blocks);
    }
    // The episode part: identical on every stock release; the DCE build differs only in its
    // series ids (and the year, term and course number they hold).
    let stock = &episodes["oc2-7"];
    assert!(stock.values().any(|e| e.get("series").is_some()));
    for (family, blocks) in &episodes {
        if *family == "dce" {
            for (id, e) in blocks {
                let keys = ["series", "year", "term", "cdn"];
                assert_eq!(
                    without(e, &keys),
                    without(&stock[id], &keys),
                    "{family}: {id}"
                );
            }
        } else {
            assert_eq!(
                blocks, stock,
                "{family}: the episode part differs from oc2-7's"
            );
        }
    }
}

/// Matterhorn 1.4's actions (flat `sessionId`/`userId`/`userIp`, no user agent, every value a
/// string) become the records a 2.x server's actions give; a mixed or wrong shape stays a
/// dead letter. Fixture: `UserActionImpl` at tag 1.4.0 (field order id, mediapackageId,
/// userId, userIp, sessionId, inpoint, outpoint, length, type, isPlaying, created).
#[test]
fn matterhorn_14_actions_decode_into_the_same_action() {
    let body = fixture("actions-page-mh14.json");
    let j = JudgedPage::judge(ActionsPage::parse(&body).unwrap(), Tz::UTC);
    assert_eq!((j.actions.len(), j.rejected.len(), j.total), (2, 2, 4));
    let same_on_2x = r#"{"id":1781,"mediapackageId":"83ebde9d-0812-4071-8fb7-a97c1472ceb9",
        "sessionId":{"sessionId":"k3l2m1","userId":"anonymous","userIp":"10.1.2.3, 128.103.1.1"},
        "inpoint":120,"outpoint":130,"length":10,"type":"HEARTBEAT","isPlaying":true,
        "created":"2013-03-01T12:00:00-05:00"}"#;
    let twox = Action::from_raw(same_on_2x, Tz::UTC).unwrap();
    assert_eq!(j.actions[0], twox);
    let rec: Value =
        serde_json::from_str(&Record::with_block(j.actions[0].clone(), None).to_json()).unwrap();
    assert_eq!(rec["session_id"], "k3l2m1");
    assert_eq!(rec["huid"], "anonymous");
    assert_eq!(
        (&rec["ip"], &rec["proxy1"]),
        (&json!("10.1.2.3"), &json!("128.103.1.1"))
    );
    assert_eq!(rec["useragent"], Value::Null);
    assert_eq!(rec["timestamp"], "2013-03-01T17:00:00+00:00");
    // No userId: "None", as for a 2.x action without one.
    assert_eq!(j.actions[1].user_id, None);
    assert_eq!(j.actions[1].created_us % 1_000_000, 250_000);
    // Both shapes at once, and an address that is a list: dead letters, with the reason.
    assert!(j.rejected[0].0.contains("1783"), "{:?}", j.rejected);
    assert!(
        j.rejected[0].1.contains("both a sessionId object"),
        "{:?}",
        j.rejected
    );
    assert!(j.rejected[1].0.contains("1784"), "{:?}", j.rejected);
    assert!(j.rejected[1].1.contains("userIp"), "{:?}", j.rejected);
    for bad in [r#"["k3"]"#, "true", r#"{"userId":"u"}"#] {
        let raw = format!(
            r#"{{"id":1,"mediapackageId":"m","sessionId":{bad},"created":"2013-03-01T12:00:00Z"}}"#
        );
        assert!(Action::from_raw(&raw, Tz::UTC).is_err(), "{raw}");
    }
}

/// 6.0+ defaults write `-omitted-` for the user, address and session: the records keep what
/// Opencast sent, and the judged page counts those actions (for the run's warning).
#[tokio::test(flavor = "multi_thread")]
async fn omitted_values_are_kept_and_counted() {
    let r = release("oc6-7");
    let sim = sim_of(r, data(200, 3600), false).await;
    let recs = harvest_records(&sim).await;
    assert_eq!(recs.len(), 200);
    for rec in &recs {
        assert_eq!(
            (&rec["huid"], &rec["ip"], &rec["session_id"]),
            (
                &json!("-omitted-"),
                &json!("-omitted-"),
                &json!("-omitted-")
            ),
            "{rec}"
        );
    }
    let count = |logs_all: bool| {
        let d = Data::for_release(data(500, 3600), r, logs_all);
        let idx: Vec<u64> = (0..500).collect();
        let mut body = String::from(r#"{"actions":{"total":"500","action":["#);
        d.write_actions(&mut body, &idx);
        body.push_str("]}}");
        let j = JudgedPage::judge(ActionsPage::parse(body.as_bytes()).unwrap(), Tz::UTC);
        assert_eq!(j.actions.len(), 500);
        let want = idx
            .iter()
            .filter(|i| {
                let a = d.action(**i);
                a.user_ip == "-omitted-" || a.session_id == "-omitted-"
            })
            .count() as u64;
        (j.omitted, want)
    };
    assert_eq!(count(false), (500, 500));
    let (n, want) = count(true);
    assert!(
        n == want && n > 0 && n < 500,
        "a site that logs: {n} of {want}"
    );
}

// ---------------------------------------------------------------------------------------------
// Episodes

/// A 16.0 search answer (`modules/lti/mock-server-api-data/search/episode.json` at tag 16.0,
/// two of its results) decodes into the same neutral model: media package numbers as doubles,
/// Dublin Core lists, `created` to the minute.
#[test]
fn the_16_search_result_decodes_into_the_same_episode_meta() {
    let hits = parse_search_hits(&fixture("search-episode-oc16.json")).unwrap();
    assert_eq!(hits.len(), 2);
    let m = &hits[0].meta;
    assert_eq!(m.mpid, "0001");
    assert_eq!(m.title.as_deref(), Some("I 🖤 Opencast (0001)"));
    assert_eq!(m.duration_ms, Some(4160));
    assert_eq!(m.start.as_deref(), Some("2024-05-07T16:24:00Z"));
    assert_eq!(m.dc_created.as_deref(), Some("2024-05-07T16:24:00Z"));
    assert_eq!(
        m.series.as_deref(),
        Some("e12d5290-0825-4868-a8e6-1d75d4af9d41")
    );
    assert_eq!(m.series_title.as_deref(), Some("I 🖤 Opencast"));
    assert!(m
        .attachments
        .iter()
        .any(|a| a.kind == "presenter/player+preview" && a.url.is_some()));
    assert_eq!(
        hits[0].modified.as_deref(),
        Some("2024-05-07T17:34:11.200Z")
    );
    // The record's episode block: a UUID series gives no year/term/cdn.
    let block = harvester::record::EpisodeBlock::from_meta(m, Tz::UTC);
    assert_eq!(block.duration, Some(4160));
    let rec = json!({"episode": serde_json::to_value(&block).unwrap()});
    assert_eq!(
        rec["episode"]["series"],
        "e12d5290-0825-4868-a8e6-1d75d4af9d41"
    );
    for k in ["year", "term", "cdn"] {
        assert!(rec["episode"].get(k).is_none(), "{k}: {rec}");
    }
    // Without a start, the minute-precision created is the start, in full.
    let mut m = m.clone();
    m.start = None;
    let block = harvester::record::EpisodeBlock::from_meta(&m, Tz::UTC);
    assert_eq!(block.start.as_deref(), Some("2024-05-07T16:24:00Z"));
    // Empty answers of both generations, and bodies that are neither.
    assert_eq!(
        parse_search_body(br#"{"result":[],"total":0,"offset":0,"limit":20}"#).unwrap(),
        vec![]
    );
    assert_eq!(
        parse_search_body(&fixture("search-episode-none.json")).unwrap(),
        vec![]
    );
    for other in [&br#"{"workflows":{}}"#[..], br#"{}"#, br#"[1,2]"#] {
        let e = parse_search_hits(other).unwrap_err();
        assert!(!e.is_truncation(), "{e}");
        assert!(e.to_string().contains("search/episode.json"), "{e}");
    }
    let cut = fixture("search-episode-oc16.json");
    assert!(parse_search_hits(&cut[..cut.len() / 2])
        .unwrap_err()
        .is_truncation());
}

/// A 12.0+ workflow list (`WorkflowSetImpl`, `JaxbWorkflowInstance`,
/// `JaxbWorkflowOperationInstance` at tag 12.0): operation names come from `template`.
#[test]
fn the_12_workflow_list_decodes_with_names_from_template() {
    let wfs = parse_workflows_body(&fixture("workflows-oc12.json")).unwrap();
    assert_eq!(wfs.len(), 3);
    assert_eq!(wfs[0].template.as_deref(), Some("schedule-and-upload"));
    let names: Vec<&str> = wfs[0].operations.iter().map(|o| o.id.as_str()).collect();
    assert_eq!(names, ["defaults", "publish-engage"]);
    assert_eq!(wfs[0].operations[1].completed_ms, Some(1654081800000));
    // Up to 11.x the name is the operation's id, as before.
    let old = parse_workflows_body(&fixture("workflows-live.json")).unwrap();
    assert!(old
        .iter()
        .any(|w| w.operations.iter().any(|o| o.id == "capture")));
}

/// A tiny server for one endpoint: the answers in turn (the last one repeated), with a count.
async fn answering(answers: Vec<&'static str>) -> (String, Arc<AtomicU64>) {
    let n = Arc::new(AtomicU64::new(0));
    let counter = n.clone();
    let app = axum::Router::new()
        // The path the client asks its Digest challenge from (answers go unchecked here).
        .route(
            "/services/services.json",
            axum::routing::get(|| async {
                (
                    axum::http::StatusCode::UNAUTHORIZED,
                    [(
                        axum::http::header::WWW_AUTHENTICATE,
                        r#"Digest realm="Opencast", qop="auth", nonce="n1""#,
                    )],
                )
            }),
        )
        .fallback(move || {
            let k = counter.fetch_add(1, Ordering::SeqCst) as usize;
            let body = answers[k.min(answers.len() - 1)];
            async move {
                axum::http::Response::builder()
                    .header("content-type", "application/json")
                    .body(axum::body::Body::from(body))
                    .unwrap()
            }
        });
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await });
    (url, n)
}

fn opencast_at(url: &str) -> harvester::opencast::Opencast {
    let mut cfg = harvester::opencast::ClientConfig::new("u", "p");
    cfg.retries = 4;
    cfg.backoff = std::time::Duration::from_millis(1);
    cfg.max_backoff = std::time::Duration::from_millis(2);
    let base = harvester::opencast::base_url(url).unwrap();
    harvester::opencast::Opencast::new(
        harvester::opencast::Client::new(cfg),
        base.clone(),
        Some(base),
    )
}

/// A whole body of the wrong shape is final: one request, an error naming the endpoint. A
/// body cut short is transient: asked again, and the whole answer is used.
#[tokio::test(flavor = "multi_thread")]
async fn a_decode_error_is_final_and_a_truncated_body_is_retried() {
    let (url, n) = answering(vec![r#"{"unexpected": {"shape": true}}"#]).await;
    let e = opencast_at(&url).episode("mp1").await.unwrap_err();
    assert_eq!(n.load(Ordering::SeqCst), 1, "not retried: {e}");
    let msg = e.to_string();
    assert!(
        msg.contains("search/episode.json") && msg.contains("not retried"),
        "{msg}"
    );

    let (url, n) = answering(vec![
        r#"{"result":[{"mediapackage":{"id":"mp1","title":"T","dura"#,
        r#"{"result":[{"mediapackage":{"id":"mp1","title":"T","duration":10.0},"dc":{}}],"total":1,"offset":0,"limit":1}"#,
    ])
    .await;
    let m = opencast_at(&url).episode("mp1").await.unwrap().unwrap();
    assert_eq!((m.title.as_deref(), m.duration_ms), (Some("T"), Some(10)));
    assert_eq!(n.load(Ordering::SeqCst), 2);

    // The actions page path (harvest.rs) can tell the two apart with the same test.
    let cut = br#"{"actions":{"total":"2","action":[{"id":1"#;
    assert!(ActionsPage::parse(cut).unwrap_err().is_truncation());
    let html = b"<html>login</html>";
    assert!(!ActionsPage::parse(html).unwrap_err().is_truncation());
}

/// 12.0+: the old workflow path is a 404; the new one is found and remembered (one 404 per
/// handle), and its unfiltered list is filtered by state and definition here.
#[tokio::test(flavor = "multi_thread")]
async fn workflows_12_are_read_by_media_package() {
    let sim = sim_of(release("oc12"), data(10, 60), false).await;
    // The simulator authenticates: a client with its credentials.
    let mut cfg = harvester::opencast::ClientConfig::new(USER, PASS);
    cfg.retries = 0;
    let base = harvester::opencast::base_url(&sim.url()).unwrap();
    let oc = harvester::opencast::Opencast::new(
        harvester::opencast::Client::new(cfg),
        base.clone(),
        Some(base),
    );
    for k in [3u64, 4, 13] {
        let e = sim.data.episode(k);
        let wfs = oc
            .workflows(&e.mpid, harvester::sim::data::SIM_WORKFLOW)
            .await
            .unwrap();
        assert!(!wfs.is_empty());
        assert!(wfs.iter().all(|w| w.state.as_deref() == Some("SUCCEEDED")
            && w.template.as_deref() == Some(harvester::sim::data::SIM_WORKFLOW)));
        // No capture operation on 12 (the other definition's is filtered out).
        assert!(wfs
            .iter()
            .all(|w| w.operations.iter().all(|o| o.id != "capture")));
    }
    assert_eq!(sim.stats.workflow_requests.load(Ordering::Relaxed), 3);
}

// ---------------------------------------------------------------------------------------------
// load-episodes

/// A small client of the test Elasticsearch: every document of an index, by `_id`.
async fn es_docs(url: &str, index: &str) -> BTreeMap<String, Value> {
    let http = reqwest::Client::new();
    let base = url.trim_end_matches('/');
    http.post(format!("{base}/{index}/_refresh"))
        .send()
        .await
        .unwrap();
    let v: Value = http
        .post(format!("{base}/{index}/_search"))
        .json(&json!({"size": 10_000, "query": {"match_all": {}}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["hits"]["hits"]
        .as_array()
        .unwrap_or_else(|| panic!("{v}"))
        .iter()
        .map(|h| (h["_id"].as_str().unwrap().to_string(), h["_source"].clone()))
        .collect()
}

/// `load-episodes -c 2` on every family: no `createdFrom` is sent (no release reads it), the
/// listing stops at the cut-off (one page of a catalogue of four), exactly the episodes
/// created in the last two days are indexed, and the documents are the same whatever the
/// release: live times from the `capture` operation (DCE, up to 3.x) or the scheduler (4.0+),
/// `available` only where DCE's `retract-element` gives it, year/term/crn only from DCE series.
#[tokio::test(flavor = "multi_thread")]
async fn load_episodes_is_the_same_on_every_release() {
    let Some(es) = service("HARVESTER_TEST_ES_URL") else {
        return;
    };
    // Episodes an hour apart, the newest 30 min before now (whole minutes: 16+ writes
    // `created` to the minute); 350 of them, four pages of 100.
    let now = harvester::timefmt::now_us() / 60_000_000 * 60_000_000;
    let mut d = DataConfig::new(11, 100, now - 1_800_000_000, now);
    d.episodes = 350;
    let mut docs_of: BTreeMap<&str, BTreeMap<String, Value>> = BTreeMap::new();
    let mut want = BTreeSet::new();
    for (family, r) in FAMILIES {
        let sim = sim_of(*r, d.clone(), false).await;
        want = (0..350)
            .filter(|k| sim.data.episode(*k).created_us >= now - 2 * 86_400_000_000)
            .map(|k| sim.data.episode(k).mpid)
            .collect::<BTreeSet<_>>();
        let dir = scratch();
        let index = unique(&format!("t-shapes-{}", family.replace('.', "")));
        let mut c = harvester_for(dir.path(), &sim);
        c.env("MATTERHORN_ADMIN_HOST", sim.url())
            .env("ELASTICSEARCH_HOST", &es)
            .env("EPISODE_INDEX_NAME", &index)
            .args(["load-episodes", "-c", "2"]);
        let out = run_async(c).await;
        assert_ok(&out);
        let queries = sim.stats.search_queries.lock().unwrap().clone();
        assert!(
            queries.iter().all(|q| !q.contains("createdFrom")),
            "{family}: {queries:?}"
        );
        let listed: Vec<&String> = queries.iter().filter(|q| !q.contains("id=")).collect();
        let want_sorts: &[&str] = if r.search_v16() {
            // The first answer is the 400 for DATE_CREATED_DESC.
            &["sort=DATE_CREATED_DESC", "sort=modified+desc"]
        } else {
            &["sort=DATE_CREATED_DESC"]
        };
        assert_eq!(listed.len(), want_sorts.len(), "{family}: {queries:?}");
        for (q, s) in listed.iter().zip(want_sorts) {
            assert!(q.contains(s), "{family}: {q}");
        }
        let docs = es_docs(&es, &index).await;
        assert_eq!(
            docs.keys().cloned().collect::<BTreeSet<_>>(),
            want,
            "{family}: exactly the episodes created in the last two days"
        );
        assert!(docs.values().any(|d| d["live_stream"] == true), "{family}");
        docs_of.insert(family, docs);
    }
    assert_eq!(want.len(), 47);
    let stock = &docs_of["oc2-7"];
    for (family, docs) in &docs_of {
        for (id, d) in docs {
            if *family == "dce" {
                let keys = ["series", "year", "term", "crn", "available"];
                assert_eq!(
                    without(d, &keys),
                    without(&stock[id], &keys),
                    "{family}: {id}"
                );
                assert!(d.get("available").is_some(), "{family}: {id}");
            } else {
                assert_eq!(d, &stock[id], "{family}: {id}");
                for k in ["year", "term", "crn", "available"] {
                    assert!(d.get(k).is_none(), "{family}: {k} in {d}");
                }
            }
        }
    }
}

/// The 16.0+ simulator keeps the search service's rules (`SearchRestService.getEpisodes` at
/// 16.0): a sort other than title/contributor/creator/modified is a 400, so is a limit over 250;
/// the older search answers the same request.
#[tokio::test(flavor = "multi_thread")]
async fn the_16_search_keeps_its_sort_and_limit_rules() {
    for (family, bad_sort_status) in [("oc16-17", Some(400)), ("oc13-15", None)] {
        let sim = sim_of(release(family), data(10, 60), false).await;
        let mut cfg = harvester::opencast::ClientConfig::new(USER, PASS);
        cfg.retries = 0;
        let client = harvester::opencast::Client::new(cfg);
        let status = |q: &'static str| {
            let client = client.clone();
            let url =
                reqwest::Url::parse(&format!("{}/search/episode.json?{q}", sim.url())).unwrap();
            async move {
                match client.get_bytes(&url).await {
                    Ok(_) => None,
                    Err(harvester::opencast::OpencastError::Status { status, .. }) => Some(status),
                    Err(e) => panic!("{e}"),
                }
            }
        };
        assert_eq!(
            status("sort=DATE_CREATED_DESC&limit=10").await,
            bad_sort_status,
            "{family}"
        );
        assert_eq!(
            status("sort=modified%20sideways").await,
            bad_sort_status,
            "{family}"
        );
        assert_eq!(
            status("sort=modified+desc&limit=250").await,
            None,
            "{family}"
        );
        assert_eq!(status("limit=251").await, bad_sort_status, "{family}");
    }
}
