//! A site's own CA (issue 19, point 13): an https Elasticsearch with security on (a real node
//! started by `.ci/services.sh`, its certificate signed by a private CA as Elasticsearch 8/9 sign
//! theirs) and an https Opencast (the simulator behind a TLS-terminating proxy with a certificate
//! of the same CA). Without trust, the certificate error is final, at once, and names the setting;
//! with `ES_CA_FILE`, `ES_CA_FINGERPRINT`, `OPENCAST_CA_FILE` or the system store
//! (`SSL_CERT_FILE`) everything goes through.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use harvester::sim::SimConfig;

fn tls_dir() -> Option<PathBuf> {
    service("HARVESTER_TEST_TLS_DIR").map(PathBuf::from)
}

/// The CA's SHA-256 fingerprint as `openssl` prints it (`AB:CD:…`): independent of our code.
fn openssl_fingerprint(pem: &Path) -> String {
    let out = Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
        .arg(pem)
        .output()
        .expect("openssl runs");
    assert!(out.status.success());
    let s = String::from_utf8_lossy(&out.stdout);
    s.trim()
        .split_once('=')
        .expect("openssl's format")
        .1
        .to_string()
}

/// How many documents the indices of `pattern` hold, asked with our own client (trusting the CA).
async fn count(url: &str, ca: &Path, pattern: &str) -> u64 {
    let u = reqwest::Url::parse(url).unwrap();
    let (user, pass) = (u.username().to_string(), u.password().unwrap().to_string());
    let mut base = u.clone();
    base.set_username("").unwrap();
    base.set_password(None).unwrap();
    let pem = std::fs::read(ca).unwrap();
    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .no_proxy()
        .build()
        .unwrap();
    let root = base.as_str().trim_end_matches('/');
    http.post(format!("{root}/{pattern}/_refresh?allow_no_indices=true"))
        .basic_auth(&user, Some(&pass))
        .send()
        .await
        .unwrap();
    let v: serde_json::Value = http
        .get(format!("{root}/{pattern}/_count?allow_no_indices=true"))
        .basic_auth(&user, Some(&pass))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["count"].as_u64().unwrap_or_else(|| panic!("{v}"))
}

fn forward_es(
    dir: &Path,
    url: &str,
    pattern: &str,
    env: &[(&str, &str)],
) -> (std::process::Output, Duration) {
    let mut c = harvester(dir);
    c.env("ELASTICSEARCH_HOST", url)
        .env("ES_ACTION_INDEX", pattern)
        .args(["forward", "-o", "es"]);
    for (k, v) in env {
        c.env(k, v);
    }
    let began = Instant::now();
    let out = run(c);
    (out, began.elapsed())
}

