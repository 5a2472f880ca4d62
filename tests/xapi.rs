//! Issue 21, points 2 and 3: xAPI statements of the video profile into a real LRS (Ralph, on
//! the Elasticsearch node of .ci/services.sh), read back through its GET (following `more`),
//! replayed without conflicts, checked with Ralph's own validator and against the profile's
//! required extensions per verb (tests/data/xapi-video-required.json, written from the profile).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Stdio};

use common::*;
use serde_json::Value;

struct Lrs {
    url: String,
    user: String,
    pass: String,
}

fn lrs() -> Option<Lrs> {
    Some(Lrs {
        url: service("HARVESTER_TEST_XAPI_URL")?,
        user: service("HARVESTER_TEST_XAPI_USER")?,
        pass: service("HARVESTER_TEST_XAPI_PASS")?,
    })
}

/// A home page no other test uses: it tells this test's statements apart in the shared LRS.
fn home() -> String {
    format!("https://{}.engage.example.edu/", unique("t-xapi"))
}

fn with_lrs(mut c: Command, l: &Lrs, home: &str) -> Command {
    c.env("XAPI_ENDPOINT", &l.url)
        .env("XAPI_USERNAME", &l.user)
        .env("XAPI_PASSWORD", &l.pass)
        .env("XAPI_HOME_PAGE", home);
    c
}

/// Every statement of `home` the LRS holds, read through its GET and its `more` links (all of
/// them: Ralph applies `since` to `timestamp`, the time of the action, not to `stored`).
async fn read_back(l: &Lrs, home: &str) -> Vec<Value> {
    let http = reqwest::Client::new();
    let base = reqwest::Url::parse(&l.url).unwrap();
    let mut next = format!("{}/statements?limit=100", l.url.trim_end_matches('/'));
    let mut out = Vec::new();
    let mut pages = 0;
    loop {
        pages += 1;
        assert!(pages < 10_000, "the LRS's `more` never ends");
        let r = http
            .get(&next)
            .basic_auth(&l.user, Some(&l.pass))
            .header("X-Experience-API-Version", "1.0.3")
            .send()
            .await
            .expect("the LRS answers");
        assert!(r.status().is_success(), "GET {next}: {}", r.status());
        let v: Value = r.json().await.unwrap();
        for s in v["statements"].as_array().expect("statements") {
            if s["actor"]["account"]["homePage"] == home {
                out.push(s.clone());
            }
        }
        match v["more"].as_str() {
            Some(m) if !m.is_empty() => next = base.join(m).unwrap().to_string(),
            _ => break,
        }
    }
    out
}

fn statements_of(o: &std::process::Output) -> Vec<Value> {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON statement per line"))
        .collect()
}

/// The two sets of statements have the same ids (the differences named, not the whole sets).
fn assert_same_ids(stored: &[Value], dumped: &[Value]) {
    let (a, b) = (ids(stored), ids(dumped));
    let missing: Vec<_> = b.difference(&a).take(5).collect();
    let extra: Vec<_> = a.difference(&b).take(5).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{} stored, {} dumped; missing from the LRS (first 5): {missing:?}; not ours: {extra:?}",
        a.len(),
        b.len()
    );
}

fn ids(v: &[Value]) -> BTreeSet<String> {
    v.iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect()
}

/// The profile's required extensions per verb (tests/data/xapi-video-required.json): each
/// statement holds the ones its verb requires, and `completion` only when `completed`.
fn check_profile(statements: &[Value]) -> BTreeMap<String, usize> {
    let table: Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/xapi-video-required.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let mut seen = BTreeMap::new();
    for s in statements {
        let word = s["verb"]["display"]["en-US"].as_str().unwrap().to_string();
        let rule = &table["verbs"][&word];
        assert!(rule.is_object(), "no rule for verb {word}");
        assert_eq!(s["verb"]["id"], rule["verb"], "{s}");
        for iri in rule["result_extensions_required"].as_array().unwrap() {
            let iri = iri.as_str().unwrap();
            let v = &s["result"]["extensions"][iri];
            assert!(!v.is_null(), "{word} lacks result extension {iri}: {s}");
            if let Some(x) = v.as_f64() {
                assert!(x >= 0.0, "{word}: {iri} is negative: {s}");
            }
        }
        for iri in rule["context_extensions_required"].as_array().unwrap() {
            let iri = iri.as_str().unwrap();
            assert!(
                !s["context"]["extensions"][iri].is_null(),
                "{word} lacks context extension {iri}: {s}"
            );
        }
        let session = "https://w3id.org/xapi/video/extensions/session-id";
        assert!(s["context"]["extensions"][session].is_string(), "{s}");
        assert_eq!(
            s["object"]["definition"]["type"],
            table["all_verbs"]["object_definition_type"]
        );
        assert_eq!(
            s["context"]["contextActivities"]["category"][0]["id"],
            table["all_verbs"]["context_category_activity_id"]
        );
        if word == "completed" {
            assert_eq!(s["result"]["completion"], true, "{s}");
            assert!(s["result"]["duration"].as_str().unwrap().starts_with("PT"));
        } else {
            assert!(s["result"]["completion"].is_null(), "{s}");
        }
        *seen.entry(word).or_insert(0) += 1;
    }
    seen
}

