//! Forward of 100,000 journaled records with and without enrichment (issue 11):
//!
//!     cargo bench --bench enrich                       # stdout
//!     HARVESTER_TEST_ES_URL=http://127.0.0.1:9200 cargo bench --bench enrich   # and Elasticsearch
//!
//! The records follow real traffic: 1,000 viewing sessions of 100 actions each (one address and
//! one user agent per session, 40 distinct agents, sessions overlapping in time so their actions
//! interleave in the journal); 90% of the addresses are in the GeoIP database (2,000 networks,
//! written by tests/enrich/make_mmdb.py), the rest are not. Each round runs every configuration
//! back to back (`harvester forward` on a fresh copy of the same journal, wall-clock time of the
//! process, start-up included), so the ratios compare runs made under the same machine load.
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use harvester::journal::{codec, Journal, PageCommit};
use harvester::record::{ActionBlock, Record};

const SESSIONS: u64 = 1000;
const PER_SESSION: u64 = 100;
/// Paired rounds (`ENRICH_BENCH_ROUNDS`, default 5); one under `cargo test`, which runs this
/// file without `--bench` to check that it works, not to measure.
fn rounds() -> usize {
    if !std::env::args().any(|a| a == "--bench") {
        return 1;
    }
    std::env::var("ENRICH_BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(5)
}

fn mix(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51afd7ed558ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ceb9fe1a85ec53);
    x ^ (x >> 33)
}

fn agents() -> Vec<String> {
    let mut v = Vec::new();
    for (i, os) in [
        "Windows NT 10.0; Win64; x64",
        "Macintosh; Intel Mac OS X 10_15_7",
        "X11; Linux x86_64",
    ]
    .iter()
    .enumerate()
    {
        for c in 0..6 {
            v.push(format!("Mozilla/5.0 ({os}) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{}.0.{}.{} Safari/537.36", 114 + c, 5735 + c * 10, 90 + i));
        }
        for f in 0..3 {
            v.push(format!(
                "Mozilla/5.0 ({os}; rv:{}.0) Gecko/20100101 Firefox/{}.0",
                118 + f,
                118 + f
            ));
        }
    }
    for s in 0..6 {
        v.push(format!("Mozilla/5.0 (iPhone; CPU iPhone OS 16_{s} like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/16.{s} Mobile/15E148 Safari/604.1"));
    }
    for a in 0..7 {
        v.push(format!("Mozilla/5.0 (Linux; Android {}; SM-G99{a}B) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/119.0.0.0 Mobile Safari/537.36", 10 + a % 4));
    }
    v
}

/// The journal of the benchmark, in `dir`.
fn build_journal(path: &Path, networks: &[String]) {
    let agents = agents();
    let t0 = 1_700_000_000_000_000i64;
    let mut all: Vec<Record> = Vec::with_capacity((SESSIONS * PER_SESSION) as usize);
    for s in 0..SESSIONS {
        let h = mix(s + 1);
        let ip = if h % 10 == 0 {
            format!(
                "45.{}.{}.{}",
                (h >> 8) & 0xff,
                (h >> 16) & 0xff,
                1 + (h >> 24) % 250
            )
        } else {
            format!(
                "{}.{}",
                networks[(h >> 8) as usize % networks.len()],
                1 + (h >> 32) % 250
            )
        };
        let ua = agents[(h >> 40) as usize % agents.len()].clone();
        let start = t0 + ((h >> 20) % 3_600) as i64 * 1_000_000;
        for a in 0..PER_SESSION {
            all.push(Record {
                action_id: 0,
                created_us: start + a as i64 * 30_000_000,
                mpid: format!("mp-{}", s % 40),
                session_id: format!("{:012x}", h & 0xffff_ffff_ffff),
                huid: Some(format!("{:08}", h % 100_000_000)),
                useragent: Some(ua.clone()),
                action: ActionBlock {
                    kind: Some("HEARTBEAT".into()),
                    inpoint: Some(a as i64 * 30),
                    outpoint: Some(a as i64 * 30 + 30),
                    length: Some(30),
                    is_playing: true,
                },
                ip_chain: Some(if h % 3 == 0 {
                    format!("{ip}, 128.103.1.1")
                } else {
                    ip.clone()
                }),
                is_live: false,
                episode: None,
            });
        }
    }
    all.sort_by_key(|r| r.created_us);
    for (i, r) in all.iter_mut().enumerate() {
        r.action_id = i as i64 + 1;
    }
    let j = Journal::open(path).unwrap();
    for page in all.chunks(1000) {
        j.commit_page(PageCommit {
            ids: page.iter().map(|r| r.action_id).collect(),
            block: Some(codec::encode_block(page)),
            ..PageCommit::default()
        })
        .unwrap();
    }
}

