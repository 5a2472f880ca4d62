//! The lenient decoding layer and the record contract, against fixtures holding every quirk of
//! shared/reference/opencast-api.md (and real recorded search responses).

use chrono_tz::Tz;
use harvester::opencast::{parse_search_body, Action, ActionsPage};
use harvester::record::Record;
use serde_json::json;

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

/// A page borrowing its fixture body (leaked: tests are short-lived).
fn page(name: &str) -> ActionsPage<'static> {
    ActionsPage::parse(Box::leak(fixture(name).into_boxed_slice())).unwrap()
}

fn episode(name: &str) -> harvester::opencast::EpisodeMeta {
    parse_search_body(&fixture(name))
        .unwrap()
        .pop()
        .expect("one episode")
}

#[test]
fn pages_in_every_shape() {
    let many = page("actions-page-quirks.json");
    assert_eq!(
        (many.total, many.offset, many.limit, many.len()),
        (5, 0, 1000, 5)
    );
    let one = page("actions-page-one.json");
    assert_eq!((one.total, one.len()), (1, 1));
    let none = page("actions-page-none.json");
    assert_eq!((none.total, none.len()), (0, 0));
    assert!(page("actions-page-empty-element.json").is_empty());
}

#[test]
fn truncated_or_foreign_bodies_are_errors() {
    let body = fixture("actions-page-quirks.json");
    assert!(ActionsPage::parse(&body[..body.len() / 2]).is_err());
    assert!(ActionsPage::parse(b"<html>login</html>").is_err());
    assert!(parse_search_body(b"{\"search-results\":").is_err());
}

#[test]
fn each_action_is_judged_alone() {
    let raws = page("actions-page-quirks.json").raw_actions();
    let judged: Vec<_> = raws
        .iter()
        .map(|r| Action::from_raw(r.get(), Tz::UTC))
        .collect();
    assert!(judged[0].is_ok() && judged[1].is_ok() && judged[2].is_ok());
    assert_eq!(judged[3].as_ref().unwrap_err(), "missing sessionId object");
    assert!(judged[4].as_ref().unwrap_err().contains("last tuesday"));
    let a = judged[1].as_ref().unwrap();
    assert_eq!((a.id, a.inpoint, a.is_playing), (1782, Some(0), 2));
}

#[test]
fn real_search_responses_decode() {
    let e = episode("search-episode-example-16x9Monostream-episode.json");
    assert_eq!(e.mpid, "83ebde9d-0812-4071-8fb7-a97c1472ceb9");
    assert_eq!(e.duration_ms, Some(6875847));
    assert_eq!(e.series.as_deref(), Some("20150221144"));
    assert!(e
        .attachments
        .iter()
        .any(|a| a.kind == "presentation/segment+preview"
            && a.reference
                .as_deref()
                .unwrap_or("")
                .ends_with(";time=T00:02:33:0F1000")));
    let h = episode("search-episode-example-HLS-episode.json");
    assert_eq!(
        (h.title.as_deref(), h.dc_description.as_deref()),
        (Some("HLS Test -2"), None)
    );
    let c = episode("search-episode-example-captions-episode.json");
    assert_eq!(c.mpid, e.mpid);
    assert!(parse_search_body(&fixture("search-episode-none.json"))
        .unwrap()
        .is_empty());
}

fn records() -> Vec<serde_json::Value> {
    let raws = page("actions-page-quirks.json").raw_actions();
    let lecture = episode("search-episode-example-16x9Monostream-episode.json");
    let hls = episode("search-episode-example-HLS-episode.json");
    raws.iter()
        .filter_map(|r| Action::from_raw(r.get(), Tz::UTC).ok())
        .map(|a| {
            let ep = [&lecture, &hls].into_iter().find(|e| e.mpid == a.mpid);
            serde_json::from_str(&Record::build(a, ep, Tz::UTC).to_json()).unwrap()
        })
        .collect()
}

#[test]
fn record_of_a_vod_action_field_by_field() {
    assert_eq!(
        records()[0],
        json!({
            "action_id": 1781,
            "timestamp": "2016-03-01T17:00:00+00:00",
            "mpid": "83ebde9d-0812-4071-8fb7-a97c1472ceb9",
            "session_id": "k3l2m1",
            "huid": "anonymous",
            "useragent": "Mozilla/5.0 (Macintosh)",
            "action": {"type": "HEARTBEAT", "inpoint": 120, "outpoint": 130, "length": 10, "is_playing": true},
            "ip": "10.1.2.3",
            "proxy1": "128.103.1.1",
            "is_live": 0,
            "episode": {
                "title": "Lecture 11", "duration": 6875847, "start": "2015-05-05T23:39:00Z",
                "course": "Fundamentals of Website Development", "series": "20150221144",
                "year": "2015", "term": "02", "cdn": "21144", "type": "L11", "description": "Grab Bag"
            }
        })
    );
}

#[test]
fn record_of_a_live_action_with_proxies_and_no_user() {
    assert_eq!(
        records()[1],
        json!({
            "action_id": 1782,
            "timestamp": "2016-03-12T12:00:01.898000+00:00",
            "mpid": "e8d2d1ac-0185-45f5-950f-518e447ebabc",
            "session_id": "live-1",
            "huid": "None",
            "useragent": null,
            "action": {"type": "PLAY", "inpoint": 0, "outpoint": 5, "length": 5, "is_playing": true},
            "ip": "10.9.9.9",
            "proxy1": "128.103.1.1",
            "proxy2": "172.16.0.5",
            "is_live": 1,
            "episode": {
                "title": "HLS Test -2", "duration": 95000, "start": "2019-08-29T11:27:16Z",
                "course": "Test Spring 2019-29998", "series": "20190229998",
                "year": "2019", "term": "02", "cdn": "29998", "type": "L01"
            }
        })
    );
}