#[tokio::test(flavor = "multi_thread")]
async fn elasticsearch_with_security_on_is_trusted_by_ca_file_fingerprint_or_system_store() {
    let (Some(url), Some(tls)) = (service("HARVESTER_TEST_ES_TLS_URL"), tls_dir()) else {
        return;
    };
    let ca = tls.join("ca.pem");
    let sim = start_sim(SimConfig::new(data(200, 600))).await;
    let dir = scratch();
    let mut c = harvester_for(dir.path(), &sim);
    harvest_window(&mut c, 600_000_000, "-");
    assert_ok(&run(c));
    let prefix = format!(
        "t-tls-{}-{}",
        std::process::id(),
        rand::random::<u32>() % 1_000_000
    );

    // No trust: final at once (no retry, no backoff), naming the settings; nothing indexed.
    let pattern = format!("{prefix}-a-%Y.%m.%d");
    let (out, took) = forward_es(dir.path(), &url, &pattern, &[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("UnknownIssuer"), "{err}");
    assert!(
        err.contains("ES_CA_FILE") && err.contains("ES_CA_FINGERPRINT"),
        "{err}"
    );
    assert!(
        !err.contains("retry"),
        "a certificate error is not retried: {err}"
    );
    assert!(took < Duration::from_secs(10), "{took:?}: {err}");
    assert_eq!(count(&url, &ca, &format!("{prefix}-a-*")).await, 0);

    // ES_CA_FILE: every record delivered.
    let (out, _) = forward_es(
        dir.path(),
        &url,
        &pattern,
        &[("ES_CA_FILE", ca.to_str().unwrap())],
    );
    assert_ok(&out);
    assert!(stderr(&out).contains("forwarded=200"), "{}", stderr(&out));
    assert_eq!(count(&url, &ca, &format!("{prefix}-a-*")).await, 200);

    // ES_CA_FINGERPRINT, in openssl's spelling (colons, upper case).
    let fp = openssl_fingerprint(&ca);
    let pattern = format!("{prefix}-b-%Y.%m.%d");
    let (out, _) = forward_es(dir.path(), &url, &pattern, &[("ES_CA_FINGERPRINT", &fp)]);
    assert_ok(&out);
    assert_eq!(count(&url, &ca, &format!("{prefix}-b-*")).await, 200);

    // The system's trust store, extended by SSL_CERT_FILE.
    let pattern = format!("{prefix}-c-%Y.%m.%d");
    let (out, _) = forward_es(
        dir.path(),
        &url,
        &pattern,
        &[("SSL_CERT_FILE", ca.to_str().unwrap())],
    );
    assert_ok(&out);
    assert_eq!(count(&url, &ca, &format!("{prefix}-c-*")).await, 200);

    // A fingerprint of no certificate the node presents: final, naming the setting.
    let first = if fp.starts_with('0') { "1" } else { "0" };
    let wrong = format!("{first}{}", &fp[1..]);
    let pattern = format!("{prefix}-d-%Y.%m.%d");
    let (out, took) = forward_es(dir.path(), &url, &pattern, &[("ES_CA_FINGERPRINT", &wrong)]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("presented no certificate with ES_CA_FINGERPRINT"),
        "{err}"
    );
    assert!(took < Duration::from_secs(10), "{took:?}");

    // Settings that are not a CA or a fingerprint: exit 2 naming them, nothing contacted.
    let key = tls.join("node.key");
    for (k, v) in [
        ("ES_CA_FILE", key.to_str().unwrap()),
        ("ES_CA_FILE", "/nonexistent/ca.pem"),
        ("ES_CA_FINGERPRINT", "not-a-fingerprint"),
    ] {
        let (out, _) = forward_es(dir.path(), &url, &pattern, &[(k, v)]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{k}={v}: {err}");
        assert!(err.contains(k), "{k}={v}: {err}");
    }

    // `check` says what is wrong and what to set.
    let mut c = harvester_for(dir.path(), &sim);
    c.env("ELASTICSEARCH_HOST", &url)
        .env("S3_HARVEST_TS_BUCKET", "b")
        .args(["check", "-o", "es"]);
    let out = run(c);
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
    let line = text
        .lines()
        .find(|l| l.contains("elasticsearch"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        line.contains("UnknownIssuer") && line.contains("ES_CA_FILE"),
        "{line}"
    );
    assert!(
        !line.contains(url.split('@').next().unwrap().rsplit(':').next().unwrap()),
        "password shown: {line}"
    );
}

/// A TLS-terminating proxy (Python's ssl module) in front of the simulator, with the private
/// CA's certificate for 127.0.0.1.
struct TlsProxy {
    child: Child,
    port: u16,
}

impl Drop for TlsProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const PROXY: &str = r#"
import asyncio, ssl, sys
cert, key, up = sys.argv[1], sys.argv[2], int(sys.argv[3])
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
async def pipe(r, w):
    try:
        while True:
            d = await r.read(65536)
            if not d:
                break
            w.write(d)
            await w.drain()
    except Exception:
        pass
    finally:
        try:
            w.close()
        except Exception:
            pass
async def handle(r, w):
    try:
        ur, uw = await asyncio.open_connection('127.0.0.1', up)
    except Exception:
        w.close()
        return
    await asyncio.gather(pipe(r, uw), pipe(ur, w))
async def main():
    srv = await asyncio.start_server(handle, '127.0.0.1', 0, ssl=ctx)
    print(srv.sockets[0].getsockname()[1], flush=True)
    await srv.serve_forever()
asyncio.run(main())
"#;

fn tls_proxy(tls: &Path, upstream: u16) -> TlsProxy {
    let mut child = Command::new("python3")
        .args(["-c", PROXY])
        .arg(tls.join("node-chain.pem"))
        .arg(tls.join("node.key"))
        .arg(upstream.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3 runs");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port = line
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("proxy said {line:?}"));
    TlsProxy { child, port }
}

#[tokio::test(flavor = "multi_thread")]
async fn opencast_over_https_with_a_private_ca_is_trusted_by_opencast_ca_file() {
    let Some(tls) = tls_dir() else { return };
    let ca = tls.join("ca.pem");
    let sim = start_sim(SimConfig::new(data(300, 600))).await;
    let upstream = reqwest::Url::parse(&sim.url()).unwrap().port().unwrap();
    let proxy = tls_proxy(&tls, upstream);
    let host = format!("https://127.0.0.1:{}", proxy.port);
    let harvest = |env: &[(&str, &str)]| {
        let dir = scratch();
        let mut c = harvester_for(dir.path(), &sim);
        c.env("MATTERHORN_ENGAGE_HOST", &host);
        for (k, v) in env {
            c.env(k, v);
        }
        harvest_window(&mut c, 600_000_000, "-");
        let began = Instant::now();
        let out = run(c);
        (out, began.elapsed(), dir)
    };

    // Not trusted: final at once, naming the setting, no retries (OPENCAST_RETRIES is 8 here).
    let (out, took, _d) = harvest(&[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("UnknownIssuer") && err.contains("OPENCAST_CA_FILE"),
        "{err}"
    );
    assert!(!err.contains("retrying"), "{err}");
    assert!(took < Duration::from_secs(10), "{took:?}");

    // OPENCAST_CA_FILE, or the system store through SSL_CERT_FILE: every action.
    for (k, v) in [
        ("OPENCAST_CA_FILE", ca.to_str().unwrap()),
        ("SSL_CERT_FILE", ca.to_str().unwrap()),
    ] {
        let (out, _, _d) = harvest(&[(k, v)]);
        assert_ok(&out);
        assert_eq!(stdout_records(&out).len(), 300, "{k}");
    }

    // A file that is not a certificate: exit 2 naming the setting.
    let (out, _, _d) = harvest(&[("OPENCAST_CA_FILE", tls.join("node.key").to_str().unwrap())]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("OPENCAST_CA_FILE"),
        "{}",
        stderr(&out)
    );
}
