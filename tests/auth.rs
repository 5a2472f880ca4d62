//! Every Opencast request authenticated (issue 18 point 4, issue 19 point 14), against the
//! simulated stock Opencast: it serves `/search` and `/usertracking` to anonymous callers and so
//! never challenges them, like the real thing. A client that waits for a 401 is served
//! anonymously there: private episodes hidden, a wrong password unnoticed.

mod common;

use std::collections::HashSet;
use std::process::{Command, Output};
use std::sync::atomic::Ordering;

use common::*;
use harvester::config::{self, OpencastSettings};
use harvester::opencast::{AuthScheme, Opencast, OpencastError};
use harvester::sim::{Release, SimAlgorithm, SimConfig, SimHandle};

async fn run_async(c: Command) -> Output {
    tokio::task::spawn_blocking(move || run(c)).await.unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

/// A stock Opencast 16 with `n` actions over `secs` seconds.
fn stock(n: u64, secs: i64) -> SimConfig {
    let mut cfg = SimConfig::new(data(n, secs));
    cfg.release = Release::parse("oc16-17").unwrap();
    cfg
}

/// The harvester for a stock simulator (the windowed reader until the stock one lands).
fn harvester_stock(dir: &std::path::Path, sim: &SimHandle) -> Command {
    let mut c = harvester_for(dir, sim);
    c.env("OPENCAST_API", "stock");
    c
}

/// The library's client for `engage` (and `admin`), as the commands build it.
fn opencast(engage: &SimHandle, admin: Option<&SimHandle>, auth: AuthScheme) -> Opencast {
    let s = OpencastSettings {
        engage_host: Some(engage.url()),
        user: Some(USER.into()),
        password: Some(PASS.into()),
        timeout_secs: 10,
        retries: 2,
        auth,
        allow_basic_over_http: true,
        ..OpencastSettings::default()
    };
    let admin = admin.map(|a| a.url());
    config::opencast(&s, admin.as_deref()).expect("settings")
}

fn count(a: &std::sync::atomic::AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}

/// The media package ids of the simulator's private episodes (every `every`th).
fn private_mpids(sim: &SimHandle, every: u64) -> HashSet<String> {
    (0..sim.data.cfg.episodes)
        .filter(|k| (k + 1) % every == 0)
        .map(|k| sim.data.episode(k).mpid)
        .collect()
}

/// A harvest against stock Opencast: no request served anonymously, and the private episodes'
/// actions carry their metadata (before: every request anonymous, their episodes `{}`).
#[tokio::test(flavor = "multi_thread")]
async fn a_stock_harvest_is_authenticated_and_sees_private_episodes() {
    let mut cfg = stock(600, 600);
    cfg.private_every = 3;
    let sim = start_sim(cfg).await;
    let dir = scratch();
    let mut c = harvester_stock(dir.path(), &sim);
    harvest_window(&mut c, 600_000_000, "-");
    let out = run_async(c).await;
    assert_ok(&out);
    let recs = stdout_records(&out);
    assert_eq!(recs.len(), 600);
    let private = private_mpids(&sim, 3);
    let mut private_seen = 0;
    for r in &recs {
        let i = (r["action_id"].as_i64().unwrap() - 1000) as u64;
        let a = sim.data.action(i);
        let want = expected_record(&sim, &a);
        assert_eq!(r, &want, "record of action index {i}");
        if private.contains(&a.mpid) && r["episode"] != serde_json::json!({}) {
            private_seen += 1;
        }
    }
    assert!(
        private_seen > 0,
        "no action of a private episode came with its metadata"
    );
    let s = &sim.stats;
    assert_eq!(count(&s.anonymous), 0, "requests served anonymously");
    let served = count(&s.actions_requests) + count(&s.search_requests) + count(&s.info_requests);
    assert_eq!(
        count(&s.authenticated),
        served,
        "every request ran as our user"
    );
    assert_eq!(
        count(&s.challenges),
        1,
        "one challenge, answered preemptively after"
    );
}

/// `check` proves who we are: a wrong password fails (exit 1, naming the settings), the right
/// one names the user Opencast ran the request as. Before, both passed ("accepted").
#[tokio::test(flavor = "multi_thread")]
async fn check_fails_on_a_wrong_password_and_names_the_user() {
    let sim = start_sim(stock(50, 600)).await;
    let dir = scratch();
    let mut c = harvester_stock(dir.path(), &sim);
    c.env("MATTERHORN_REST_PASS", "MARKERwrong8812")
        .args(["check", "-o", "-"]);
    let out = run_async(c).await;
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}\n{}", stderr(&out));
    let oc = text
        .lines()
        .find(|l| l.contains(" opencast "))
        .unwrap_or_else(|| panic!("no opencast line:\n{text}"));
    assert!(oc.starts_with('✗'), "{oc}");
    assert!(
        oc.contains("rejected the credentials")
            && oc.contains("MATTERHORN_REST_USER")
            && oc.contains("MATTERHORN_REST_PASS"),
        "{oc}"
    );
    assert!(!text.contains("MARKERwrong8812") && !stderr(&out).contains("MARKERwrong8812"));

    let mut c = harvester_stock(dir.path(), &sim);
    c.args(["check", "-o", "-"]);
    let out = run_async(c).await;
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}\n{}", stderr(&out));
    let oc = text.lines().find(|l| l.contains(" opencast ")).unwrap();
    assert!(oc.starts_with('✓'), "{oc}");
    assert!(
        oc.contains(&format!("Opencast ran the request as '{USER}'")),
        "{oc}"
    );
    assert!(!text.contains("opencast role"), "{text}");
}