/// Ralph's own validator on a file of statements: every line valid, none unknown (`-F`).
fn ralph_validate(file: &Path) {
    let ralph =
        service("HARVESTER_TEST_RALPH").expect("HARVESTER_TEST_RALPH: bash .ci/services.sh start");
    let out = Command::new(&ralph)
        .args(["validate", "-f", "xapi", "-F"])
        .stdin(std::fs::File::open(file).unwrap())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .expect("ralph runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "ralph validate failed: {err}");
    assert!(
        !err.contains("Input event is not a valid") && !err.contains("No matching pydantic model"),
        "ralph validate: {err}"
    );
}

/// Harvests a simulated day of player sessions, posts its statements, reads them back, replays
/// them (accepted as already stored), and checks each one.
#[tokio::test(flavor = "multi_thread")]
async fn statements_reach_the_lrs_read_back_replay_and_validate() {
    let Some(l) = lrs() else { return };
    let sim = start_sim(harvester::sim::SimConfig::new(data(3_000, 4 * 3600))).await;
    let dir = scratch();
    let mut c = harvester_for(dir.path(), &sim);
    harvest_window(&mut c, 4 * 3600 * 1_000_000, "none");
    assert_ok(&run(c));
    let home = home();

    // What the dump shows is what the sink posts.
    let mut c = with_lrs(harvester(dir.path()), &l, &home);
    c.env("XAPI_COMPLETION_THRESHOLD", "0.05")
        .args(["journal", "dump", "--format", "xapi"]);
    let dump = run(c);
    assert_ok(&dump);
    let dumped = statements_of(&dump);
    assert!(dumped.len() > 100, "{} statements", dumped.len());
    let seen = check_profile(&dumped);
    for verb in [
        "initialized",
        "played",
        "paused",
        "seeked",
        "completed",
        "terminated",
    ] {
        assert!(
            seen.get(verb).copied().unwrap_or(0) > 0,
            "no {verb}: {seen:?}"
        );
    }
    let file = dir.path().join("statements.jsonl");
    std::fs::write(&file, &dump.stdout).unwrap();
    ralph_validate(&file);

    let mut c = with_lrs(harvester(dir.path()), &l, &home);
    c.env("XAPI_COMPLETION_THRESHOLD", "0.05")
        .env("XAPI_BATCH", "100")
        .args(["forward", "-o", "xapi"]);
    let out = run(c);
    assert_ok(&out);
    let log = stderr(&out);
    assert!(!log.contains(&l.pass), "the password was printed");
    let stored = read_back(&l, &home).await;
    assert_same_ids(&stored, &dumped);
    // The LRS holds our bytes (less what it adds: stored, authority).
    let by_id: BTreeMap<String, &Value> = stored
        .iter()
        .map(|s| (s["id"].as_str().unwrap().to_string(), s))
        .collect();
    for d in &dumped {
        let s = by_id[d["id"].as_str().unwrap()];
        for k in ["actor", "verb", "object", "result", "context"] {
            assert_eq!(s[k], d[k], "field {k} of {}", d["id"]);
        }
    }

    // A replay of the whole range: every statement is already stored, nothing is refused.
    let mut c = with_lrs(harvester(dir.path()), &l, &home);
    c.env("XAPI_COMPLETION_THRESHOLD", "0.05").args([
        "journal",
        "replay",
        "--from",
        "20000101000000",
        "--to",
        "20991231000000",
        "-o",
        "xapi",
    ]);
    let out = run(c);
    assert_ok(&out);
    let again = read_back(&l, &home).await;
    assert_eq!(again.len(), stored.len(), "the replay added statements");
    let mut c = harvester(dir.path());
    c.args(["journal", "dump", "--dead-letters"]);
    let letters = run(c);
    assert!(
        letters.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&letters.stdout)
    );

    // A second forward has nothing to send (its cursor is at the end).
    let mut c = with_lrs(harvester(dir.path()), &l, &home);
    c.env("XAPI_COMPLETION_THRESHOLD", "0.05")
        .args(["forward", "-o", "xapi"]);
    let out = run(c);
    assert_ok(&out);
    assert!(stderr(&out).contains("forwarded=0"), "{}", stderr(&out));
}

