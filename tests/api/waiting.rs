//! Waiting is bounded: at most `--max-waiters` long-polling claims and waiting lease
//! acquisitions at once; the next one is 503 at once, with nothing applied.

use serde_json::json;

use crate::helpers::{assert_problem, spawn_app_with, TestApp};

/// A claim on `queue` that long-polls for up to 10 s, answered in the background.
fn long_poll(app: &TestApp, queue: &str) -> tokio::task::JoinHandle<u16> {
    let request = app
        .http
        .post(app.url(&format!("/queues/{queue}/claim")))
        .json(&json!({"wait_ms": 10000}));
    tokio::spawn(async move { request.send().await.unwrap().status().as_u16() })
}

#[tokio::test]
async fn beyond_max_waiters_a_wait_is_503_at_once_and_the_others_are_served() {
    let app = spawn_app_with(|args| args.max_waiters = 2).await;
    let polls = [long_poll(&app, "idle"), long_poll(&app, "idle")];
    app.wait_until_metric("rowlock_waiters", 2.0).await;

    // A third request that would wait: 503, nothing applied.
    let started = std::time::Instant::now();
    let r = app
        .post("/queues/idle/claim", json!({"wait_ms": 10000}))
        .await;
    assert_problem(r, 503, "unavailable").await;
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    let granted = app
        .post("/locks/l", json!({"owner": "a", "ttl_ms": 60000}))
        .await;
    assert_eq!(granted.status(), 201);
    let r = app
        .post(
            "/locks/l",
            json!({"owner": "b", "ttl_ms": 60000, "wait_ms": 10000}),
        )
        .await;
    assert_problem(r, 503, "unavailable").await;
    let holder = app.get_json("/locks/l").await;
    assert_eq!(holder["owner"], "a");
    // Requests that do not wait are not limited.
    let r = app.post("/queues/idle/claim", json!({})).await;
    assert_eq!(r.status(), 204);

    // Work for the two waiting claims wakes them; then waiting is possible again.
    for _ in 0..2 {
        let r = app.post("/queues/idle/jobs", json!({"payload": {}})).await;
        assert_eq!(r.status(), 201);
    }
    for poll in polls {
        assert_eq!(poll.await.unwrap(), 200);
    }
    app.wait_until_metric("rowlock_waiters", 0.0).await;
    let r = app.post("/queues/idle/claim", json!({"wait_ms": 50})).await;
    assert_eq!(r.status(), 204);
}
