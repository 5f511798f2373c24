//! A job's token-checked transitions: completion, deletion, an idempotent enqueue, the error
//! history kept.

use serde_json::{json, Value};

use crate::helpers::{assert_problem, spawn_app};

#[tokio::test]
async fn complete_with_the_current_token_finishes_the_job_once() {
    let app = spawn_app().await;
    let id = app.enqueue("w", json!({}), json!({})).await;
    let job = app.claim("w", json!({})).await.remove(0);
    let path = format!("/jobs/{id}/complete");
    let r = app.post(&path, json!({"token": "not-the-token"})).await;
    assert_problem(r, 409, "stale_token").await;
    let r = app.post(&path, json!({"token": job["token"]})).await;
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["state"], "completed");
    // The same token again: the job is no longer running under it.
    assert_problem(
        app.post(&path, json!({"token": job["token"]})).await,
        409,
        "stale_token",
    )
    .await;
    assert_eq!(app.job_state(id).await, ("completed".into(), 1));
}

#[tokio::test]
async fn delete_removes_a_queued_job_but_not_a_running_one() {
    let app = spawn_app().await;
    let queued = app.enqueue("d", json!(1), json!({"priority": -1})).await;
    let running = app.enqueue("d", json!(2), json!({})).await;
    assert_eq!(app.claim("d", json!({})).await[0]["id"], running);
    let delete = |id: i64| app.http.delete(app.url(&format!("/jobs/{id}"))).send();
    assert_problem(delete(running).await.unwrap(), 422, "invalid").await;
    assert_eq!(delete(queued).await.unwrap().status().as_u16(), 204);
    assert_problem(delete(queued).await.unwrap(), 404, "not_found").await;
    assert_eq!(app.job_state(running).await, ("running".into(), 1));
}

#[tokio::test]
async fn an_idempotent_enqueue_retried_creates_one_job() {
    let app = spawn_app().await;
    let send = || {
        app.http
            .post(app.url("/queues/i/jobs"))
            .header("Idempotency-Key", "order-42")
            .json(&json!({"payload": {"order": 42}}))
            .send()
    };
    let first: Value = send().await.unwrap().json().await.unwrap();
    let again = send().await.unwrap();
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.json::<Value>().await.unwrap(), first);
    let n = app.scalar("SELECT count(*) FROM jobs").await;
    assert_eq!(n, 1);
}

#[tokio::test]
async fn a_jobs_error_history_keeps_its_last_20_errors_each_capped() {
    let app = spawn_app().await;
    let id = app
        .enqueue("e", json!({}), json!({"max_attempts": 3}))
        .await;
    let claimed = app.claim("e", json!({})).await;
    let token = claimed[0]["token"].as_str().unwrap();
    let long = "x".repeat(10_000);
    let r = app
        .post(
            &format!("/jobs/{id}/fail"),
            json!({"token": token, "error": long}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let errors: Value = app
        .pg()
        .await
        .query_one("SELECT errors FROM jobs WHERE id = $1", &[&id])
        .await
        .unwrap()
        .get(0);
    let stored = errors[0]["error"].as_str().unwrap();
    assert!(stored.len() < 4_200, "{} bytes kept", stored.len());
    assert!(stored.starts_with("xxxx") && stored.ends_with("(cut at 4096 bytes)"));

    // Appending to a history of 20 drops the oldest: 25 appends keep errors 6…25.
    let kept: Value = app
        .pg()
        .await
        .query_one(
            "WITH RECURSIVE h(n, errors) AS (
                 SELECT 0, '[]'::jsonb
                 UNION ALL
                 SELECT n + 1, rowlock_recent_errors(errors, to_jsonb(n + 1), 20) FROM h
                  WHERE n < 25)
             SELECT errors FROM h WHERE n = 25",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(kept, json!((6..=25).collect::<Vec<i32>>()));
}
