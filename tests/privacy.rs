//! Personal data stays private: the journal's owner file and the record endpoints of `run`.

mod common;

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use harvester::sim::SimConfig;
use harvester::timefmt;

const TOKEN: &str = "marker-token-7f3a9c2e51d8";

/// Simulated actions over the last five minutes, so a service harvesting "now" finds them all.
async fn recent_sim(n: u64) -> harvester::sim::SimHandle {
    let now = timefmt::floor_second(timefmt::now_us());
    start_sim(SimConfig::new(harvester::sim::DataConfig::new(
        3,
        n,
        now - 300_000_000,
        now - 1_000_000,
    )))
    .await
}

/// Kills the service when the test ends, whatever happens.
struct Service(Child);

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn sigterm_and_wait(s: &mut Service) -> Option<i32> {
    let _ = Command::new("kill")
        .args(["-TERM", &s.0.id().to_string()])
        .status();
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(10) {
        if let Some(st) = s.0.try_wait().unwrap() {
            return st.code();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("the service did not stop within 10 s of SIGTERM");
}

/// Starts `run -o none` on `bind` and waits until it has journaled `n` actions.
async fn start_run(
    dir: &Path,
    sim: &harvester::sim::SimHandle,
    bind: &str,
    token: Option<&str>,
    n: u64,
) -> Service {
    let mut c = harvester_for(dir, sim);
    if let Some(t) = token {
        c.env("HARVESTER_API_TOKEN", t);
    }
    c.args(run_service_args("none", bind));
    c.stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("stderr.log")).unwrap());
    let s = Service(c.spawn().unwrap());
    let port = bind.rsplit(':').next().unwrap();
    let metrics = format!("http://127.0.0.1:{port}/metrics");
    let t = Instant::now();
    loop {
        let got = match reqwest::get(&metrics).await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        if got.contains(&format!("harvester_journal_records_total {n}")) {
            return s;
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "{n} actions not journaled within 30 s:\n{got}\n{}",
            std::fs::read_to_string(dir.join("stderr.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn journal_cmd(dir: &Path, token: Option<&str>, args: &[&str]) -> std::process::Output {
    let mut c = harvester(dir);
    if let Some(t) = token {
        c.env("HARVESTER_API_TOKEN", t);
    }
    c.arg("journal").args(args);
    run(c)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_owner_file_is_0600_under_umask_022_and_never_written_through_a_symlink() {
    let sim = start_sim(SimConfig::new(data(50, 60))).await;
    let dir = scratch();
    let victim = dir.path().join("victim");
    std::fs::write(&victim, "not yours").unwrap();
    let owner = dir.path().join("journal.redb.owner");
    std::os::unix::fs::symlink(&victim, &owner).unwrap();
    // The same command as `harvester_for`, started by a shell that sets the umask first.
    let mut c = Command::new("sh");
    c.env_clear()
        .current_dir(dir.path())
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("JOURNAL_PATH", journal_path(dir.path()))
        .env("LOG_LEVEL", "info")
        .env("MATTERHORN_ENGAGE_HOST", sim.url())
        .env("MATTERHORN_REST_USER", USER)
        .env("MATTERHORN_REST_PASS", PASS)
        .args(["-c", "umask 022 && exec \"$0\" \"$@\""])
        .arg(env!("CARGO_BIN_EXE_harvester"))
        .args([
            "harvest",
            "-s",
            &compact(t0()),
            "-e",
            &compact(t0() + 60_000_000),
            "-o",
            "none",
        ]);
    let out = run(c);
    assert_ok(&out);
    assert_eq!(
        std::fs::read_to_string(&victim).unwrap(),
        "not yours",
        "the owner file was written through the symlink"
    );
    let meta = std::fs::symlink_metadata(&owner).unwrap();
    assert!(meta.file_type().is_file(), "the symlink itself is replaced");
    assert_eq!(
        meta.permissions().mode() & 0o777,
        0o600,
        "the owner file is private whatever the umask"
    );
    let text = std::fs::read_to_string(&owner).unwrap();
    assert!(text.contains("\"harvest\""), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn on_a_public_address_without_a_token_the_record_endpoints_are_off_and_a_warning_says_so() {
    let sim = recent_sim(300).await;
    let dir = scratch();
    let port = free_port();
    let mut svc = start_run(dir.path(), &sim, &format!("0.0.0.0:{port}"), None, 300).await;
    let base = format!("http://127.0.0.1:{port}");
    for path in ["/journal/dump", "/journal/stats"] {
        let r = reqwest::get(format!("{base}{path}")).await.unwrap();
        assert_eq!(r.status(), 403, "{path} must be off");
        let body = r.text().await.unwrap();
        assert!(!body.contains("action_id"), "{body}");
    }
    // /metrics and /healthz stay public.
    assert_eq!(
        reqwest::get(format!("{base}/healthz"))
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        reqwest::get(format!("{base}/metrics"))
            .await
            .unwrap()
            .status(),
        200
    );
    // The CLI of whoever may read the journal asks on the Unix socket beside it.
    let out = journal_cmd(dir.path(), None, &["dump"]);
    assert_ok(&out);
    assert_eq!(stdout_records(&out).len(), 300);
    assert_eq!(sigterm_and_wait(&mut svc), Some(0));
    let log = std::fs::read_to_string(dir.path().join("stderr.log")).unwrap();
    assert!(
        log.contains("not a loopback address") && log.contains("HARVESTER_API_TOKEN"),
        "no warning that the record endpoints are off:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn with_a_token_the_record_endpoints_answer_only_to_its_bearer() {
    let sim = recent_sim(300).await;
    let dir = scratch();
    let port = free_port();
    let mut svc = start_run(
        dir.path(),
        &sim,
        &format!("0.0.0.0:{port}"),
        Some(TOKEN),
        300,
    )
    .await;
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    for path in ["/journal/dump", "/journal/stats"] {
        let r = http.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(r.status(), 401, "{path} without a token");
        let r = http
            .get(format!("{base}{path}"))
            .bearer_auth("marker-token-7f3a9c2e51d9")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{path} with a wrong token");
    }
    let r = http
        .get(format!("{base}/journal/dump"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap().lines().count(), 300);
    // The CLI sends the token when HARVESTER_API_TOKEN is set, and is refused without it.
    let out = journal_cmd(dir.path(), Some(TOKEN), &["dump"]);
    assert_ok(&out);
    assert_eq!(stdout_records(&out).len(), 300);
    let out = journal_cmd(dir.path(), Some(TOKEN), &["stats", "--json"]);
    assert_ok(&out);
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["actions"], 300);
    // Without the token the CLI asks on the Unix socket, which the journal's owner may use.
    let out = journal_cmd(dir.path(), None, &["dump"]);
    assert_ok(&out);
    assert_eq!(stdout_records(&out).len(), 300);
    assert_eq!(sigterm_and_wait(&mut svc), Some(0));
    let log = std::fs::read_to_string(dir.path().join("stderr.log")).unwrap();
    assert!(!log.contains(TOKEN), "the token is in the log:\n{log}");
    assert!(!log.contains("not a loopback address"), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_malformed_token_is_a_setting_error_that_does_not_echo_it() {
    let dir = scratch();
    let mut c = harvester(dir.path());
    c.env("HARVESTER_API_TOKEN", "short-S3CRET")
        .env("MATTERHORN_ENGAGE_HOST", "127.0.0.1:9")
        .env("MATTERHORN_REST_USER", USER)
        .env("MATTERHORN_REST_PASS", PASS)
        .args(["run", "-o", "none", "--metrics-addr", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    // Before the fix the token was ignored and the service ran on: stop it then.
    let child = c.spawn().unwrap();
    let pid = child.id().to_string();
    let out = tokio::select! {
        o = tokio::task::spawn_blocking(move || child.wait_with_output()) => o.unwrap().unwrap(),
        _ = tokio::time::sleep(Duration::from_secs(10)) => {
            let _ = Command::new("kill").args(["-KILL", &pid]).status();
            panic!("a malformed HARVESTER_API_TOKEN was accepted: the service started");
        }
    };
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("HARVESTER_API_TOKEN") && err.contains("16 to 4096"),
        "{err}"
    );
    assert!(!err.contains("S3CRET"), "{err}");
}

/// `curl` as the user `nobody` (uid 65534): what any other local user gets.
fn curl_as_nobody(args: &[&str]) -> std::process::Output {
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "curl",
            "-sS",
            "-m",
            "5",
        ])
        .args(args)
        .output()
        .expect("setpriv and curl run (the test needs root, as CI has)");
    out
}

/// Issue 19 point 9: the journal is 0600, yet `curl 127.0.0.1:9898/journal/dump` as `nobody`
/// returned every record. Now the records answer on a Unix socket beside the journal with the
/// journal's owner and mode, and over TCP only with the token.
#[tokio::test(flavor = "multi_thread")]
async fn on_loopback_the_records_are_for_whoever_may_read_the_journal_only() {
    use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _};
    let sim = recent_sim(300).await;
    let dir = scratch();
    let port = free_port();
    let mut svc = start_run(dir.path(), &sim, &format!("127.0.0.1:{port}"), None, 300).await;
    let base = format!("http://127.0.0.1:{port}");
    for path in ["/journal/dump", "/journal/stats"] {
        let r = reqwest::get(format!("{base}{path}")).await.unwrap();
        assert_eq!(r.status(), 403, "{path} over TCP without a token");
        let body = r.text().await.unwrap();
        assert!(
            !body.contains("action_id") && body.contains(".sock"),
            "{body}"
        );
    }
    let out = curl_as_nobody(&[&format!("{base}/journal/dump")]);
    assert!(!String::from_utf8_lossy(&out.stdout).contains("action_id"));
    // The socket: the journal's owner and a mode that admits the journal's readers only.
    let journal = journal_path(dir.path());
    let sock = dir.path().join("journal.redb.sock");
    let (jm, sm) = (
        std::fs::metadata(&journal).unwrap(),
        std::fs::metadata(&sock).unwrap(),
    );
    assert!(sm.file_type().is_socket());
    assert_eq!((sm.uid(), sm.gid()), (jm.uid(), jm.gid()));
    assert_eq!(jm.mode() & 0o777, 0o600);
    assert_eq!(sm.mode() & 0o777, 0o600, "socket mode {:o}", sm.mode());
    // Another user cannot connect (the scratch directory itself is open to them).
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let sock_s = sock.display().to_string();
    let out = curl_as_nobody(&["--unix-socket", &sock_s, "http://localhost/journal/dump"]);
    assert!(!out.status.success(), "nobody reached the socket");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("action_id"));
    // The journal's owner reaches it, and so does the CLI.
    let out = Command::new("curl")
        .args([
            "-sS",
            "-m",
            "10",
            "--unix-socket",
            &sock_s,
            "http://localhost/journal/dump",
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 300);
    let out = journal_cmd(dir.path(), None, &["stats", "--json"]);
    assert_ok(&out);
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["actions"], 300);
    assert_eq!(sigterm_and_wait(&mut svc), Some(0));
    assert!(
        !sock.exists(),
        "the socket is removed when the service stops"
    );
}

/// Issue 19 points 9 and 15: a request with `Host: attacker.example` (DNS rebinding) was
/// answered; a lowercase `bearer` scheme was refused (the scheme is case-insensitive).
#[tokio::test(flavor = "multi_thread")]
async fn over_tcp_foreign_hosts_are_refused_and_the_scheme_is_case_insensitive() {
    let sim = recent_sim(300).await;
    let dir = scratch();
    let port = free_port();
    let mut svc = start_run(
        dir.path(),
        &sim,
        &format!("127.0.0.1:{port}"),
        Some(TOKEN),
        300,
    )
    .await;
    let url = format!("http://127.0.0.1:{port}/journal/dump");
    let http = reqwest::Client::new();
    let r = http
        .get(&url)
        .header("Host", "attacker.example")
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 421, "a foreign Host is refused");
    assert!(!r.text().await.unwrap().contains("action_id"));
    let r = http
        .get(&url)
        .header("Authorization", format!("bearer {TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "lowercase bearer");
    assert_eq!(r.text().await.unwrap().lines().count(), 300);
    let r = http
        .get(&url)
        .header("Host", format!("localhost:{port}"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "localhost is ours");
    assert_eq!(sigterm_and_wait(&mut svc), Some(0));
}

/// Issue 19 point 8: `journal dump`/`stats` with `HTTP_PROXY`, `http_proxy` or `ALL_PROXY` set
/// sent the request and `Authorization: Bearer …` to the proxy (`NO_PROXY=localhost` did not
/// help). A proxy is never used to reach the running service.
#[tokio::test(flavor = "multi_thread")]
async fn the_cli_never_sends_the_token_or_the_records_through_a_proxy() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let sim = recent_sim(300).await;
    let dir = scratch();
    let port = free_port();
    let mut svc = start_run(
        dir.path(),
        &sim,
        &format!("127.0.0.1:{port}"),
        Some(TOKEN),
        300,
    )
    .await;
    // A proxy that keeps whatever it is sent.
    let proxy = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy_url = format!("http://{}", proxy.local_addr().unwrap());
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
    let keep = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = proxy.accept().await {
            let mut buf = vec![0u8; 4096];
            let n = s.read(&mut buf).await.unwrap_or(0);
            keep.lock().unwrap().extend_from_slice(&buf[..n]);
            let _ = s
                .write_all(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n")
                .await;
        }
    });
    for args in [&["dump"][..], &["stats", "--json"][..]] {
        let mut c = harvester(dir.path());
        c.env("HARVESTER_API_TOKEN", TOKEN)
            .env("HTTP_PROXY", &proxy_url)
            .env("http_proxy", &proxy_url)
            .env("ALL_PROXY", &proxy_url)
            .env("all_proxy", &proxy_url)
            .env("NO_PROXY", "localhost")
            .arg("journal")
            .args(args);
        let out = run(c);
        assert_ok(&out);
        assert!(!out.stdout.is_empty());
    }
    let seen = String::from_utf8_lossy(&seen.lock().unwrap()).to_string();
    assert!(seen.is_empty(), "the proxy was sent: {seen}");
    assert_eq!(sigterm_and_wait(&mut svc), Some(0));
}
