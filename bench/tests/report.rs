//! The report writer, from synthetic samples: every summary key a number, the Markdown linking
//! each plot, and each PNG read back by an independent reader (Python's standard library:
//! the signature, the IHDR size, and the pixels inflating to what the IHDR says).

use std::collections::BTreeMap;
use std::process::Command;

use game_bench::observe::StoredFact;
use game_bench::report::{Ceilings, PLOTS, Results};
use game_bench::run::join;
use game_bench::stats::Samples;

/// The keys scripts compare runs by.
const KEYS: [&str; 9] = [
    "accepted_per_s",
    "p99_ms_202",
    "p99_ms_wait",
    "projection_lag_p99_ms",
    "publishers_per_s",
    "gateway_ratio",
    "projected_per_s",
    "raw_writes_per_s",
    "projector_ratio",
];

fn synthetic() -> Results {
    let mut latency_202 = Samples::default();
    let mut latency_wait = Samples::default();
    let mut accepted = Vec::new();
    for i in 0..1000 {
        let at = i as f64 / 100.0;
        accepted.push(at);
        if i % 5 == 0 {
            latency_wait.push(at, 40.0 + (i % 7) as f64);
        } else {
            latency_202.push(at, 2.0 + (i % 11) as f64 / 10.0);
        }
    }
    let mut results = Results {
        players: 5,
        seconds: 10.0,
        ramp_seconds: 2.0,
        span: 12,
        cores: 2,
        setup: "Synthetic.".into(),
        accepted,
        latency_202,
        latency_wait,
        statuses: BTreeMap::from([("202".into(), 800), ("200".into(), 200), ("429".into(), 3)]),
        outcomes: BTreeMap::from([
            ("applied".into(), 150),
            ("rejected: out_of_range".into(), 50),
        ]),
        ceilings: Ceilings {
            publishers_per_s: 50_000.0,
            publishers: 64,
            ordered_consumer_per_s: 150_000.0,
            raw_writes_per_s: 4_000.0,
        },
        ..Default::default()
    };
    // 300 facts, one every 30 ms, projected in steps of ten, 50 ms later; their commands sent
    // 20 ms before; each delivered on one live stream 5 ms after it was stored.
    let start = 1_000_000_000_000i64;
    let facts: Vec<StoredFact> = (0..300)
        .map(|i| StoredFact {
            seq: 100 + i,
            stored_us: start + i as i64 * 30_000,
            id: format!("fact-{i}"),
            correlation_id: format!("command-{i}"),
        })
        .collect();
    let positions: Vec<(i64, u64)> = facts
        .chunks(10)
        .map(|c| (c[9].stored_us + 50_000, c[9].seq))
        .collect();
    let sent = facts
        .iter()
        .map(|f| (f.correlation_id.clone(), f.stored_us - 20_000))
        .collect();
    let deliveries: Vec<(String, i64)> = facts
        .iter()
        .map(|f| (f.id.clone(), f.stored_us + 5_000))
        .collect();
    join(&mut results, start, &facts, &positions, &sent, &deliveries);
    results
}

#[test]
fn lags_are_joined_from_the_log_the_position_and_the_players() {
    let results = synthetic();
    assert_eq!(results.facts_stored.len(), 300);
    assert_eq!(results.unprojected, 0);
    let projection = results.projection_lag.overall();
    // The last fact of each step of ten waits 50 ms, the first 9 x 30 ms more.
    assert_eq!(
        (projection.count, projection.p50 <= 320.0, projection.max),
        (300, true, 320.0)
    );
    let command = results.command_to_fact.overall();
    assert_eq!((command.count, command.p99), (300, 20.0));
    let delivery = results.delivery_lag.overall();
    assert_eq!((delivery.count, delivery.max), (300, 5.0));
}

#[test]
fn a_run_writes_its_report_summary_and_plots() {
    let dir = tempfile::tempdir().expect("dir");
    let results = synthetic();
    results.write(dir.path()).expect("written");

    let summary: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("summary.json")).expect("summary"),
    )
    .expect("json");
    for key in KEYS {
        assert!(
            summary[key].is_number(),
            "{key} is not a number in {summary}"
        );
    }
    // 800 accepted in the 8 s after the ramp; 50 000 publishers per second.
    assert_eq!(summary["accepted_per_s"].as_f64(), Some(100.0));
    assert_eq!(summary["gateway_ratio"].as_f64(), Some(100.0 / 50_000.0));
    assert_eq!(summary["errors"].as_f64(), Some(3.0));

    let report = std::fs::read_to_string(dir.path().join("report.md")).expect("report");
    for plot in PLOTS {
        assert!(
            report.contains(&format!("]({plot})")),
            "report.md does not show {plot}"
        );
    }
    assert!(report.contains("| 429 | 3 |"));

    let checked = Command::new("python3")
        .arg("-c")
        .arg(PNG_CHECK)
        .args(PLOTS.iter().map(|p| dir.path().join(p)))
        .output()
        .expect("python3");
    assert!(
        checked.status.success(),
        "{}",
        String::from_utf8_lossy(&checked.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&checked.stdout)
            .lines()
            .collect::<Vec<_>>(),
        vec!["1000x560"; PLOTS.len()]
    );
}

/// Reads each PNG given: signature, IHDR first, IDAT inflating to height rows of width
/// pixels, IEND last; prints `WIDTHxHEIGHT`.
const PNG_CHECK: &str = r#"
import struct, sys, zlib
for path in sys.argv[1:]:
    data = open(path, 'rb').read()
    assert data[:8] == b'\x89PNG\r\n\x1a\n', path + ': not a PNG'
    pos, chunks = 8, []
    while pos < len(data):
        length, kind = struct.unpack('>I4s', data[pos:pos + 8])
        chunks.append((kind, data[pos + 8:pos + 8 + length]))
        pos += 12 + length
    assert chunks[0][0] == b'IHDR' and chunks[-1][0] == b'IEND', path
    width, height, depth, color = struct.unpack('>IIBB', chunks[0][1][:10])
    channels = {0: 1, 2: 3, 4: 2, 6: 4}[color]
    pixels = zlib.decompress(b''.join(c for k, c in chunks if k == b'IDAT'))
    assert len(pixels) == height * (1 + width * channels * depth // 8), path + ': truncated'
    assert len(set(pixels)) > 2, path + ': blank'
    print(f'{width}x{height}')
"#;
