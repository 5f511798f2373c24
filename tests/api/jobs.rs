//! Jobs: enqueue, claim order, batch claims, pause, the token-checked transitions, and bad input.
//! Leases, retries, long polls and many concurrent workers are in `jobs_concurrency`.

use serde_json::{json, Value};

use crate::helpers::{assert_problem, spawn_app};

#[tokio::test]
async fn enqueue_is_201_with_an_id_and_the_job_waits_queued() {
    let app = spawn_app().await;
    let r = app
        .post("/queues/mail/jobs", json!({"payload": {"to": "a@b.c"}}))
        .await;
    assert_eq!(r.status().as_u16(), 201);
    let id = r.json::<Value>().await.unwrap()["id"].as_i64().unwrap();
    assert_eq!(app.job_state(id).await, ("queued".into(), 0));

    let job: Value = app
        .http
        .get(app.url(&format!("/jobs/{id}")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(job["queue"], "mail");
    assert_eq!(job["payload"], json!({"to": "a@b.c"}));
    assert_eq!(
        (job["priority"].as_i64(), job["max_attempts"].as_i64()),
        (Some(0), Some(5))
    );
    assert!(
        job.get("token").is_none(),
        "the token is never shown: {job}"
    );
}

#[tokio::test]
async fn claim_hands_out_the_highest_priority_first_then_the_oldest() {
    let app = spawn_app().await;
    let a = app.enqueue("q", json!("a"), json!({})).await;
    let b = app.enqueue("q", json!("b"), json!({})).await;
    let c = app.enqueue("q", json!("c"), json!({"priority": 5})).await;
    let d = app.enqueue("q", json!("d"), json!({"priority": -1})).await;
    let later = app
        .enqueue("q", json!("e"), json!({"run_at": "2999-01-01T00:00:00Z"}))
        .await;

    let mut order = Vec::new();
    for _ in 0..4 {
        let jobs = app.claim("q", json!({"limit": 1})).await;
        assert_eq!(jobs.len(), 1);
        assert_eq!(jobs[0]["attempt"], 1);
        order.push(jobs[0]["id"].as_i64().unwrap());
    }
    assert_eq!(order, [c, a, b, d]);
    // The job scheduled in the future is not due yet.
    let r = app.post("/queues/q/claim", json!({})).await;
    assert_eq!(r.status().as_u16(), 204);
    assert_eq!(app.job_state(later).await, ("queued".into(), 0));
}

#[tokio::test]
async fn a_batch_claim_returns_at_most_limit_distinct_jobs_all_marked_running() {
    let app = spawn_app().await;
    for i in 0..7 {
        app.enqueue("batch", json!(i), json!({})).await;
    }
    let first = app
        .claim("batch", json!({"limit": 5, "lease_ms": 60000}))
        .await;
    let second = app.claim("batch", json!({"limit": 5})).await;
    assert_eq!((first.len(), second.len()), (5, 2));
    let mut ids: Vec<i64> = first
        .iter()
        .chain(&second)
        .map(|j| j["id"].as_i64().unwrap())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 7, "no job handed out twice");
    assert_ne!(
        first[0]["token"], second[0]["token"],
        "each claim has its own token"
    );
    assert!(first[0]["lease_expires_at"].is_string());
    let running = app
        .scalar("SELECT count(*) FROM jobs WHERE state = 'running' AND token IS NOT NULL")
        .await;
    assert_eq!(running, 7);
    assert_eq!(
        app.post("/queues/batch/claim", json!({})).await.status(),
        204
    );
}

#[tokio::test]
async fn a_paused_queue_claims_nothing_until_it_is_resumed() {
    let app = spawn_app().await;
    let id = app.enqueue("p", json!({}), json!({})).await;
    let r = app.post("/queues/p/pause", json!({})).await;
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"queue": "p", "paused": true})
    );
    assert_eq!(app.post("/queues/p/claim", json!({})).await.status(), 204);
    assert_eq!(app.job_state(id).await, ("queued".into(), 0));
    // Another queue is not affected.
    app.enqueue("other", json!({}), json!({})).await;
    assert_eq!(app.claim("other", json!({})).await.len(), 1);

    let stats: Value = app
        .http
        .get(app.url("/queues/p"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["paused"], true);
    assert_eq!(
        stats["counts"],
        json!({"queued": 1, "running": 0, "completed": 0, "dead": 0, "cancelled": 0})
    );
    assert!(stats["oldest_queued_age_ms"].as_i64().unwrap() >= 0);

    assert_eq!(app.post("/queues/p/resume", json!({})).await.status(), 200);
    assert_eq!(app.claim("p", json!({})).await[0]["id"], id);
}

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

#[tokio::test]
async fn a_claim_answers_at_most_its_byte_budget_of_payloads_and_leaves_the_rest_queued() {
    use rowlock::db::jobs::claim::MAX_CLAIM_BYTES;
    let app = spawn_app().await;
    // 40 payloads of 240,002 bytes of JSON each: 9.2 MiB in all, more than one claim's budget.
    let payload = json!("x".repeat(240_000));
    let size = i64::try_from(payload.to_string().len()).expect("size");
    for _ in 0..40 {
        app.enqueue("big", payload.clone(), json!({})).await;
    }
    // Jobs are taken while the payloads before them are under the budget.
    let expected = usize::try_from((MAX_CLAIM_BYTES + size - 1) / size).expect("count");
    assert!(expected < 40);

    let r = app.post("/queues/big/claim", json!({"limit": 1000})).await;
    assert_eq!(r.status(), 200);
    let bytes = r.bytes().await.expect("claim body");
    let first: Vec<Value> = serde_json::from_slice(&bytes).expect("claimed jobs");
    assert_eq!(first.len(), expected);
    assert!(
        i64::try_from(bytes.len()).expect("len") < MAX_CLAIM_BYTES + size + 100_000,
        "a claim answered {} bytes",
        bytes.len()
    );
    let queued = app
        .scalar("SELECT count(*) FROM jobs WHERE state = 'queued'")
        .await;
    assert_eq!(queued, 40 - i64::try_from(expected).expect("count"));

    // The rest go to the next claim; no job twice.
    let second = app.claim("big", json!({"limit": 1000})).await;
    let mut ids: Vec<i64> = first
        .iter()
        .chain(&second)
        .filter_map(|j| j["id"].as_i64())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 40);
}
