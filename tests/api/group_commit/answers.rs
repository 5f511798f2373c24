//! Each request of a group gets the answer it would have had alone: a refusal by a bound, a
//! replay under its idempotency key, a lock timeout, none of them touching the rest of the group.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::{assert_problem, spawn_app, spawn_one_slot_app};

#[tokio::test]
async fn a_request_refused_by_a_bound_leaves_the_rest_of_its_group_applied() {
    let app = spawn_app().await;
    app.put_counter("c", json!({"value": 10, "min": 0})).await;
    let holder = app.hold_row("c").await;
    let first = app.spawn_post("/counters/c/increment", json!({"by": 1}), None);
    app.wait_for_lock_waiters(1).await;
    // 11 - 4 - 4 leaves 3, and the third -4 would go below 0, whatever their order.
    let grouped: Vec<_> = (0..3)
        .map(|_| app.spawn_post("/counters/c/increment", json!({"by": -4}), None))
        .collect();
    app.wait_for_queued(3).await;
    holder.batch_execute("COMMIT").await.unwrap();

    assert_eq!(first.await.unwrap().0, 200);
    let mut answers = Vec::new();
    for g in grouped {
        answers.push(g.await.unwrap());
    }
    let ok: Vec<&Value> = answers
        .iter()
        .filter(|a| a.0 == 200)
        .map(|a| &a.1)
        .collect();
    let refused: Vec<&Value> = answers
        .iter()
        .filter(|a| a.0 == 409)
        .map(|a| &a.1)
        .collect();
    assert_eq!((ok.len(), refused.len()), (2, 1), "{answers:?}");
    assert_eq!(refused[0]["code"], "bound_violation");
    let mut values: Vec<(i64, i64)> = ok
        .iter()
        .map(|b| {
            (
                b["previous"].as_i64().unwrap(),
                b["value"].as_i64().unwrap(),
            )
        })
        .collect();
    values.sort_unstable();
    assert_eq!(values, vec![(7, 3), (11, 7)]);
    assert_eq!(app.db_value("c").await, Some(3));
    // The three were one group.
    assert_eq!(
        app.metric(r#"rowlock_group_size_bucket{le="4.0"}"#).await
            - app.metric(r#"rowlock_group_size_bucket{le="2.0"}"#).await,
        1.0
    );
}

#[tokio::test]
async fn twenty_concurrent_requests_with_one_key_apply_once_and_replay_byte_for_byte() {
    let app = spawn_app().await;
    app.create_counter("k", 0).await;
    let requests: Vec<_> = (0..20)
        .map(|_| app.spawn_post("/counters/k/increment", json!({"by": 5}), Some("once")))
        .collect();
    let mut applied = None;
    for r in requests {
        match r.await.unwrap() {
            (200, body) => {
                assert!(applied.is_none() || applied.as_ref() == Some(&body));
                applied = Some(body);
            }
            (409, body) => assert_eq!(body["code"], "idempotency_in_flight"),
            other => panic!("unexpected answer {other:?}"),
        }
    }
    assert_eq!(app.db_value("k").await, Some(5));
    let first = applied.expect("one request applied");
    let replay = app
        .http
        .post(app.url("/counters/k/increment"))
        .header("idempotency-key", "once")
        .json(&json!({"by": 5}))
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status(), 200);
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    let bytes = replay.bytes().await.unwrap();
    assert_eq!(serde_json::from_slice::<Value>(&bytes).unwrap(), first);
    assert_eq!(app.db_value("k").await, Some(5));
}

#[tokio::test]
async fn two_requests_with_one_key_in_one_group_apply_once() {
    let app = spawn_app().await;
    app.create_counter("k", 0).await;
    let holder = app.hold_row("k").await;
    let first = app.spawn_post("/counters/k/increment", json!({"by": 1}), None);
    app.wait_for_lock_waiters(1).await;
    let same: Vec<_> = (0..2)
        .map(|_| app.spawn_post("/counters/k/increment", json!({"by": 7}), Some("twice")))
        .collect();
    let other_body = app.spawn_post("/counters/k/increment", json!({"by": 8}), Some("other"));
    app.wait_for_queued(3).await;
    holder.batch_execute("COMMIT").await.unwrap();

    assert_eq!(first.await.unwrap().0, 200);
    let mut statuses = Vec::new();
    for r in same {
        let (status, body) = r.await.unwrap();
        if status == 409 {
            assert_eq!(body["code"], "idempotency_in_flight");
        }
        statuses.push(status);
    }
    statuses.sort_unstable();
    assert_eq!(statuses, vec![200, 409]);
    assert_eq!(other_body.await.unwrap().0, 200);
    assert_eq!(app.db_value("k").await, Some(16));
    // The key is stored: another body under it is 422, the same body replays.
    assert_problem(
        app.http
            .post(app.url("/counters/k/increment"))
            .header("idempotency-key", "twice")
            .json(&json!({"by": 9}))
            .send()
            .await
            .unwrap(),
        422,
        "invalid",
    )
    .await;
    assert_eq!(app.db_value("k").await, Some(16));
}

#[tokio::test]
async fn a_grouped_request_whose_lock_timeout_runs_out_is_423_and_the_rest_of_its_group_commits() {
    let app = spawn_one_slot_app().await;
    let increment = |query: &str, by: i64| {
        app.http
            .post(app.url(&format!("/counters/x/increment{query}")))
            .json(&json!({ "by": by }))
    };
    let started = Instant::now();
    let requests = vec![increment("?lock_timeout_ms=200", 100), increment("", 1)];
    let (holds_x, mut answers) = app.one_group_waiting_for_x(requests).await;
    let patient = answers.pop().unwrap();
    let (status, problem) = answers.pop().unwrap().await.unwrap();
    assert_eq!(status, 423, "{problem}");
    assert_eq!(problem["code"], "lock_not_available");
    assert!(started.elapsed() < Duration::from_secs(3));
    // The patient one went on waiting for `x` in PostgreSQL, as a group of its own.
    app.wait_for_lock_waiters(1).await;
    holds_x.batch_execute("COMMIT").await.unwrap();
    let (status, body) = patient.await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["value"], 1);
    assert_eq!(app.db_value("x").await, Some(1));
}

#[tokio::test]
async fn a_request_queued_behind_a_held_row_gives_up_after_its_lock_timeout() {
    let app = spawn_app().await;
    app.create_counter("x", 0).await;
    let holder = app.hold_row("x").await;
    let waiting = app.spawn_post("/counters/x/increment", json!({"by": 1}), None);
    app.wait_for_lock_waiters(1).await;
    let started = Instant::now();
    assert_problem(
        app.increment("x", "lock_timeout_ms=200", 1).await,
        423,
        "lock_not_available",
    )
    .await;
    assert!(started.elapsed() < Duration::from_secs(2));
    // A row held elsewhere stalls nobody on other rows.
    app.create_counter("y", 0).await;
    assert_eq!(app.increment("y", "", 1).await.status(), 200);
    holder.batch_execute("COMMIT").await.unwrap();
    assert_eq!(waiting.await.unwrap().0, 200);
    assert_eq!(app.db_value("x").await, Some(1));
}
