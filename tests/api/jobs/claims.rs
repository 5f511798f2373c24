//! Enqueue and claim: the order jobs are handed out in, batch claims, a paused queue, and a claim's
//! byte budget.

use serde_json::{json, Value};

use crate::helpers::spawn_app;

#[tokio::test]
async fn enqueue_is_201_with_an_id_and_the_job_waits_queued() {
    let app = spawn_app().await;
    let r = app
        .post("/queues/mail/jobs", json!({"payload": {"to": "a@b.c"}}))
        .await;
    assert_eq!(r.status().as_u16(), 201);
    let id = r.json::<Value>().await.unwrap()["id"].as_i64().unwrap();
    assert_eq!(app.job_state(id).await, ("queued".into(), 0));

    let job: Value = app.get_json(&format!("/jobs/{id}")).await;
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

    let stats: Value = app.get_json("/queues/p").await;
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
