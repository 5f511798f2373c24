//! Unique jobs, cancel, and a queue's concurrency limit across two instances.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;

use futures_util::future::join_all;
use serde_json::{json, Value};

use crate::helpers::{assert_problem, json_of, spawn_app, spawn_app_via, TestApp};

#[tokio::test]
async fn fifty_concurrent_enqueues_of_one_unique_key_make_one_job_until_it_is_done() {
    let app = spawn_app().await;
    let body = json!({"payload": {"report": 7}, "unique_key": "report-7"});
    let answers = join_all(
        (0..50).map(|_| async { json_of(app.post("/queues/u/jobs", body.clone()).await).await }),
    )
    .await;
    let created: Vec<&Value> = answers
        .iter()
        .filter(|(s, _)| *s == 201)
        .map(|(_, b)| b)
        .collect();
    let duplicates: Vec<&Value> = answers
        .iter()
        .filter(|(s, b)| *s == 200 && b["duplicate"] == true)
        .map(|(_, b)| b)
        .collect();
    assert_eq!(created.len(), 1, "{answers:?}");
    assert_eq!(duplicates.len(), 49, "{answers:?}");
    let id = created[0]["id"].as_i64().unwrap();
    assert!(duplicates.iter().all(|d| d["id"] == id));
    assert_eq!(app.scalar("SELECT count(*) FROM jobs").await, 1);

    // Running still holds the key; completed frees it.
    let job = app.claim("u", json!({})).await.remove(0);
    let (status, again) = json_of(app.post("/queues/u/jobs", body.clone()).await).await;
    assert_eq!((status, again["id"].as_i64()), (200, Some(id)));
    let r = app
        .post(
            &format!("/jobs/{id}/complete"),
            json!({"token": job["token"]}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let (status, fresh) = json_of(app.post("/queues/u/jobs", body.clone()).await).await;
    assert_eq!(status, 201);
    assert_ne!(fresh["id"].as_i64(), Some(id));
    // In a batch too: the second job with the key is the first one's duplicate.
    let batch = json!([
        {"payload": 1, "unique_key": "k"},
        {"payload": 2, "unique_key": "k"},
        {"payload": 3}
    ]);
    let (status, answer) = json_of(app.post("/queues/v/jobs", batch).await).await;
    assert_eq!(status, 201);
    assert_eq!(answer[1]["id"], answer[0]["id"]);
    assert_eq!(answer[1]["duplicate"], true);
    assert_eq!(
        app.scalar("SELECT count(*) FROM jobs WHERE queue = 'v'")
            .await,
        2
    );
}

#[tokio::test]
async fn cancel_makes_a_running_jobs_token_stale_and_a_finished_job_cannot_be_cancelled() {
    let app = spawn_app().await;
    let id = app.enqueue("x", json!({}), json!({})).await;
    let job = app.claim("x", json!({})).await.remove(0);
    let (status, body) = json_of(app.post(&format!("/jobs/{id}/cancel"), json!({})).await).await;
    assert_eq!((status, body["state"].as_str()), (200, Some("cancelled")));
    let r = app
        .post(
            &format!("/jobs/{id}/complete"),
            json!({"token": job["token"]}),
        )
        .await;
    assert_problem(r, 409, "stale_token").await;
    let stats = app.get_json("/queues/x").await;
    assert_eq!(stats["counts"]["cancelled"], 1);

    let done = app.enqueue("x", json!({}), json!({})).await;
    let job = app.claim("x", json!({})).await.remove(0);
    let r = app
        .post(
            &format!("/jobs/{done}/complete"),
            json!({"token": job["token"]}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let r = app.post(&format!("/jobs/{done}/cancel"), json!({})).await;
    assert_problem(r, 409, "stale_token").await;
    assert_problem(
        app.post("/jobs/999999/cancel", json!({})).await,
        404,
        "not_found",
    )
    .await;
    // A queued job can be cancelled and is never claimed.
    let queued = app.enqueue("y", json!({}), json!({})).await;
    assert_eq!(
        app.post(&format!("/jobs/{queued}/cancel"), json!({}))
            .await
            .status(),
        200
    );
    assert_eq!(app.post("/queues/y/claim", json!({})).await.status(), 204);
}

/// Workers claiming from `app` until `stop`, completing each job after a short while.
async fn worker(app: &TestApp, queue: &str, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        let r = app
            .post(&format!("/queues/{queue}/claim"), json!({"limit": 2}))
            .await;
        if r.status() != 200 {
            tokio::task::yield_now().await;
            continue;
        }
        let jobs: Vec<Value> = r.json().await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        let done: Vec<Value> = jobs
            .iter()
            .map(|j| json!({"id": j["id"], "token": j["token"]}))
            .collect();
        let r = app
            .post(&format!("/queues/{queue}/complete"), json!({"jobs": done}))
            .await;
        assert_eq!(r.status(), 200);
    }
}

#[tokio::test]
async fn max_running_holds_under_twenty_workers_on_two_instances() {
    let first = spawn_app().await;
    // A second rowlock on the same database.
    let url = first.db_url.clone();
    let second = spawn_app_via(|_| {}, |_| url.clone()).await;
    let r = first
        .http
        .put(first.url("/queues/lim"))
        .json(&json!({"max_running": 3}))
        .send()
        .await
        .unwrap();
    let (status, settings) = json_of(r).await;
    assert_eq!(
        (status, settings["max_running"].as_i64()),
        (200, Some(3)),
        "{settings}"
    );
    let jobs: Vec<Value> = (0..150).map(|i| json!({"payload": i})).collect();
    assert_eq!(
        first.post("/queues/lim/jobs", json!(jobs)).await.status(),
        201
    );

    let stop = AtomicBool::new(false);
    let most = Arc::new(AtomicI64::new(0));
    let watch = async {
        let pg = first.pg().await;
        loop {
            let running: i64 = pg
                .query_one(
                    "SELECT count(*) FROM jobs WHERE queue = 'lim' AND state = 'running'",
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            most.fetch_max(running, Ordering::Relaxed);
            let left: i64 = pg
                .query_one(
                    "SELECT count(*) FROM jobs WHERE queue = 'lim' AND state <> 'completed'",
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            if left == 0 {
                stop.store(true, Ordering::Relaxed);
                return;
            }
        }
    };
    let workers = (0..20).map(|i| {
        let app = if i % 2 == 0 { &first } else { &second };
        worker(app, "lim", &stop)
    });
    tokio::join!(watch, join_all(workers));
    let most = most.load(Ordering::Relaxed);
    assert!(most <= 3, "{most} jobs ran at once");
    assert!(most >= 1);
    let stats = first.get_json("/queues/lim").await;
    assert_eq!(stats["max_running"], 3);
    assert_eq!(stats["counts"]["completed"], 150);
    // null lifts the limit; a missing field is refused.
    let r = first
        .http
        .put(first.url("/queues/lim"))
        .json(&json!({"max_running": null}))
        .send()
        .await
        .unwrap();
    assert_eq!(json_of(r).await.1["max_running"], Value::Null);
    let r = first
        .http
        .put(first.url("/queues/lim"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_problem(r, 422, "invalid").await;
}
