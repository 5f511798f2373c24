//! Group-committed acknowledgements: completions, failures, heartbeats and claims from many
//! workers share one transaction, and each request still gets its own per-job result.
//!
//! As for counters (`group_commit`), a test makes a group form on purpose: with one group slot,
//! a job's row is held from a plain connection and one acknowledgement of that job waits for it
//! in PostgreSQL; the requests sent next queue in rowlock (`rowlock_job_group_queued` says when
//! they all have) and go as ONE group once the row is released.

use futures_util::future::join_all;
use serde_json::{json, Value};

use crate::helpers::{spawn_app_with, TestApp};

async fn answers(handles: Vec<tokio::task::JoinHandle<(u16, Value)>>) -> Vec<(u16, Value)> {
    join_all(handles)
        .await
        .into_iter()
        .map(|a| a.expect("request task"))
        .collect()
}

/// Ids and tokens of `n` jobs claimed from `queue`, `per_claim` at a time.
async fn claimed(app: &TestApp, queue: &str, n: usize, per_claim: usize) -> Vec<(i64, String)> {
    let mut jobs = Vec::new();
    while jobs.len() < n {
        for job in app.claim(queue, json!({"limit": per_claim})).await {
            jobs.push((
                job["id"].as_i64().unwrap(),
                job["token"].as_str().unwrap().into(),
            ));
        }
    }
    jobs
}

