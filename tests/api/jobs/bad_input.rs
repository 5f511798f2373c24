//! Bad claims and bad jobs: 4xx problems that change nothing.

use serde_json::json;

use crate::helpers::{assert_problem, spawn_app};

#[tokio::test]
async fn bad_claims_and_bad_jobs_are_4xx_problems_and_change_nothing() {
    let app = spawn_app().await;
    let id = app.enqueue("b", json!({}), json!({})).await;
    for body in [
        json!({"limit": 0}),
        json!({"limit": 1001}),
        json!({"lease_ms": -5}),
        json!({"lease_ms": 0}),
        json!({"wait_ms": 30001}),
        json!({"wait_ms": -1}),
    ] {
        assert_problem(app.post("/queues/b/claim", body).await, 422, "invalid").await;
    }
    assert_problem(
        app.post("/queues/b/claim", json!({"limit": "1"})).await,
        400,
        "bad_request",
    )
    .await;
    assert_problem(
        app.post("/queues/b/claim", json!({"leash": 1})).await,
        400,
        "bad_request",
    )
    .await;
    assert_problem(
        app.post("/queues/b%20b/claim", json!({})).await,
        400,
        "bad_request",
    )
    .await;

    let big = "x".repeat(256 * 1024);
    assert_problem(
        app.post("/queues/b/jobs", json!({"payload": big})).await,
        413,
        "payload_too_large",
    )
    .await;
    let huge = "x".repeat(600 * 1024);
    assert_problem(
        app.post("/queues/b/jobs", json!({"payload": huge})).await,
        413,
        "payload_too_large",
    )
    .await;
    for body in [
        json!({}),
        json!({"payload": 1, "max_attempts": 0}),
        json!({"payload": 1, "priority": 4_000_000_000i64}),
        json!({"payload": 1, "run_at": "tomorrow"}),
        json!({"payload": 1, "run_at": "2030-02-30T00:00:00Z"}),
    ] {
        assert_problem(app.post("/queues/b/jobs", body).await, 422, "invalid").await;
    }

    let r = app
        .post("/jobs/999999/complete", json!({"token": "t"}))
        .await;
    assert_problem(r, 404, "not_found").await;
    let r = app.http.get(app.url("/jobs/999999")).send().await.unwrap();
    assert_problem(r, 404, "not_found").await;
    let r = app.http.get(app.url("/jobs/abc")).send().await.unwrap();
    assert_problem(r, 400, "bad_request").await;
    let r = app
        .post(
            &format!("/jobs/{id}/heartbeat"),
            json!({"token": "t", "lease_ms": -1}),
        )
        .await;
    assert_problem(r, 422, "invalid").await;
    let r = app.post(&format!("/jobs/{id}/retry"), json!({})).await;
    assert_problem(r, 422, "invalid").await;
    let n = app.scalar("SELECT count(*) FROM jobs").await;
    assert_eq!(n, 1);
    assert_eq!(app.job_state(id).await, ("queued".into(), 0));
}