struct Config {
    name: &'static str,
    geoip: bool,
    ua: bool,
}

const CONFIGS: [Config; 4] = [
    Config {
        name: "plain",
        geoip: false,
        ua: false,
    },
    Config {
        name: "geoip",
        geoip: true,
        ua: false,
    },
    Config {
        name: "useragent",
        geoip: false,
        ua: true,
    },
    Config {
        name: "geoip+useragent",
        geoip: true,
        ua: true,
    },
];

/// Seconds of one `harvester forward` of the whole journal (a fresh copy) to `output`.
fn forward(
    dir: &Path,
    journal: &Path,
    db: &Path,
    c: &Config,
    output: &str,
    es: Option<(&str, &str)>,
) -> f64 {
    let copy = dir.join("run.redb");
    std::fs::copy(journal, &copy).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_harvester"));
    cmd.current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("JOURNAL_PATH", &copy)
        .env("LOG_LEVEL", "warn")
        .args(["forward", "-o", output])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    if c.geoip {
        cmd.env("GEOIP_DATABASE", db);
    }
    if c.ua {
        cmd.env("PARSE_USERAGENT", "1");
    }
    if let Some((url, index)) = es {
        cmd.env("ELASTICSEARCH_HOST", url)
            .env("ES_ACTION_INDEX", index);
    }
    let t = Instant::now();
    let st = cmd.status().unwrap();
    let secs = t.elapsed().as_secs_f64();
    assert!(st.success(), "{} forward failed", c.name);
    secs
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn report(sink: &str, times: &[Vec<f64>]) {
    let n = (SESSIONS * PER_SESSION) as f64;
    let rounds = times[0].len();
    println!(
        "\n{sink}: {} records, {rounds} paired rounds (median)",
        n as u64
    );
    println!(
        "{:<18} {:>9} {:>12} {:>22}",
        "config", "seconds", "records/s", "of plain (paired)"
    );
    for (k, c) in CONFIGS.iter().enumerate() {
        let ratios: Vec<f64> = (0..rounds).map(|r| times[0][r] / times[k][r]).collect();
        println!(
            "{:<18} {:>9.3} {:>12.0} {:>21.1}%",
            c.name,
            median(times[k].clone()),
            n / median(times[k].clone()),
            100.0 * median(ratios)
        );
    }
}

fn main() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let db: PathBuf = dir.join("bench.mmdb");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/enrich/make_mmdb.py");
    let st = Command::new("python3")
        .arg(&script)
        .arg(&db)
        .arg("bench")
        .status()
        .unwrap();
    assert!(st.success(), "make_mmdb.py needs PyPI's mmdb-writer");
    let networks: Vec<String> = std::fs::read_to_string(dir.join("bench.mmdb.networks"))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    let journal = dir.join("bench.redb");
    build_journal(&journal, &networks);

    let mut times = vec![Vec::new(); CONFIGS.len()];
    for _ in 0..rounds() {
        for (k, c) in CONFIGS.iter().enumerate() {
            times[k].push(forward(dir, &journal, &db, c, "-", None));
        }
    }
    report("stdout", &times);

    if let Ok(url) = std::env::var("HARVESTER_TEST_ES_URL") {
        let mut times = vec![Vec::new(); CONFIGS.len()];
        for r in 0..rounds() {
            for (k, c) in CONFIGS.iter().enumerate() {
                let index = format!("bench-enrich-{}-{r}-{k}", std::process::id());
                times[k].push(forward(dir, &journal, &db, c, "es", Some((&url, &index))));
                delete_index(&url, &index);
            }
        }
        report("elasticsearch", &times);
    }
}

/// Deletes a benchmark index (each run writes 100,000 documents).
fn delete_index(url: &str, index: &str) {
    let _ = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-X", "DELETE"])
        .arg(format!("{}/{index}", url.trim_end_matches('/')))
        .status();
}
