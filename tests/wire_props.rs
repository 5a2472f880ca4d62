//! Property tests of the lenient wire decoder: whatever Opencast sends, decoding never panics,
//! and a well-shaped action in any of the quirks the API reference allows becomes exactly the
//! action it describes.

use chrono_tz::Tz;
use harvester::opencast::{parse_search_body, parse_workflows_body, ActionsPage, JudgedPage};
use harvester::record::Record;
use harvester::timefmt;
use proptest::prelude::*;
use serde_json::{json, Value};

/// Decodes and judges a page body; returns (accepted, rejected) or `None` for a bad envelope.
fn judge(body: &[u8]) -> Option<(usize, usize)> {
    let page = ActionsPage::parse(body).ok()?;
    let j = JudgedPage::judge(page, Tz::UTC);
    // Every accepted action renders as a record.
    for a in j.actions.iter().cloned() {
        let _ = Record::with_block(a, None).to_json();
    }
    Some((j.actions.len(), j.rejected.len()))
}

/// Any JSON value, a few levels deep, with the keys the decoders look for.
fn any_json() -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        Just("id".to_string()),
        Just("$".to_string()),
        Just("type".to_string()),
        Just("created".to_string()),
        Just("sessionId".to_string()),
        Just("isPlaying".to_string()),
        Just("action".to_string()),
        Just("total".to_string()),
        Just("mediapackage".to_string()),
        Just("mediapackageId".to_string()),
        "[a-zA-Z$]{0,6}",
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        ".{0,12}".prop_map(Value::String),
        Just(json!("2016-03-01T12:00:00Z")),
        Just(json!("9999-12-31T23:59:59Z")),
        Just(json!("")),
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec((key.clone(), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = judge(&body);
        let _ = parse_search_body(&body);
        let _ = parse_workflows_body(&body);
    }

    #[test]
    fn arbitrary_json_never_panics(v in any_json(), total in any_json()) {
        // As an action, a list of actions, and the documents themselves.
        for doc in [
            json!({"actions": {"total": total, "action": v}}),
            json!({"actions": {"action": [v, {"id": 1}]}}),
            json!({"actions": v}),
            json!({"search-results": {"result": v}}),
            json!({"search-results": {"result": {"mediapackage": v}}}),
            json!({"workflows": {"workflow": v}}),
            json!({"workflows": {"workflow": {"id": 1, "operations": {"operation": v}}}}),
            v.clone(),
        ] {
            let body = serde_json::to_vec(&doc).unwrap();
            let _ = judge(&body);
            let _ = parse_search_body(&body);
            let _ = parse_workflows_body(&body);
        }
    }

    #[test]
    fn a_valid_action_round_trips_in_every_allowed_shape(
        id in 1i64..=i64::MAX,
        mpid in "[a-f0-9-]{1,36}",
        session in "[a-zA-Z0-9]{1,16}",
        user in prop::option::of("[a-zA-Z0-9@.]{1,12}"),
        ip in "[0-9., ]{0,30}",
        agent in prop::option::of(".{0,40}"),
        kind in prop::option::of("[A-Z_]{1,10}"),
        inpoint in prop::option::of(-1_000_000i64..1_000_000_000),
        is_playing in 0i64..=2,
        created_s in 0i64..4_102_444_800, // 1970 ..= 2100
        millis in prop::option::of(0i64..1000),
        quirks in any::<[bool; 6]>(),
    ) {
        let created_us = created_s * 1_000_000 + millis.unwrap_or(0) * 1000;
        let created = match millis {
            None => timefmt::format_utc_z(created_us),
            Some(m) => format!(
                "{}.{m:03}Z",
                timefmt::format_utc_z(created_s * 1_000_000).trim_end_matches('Z')
            ),
        };
        // The quirks of the reference: numbers as strings, a `"$"` text, booleans as numbers,
        // one action as a bare object instead of a list.
        let number = |n: i64, as_string: bool| if as_string { json!(n.to_string()) } else { json!(n) };
        let text = |s: &str, as_element: bool| {
            if as_element { json!({"lang": "en", "$": s}) } else { json!(s) }
        };
        let mut session_obj = json!({"sessionId": text(&session, quirks[1]), "userIp": ip});
        if let Some(u) = &user {
            session_obj["userId"] = json!(u);
        }
        if let Some(a) = &agent {
            session_obj["userAgent"] = json!(a);
        }
        let mut a = json!({
            "id": number(id, quirks[0]),
            "mediapackageId": mpid,
            "sessionId": session_obj,
            "created": created,
            "isPlaying": match (is_playing, quirks[2]) {
                (0, false) => json!(false),
                (1, false) => json!(true),
                (n, _) => number(n, quirks[3]),
            },
        });
        if let Some(k) = &kind {
            a["type"] = text(k, quirks[4]);
        }
        if let Some(i) = inpoint {
            a["inpoint"] = number(i, quirks[3]);
            a["outpoint"] = number(i + 10, !quirks[3]);
            a["length"] = json!(10);
        }
        let list = if quirks[5] { a.clone() } else { json!([a.clone(), a.clone()]) };
        let body = serde_json::to_vec(&json!({"actions": {"total": "2", "action": list}})).unwrap();
        let page = ActionsPage::parse(&body).unwrap();
        let j = JudgedPage::judge(page, Tz::UTC);
        prop_assert!(j.rejected.is_empty(), "rejected: {:?}", j.rejected);
        prop_assert_eq!(j.actions.len(), if quirks[5] { 1 } else { 2 });
        let act = j.actions[0].clone();
        prop_assert_eq!(act.id, id);
        prop_assert_eq!(act.created_us, created_us);
        prop_assert_eq!(act.is_playing, is_playing);
        let r: Value = serde_json::from_str(&Record::with_block(act, None).to_json()).unwrap();
        prop_assert_eq!(&r["action_id"], &json!(id));
        prop_assert_eq!(&r["mpid"], &json!(mpid));
        prop_assert_eq!(&r["session_id"], &json!(session));
        prop_assert_eq!(&r["huid"], &json!(user.clone().unwrap_or_else(|| "None".into())));
        prop_assert_eq!(&r["useragent"], &json!(agent));
        prop_assert_eq!(&r["action"]["type"], &json!(kind));
        prop_assert_eq!(&r["action"]["inpoint"], &json!(inpoint));
        prop_assert_eq!(&r["action"]["outpoint"], &json!(inpoint.map(|i| i + 10)));
        prop_assert_eq!(&r["action"]["is_playing"], &json!(is_playing > 0));
        prop_assert_eq!(&r["is_live"], &json!(if is_playing == 2 { 1 } else { 0 }));
        prop_assert_eq!(&r["timestamp"], &json!(timefmt::python_isoformat_utc(created_us)));
        let mut chain = ip.split(',').map(str::trim);
        prop_assert_eq!(&r["ip"], &json!(chain.next().unwrap_or("")));
    }

    #[test]
    fn a_non_positive_id_is_never_a_record(id in i64::MIN..=0) {
        let body = serde_json::to_vec(&json!({"actions": {"total": 1, "action": {
            "id": id, "mediapackageId": "m", "sessionId": {"sessionId": "s"},
            "created": "2016-03-01T12:00:00Z"}}})).unwrap();
        let j = JudgedPage::judge(ActionsPage::parse(&body).unwrap(), Tz::UTC);
        prop_assert!(j.actions.is_empty());
        prop_assert_eq!(j.rejected.len(), 1);
    }
}