#[tokio::test]
async fn acknowledgements_of_many_workers_share_one_transaction_each_with_its_own_result() {
    let app = spawn_app_with(|args| args.group.group_concurrency = 1).await;
    let batch: Vec<Value> = (0..41).map(|i| json!({"payload": {"n": i}})).collect();
    assert_eq!(app.post("/queues/g/jobs", json!(batch)).await.status(), 201);
    let jobs = claimed(&app, "g", 40, 10).await;
    let extra: i64 = app.scalar("SELECT max(id) FROM jobs").await;
    let groups_before = app.metric("rowlock_job_group_requests_count").await;
    let alone_before = app
        .metric(r#"rowlock_job_group_requests_bucket{le="1.0"}"#)
        .await;

    // Job 0's row is held; its completion waits for it in PostgreSQL, in the only group slot.
    let holder = app.hold_job(jobs[0].0).await;
    let complete = |(id, token): &(i64, String)| {
        app.spawn_post(
            &format!("/jobs/{id}/complete"),
            json!({ "token": token }),
            None,
        )
    };
    let first = complete(&jobs[0]);
    app.wait_for_lock_waiters(1).await;

    // Everything below queues behind it, then runs as one group.
    let completes: Vec<_> = jobs[1..11].iter().map(complete).collect();
    let fails: Vec<_> = jobs[11..16]
        .iter()
        .map(|(id, token)| {
            let body = json!({"token": token, "error": {"why": "boom"}});
            app.spawn_post(&format!("/jobs/{id}/fail"), body, None)
        })
        .collect();
    let heartbeats: Vec<_> = jobs[16..21]
        .iter()
        .map(|(id, token)| {
            let body = json!({"token": token, "lease_ms": 60_000});
            app.spawn_post(&format!("/jobs/{id}/heartbeat"), body, None)
        })
        .collect();
    let mut items: Vec<Value> = jobs[21..31]
        .iter()
        .map(|(id, token)| json!({"id": id, "token": token}))
        .collect();
    items.push(json!({"id": jobs[31].0, "token": "0".repeat(32)}));
    items.push(json!({"id": 999_999_999, "token": "0".repeat(32)}));
    let batch = app.spawn_post("/queues/g/complete", json!({ "jobs": items }), None);
    let stale = app.spawn_post(
        &format!("/jobs/{}/complete", jobs[32].0),
        json!({"token": "f".repeat(32)}),
        None,
    );
    let piggy_backed: Vec<Value> = jobs[33..40]
        .iter()
        .map(|(id, token)| json!({"id": id, "token": token}))
        .collect();
    let claim_and_complete = app.spawn_post(
        "/queues/g/claim",
        json!({"limit": 1, "complete": piggy_backed}),
        None,
    );
    app.wait_until_metric("rowlock_job_group_queued", 23.0)
        .await;
    holder.batch_execute("COMMIT").await.unwrap();

    let (status, body) = first.await.unwrap();
    assert_eq!((status, body["state"].as_str()), (200, Some("completed")));
    for (status, body) in answers(completes).await {
        assert_eq!(
            (status, body["state"].as_str()),
            (200, Some("completed")),
            "{body}"
        );
        assert!(body["finished_at"].is_string(), "{body}");
    }
    for (status, body) in answers(fails).await {
        assert_eq!(
            (status, body["state"].as_str()),
            (200, Some("queued")),
            "{body}"
        );
        assert!(body["run_at"].is_string(), "{body}");
    }
    for (status, body) in answers(heartbeats).await {
        assert_eq!(
            (status, body["state"].as_str()),
            (200, Some("running")),
            "{body}"
        );
        assert!(body["lease_expires_at"].is_string(), "{body}");
    }
    let (status, body) = batch.await.unwrap();
    assert_eq!(status, 200, "{body}");
    let statuses: Vec<u64> = body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_u64().unwrap())
        .collect();
    let mut expected = vec![200; 10];
    expected.extend([409, 404]);
    assert_eq!(statuses, expected, "{body}");
    let (status, body) = stale.await.unwrap();
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("stale_token")),
        "{body}"
    );
    let (status, body) = claim_and_complete.await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["jobs"][0]["id"].as_i64(), Some(extra), "{body}");
    assert!(
        body["completed"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["status"] == 200),
        "{body}"
    );

    // One transaction wrote all of it: every changed row carries its transaction id.
    let pg = app.pg().await;
    let mut changed: Vec<i64> = jobs[1..31].iter().map(|(id, _)| *id).collect();
    changed.extend(jobs[33..40].iter().map(|(id, _)| *id));
    changed.push(extra);
    let writers: i64 = pg
        .query_one(
            "SELECT count(DISTINCT xmin::text) FROM jobs WHERE id = ANY($1)",
            &[&changed],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(writers, 1, "one transaction changed jobs {changed:?}");
    let untouched: String = pg
        .query_one("SELECT state FROM jobs WHERE id = $1", &[&jobs[31].0])
        .await
        .unwrap()
        .get(0);
    assert_eq!(untouched, "running", "the stale item changed nothing");
    // The lone first request was a group of one: grouping never waits for company.
    let groups = app.metric("rowlock_job_group_requests_count").await - groups_before;
    assert_eq!(groups, 2.0);
    let alone = app
        .metric(r#"rowlock_job_group_requests_bucket{le="1.0"}"#)
        .await;
    assert_eq!(alone - alone_before, 1.0);
    // 1 + 10 + 5 + 5 + 12 + 1 + 7 acknowledgements.
    assert_eq!(app.metric("rowlock_job_group_acks_sum").await, 41.0);
}

#[tokio::test]
async fn two_acknowledgements_of_one_job_never_share_a_group_and_only_one_wins() {
    let app = spawn_app_with(|args| args.group.group_concurrency = 1).await;
    let batch: Vec<Value> = (0..2).map(|i| json!({"payload": i})).collect();
    assert_eq!(app.post("/queues/d/jobs", json!(batch)).await.status(), 201);
    let jobs = claimed(&app, "d", 2, 2).await;
    let groups_before = app.metric("rowlock_job_group_requests_count").await;
    let holder = app.hold_job(jobs[0].0).await;
    let (id, token) = &jobs[1];
    let first = app.spawn_post(
        &format!("/jobs/{}/complete", jobs[0].0),
        json!({"token": jobs[0].1}),
        None,
    );
    app.wait_for_lock_waiters(1).await;
    let twice: Vec<_> = (0..2)
        .map(|_| {
            app.spawn_post(
                &format!("/jobs/{id}/complete"),
                json!({ "token": token }),
                None,
            )
        })
        .collect();
    app.wait_until_metric("rowlock_job_group_queued", 2.0).await;
    holder.batch_execute("COMMIT").await.unwrap();
    assert_eq!(first.await.unwrap().0, 200);
    let mut statuses: Vec<u16> = answers(twice).await.into_iter().map(|(s, _)| s).collect();
    statuses.sort_unstable();
    assert_eq!(statuses, vec![200, 409]);
    // Three groups: the first, then one per acknowledgement of the same job.
    let groups = app.metric("rowlock_job_group_requests_count").await - groups_before;
    assert_eq!(groups, 3.0);
}

#[tokio::test]
async fn acknowledgements_with_an_idempotency_key_or_group_off_run_alone() {
    let app = spawn_app_with(|_| {}).await;
    let batch: Vec<Value> = (0..2).map(|i| json!({"payload": i})).collect();
    assert_eq!(app.post("/queues/a/jobs", json!(batch)).await.status(), 201);
    let jobs = claimed(&app, "a", 2, 2).await;
    let groups_before = app.metric("rowlock_job_group_requests_count").await;
    let keyed = app
        .http
        .post(app.url(&format!("/jobs/{}/complete", jobs[0].0)))
        .header("idempotency-key", "ack-1")
        .json(&json!({"token": jobs[0].1}))
        .send()
        .await
        .unwrap();
    assert_eq!(keyed.status(), 200);
    let off = app
        .http
        .post(app.url(&format!("/jobs/{}/complete?group=off", jobs[1].0)))
        .json(&json!({"token": jobs[1].1}))
        .send()
        .await
        .unwrap();
    assert_eq!(off.status(), 200);
    let groups = app.metric("rowlock_job_group_requests_count").await - groups_before;
    assert_eq!(groups, 0.0, "no acknowledgement went through a group");
    assert_eq!(
        app.scalar("SELECT count(*) FROM jobs WHERE state = 'completed'")
            .await,
        2
    );
}

#[tokio::test]
async fn a_job_held_past_its_lock_timeout_is_423_and_its_group_still_acknowledges_the_others() {
    let app = spawn_app_with(|args| args.group.group_concurrency = 1).await;
    let batch: Vec<Value> = (0..3).map(|i| json!({"payload": i})).collect();
    assert_eq!(app.post("/queues/h/jobs", json!(batch)).await.status(), 201);
    let jobs = claimed(&app, "h", 3, 3).await;
    let (holds_0, holds_1) = (app.hold_job(jobs[0].0).await, app.hold_job(jobs[1].0).await);
    let complete = |(id, token): &(i64, String), query: &str| {
        app.spawn_post(
            &format!("/jobs/{id}/complete{query}"),
            json!({ "token": token }),
            None,
        )
    };
    // Job 0 blocks the only group slot; jobs 1 (held, 1 s timeout) and 2 queue behind it.
    let first = complete(&jobs[0], "");
    app.wait_for_lock_waiters(1).await;
    let held = complete(&jobs[1], "?lock_timeout_ms=1000");
    let free = complete(&jobs[2], "");
    app.wait_until_metric("rowlock_job_group_queued", 2.0).await;
    // Job 0 goes; jobs 1 and 2 form the next group, which waits for job 1's row until job 1's
    // timeout, then acknowledges job 2 without it.
    holds_0.batch_execute("COMMIT").await.unwrap();
    assert_eq!(first.await.unwrap().0, 200);
    let (status, body) = held.await.unwrap();
    assert_eq!(
        (status, body["code"].as_str()),
        (423, Some("lock_not_available")),
        "{body}"
    );
    let (status, body) = free.await.unwrap();
    assert_eq!(
        (status, body["state"].as_str()),
        (200, Some("completed")),
        "{body}"
    );
    holds_1.batch_execute("COMMIT").await.unwrap();
    let (state, _) = app.job_state(jobs[1].0).await;
    assert_eq!(
        state, "running",
        "the timed-out acknowledgement changed nothing"
    );
}