#[test]
fn record_of_an_unknown_episode_keeps_the_action() {
    let r = &records()[2];
    assert_eq!(r["episode"], json!({}));
    assert_eq!(r["ip"], "-omitted-");
    assert_eq!(r["huid"], "-omitted-");
    assert_eq!(r["timestamp"], "2016-03-12T11:00:01+00:00");
    assert_eq!(r["action"]["is_playing"], false);
    assert_eq!(r["is_live"], 0);
}

#[test]
fn episode_start_falls_back_to_dc_created_in_utc() {
    let mut e = episode("search-episode-example-16x9Monostream-episode.json");
    e.start = None;
    e.series_title = None;
    let block = harvester::record::EpisodeBlock::from_meta(&e, Tz::UTC);
    assert_eq!(block.start.as_deref(), Some("2015-05-05T23:39:00Z"));
    let raws = page("actions-page-one.json").raw_actions();
    let a = Action::from_raw(raws[0].get(), Tz::UTC).unwrap();
    let v: serde_json::Value =
        serde_json::from_str(&Record::build(a, Some(&e), Tz::UTC).to_json()).unwrap();
    // Without a series title none of course/series/year/term/cdn appear.
    for k in ["course", "series", "year", "term", "cdn"] {
        assert!(v["episode"].get(k).is_none(), "{k} should be absent: {v}");
    }
}

#[test]
fn workflows_decode_one_or_many_operations() {
    #[derive(serde::Deserialize)]
    struct W {
        workflows: harvester::opencast::wire::MaybeEmpty<harvester::opencast::wire::WorkflowsBody>,
    }
    let w: W = serde_json::from_slice(&fixture("workflows-live.json")).unwrap();
    let wfs: Vec<_> = w
        .workflows
        .0
        .unwrap()
        .workflow
        .0
        .into_iter()
        .filter_map(harvester::opencast::Workflow::from_wire)
        .collect();
    assert_eq!(wfs.len(), 2);
    let newest = wfs.iter().max_by_key(|w| w.id).unwrap();
    assert_eq!(newest.id, 4002);
    let capture = newest
        .operations
        .iter()
        .find(|o| o.id == "capture")
        .unwrap();
    assert_eq!(
        (capture.started_ms, capture.completed_ms),
        (Some(1456833600000), Some(1456837200000))
    );
}

#[test]
fn judging_a_page_quarantines_bad_actions_with_their_exact_text() {
    // The one-pass decode succeeds here; the two bad actions are found by the judge.
    let judged = harvester::opencast::JudgedPage::judge(page("actions-page-quirks.json"), Tz::UTC);
    assert_eq!(judged.actions.len(), 3);
    assert_eq!(judged.rejected.len(), 2);
    assert!(
        judged.rejected[0].0.contains("\"id\": 1784")
            && judged.rejected[0].1 == "missing sessionId object"
    );
    assert!(judged.rejected[1].0.contains("last tuesday"));
    // An element of the wrong shape makes the one-pass decode fail: each action is judged alone.
    // (A flat string `sessionId` is Matterhorn 1.4's shape, a record; a list is no release's.)
    let odd = br#"{"actions":{"total":"2","action":[{"id":1,"mediapackageId":"m","sessionId":["flat"],"created":"2016-03-01T12:00:00Z"},
        {"id":2,"mediapackageId":"m","sessionId":{"sessionId":"s"},"created":"2016-03-01T12:00:00Z"}]}}"#;
    let judged = harvester::opencast::JudgedPage::judge(ActionsPage::parse(odd).unwrap(), Tz::UTC);
    assert_eq!((judged.actions.len(), judged.rejected.len()), (1, 1));
    assert!(judged.rejected[0].0.contains("\"sessionId\":[\"flat\"]"));
}

/// Every release sends `actions` as an object with a `total` (a JAXB `int` attribute), even with
/// no rows. Anything else is not a page: read as "no actions, total 0" (or as many as its rows),
/// one glitched page once passed a day as proven with most of it never read, and an array of
/// rows made a window "harvested" with nothing in it. Each is a final error, not a retry.
#[test]
fn a_page_without_an_actions_object_and_a_total_is_not_a_page() {
    let row = r#"{"id":1,"mediapackageId":"m","sessionId":{"sessionId":"s"},"created":"2016-03-01T12:00:00Z"}"#;
    let with_rows_no_total = format!(r#"{{"actions":{{"action":[{row}]}}}}"#);
    let array = format!(r#"{{"actions":[{row}]}}"#);
    for body in [
        r#"{"actions":""}"#.to_string(),
        r#"{"actions":null}"#.to_string(),
        r#"{"actions":{}}"#.to_string(),
        r#"{"actions":{"total":"-5"}}"#.to_string(),
        r#"{"actions":{"total":-1,"action":[]}}"#.to_string(),
        with_rows_no_total,
        array,
    ] {
        let e = ActionsPage::parse(body.as_bytes()).expect_err(&body);
        assert!(!e.is_truncation(), "{body}: {e}");
        assert!(
            e.to_string().contains("not a user-actions page"),
            "{body}: {e}"
        );
    }
    // An empty page as Opencast sends one.
    let p = ActionsPage::parse(br#"{"actions":{"total":"0","offset":"0","limit":"10"}}"#).unwrap();
    assert_eq!((p.total, p.len()), (0, 0));
}