/// A statement the LRS refuses (it holds another statement under that id: 409) goes to the
/// dead-letter table with the LRS's reason; every other statement is delivered and the cursor
/// reaches the end.
#[tokio::test(flavor = "multi_thread")]
async fn a_refused_statement_is_a_dead_letter_and_the_sink_goes_on() {
    let Some(l) = lrs() else { return };
    let sim = start_sim(harvester::sim::SimConfig::new(data(600, 3600))).await;
    let dir = scratch();
    let mut c = harvester_for(dir.path(), &sim);
    harvest_window(&mut c, 3600 * 1_000_000, "none");
    assert_ok(&run(c));
    let home = home();
    let mut c = with_lrs(harvester(dir.path()), &l, &home);
    c.args(["journal", "dump", "--format", "xapi"]);
    let dumped = statements_of(&run(c));
    assert!(dumped.len() > 20);

    // Another statement under the id of our tenth.
    let mut squatter = dumped[9].clone();
    squatter["verb"]["display"]["en-US"] = "squatted".into();
    squatter["verb"]["id"] = "http://example.org/verbs/squatted".into();
    let r = reqwest::Client::new()
        .post(format!("{}/statements", l.url.trim_end_matches('/')))
        .basic_auth(&l.user, Some(&l.pass))
        .header("X-Experience-API-Version", "1.0.3")
        .json(&vec![squatter])
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());

    let mut c = with_lrs(harvester(dir.path()), &l, &home);
    c.env("XAPI_BATCH", "7").args(["forward", "-o", "xapi"]);
    let out = run(c);
    assert_ok(&out);
    let stored = read_back(&l, &home).await;
    assert_same_ids(&stored, &dumped);
    let squatted = stored.iter().find(|s| s["id"] == dumped[9]["id"]).unwrap();
    assert_eq!(squatted["verb"]["id"], "http://example.org/verbs/squatted");

    let mut c = harvester(dir.path());
    c.args(["journal", "dump", "--dead-letters"]);
    let letters: Vec<Value> = statements_of(&run(c));
    assert_eq!(letters.len(), 1, "{letters:?}");
    let d = &letters[0];
    assert_eq!(d["sink"], "xapi");
    assert!(d["reason"].as_str().unwrap().contains("409"), "{d}");
    let raw: Value = serde_json::from_str(d["raw"].as_str().unwrap()).unwrap();
    assert_eq!(raw, dumped[9]);
}

/// An LRS that cannot be reached: the forward fails after its attempts naming the LRS, the
/// cursor stays where it was, and a later forward delivers everything once.
#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_lrs_moves_no_cursor() {
    let Some(l) = lrs() else { return };
    let sim = start_sim(harvester::sim::SimConfig::new(data(300, 1800))).await;
    let dir = scratch();
    let mut c = harvester_for(dir.path(), &sim);
    harvest_window(&mut c, 1800 * 1_000_000, "none");
    assert_ok(&run(c));
    let home = home();
    let dead = Lrs {
        url: format!("http://127.0.0.1:{}/xAPI", free_port()),
        user: l.user.clone(),
        pass: l.pass.clone(),
    };
    let mut c = with_lrs(harvester(dir.path()), &dead, &home);
    c.env("XAPI_ATTEMPTS", "2").args(["forward", "-o", "xapi"]);
    let out = run(c);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let e = stderr(&out);
    assert!(e.contains("cannot reach the LRS"), "{e}");
    assert!(!e.contains(&l.pass));
    let mut c = harvester(dir.path());
    c.args(["journal", "stats", "--json"]);
    let st: Value = serde_json::from_slice(&run(c).stdout).unwrap();
    for cur in st["cursors"].as_array().unwrap() {
        assert_eq!(cur["cursor"], 0, "{st}");
    }

    let mut c = with_lrs(harvester(dir.path()), &l, &home);
    c.args(["forward", "-o", "xapi"]);
    assert_ok(&run(c));
    let mut c = with_lrs(harvester(dir.path()), &l, &home);
    c.args(["journal", "dump", "--format", "xapi"]);
    let dumped = statements_of(&run(c));
    let stored = read_back(&l, &home).await;
    assert_eq!(stored.len(), dumped.len());
    assert_same_ids(&stored, &dumped);
}

