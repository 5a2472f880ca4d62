//! A client of the real fault proxy (Toxiproxy, started by `.ci/services.sh`): a proxy between the
//! harvester and a service, with faults ("toxics") added and removed while a test runs.
//!
//! Plain HTTP/1.1 over `std::net`, so it works the same from a `#[test]` and a `#[tokio::test]`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{json, Value};

/// The Toxiproxy API of the test services.
pub struct Toxiproxy {
    api: String,
}

/// One proxy; removed when dropped.
pub struct Proxy {
    api: String,
    pub name: String,
    /// `127.0.0.1:PORT` the proxy listens on.
    pub listen: String,
}

static NEXT: AtomicU64 = AtomicU64::new(0);

fn call(api: &str, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    let hostport = api.trim_start_matches("http://").trim_end_matches('/');
    let mut s = TcpStream::connect(hostport).unwrap_or_else(|e| {
        panic!("Toxiproxy API at {api} does not answer ({e}); start it with `bash .ci/services.sh start`")
    });
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {hostport}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).expect("request to Toxiproxy");
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).expect("answer from Toxiproxy");
    let text = String::from_utf8_lossy(&resp);
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    // Chunked or not, the JSON is the part between the first '{' or '[' and the last '}' or ']'.
    let json_text = match (rest.find(['{', '[']), rest.rfind(['}', ']'])) {
        (Some(a), Some(b)) if b >= a => &rest[a..=b],
        _ => "null",
    };
    (
        status,
        serde_json::from_str(json_text).unwrap_or(Value::Null),
    )
}

impl Toxiproxy {
    /// The proxy of the test services; fails (never skips silently) when it is not configured,
    /// unless HARVESTER_ALLOW_SKIP=1.
    pub fn from_env() -> Option<Toxiproxy> {
        super::service("HARVESTER_TEST_TOXIPROXY").map(|api| Toxiproxy { api })
    }

    /// A new proxy to `upstream` (`host:port`) on a free loopback port.
    pub fn proxy(&self, name: &str, upstream: &str) -> Proxy {
        let name = format!(
            "{name}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let (status, v) = call(
            &self.api,
            "POST",
            "/proxies",
            Some(
                &json!({"name": name, "listen": "127.0.0.1:0", "upstream": upstream, "enabled": true}),
            ),
        );
        assert!(
            status == 201 || status == 200,
            "creating proxy {name}: {status} {v}"
        );
        Proxy {
            api: self.api.clone(),
            name,
            listen: v["listen"].as_str().expect("listen address").to_string(),
        }
    }
}

impl Proxy {
    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.listen)
    }

    /// Adds a toxic (`latency`, `bandwidth`, `slow_close`, `timeout`, `reset_peer`, `limit_data`,
    /// `slicer`) on `stream` (`downstream`: server to harvester; `upstream`); returns its name.
    pub fn toxic(&self, kind: &str, stream: &str, attributes: Value) -> String {
        let name = format!("{kind}_{stream}_{}", NEXT.fetch_add(1, Ordering::Relaxed));
        let (status, v) = call(
            &self.api,
            "POST",
            &format!("/proxies/{}/toxics", self.name),
            Some(
                &json!({"name": name, "type": kind, "stream": stream, "toxicity": 1.0, "attributes": attributes}),
            ),
        );
        assert!(
            status == 200 || status == 201,
            "adding toxic {kind}: {status} {v}"
        );
        name
    }

    pub fn remove_toxic(&self, name: &str) {
        let (status, v) = call(
            &self.api,
            "DELETE",
            &format!("/proxies/{}/toxics/{name}", self.name),
            None,
        );
        assert!(
            status == 204 || status == 200,
            "removing toxic {name}: {status} {v}"
        );
    }

    /// Down (connections refused) or up again.
    pub fn set_enabled(&self, enabled: bool) {
        let (status, v) = call(
            &self.api,
            "POST",
            &format!("/proxies/{}", self.name),
            Some(&json!({"enabled": enabled})),
        );
        assert!(status == 200, "switching proxy {}: {status} {v}", self.name);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = call(
            &self.api,
            "DELETE",
            &format!("/proxies/{}", self.name),
            None,
        );
    }
}