/// A harvest with a wrong password stops with the settings named, before journaling anything.
#[tokio::test(flavor = "multi_thread")]
async fn a_stock_harvest_with_a_wrong_password_fails() {
    let sim = start_sim(stock(50, 60)).await;
    let dir = scratch();
    let mut c = harvester_stock(dir.path(), &sim);
    c.env("MATTERHORN_REST_PASS", "not-the-password");
    harvest_window(&mut c, 60_000_000, "-");
    let out = run_async(c).await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("rejected the credentials of user 'opencast_system_account'")
            && err.contains("MATTERHORN_REST_PASS"),
        "{err}"
    );
    assert!(out.stdout.is_empty());
    assert_eq!(count(&sim.stats.actions_requests), 0);
}

/// A user without ROLE_ADMIN: `check` and the harvest warn, naming the role.
#[tokio::test(flavor = "multi_thread")]
async fn a_user_without_the_admin_role_is_warned_about() {
    let mut cfg = stock(20, 60);
    cfg.roles = vec!["ROLE_USER".into()];
    let sim = start_sim(cfg).await;
    let dir = scratch();
    let mut c = harvester_stock(dir.path(), &sim);
    c.args(["check", "-o", "-"]);
    let out = run_async(c).await;
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    let warn = text
        .lines()
        .find(|l| l.starts_with("! opencast role"))
        .unwrap_or_else(|| panic!("no warning:\n{text}"));
    assert!(warn.contains("ROLE_ADMIN"), "{warn}");

    let mut c = harvester_stock(dir.path(), &sim);
    harvest_window(&mut c, 60_000_000, "-");
    let out = run_async(c).await;
    assert_ok(&out);
    let err = stderr(&out);
    assert!(
        err.lines()
            .any(|l| l.contains("WARN") && l.contains("ROLE_ADMIN")),
        "{err}"
    );
}

/// One challenge per host, then its nonce reused with `nc` counting up from 1.
#[tokio::test(flavor = "multi_thread")]
async fn one_challenge_then_the_nonce_reused_with_nc_counting_up() {
    let sim = start_sim(stock(10, 60)).await;
    let oc = opencast(&sim, None, AuthScheme::Digest);
    for k in 0..8 {
        let mpid = sim.data.episode(k).mpid;
        assert!(oc.episode(&mpid).await.unwrap().is_some());
    }
    assert_eq!(count(&sim.stats.challenges), 1);
    assert_eq!(count(&oc.client().stats().challenges), 1);
    let answers = sim.stats.digest_answers.lock().unwrap().clone();
    assert_eq!(answers.len(), 8);
    assert!(
        answers.iter().all(|a| a.nonce == answers[0].nonce),
        "{answers:?}"
    );
    let nc: Vec<u64> = answers.iter().map(|a| a.nc).collect();
    assert_eq!(nc, (1..=8).collect::<Vec<_>>());
}