/// A journal of one session on an episode whose title is `title_len` bytes long (and a second
/// session on a plain episode).
fn journal_with_title(dir: &Path, title_len: usize) {
    use harvester::journal::{codec, Journal, PageCommit};
    use harvester::record::{ActionBlock, EpisodeBlock, Record};
    let ep = |title: String| {
        Some(std::sync::Arc::new(EpisodeBlock {
            title: Some(title),
            duration: Some(600_000),
            start: None,
            series: None,
            kind: None,
            description: None,
        }))
    };
    let rec = |id: i64, session: &str, mpid: &str, title: String| Record {
        action_id: id,
        created_us: 1_458_000_000_000_000 + id * 10_000_000,
        mpid: mpid.into(),
        session_id: session.into(),
        huid: Some("viewer".into()),
        useragent: None,
        action: ActionBlock {
            kind: Some(if id % 2 == 1 { "PLAY" } else { "PAUSE" }.into()),
            inpoint: Some(id * 10),
            outpoint: Some(id * 10),
            length: None,
            is_playing: id % 2 == 1,
        },
        ip_chain: None,
        is_live: false,
        episode: ep(title),
    };
    let big = "T".repeat(title_len);
    let records: Vec<Record> = (1..=4)
        .map(|id| rec(id, "s-big", "mp-big", big.clone()))
        .chain((5..=8).map(|id| rec(id, "s-small", "mp-small", "Small".into())))
        .collect();
    let j = Journal::open(&journal_path(dir)).unwrap();
    j.commit_page(PageCommit {
        ids: records.iter().map(|r| r.action_id).collect(),
        block: Some(codec::encode_block(&records)),
        ..PageCommit::default()
    })
    .unwrap();
}

/// A statement over XAPI_BATCH_BYTES alone is a dead letter, never sent (a 48 MB POST once got
/// a 500 on every run, jamming the sink); the other statements are delivered.
#[tokio::test(flavor = "multi_thread")]
async fn a_statement_over_the_byte_limit_is_a_dead_letter() {
    let Some(l) = lrs() else { return };
    let dir = scratch();
    journal_with_title(dir.path(), 100_000);
    let home = home();
    let mut c = with_lrs(harvester(dir.path()), &l, &home);
    c.env("XAPI_BATCH_BYTES", "65536")
        .args(["forward", "-o", "xapi"]);
    let out = run(c);
    assert_ok(&out);
    let mut c = harvester(dir.path());
    c.args(["journal", "dump", "--dead-letters"]);
    let letters = statements_of(&run(c));
    // Every statement of the big episode (initialized, played, paused, ...) is one.
    assert!(!letters.is_empty());
    for d in &letters {
        assert!(
            d["reason"].as_str().unwrap().contains("XAPI_BATCH_BYTES"),
            "{d}"
        );
    }
    let stored = read_back(&l, &home).await;
    assert!(!stored.is_empty());
    assert!(stored.iter().all(|s| s["object"]["id"]
        .as_str()
        .unwrap()
        .ends_with("/play/mp-small")));
}

