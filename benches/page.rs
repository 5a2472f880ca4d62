//! Micro-benchmark of one page's way through the harvester, stage by stage, on a page of 1,000
//! simulated actions (the simulator's data, as the harvest benchmark fetches it):
//!
//!     cargo bench --bench page
//!
//! Prints µs per page and ns per action for each stage. A single-threaded loop, so the figures
//! are CPU per page; `bench/run.sh` measures the whole harvest.
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use harvester::journal::codec;
use harvester::opencast::types::JudgedPage;
use harvester::opencast::wire::ActionsPage;
use harvester::record::{EpisodeBlock, RecordRef};
use harvester::sim::data::{Data, DataConfig};

const ACTIONS: u64 = 1000;

fn page_json() -> String {
    let data = Data::new(DataConfig::new(
        7,
        1_000_000,
        1_456_790_400_000_000,
        1_456_876_800_000_000,
    ));
    let offset = 5000;
    let mut body = format!(
        "{{\"actions\":{{\"total\":\"1000000\",\"offset\":\"{offset}\",\"limit\":\"{ACTIONS}\",\"action\":["
    );
    for i in offset..offset + ACTIONS {
        if i > offset {
            body.push(',');
        }
        data.write_action(&mut body, &data.action(i));
    }
    body.push_str("]}}");
    body
}

/// Runs `f` for about a second after a warm-up; returns the mean time per call. Under
/// `cargo test` (no `--bench` argument) each stage runs once, as a smoke test.
fn time(mut f: impl FnMut()) -> Duration {
    let benching = std::env::args().any(|a| a == "--bench");
    let (warm, length) = if benching {
        (20, Duration::from_secs(1))
    } else {
        (0, Duration::ZERO)
    };
    for _ in 0..warm {
        f();
    }
    let (start, mut n) = (Instant::now(), 0u32);
    loop {
        f();
        n += 1;
        if start.elapsed() >= length {
            break;
        }
    }
    start.elapsed() / n
}

fn report(stage: &str, d: Duration) {
    println!(
        "{stage:<34} {:>9.1} µs/page {:>7.0} ns/action",
        d.as_secs_f64() * 1e6,
        d.as_secs_f64() * 1e9 / ACTIONS as f64
    );
}

fn main() {
    let body = page_json();
    let tz = chrono_tz::UTC;
    let episode = Arc::new(EpisodeBlock {
        title: Some("Lecture 7: Entropy".into()),
        duration: Some(3_600_000),
        start: Some("2016-03-01T09:00:00Z".into()),
        series: Some(("Thermodynamics".into(), "series-1".into())),
        kind: Some("lecture".into()),
        description: None,
    });
    let records = || {
        let page = ActionsPage::parse(body.as_bytes()).expect("the page decodes");
        JudgedPage::judge(page, tz)
            .actions
            .into_iter()
            .map(|a| RecordRef::new(a, Some(episode.clone())))
            .collect::<Vec<_>>()
    };
    let recs = records();
    assert_eq!(recs.len() as u64, ACTIONS);
    let block = codec::encode_block_refs(&recs);
    println!(
        "page: {} actions, {} bytes of JSON; block: {} bytes",
        ACTIONS,
        body.len(),
        block.len()
    );
    report(
        "decode (ActionsPage::parse)",
        time(|| {
            black_box(ActionsPage::parse(black_box(body.as_bytes())).unwrap());
        }),
    );
    report(
        "decode + judge",
        time(|| {
            let page = ActionsPage::parse(black_box(body.as_bytes())).unwrap();
            black_box(JudgedPage::judge(page, tz));
        }),
    );
    report(
        "decode + judge + records",
        time(|| {
            black_box(records());
        }),
    );
    report(
        "encode block (bincode + zstd)",
        time(|| {
            black_box(codec::encode_block_refs(black_box(&recs)));
        }),
    );
    report(
        "decode block",
        time(|| {
            black_box(codec::decode_block(black_box(&block)).unwrap());
        }),
    );
    report(
        "serde_json skim (IgnoredAny)",
        time(|| {
            black_box(
                serde_json::from_slice::<serde::de::IgnoredAny>(black_box(body.as_bytes()))
                    .unwrap(),
            );
        }),
    );
}
