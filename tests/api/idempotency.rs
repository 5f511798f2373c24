//! Idempotency keys: one application per key, replays byte for byte, conflicts refused.

use futures_util::future::join_all;
use serde_json::json;

use crate::helpers::{assert_problem, spawn_app, spawn_app_with, TestApp};

async fn increment_with_key(app: &TestApp, key: &str, by: i64) -> reqwest::Response {
    app.http
        .post(app.url("/counters/c/increment"))
        .header("Idempotency-Key", key)
        .json(&json!({"by": by}))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn twenty_concurrent_requests_with_one_key_apply_once() {
    let app = spawn_app().await;
    app.create_counter("c", 0).await;
    let responses = join_all((0..20).map(|_| async {
        let r = increment_with_key(&app, "order-1", 5).await;
        let status = r.status().as_u16();
        let replayed = r.headers().contains_key("idempotent-replayed");
        let code = r.headers().get("content-type").cloned();
        (status, replayed, code, r.bytes().await.unwrap())
    }))
    .await;
    assert_eq!(
        app.db_value("c").await,
        Some(5),
        "the counter moved exactly once"
    );

    let originals: Vec<_> = responses
        .iter()
        .filter(|(s, r, _, _)| *s == 200 && !r)
        .collect();
    assert_eq!(originals.len(), 1, "exactly one request ran the mutation");
    let original = originals[0].3.clone();
    for (status, replayed, _, body) in &responses {
        match status {
            200 if *replayed => assert_eq!(body, &original, "a replay is byte for byte"),
            200 => {}
            409 => {
                let problem: serde_json::Value = serde_json::from_slice(body).unwrap();
                assert_eq!(problem["code"], "idempotency_in_flight");
            }
            other => panic!("unexpected status {other}"),
        }
    }

    // A later retry replays the stored response without touching the counter.
    let r = increment_with_key(&app, "order-1", 5).await;
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.headers()["idempotent-replayed"], "true");
    assert_eq!(r.headers()["etag"], "\"2\"");
    assert_eq!(r.bytes().await.unwrap(), original);
    assert_eq!(app.db_value("c").await, Some(5));

    // The same key with another body is refused.
    assert_problem(increment_with_key(&app, "order-1", 6).await, 422, "invalid").await;
    assert_eq!(app.db_value("c").await, Some(5));
}

#[tokio::test]
async fn a_retried_transfer_with_its_key_is_applied_once() {
    let app = spawn_app().await;
    app.create_counter("alice", 100).await;
    app.create_counter("bob", 0).await;
    let send = || {
        app.http
            .post(app.url("/transactions"))
            .header("Idempotency-Key", "transfer-7")
            .json(&json!({"ops": [{"counter": "alice", "by": -10}, {"counter": "bob", "by": 10}]}))
            .send()
    };
    let first = send().await.unwrap();
    assert_eq!(first.status().as_u16(), 200);
    let first = first.bytes().await.unwrap();
    let again = send().await.unwrap();
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.bytes().await.unwrap(), first);
    assert_eq!(app.db_value("alice").await, Some(90));
    assert_eq!(app.db_value("bob").await, Some(10));
    // Same key, same body, another path: a different request.
    let r = app
        .http
        .post(app.url("/counters/alice/increment"))
        .header("Idempotency-Key", "transfer-7")
        .json(&json!({"ops": [{"counter": "alice", "by": -10}, {"counter": "bob", "by": 10}]}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_client_error());
}

#[tokio::test]
async fn a_failed_request_stores_nothing_so_its_retry_runs_again() {
    let app = spawn_app().await;
    app.put_counter("c", json!({"value": 0, "min": 0})).await;
    assert_problem(
        increment_with_key(&app, "k", -1).await,
        409,
        "bound_violation",
    )
    .await;
    app.put_counter("c", json!({"value": 1, "min": 0})).await;
    let r = increment_with_key(&app, "k", -1).await;
    assert_eq!(r.status().as_u16(), 200);
    assert!(!r.headers().contains_key("idempotent-replayed"));
    assert_eq!(app.db_value("c").await, Some(0));
}

#[tokio::test]
async fn bad_idempotency_keys_are_400() {
    let app = spawn_app().await;
    app.create_counter("c", 0).await;
    let long = "k".repeat(256);
    for key in ["", long.as_str()] {
        assert_problem(increment_with_key(&app, key, 1).await, 400, "bad_request").await;
    }
    assert_eq!(app.db_value("c").await, Some(0));
}

#[tokio::test]
async fn keys_expire_after_their_retention_and_are_purged_in_the_background() {
    let app = spawn_app_with(|args| args.idempotency_retention_secs = 1).await;
    app.create_counter("c", 0).await;
    assert_eq!(
        increment_with_key(&app, "short-lived", 1).await.status(),
        200
    );
    // The background purge deletes it once expired (it runs once per retention period here).
    app.wait_until("SELECT count(*) FROM idempotency_keys", 0)
        .await;
    let r = increment_with_key(&app, "short-lived", 1).await;
    assert_eq!(r.status().as_u16(), 200);
    assert!(!r.headers().contains_key("idempotent-replayed"));
    assert_eq!(app.db_value("c").await, Some(2));
}

#[tokio::test]
async fn a_reply_too_large_to_store_under_its_key_says_so_and_a_small_one_is_stored() {
    let app = spawn_app().await;
    let blob = "x".repeat(200_000);
    for _ in 0..2 {
        app.enqueue("big", json!({ "blob": blob }), json!({})).await;
    }
    app.enqueue("small", json!({}), json!({})).await;
    let claim = |queue: &str, key: &str| {
        app.http
            .post(app.url(&format!("/queues/{queue}/claim")))
            .header("idempotency-key", key)
            .json(&json!({"limit": 2}))
            .send()
    };
    let big = claim("big", "big-claim").await.unwrap();
    assert_eq!(big.status(), 200);
    assert!(big.headers().contains_key("idempotency-not-stored"));
    let small = claim("small", "small-claim").await.unwrap();
    assert_eq!(small.status(), 200);
    assert!(!small.headers().contains_key("idempotency-not-stored"));
    let stored: Vec<String> = app
        .pg()
        .await
        .query("SELECT key FROM idempotency_keys ORDER BY key", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(stored, vec!["small-claim".to_owned()]);
}