/// A nonce Opencast calls stale is answered once with the new one, whose `nc` starts again.
#[tokio::test(flavor = "multi_thread")]
async fn a_stale_nonce_is_answered_once() {
    let mut cfg = stock(10, 60);
    cfg.faults.nonce_uses = 3;
    let sim = start_sim(cfg).await;
    let oc = opencast(&sim, None, AuthScheme::Digest);
    for k in 0..10 {
        let mpid = sim.data.episode(k).mpid;
        assert!(oc.episode(&mpid).await.unwrap().is_some());
    }
    // The first challenge, then a stale one at the 4th, 7th and 10th request.
    assert_eq!(count(&sim.stats.challenges), 4);
    assert_eq!(count(&sim.stats.search_requests), 10);
    let answers = sim.stats.digest_answers.lock().unwrap().clone();
    let nc: Vec<u64> = answers.iter().map(|a| a.nc).collect();
    assert_eq!(nc, vec![1, 2, 3, 1, 2, 3, 1, 2, 3, 1]);
    let nonces: HashSet<&str> = answers.iter().map(|a| a.nonce.as_str()).collect();
    assert_eq!(nonces.len(), 4);
}

/// Matterhorn 1.x's nonces last 10 s: after that, `stale`, answered once, and the realm is
/// the release's.
#[tokio::test(flavor = "multi_thread")]
async fn an_expired_matterhorn_nonce_is_renewed() {
    let mut cfg = SimConfig::new(data(10, 60));
    cfg.release = Release::parse("mh1.4-1.6").unwrap();
    let sim = start_sim(cfg).await;
    let oc = opencast(&sim, None, AuthScheme::Digest);
    let mpid = sim.data.episode(0).mpid;
    assert!(oc.episode(&mpid).await.unwrap().is_some());
    tokio::time::sleep(std::time::Duration::from_millis(10_300)).await;
    assert!(oc.episode(&mpid).await.unwrap().is_some());
    assert_eq!(count(&sim.stats.challenges), 2, "the first, then one stale");
    assert_eq!(oc.whoami().await.unwrap().username, USER);
    assert_eq!(count(&sim.stats.anonymous), 0);
}

/// RFC 7616: SHA-256, MD5-sess and SHA-256-sess challenges answered (before: answered as MD5 and
/// reported as wrong credentials); qop=auth-int alone is a clear "not supported".
#[tokio::test(flavor = "multi_thread")]
async fn rfc7616_challenges_are_answered() {
    for alg in [
        SimAlgorithm::Sha256,
        SimAlgorithm::Md5Sess,
        SimAlgorithm::Sha256Sess,
        SimAlgorithm::Md5,
    ] {
        let mut cfg = stock(10, 60);
        cfg.algorithm = alg;
        let sim = start_sim(cfg).await;
        let oc = opencast(&sim, None, AuthScheme::Digest);
        for k in 0..3 {
            let mpid = sim.data.episode(k).mpid;
            let found = oc.episode(&mpid).await;
            assert!(
                matches!(found, Ok(Some(_))),
                "{alg:?}: {:?}",
                found.map(|_| ())
            );
        }
        assert_eq!(count(&sim.stats.anonymous), 0, "{alg:?}");
        assert_eq!(count(&sim.stats.authenticated), 3, "{alg:?}");
        assert_eq!(count(&sim.stats.challenges), 1, "{alg:?}");
    }

    let mut cfg = stock(10, 60);
    cfg.qop = "auth-int".into();
    let sim = start_sim(cfg).await;
    let oc = opencast(&sim, None, AuthScheme::Digest);
    let e = oc.episode(&sim.data.episode(0).mpid).await.unwrap_err();
    assert!(
        matches!(e, OpencastError::UnsupportedChallenge { .. }),
        "{e}"
    );
    let msg = e.to_string();
    assert!(
        msg.contains("auth-int") && msg.contains("not support"),
        "{msg}"
    );
    assert!(!msg.contains("rejected the credentials"), "{msg}");
    assert_eq!(
        count(&sim.stats.search_requests),
        0,
        "never sent anonymously"
    );
}

