//! `harvester harvest` end to end against the simulated Opencast: records, paging, faults,
//! auth, the span check, the checkpoint and dead letters.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::*;
use harvester::journal::Journal;
use harvester::sim::{Faults, SimConfig};

async fn run_async(c: std::process::Command) -> std::process::Output {
    tokio::task::spawn_blocking(move || run(c)).await.unwrap()
}

fn ids(records: &[serde_json::Value]) -> Vec<i64> {
    records
        .iter()
        .map(|r| r["action_id"].as_i64().unwrap())
        .collect()
}

fn assert_unique_complete(got: &[i64], first: i64, n: usize) {
    let set: HashSet<i64> = got.iter().copied().collect();
    assert_eq!(set.len(), got.len(), "duplicate action ids");
    let want: HashSet<i64> = (first..first + n as i64).collect();
    assert_eq!(set, want, "missing or extra action ids");
}

#[tokio::test(flavor = "multi_thread")]
async fn records_match_the_contract_field_by_field() {
    let sim = start_sim(SimConfig::new(data(3000, 3600))).await;
    let dir = scratch();
    let mut c = harvester_for(dir.path(), &sim);
    harvest_window(&mut c, 3_600_000_000, "-");
    let out = run_async(c).await;
    assert_ok(&out);
    let recs = stdout_records(&out);
    assert_eq!(recs.len(), 3000);
    let mut unknown = 0;
    let mut live = 0;
    for r in &recs {
        let i = (r["action_id"].as_i64().unwrap() - 1000) as u64;
        let want = expected_record(&sim, &sim.data.action(i));
        assert_eq!(r, &want, "record of action index {i}");
        unknown += (r["episode"] == serde_json::json!({})) as usize;
        live += (r["is_live"] == 1) as usize;
    }
    assert!(
        unknown > 0 && live > 0,
        "the data should cover unknown episodes ({unknown}) and live ones ({live})"
    );
    // The journal holds exactly what went out, and the summary says so.
    assert_eq!(journal_records(dir.path()).len(), 3000);
    let err = stderr(&out);
    assert!(
        err.contains("harvest summary") && err.contains("actions=3000"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn episode_lookups_are_cached_and_journaled() {
    let sim = start_sim(SimConfig::new(data(2000, 3600))).await;
    let dir = scratch();
    let window = [
        "-s".to_string(),
        compact(t0()),
        "-e".into(),
        compact(t0() + 3_600_000_000),
    ];
    let mut c = harvester_for(dir.path(), &sim);
    c.arg("harvest")
        .args(&window)
        .args(["-o", "none", "-b", "100"]);
    assert_ok(&run_async(c).await);
    let distinct: HashSet<String> = (0..2000).map(|i| sim.data.action(i).mpid).collect();
    let searches = sim
        .stats
        .search_requests
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(
        searches as usize,
        distinct.len(),
        "one look-up per media package"
    );
    // A second run (a new process, as from cron) starts warm from the journal: no look-ups.
    let mut c = harvester_for(dir.path(), &sim);
    c.arg("harvest")
        .args(&window)
        .args(["-o", "none", "--no-update-last-ts"]);
    let out = run_async(c).await;
    assert_ok(&out);
    assert_eq!(
        sim.stats
            .search_requests
            .load(std::sync::atomic::Ordering::Relaxed),
        searches
    );
    assert!(
        stderr(&out).contains("duplicates_skipped=2000"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_password_is_a_clear_error_without_retry_loop() {
    let sim = start_sim(SimConfig::new(data(100, 60))).await;
    let dir = scratch();
    let mut c = harvester_for(dir.path(), &sim);
    c.env("MATTERHORN_REST_PASS", "not-the-password");
    harvest_window(&mut c, 60_000_000, "-");
    let out = run_async(c).await;
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("rejected the credentials of user 'opencast_system_account'"),
        "{err}"
    );
    assert!(err.contains("MATTERHORN_REST_PASS"), "{err}");
    assert!(
        !err.contains("not-the-password"),
        "the password leaked: {err}"
    );
    assert!(out.stdout.is_empty());
    // The challenge asked first, one answer refused with a new challenge, that one answered
    // once and refused: no retry loop.
    assert!(
        sim.stats
            .challenges
            .load(std::sync::atomic::Ordering::Relaxed)
            <= 3
    );
    assert_eq!(journal_records(dir.path()).len(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn any_realm_and_expiring_nonces() {
    let mut cfg = SimConfig::new(data(500, 600));
    cfg.realm = "Matterhorn".into();
    cfg.faults.nonce_uses = 2;
    let sim = start_sim(cfg).await;
    let dir = scratch();
    let mut c = harvester_for(dir.path(), &sim);
    harvest_window(&mut c, 600_000_000, "-");
    c.args(["-b", "50"]);
    let out = run_async(c).await;
    assert_ok(&out);
    assert_unique_complete(&ids(&stdout_records(&out)), 1000, 500);
    assert!(
        sim.stats
            .challenges
            .load(std::sync::atomic::Ordering::Relaxed)
            > 5,
        "nonces were renewed"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn without_the_digest_header_opencast_redirects_to_login() {
    let sim = start_sim(SimConfig::new(data(10, 60))).await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = client
        .get(format!("{}/usertracking/actions.json", sim.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    assert_eq!(r.headers()["location"], "/login.html");
    let r = client
        .get(format!("{}/usertracking/actions.json?limit=-1", sim.url()))
        .header("X-Requested-Auth", "Digest")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "a digest client gets a challenge");
}

#[tokio::test(flavor = "multi_thread")]
async fn paging_across_quirks() {
    // (actions, page size): one action (a bare object), none (no key), exactly a page, a page + 1.
    for (n, b) in [(1u64, 10u64), (0, 10), (100, 100), (101, 100), (250, 7)] {
        let sim = start_sim(SimConfig::new(data(n, 300))).await;
        let dir = scratch();
        let mut c = harvester_for(dir.path(), &sim);
        harvest_window(&mut c, 300_000_000, "-");
        c.args(["-b", &b.to_string()]);
        let out = run_async(c).await;
        assert_ok(&out);
        assert_unique_complete(&ids(&stdout_records(&out)), 1000, n as usize);
        let pages = sim
            .stats
            .actions_requests
            .load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(
            pages,
            n.div_ceil(b).max(1),
            "pages fetched for {n} actions by {b}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn overlapping_shuffled_pages_give_no_duplicates() {
    let mut cfg = SimConfig::new(data(1000, 600));
    cfg.faults = Faults {
        overlap: 37,
        shuffle: true,
        ..Faults::default()
    };
    let sim = start_sim(cfg).await;
    let dir = scratch();
    let mut c = harvester_for(dir.path(), &sim);
    harvest_window(&mut c, 600_000_000, "-");
    c.args(["-b", "100"]);
    let out = run_async(c).await;
    assert_ok(&out);
    assert_unique_complete(&ids(&stdout_records(&out)), 1000, 1000);
    assert!(
        stderr(&out).contains("duplicates_skipped=333"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn faults_still_yield_every_action_once() {
    let mut cfg = SimConfig::new(data(2000, 1200));
    cfg.faults = Faults {
        fail_every: 3,
        truncate_every: 5,
        nonce_uses: 7,
        ..Faults::default()
    };
    let sim = start_sim(cfg).await;
    let dir = scratch();
    let mut c = harvester_for(dir.path(), &sim);
    harvest_window(&mut c, 1_200_000_000, "-");
    c.args(["-b", "100"]);
    let out = run_async(c).await;
    assert_ok(&out);
    assert_unique_complete(&ids(&stdout_records(&out)), 1000, 2000);
    assert!(sim.stats.faults.load(std::sync::atomic::Ordering::Relaxed) >= 10);
    let err = stderr(&out);
    assert!(err.contains("retrying Opencast request"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn opencast_giving_up_mid_harvest_keeps_whole_pages_before_it_and_a_rerun_completes() {
    // The 40th request fails and is not retried: some page (or one of its episodes) is lost.
    let mut cfg = SimConfig::new(data(2000, 1200));
    cfg.faults = Faults {
        fail_every: 40,
        ..Faults::default()
    };
    let sim = start_sim(cfg).await;
    let dir = scratch();
    let mut c = harvester_for(dir.path(), &sim);
    c.env("OPENCAST_RETRIES", "0");
    harvest_window(&mut c, 1_200_000_000, "none");
    c.args(["-b", "100"]);
    let out = run_async(c).await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    {
        let j = Journal::open(&journal_path(dir.path())).unwrap();
        let kept: Vec<i64> = j
            .read_from(0, usize::MAX)
            .unwrap()
            .1
            .iter()
            .map(|r| r.action_id)
            .collect();
        // What was prepared before the failed page is journaled, in whole pages from the
        // start, and the position says so; the checkpoint does not move.
        assert_eq!(kept.len() % 100, 0);
        assert_unique_complete(&kept, 1000, kept.len());
        let next = j.harvest_position().unwrap().map_or(0, |p| p.next_offset);
        assert_eq!(next, kept.len() as u64);
        assert!(j.checkpoint().unwrap().is_none());
    }
    // Opencast is back: the next run completes the window, every action once.
    let sim = start_sim(SimConfig::new(data(2000, 1200))).await;
    let mut c = harvester_for(dir.path(), &sim);
    harvest_window(&mut c, 1_200_000_000, "none");
    c.args(["-b", "100"]);
    assert_ok(&run_async(c).await);
    let all: Vec<i64> = journal_records(dir.path())
        .iter()
        .map(|r| r.action_id)
        .collect();
    assert_unique_complete(&all, 1000, 2000);
}

#[tokio::test(flavor = "multi_thread")]
async fn opencast_down_fails_clearly_and_keeps_the_checkpoint() {
    let dir = scratch();
    // Nothing listens on this port.
    let port = free_port();
    let mut c = harvester(dir.path());
    c.env("MATTERHORN_ENGAGE_HOST", format!("127.0.0.1:{port}"))
        .env("MATTERHORN_REST_USER", USER)
        .env("MATTERHORN_REST_PASS", PASS)
        .env("OPENCAST_RETRIES", "2");
    c.args(["harvest", "-o", "-"]);
    let out = run_async(c).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("failed 3 times"), "{}", stderr(&out));
    let j = Journal::open(&journal_path(dir.path())).unwrap();
    assert!(j.checkpoint().unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn span_check_counts_days_and_names_both_remedies() {
    let sim = start_sim(SimConfig::new(data(600, 2 * 86_400))).await;
    let dir = scratch();
    let window = [
        "-s".to_string(),
        compact(t0()),
        "-e".into(),
        compact(t0() + 2 * 86_400_000_000),
    ];
    // Two days against a one-hour limit: the original's timedelta.seconds let this through.
    let mut c = harvester_for(dir.path(), &sim);
    c.env("MAX_START_END_SPAN", "3600")
        .arg("harvest")
        .args(&window)
        .args(["-o", "-"]);
    let out = run_async(c).await;
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("spans 172800 s") && err.contains("MAX_START_END_SPAN=3600"),
        "{err}"
    );
    assert!(
        err.contains("--disable-start-end-span-check") && err.contains("checkpoint --clear"),
        "{err}"
    );
    assert_eq!(
        sim.stats
            .actions_requests
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    // --catch-up harvests it in 48 one-hour windows.
    let mut c = harvester_for(dir.path(), &sim);
    c.env("MAX_START_END_SPAN", "3600")
        .arg("harvest")
        .args(&window)
        .args(["-o", "-", "--catch-up"]);
    let out = run_async(c).await;
    assert_ok(&out);
    assert_unique_complete(&ids(&stdout_records(&out)), 1000, 600);
    assert!(stderr(&out).contains("window=48"), "{}", stderr(&out));
    // --disable-start-end-span-check harvests it at once (nothing new by now).
    let mut c = harvester_for(dir.path(), &sim);
    c.env("MAX_START_END_SPAN", "3600")
        .arg("harvest")
        .args(&window)
        .args(["-o", "-", "--disable-start-end-span-check"]);
    let out = run_async(c).await;
    assert_ok(&out);
    assert!(
        stderr(&out).contains("duplicates_skipped=600"),
        "{}",
        stderr(&out)
    );
}

fn checkpoint_of(dir: &std::path::Path) -> Option<String> {
    let j = Journal::open(&journal_path(dir)).unwrap();
    j.checkpoint().unwrap().map(|c| compact(c.last_action_us))
}

#[tokio::test(flavor = "multi_thread")]
async fn checkpoint_resumes_inside_a_second_without_duplicates() {
    // 10 actions a second: the checkpoint second always holds more than one action.
    let sim = start_sim(SimConfig::new(data(6000, 600))).await;
    let dir = scratch();
    let mid = t0() + 300_000_000;
    let mut c = harvester_for(dir.path(), &sim);
    c.args([
        "harvest",
        "-s",
        &compact(t0()),
        "-e",
        &compact(mid),
        "-o",
        "-",
    ]);
    let first = run_async(c).await;
    assert_ok(&first);
    let cp = checkpoint_of(dir.path()).expect("checkpoint set");
    let last = stdout_records(&first)
        .iter()
        .map(|r| r["timestamp"].as_str().unwrap().to_string())
        .max()
        .unwrap();
    assert_eq!(
        cp,
        last[..19].replace(['-', 'T', ':'], ""),
        "checkpoint = last action's second"
    );
    // No --start: from the checkpoint (inclusive), to --end.
    let mut c = harvester_for(dir.path(), &sim);
    c.args(["harvest", "-e", &compact(t0() + 600_000_000), "-o", "-"]);
    let second = run_async(c).await;
    assert_ok(&second);
    let mut all = ids(&stdout_records(&first));
    all.extend(ids(&stdout_records(&second)));
    assert_unique_complete(&all, 1000, 6000);
    assert!(
        !stderr(&second).contains("duplicates_skipped=0"),
        "the checkpoint second was re-read and deduped"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn no_update_last_ts_leaves_the_checkpoint() {
    let sim = start_sim(SimConfig::new(data(1000, 3600))).await;
    let dir = scratch();
    let mut c = harvester_for(dir.path(), &sim);
    harvest_window(&mut c, 600_000_000, "none");
    assert_ok(&run_async(c).await);
    let cp = checkpoint_of(dir.path());
    assert!(cp.is_some());
    let mut c = harvester_for(dir.path(), &sim);
    c.args([
        "harvest",
        "-s",
        &compact(t0() + 1_800_000_000),
        "-e",
        &compact(t0() + 3_600_000_000),
    ])
    .args(["-o", "none", "--no_update_last_ts"]);
    assert_ok(&run_async(c).await);
    assert_eq!(checkpoint_of(dir.path()), cp);
    // --update-last-ts after --no-update-last-ts: the last one wins.
    let mut c = harvester_for(dir.path(), &sim);
    c.args([
        "harvest",
        "-s",
        &compact(t0() + 1_800_000_000),
        "-e",
        &compact(t0() + 3_600_000_000),
    ])
    .args(["-o", "none", "--no-update-last-ts", "--update-last-ts"]);
    assert_ok(&run_async(c).await);
    assert_ne!(checkpoint_of(dir.path()), cp);
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_actions_go_to_dead_letters_once() {
    let mut d = data(500, 300);
    d.malformed_every = 10;
    let sim = start_sim(SimConfig::new(d)).await;
    let dir = scratch();
    for _ in 0..2 {
        let mut c = harvester_for(dir.path(), &sim);
        harvest_window(&mut c, 300_000_000, "none");
        let out = run_async(c).await;
        assert_ok(&out);
    }
    let j = Journal::open(&journal_path(dir.path())).unwrap();
    let dead = j.dead_letters().unwrap();
    assert_eq!(
        dead.len(),
        50,
        "each malformed action stored once, across two runs"
    );
    assert!(dead
        .iter()
        .any(|(_, d)| d.reason == "missing sessionId object"));
    assert!(dead
        .iter()
        .any(|(_, d)| d.reason.contains("not-a-date")
            && d.raw.contains("\"created\":\"not-a-date\"")));
    assert!(dead
        .iter()
        .all(|(_, d)| d.source.starts_with("usertracking/actions.json?start=")));
    assert_eq!(j.read_from(0, usize::MAX).unwrap().1.len(), 450);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_process_gets_journal_in_use() {
    let sim = start_sim(SimConfig::new(data(10, 60))).await;
    let dir = scratch();
    let held = Journal::open(&journal_path(dir.path())).unwrap();
    let mut c = harvester_for(dir.path(), &sim);
    c.args(["harvest", "-o", "-"]);
    let out = run_async(c).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("is in use by another harvester process"),
        "{}",
        stderr(&out)
    );
    drop(held);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_settings_exit_2_with_the_setting_named() {
    let dir = scratch();
    type Case<'a> = (Vec<&'a str>, Vec<(&'a str, &'a str)>, &'a str);
    let cases: Vec<Case> = vec![
        (vec!["harvest", "-o", "-"], vec![], "MATTERHORN_ENGAGE_HOST"),
        (
            vec!["harvest", "-o", "-", "-s", "2016-03-01"],
            vec![("MATTERHORN_ENGAGE_HOST", "x")],
            "YYYYMMDDHHmmss",
        ),
        (
            vec!["harvest"],
            vec![
                ("MATTERHORN_ENGAGE_HOST", "x"),
                ("MATTERHORN_REST_USER", "u"),
                ("MATTERHORN_REST_PASS", "p"),
            ],
            "SQS_QUEUE_NAME",
        ),
        (vec!["harvest", "-o", "kafka"], vec![], "not a sink"),
        (
            vec!["harvest", "-o", "-"],
            vec![
                ("MATTERHORN_ENGAGE_HOST", "x"),
                ("MATTERHORN_REST_USER", "u"),
                ("MATTERHORN_REST_PASS", "p"),
                ("OPENCAST_TIMEZONE", "Mars/Olympus"),
            ],
            "OPENCAST_TIMEZONE",
        ),
        (vec!["harvest", "-b", "0"], vec![], "batch-size"),
    ];
    for (args, env, needle) in cases {
        let mut c = harvester(dir.path());
        c.args(&args).envs(env);
        let out = run_async(c).await;
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(needle),
            "{args:?} should name {needle}: {}",
            stderr(&out)
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn settings_precedence_flags_env_dotenv_and_secret_hygiene() {
    let sim = start_sim(SimConfig::new(data(50, 60))).await;
    let dir = scratch();
    std::fs::write(
        dir.path().join(".env"),
        format!("MATTERHORN_ENGAGE_HOST={}\nMATTERHORN_REST_USER={USER}\nMATTERHORN_REST_PASS=from-dotenv-wrong\n", sim.url()),
    )
    .unwrap();
    let window = [
        "-s".to_string(),
        compact(t0()),
        "-e".into(),
        compact(t0() + 60_000_000),
    ];
    // .env alone: its wrong password is used.
    let mut c = harvester(dir.path());
    c.arg("harvest").args(&window).args(["-o", "-"]);
    assert_eq!(run_async(c).await.status.code(), Some(1));
    // The environment wins over .env.
    let mut c = harvester(dir.path());
    c.env("MATTERHORN_REST_PASS", PASS)
        .arg("harvest")
        .args(&window)
        .args(["-o", "-", "--no-update-last-ts"]);
    assert_ok(&run_async(c).await);
    // A flag wins over the environment; underscore spellings of the original work.
    let mut c = harvester(dir.path());
    c.env("MATTERHORN_REST_PASS", "env-wrong")
        .env("MATTERHORN_ENGAGE_HOST", "nowhere.invalid")
        .arg("harvest")
        .args(&window)
        .args([
            "-p",
            PASS,
            "--engage_host",
            &sim.url(),
            "--batch_size",
            "7",
            "-o",
            "-",
        ]);
    let out = run_async(c).await;
    assert_ok(&out);
    // Secrets never in --help.
    let mut c = harvester(dir.path());
    c.env("MATTERHORN_REST_PASS", "supersecret-value")
        .args(["harvest", "--help"]);
    let help = run_async(c).await;
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(
        text.contains("--engage-host") && !text.contains("supersecret-value"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn json_logs_and_loggly_delivery() {
    use axum::{routing::post, Router};
    let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::<(String, String)>::new()));
    let g = got.clone();
    let app = Router::new().route(
        "/bulk/{token}/tag/{tags}/",
        post(
            move |axum::extract::Path((token, tags)): axum::extract::Path<(String, String)>,
                  body: String| {
                let g = g.clone();
                async move {
                    g.lock().unwrap().push((format!("{token} {tags}"), body));
                    "ok"
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let loggly = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let sim = start_sim(SimConfig::new(data(50, 60))).await;
    let dir = scratch();
    let mut c = harvester_for(dir.path(), &sim);
    c.env("LOGGLY_TOKEN", "tok123")
        .env("LOGGLY_TAGS", "dce, test")
        .env("LOGGLY_URL", &loggly);
    c.args([
        "--log-format",
        "json",
        "harvest",
        "-s",
        &compact(t0()),
        "-e",
        &compact(t0() + 60_000_000),
        "-o",
        "-",
    ]);
    let out = run_async(c).await;
    assert_ok(&out);
    for line in stderr(&out).lines() {
        serde_json::from_str::<serde_json::Value>(line)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let got = got.lock().unwrap();
    assert!(!got.is_empty(), "nothing reached Loggly");
    assert_eq!(got[0].0, "tok123 harvester,dce,test");
    assert!(got.iter().any(|(_, b)| b.contains("harvest summary")));
}

#[tokio::test(flavor = "multi_thread")]
async fn wait_paces_the_pages_and_loggly_down_never_blocks() {
    let sim = start_sim(SimConfig::new(data(300, 300))).await;
    let dir = scratch();
    let dead = format!("127.0.0.1:{}", free_port());
    let mut c = harvester_for(dir.path(), &sim);
    c.env("LOGGLY_TOKEN", "tok")
        .env("LOGGLY_URL", format!("http://{dead}"));
    harvest_window(&mut c, 300_000_000, "-");
    c.args(["-b", "100", "-w", "0.3"]);
    let started = std::time::Instant::now();
    let out = run_async(c).await;
    assert_ok(&out);
    assert_unique_complete(&ids(&stdout_records(&out)), 1000, 300);
    // Three pages, two pauses of 0.3 s between them; an unreachable Loggly costs at most its
    // two-second flush at exit.
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(600), "{took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
}
