//! What the services read back from the bus and its buckets, fuzzed: dead letters' headers,
//! leases, node loads and rebuild jobs, from arbitrary bytes and from well-formed documents
//! with absurd values. Nothing panics; every refusal says why.

use async_nats::HeaderMap;
use bytes::Bytes;
use nats_topology::DeadLetter;
use nats_topology::headers::{
    DLQ_ATTEMPTS, DLQ_ORIGIN_SEQ, DLQ_ORIGIN_STREAM, DLQ_ORIGIN_SUBJECT, DLQ_REASON,
};
use nats_topology::jobs::RebuildJob;
use nats_topology::lease::{Lease, NodeLoad};
use proptest::prelude::*;

/// Header values as a hostile publisher might send them (NATS headers are text lines).
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        "[ -~]{0,40}",
        Just(u64::MAX.to_string()),
        Just("18446744073709551616".to_owned()),
        Just("-1".to_owned()),
        Just("2026-11-29T12:00:00Z".to_owned()),
        Just("9999-99-99T99:99:99Z".to_owned()),
        Just("+275760-09-13T00:00:00Z".to_owned()),
    ]
}

fn header_name() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        DLQ_ORIGIN_STREAM,
        DLQ_ORIGIN_SUBJECT,
        DLQ_ORIGIN_SEQ,
        DLQ_REASON,
        DLQ_ATTEMPTS,
        "Dlq-At",
        "Dlq-Consumer",
        "Nats-Msg-Id",
        "X-Anything",
    ])
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_dead_letter_headers_parse_or_say_what_is_missing(
        headers in prop::collection::vec((header_name(), value()), 0..12),
        payload in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let mut map = HeaderMap::new();
        for (name, value) in &headers {
            map.insert(*name, value.as_str());
        }
        match DeadLetter::parse(&map, Bytes::from(payload.clone())) {
            Ok(letter) => {
                prop_assert_eq!(&letter.payload[..], &payload[..]);
                prop_assert!(letter.headers.get(DLQ_REASON).is_none(), "the dead letter's own headers are taken out");
            }
            Err(e) => {
                let why = e.to_string();
                prop_assert!(why.contains("Dlq-") , "{}", why);
            }
        }
    }

    #[test]
    fn bucket_documents_decode_or_fail_without_panicking(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = serde_json::from_slice::<Lease>(&bytes);
        let _ = serde_json::from_slice::<NodeLoad>(&bytes);
        let _ = NodeLoad::decode(&bytes);
        let _ = serde_json::from_slice::<RebuildJob>(&bytes);
    }

    #[test]
    fn absurd_but_well_formed_bucket_documents_never_panic(
        number in prop_oneof![any::<i64>().prop_map(|n| n.to_string()), Just("1e400".to_owned()), Just("-0".to_owned()), Just("18446744073709551616".to_owned())],
        text in "[ -~]{0,20}",
        date in value(),
    ) {
        let lease = format!(r#"{{"node":"{text}","acquired_at":"{date}","renewed_at":"{date}"}}"#);
        let _ = serde_json::from_str::<Lease>(&lease);
        let job = format!(
            r#"{{"job_id":"{text}","state":"running","requested_by":"{text}","requested_at":"{date}","updated_at":"{date}","facts_done":{number},"facts_total":{number},"rate_per_sec":{number},"eta_secs":{number}}}"#
        );
        let _ = serde_json::from_str::<RebuildJob>(&job);
    }
}