/// Engage and admin are different hosts: each gets its own challenge and only its own nonces
/// (before: one shared nonce, sent to both).
#[tokio::test(flavor = "multi_thread")]
async fn engage_and_admin_each_keep_their_own_nonce() {
    // The DCE build challenges every request, so a nonce sent to the wrong host shows.
    let engage = start_sim(SimConfig::new(data(10, 60))).await;
    let admin = start_sim(SimConfig::new(data(10, 60))).await;
    let oc = opencast(&engage, Some(&admin), AuthScheme::Digest);
    for k in 0..6 {
        let mpid = engage.data.episode(k).mpid;
        assert!(oc.episode(&mpid).await.unwrap().is_some());
        oc.workflows(&mpid, "DCE-archive-publish-external")
            .await
            .unwrap();
    }
    assert_eq!(count(&engage.stats.challenges), 1);
    assert_eq!(count(&admin.stats.challenges), 1);
    let e = engage.stats.digest_answers.lock().unwrap().clone();
    let a = admin.stats.digest_answers.lock().unwrap().clone();
    assert_eq!((e.len(), a.len()), (6, 6));
    assert_ne!(e[0].nonce, a[0].nonce);
    assert!(e.iter().all(|x| x.nonce == e[0].nonce));
    assert!(a.iter().all(|x| x.nonce == a[0].nonce));
    assert_eq!(
        e.iter().map(|x| x.nc).collect::<Vec<_>>(),
        (1..=6).collect::<Vec<_>>()
    );
    assert_eq!(
        a.iter().map(|x| x.nc).collect::<Vec<_>>(),
        (1..=6).collect::<Vec<_>>()
    );
}

/// Basic when asked: refused over plain http without the setting (exit 2, naming it); with it,
/// every request carries the credentials and no challenge is needed; a wrong password is exit
/// 1; a release without the Basic filter (1.x) would serve us anonymously, which stops the
/// harvest.
#[tokio::test(flavor = "multi_thread")]
async fn basic_when_asked() {
    let sim = start_sim(stock(100, 60)).await;
    let dir = scratch();
    let mut c = harvester_stock(dir.path(), &sim);
    c.env("OPENCAST_AUTH", "basic");
    harvest_window(&mut c, 60_000_000, "-");
    let out = run_async(c).await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("OPENCAST_ALLOW_BASIC_OVER_HTTP"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        count(&sim.stats.anonymous) + count(&sim.stats.authenticated),
        0
    );

    let mut c = harvester_stock(dir.path(), &sim);
    c.env("OPENCAST_AUTH", "basic")
        .env("OPENCAST_ALLOW_BASIC_OVER_HTTP", "true");
    harvest_window(&mut c, 60_000_000, "-");
    let out = run_async(c).await;
    assert_ok(&out);
    assert_eq!(stdout_records(&out).len(), 100);
    assert_eq!(count(&sim.stats.anonymous), 0);
    assert!(count(&sim.stats.authenticated) > 0);
    assert_eq!(count(&sim.stats.challenges), 0);

    let dir = scratch();
    let mut c = harvester_stock(dir.path(), &sim);
    c.env("OPENCAST_AUTH", "basic")
        .env("OPENCAST_ALLOW_BASIC_OVER_HTTP", "1")
        .env("MATTERHORN_REST_PASS", "MARKERbasic0042");
    harvest_window(&mut c, 60_000_000, "-");
    let out = run_async(c).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("rejected the credentials"),
        "{}",
        stderr(&out)
    );
    assert!(!stderr(&out).contains("MARKERbasic0042"));

    let mut cfg = SimConfig::new(data(10, 60));
    cfg.release = Release::parse("1.6").unwrap();
    let old = start_sim(cfg).await;
    let dir = scratch();
    let mut c = harvester_stock(dir.path(), &old);
    c.env("OPENCAST_AUTH", "basic")
        .env("OPENCAST_ALLOW_BASIC_OVER_HTTP", "1");
    harvest_window(&mut c, 60_000_000, "-");
    let out = run_async(c).await;
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("as user 'anonymous'") && err.contains("OPENCAST_AUTH"),
        "{err}"
    );
    assert_eq!(count(&old.stats.actions_requests), 0);
}
