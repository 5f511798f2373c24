//! [`super::apply`] on locked values in memory, without a database.

use std::sync::atomic::AtomicU8;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;
use crate::db::group::Change;
use crate::db::idempotency::Idempotency;
use crate::db::locking::Strength;

fn member(work: Work, key: Option<(&str, &[u8])>) -> Member<Counters> {
    let (answer, _) = tokio::sync::oneshot::channel();
    Member {
        work: Change {
            work,
            strength: Strength::Update,
            mode: "wait",
            idempotency: key.map(|(key, body)| {
                Idempotency::new(key.into(), "POST", "/x", body, Duration::from_secs(60))
            }),
        },
        deadline: Instant::now() + Duration::from_secs(10),
        timeout: Duration::from_secs(10),
        request_id: None,
        enqueued: Instant::now(),
        claim: Arc::new(AtomicU8::new(super::super::TAKEN)),
        answer,
    }
}

fn add(name: &str, by: i64) -> Work {
    Work::Increment {
        name: name.into(),
        by,
    }
}

fn counter(name: &str, value: i64, min: Option<i64>) -> Counter {
    Counter {
        name: name.into(),
        value,
        min,
        max: None,
        version: 1,
    }
}

fn run(members: &[Member<Counters>], rows: Vec<Counter>, keys: &Keys) -> Applied {
    let versions = Reserved::new((10..10 + members.len() as i64 * 3).rev().collect());
    apply(members, rows, keys, versions, Reserved::new(vec![7, 8, 9])).expect("applies")
}

fn body(reply: &Result<Reply, ApiError>) -> serde_json::Value {
    let reply = reply.as_ref().expect("applied");
    serde_json::from_slice(&reply.body).expect("json")
}

#[test]
fn requests_apply_in_arrival_order_with_ascending_versions_and_one_write_per_row() {
    let members = [member(add("a", 5), None), member(add("a", -2), None)];
    let applied = run(&members, vec![counter("a", 1, None)], &Keys::default());
    let (first, second) = (body(&applied.answers[0]), body(&applied.answers[1]));
    assert_eq!(
        (first["previous"].as_i64(), first["value"].as_i64()),
        (Some(1), Some(6))
    );
    assert_eq!(
        (second["previous"].as_i64(), second["value"].as_i64()),
        (Some(6), Some(4))
    );
    assert!(first["version"].as_i64() < second["version"].as_i64());
    assert_eq!(applied.writes.names, vec!["a".to_owned()]);
    assert_eq!(applied.writes.values, vec![4]);
    assert_eq!(
        applied.writes.versions,
        vec![second["version"].as_i64().unwrap()]
    );
}

#[test]
fn a_refused_request_changes_nothing_for_the_ones_after_it() {
    let members = [
        member(add("stock", -2), None),
        member(add("stock", -2), None),
        member(add("stock", -1), None),
        member(add("missing", 1), None),
    ];
    let applied = run(
        &members,
        vec![counter("stock", 3, Some(0))],
        &Keys::default(),
    );
    assert_eq!(body(&applied.answers[0])["value"], 1);
    assert!(matches!(
        applied.answers[1],
        Err(ApiError::BoundViolation(_))
    ));
    assert_eq!(body(&applied.answers[2])["value"], 0);
    assert!(matches!(applied.answers[3], Err(ApiError::NotFound(_))));
    assert_eq!(applied.writes.values, vec![0]);
}

#[test]
fn a_transaction_is_all_or_nothing_inside_its_group() {
    let ops = |a: i64, b: i64| Work::Transaction {
        ops: vec![
            Op {
                counter: "a".into(),
                by: a,
            },
            Op {
                counter: "b".into(),
                by: b,
            },
        ],
    };
    let members = [member(ops(-5, 5), None), member(ops(-10, 10), None)];
    let rows = vec![counter("a", 8, Some(0)), counter("b", 0, Some(0))];
    let applied = run(&members, rows, &Keys::default());
    assert_eq!(body(&applied.answers[0])["id"], 7);
    match &applied.answers[1] {
        Err(ApiError::BoundViolation(detail)) => assert!(detail.starts_with("op 1:")),
        other => panic!("expected a bound violation, got {other:?}"),
    }
    let mut written: Vec<(String, i64)> = applied
        .writes
        .names
        .iter()
        .cloned()
        .zip(applied.writes.values.iter().copied())
        .collect();
    written.sort();
    assert_eq!(written, vec![("a".into(), 3), ("b".into(), 5)]);
    assert_eq!(applied.writes.transaction_ids, vec![7]);
}

#[test]
fn idempotency_keys_replay_conflict_and_stay_in_flight_within_a_group() {
    let stored = Idempotency::new("old".into(), "POST", "/x", b"1", Duration::ZERO);
    let mut keys = Keys::default();
    for key in ["new", "old", "other"] {
        let _ = keys.locked.insert(key.into(), true);
    }
    let _ = keys.locked.insert("busy".into(), false);
    let replay = Reply::json(200, &serde_json::json!({"stored": true})).expect("json");
    let _ = keys
        .stored
        .insert("old".into(), (stored.request_hash.clone(), replay));
    let _ = keys
        .stored
        .insert("other".into(), (vec![0; 32], Reply::empty(200)));
    let members = [
        member(add("a", 1), Some(("new", b"1"))),
        member(add("a", 1), Some(("new", b"1"))),
        member(add("a", 1), Some(("old", b"1"))),
        member(add("a", 1), Some(("other", b"1"))),
        member(add("a", 1), Some(("busy", b"1"))),
    ];
    let applied = run(&members, vec![counter("a", 0, None)], &keys);
    assert_eq!(body(&applied.answers[0])["value"], 1);
    assert!(matches!(
        applied.answers[1],
        Err(ApiError::IdempotencyInFlight)
    ));
    assert_eq!(
        body(&applied.answers[2]),
        serde_json::json!({"stored": true})
    );
    assert!(matches!(applied.answers[3], Err(ApiError::Invalid(_))));
    assert!(matches!(
        applied.answers[4],
        Err(ApiError::IdempotencyInFlight)
    ));
    // Only the applied request's answer is stored, and the counter moved once.
    assert_eq!(applied.writes.keys, vec!["new".to_owned()]);
    assert_eq!(applied.writes.values, vec![1]);
}