/// Something in front of the LRS that answers 200 with a page that is not the list of stored
/// ids (a login page, `[]`) acknowledges nothing: the run fails naming it, the cursor stays (it
/// once moved to the end and every statement was lost).
#[test]
fn a_200_that_is_not_the_stored_ids_acknowledges_nothing() {
    let dir = scratch();
    journal_with_title(dir.path(), 10);
    for body in [
        "<html><body>Please log in</body></html>",
        "[]",
        "{\"ok\":true}",
    ] {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let reply = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        std::thread::spawn(move || {
            use std::io::{Read, Write};
            for conn in listener.incoming().take(20) {
                let Ok(mut conn) = conn else { continue };
                let mut buf = vec![0u8; 1 << 20];
                let _ = conn.read(&mut buf);
                let _ = conn.write_all(reply.as_bytes());
            }
        });
        let proxy = Lrs {
            url: format!("http://127.0.0.1:{port}/xAPI"),
            user: "u".into(),
            pass: "p".into(),
        };
        let mut c = with_lrs(harvester(dir.path()), &proxy, &home());
        c.args(["forward", "-o", "xapi"]);
        let out = run(c);
        let e = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{body}: {e}");
        assert!(e.contains("did not store the batch"), "{e}");
        let mut c = harvester(dir.path());
        c.args(["journal", "stats", "--json"]);
        let st: Value = serde_json::from_slice(&run(c).stdout).unwrap();
        for cur in st["cursors"].as_array().unwrap() {
            assert_eq!(cur["cursor"], 0, "{body}: {st}");
        }
    }
}

/// `check -o xapi` reads one statement with the credentials: passes with the right ones,
/// fails naming the settings with a wrong password or a dead address.
#[tokio::test(flavor = "multi_thread")]
async fn check_says_whether_the_lrs_takes_our_credentials() {
    let Some(l) = lrs() else { return };
    let sim = start_sim(harvester::sim::SimConfig::new(data(10, 60))).await;
    let dir = scratch();
    let home = home();
    let check = |lrs: &Lrs| {
        let mut c = with_lrs(harvester_for(dir.path(), &sim), lrs, &home);
        c.args(["check", "-o", "xapi"]);
        let out = run(c);
        String::from_utf8_lossy(&out.stdout).to_string() + &stderr(&out)
    };
    let good = check(&l);
    assert!(
        good.contains("✓ xapi") && good.contains("credentials accepted"),
        "{good}"
    );
    let wrong = Lrs {
        pass: "not-the-password".into(),
        ..Lrs {
            url: l.url.clone(),
            user: l.user.clone(),
            pass: String::new(),
        }
    };
    let bad = check(&wrong);
    assert!(
        bad.contains("✗ xapi") && bad.contains("XAPI_PASSWORD"),
        "{bad}"
    );
    assert!(!bad.contains("not-the-password"), "{bad}");
    let dead = Lrs {
        url: format!("http://127.0.0.1:{}/xAPI", free_port()),
        user: l.user.clone(),
        pass: l.pass.clone(),
    };
    let down = check(&dead);
    assert!(
        down.contains("✗ xapi") && down.contains("cannot reach the LRS"),
        "{down}"
    );
}

/// Wrong xAPI settings stop the command before anything runs (exit 2, the setting named, no
/// password shown).
#[test]
fn bad_xapi_settings_are_refused() {
    let dir = scratch();
    for (env, want) in [
        (vec![], "XAPI_ENDPOINT"),
        (vec![("XAPI_ENDPOINT", "ftp://lrs")], "XAPI_ENDPOINT"),
        (
            vec![("XAPI_ENDPOINT", "https://u:sekrit-pw@lrs.example.edu/xAPI")],
            "XAPI_USERNAME",
        ),
        (
            vec![
                ("XAPI_ENDPOINT", "https://lrs.example.edu/xAPI"),
                ("XAPI_COMPLETION_THRESHOLD", "1.5"),
            ],
            "XAPI_COMPLETION_THRESHOLD",
        ),
        (
            vec![
                ("XAPI_ENDPOINT", "https://lrs.example.edu/xAPI"),
                ("XAPI_SESSION_GAP", "5"),
            ],
            "XAPI_SESSION_GAP",
        ),
    ] {
        let mut c = harvester(dir.path());
        c.env("MATTERHORN_ENGAGE_HOST", "engage.example.edu");
        for (k, v) in &env {
            c.env(k, v);
        }
        c.args(["forward", "-o", "xapi"]);
        let out = run(c);
        let e = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{env:?}: {e}");
        assert!(e.contains(want), "{env:?}: {e}");
        assert!(!e.contains("sekrit-pw"), "{e}");
    }
    // Without an engage host there is no home page for the actors.
    let mut c = harvester(dir.path());
    c.env("XAPI_ENDPOINT", "https://lrs.example.edu/xAPI")
        .args(["forward", "-o", "xapi"]);
    let out = run(c);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("MATTERHORN_ENGAGE_HOST"));
}
