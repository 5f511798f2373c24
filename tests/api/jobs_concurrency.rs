//! Jobs over time and under contention: expired leases, retries with backoff, long-poll claims
//! woken by NOTIFY (also after the listening connection was killed), and many workers at once.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use futures_util::{stream, StreamExt};
use serde_json::{json, Value};

use crate::helpers::{assert_problem, spawn_app};

#[tokio::test]
async fn an_expired_lease_is_claimed_again_and_the_first_workers_token_is_stale() {
    let app = spawn_app().await;
    let id = app.enqueue("l", json!({}), json!({})).await;
    let first = app.claim("l", json!({"lease_ms": 1500})).await.remove(0);
    // Not claimable while the lease runs (1.5 s: long enough on a loaded machine too).
    assert_eq!(app.post("/queues/l/claim", json!({})).await.status(), 204);
    app.wait_until(
        "SELECT count(*) FROM jobs WHERE lease_expires_at <= now()",
        1,
    )
    .await;

    let second = app.claim("l", json!({"lease_ms": 60000})).await.remove(0);
    assert_eq!(second["id"], id);
    assert_eq!(second["attempt"], 2);
    assert_ne!(second["token"], first["token"]);
    let path = format!("/jobs/{id}/complete");
    assert_problem(
        app.post(&path, json!({"token": first["token"]})).await,
        409,
        "stale_token",
    )
    .await;
    let r = app
        .post(
            &format!("/jobs/{id}/heartbeat"),
            json!({"token": first["token"]}),
        )
        .await;
    assert_problem(r, 409, "stale_token").await;
    assert_eq!(
        app.post(&path, json!({"token": second["token"]}))
            .await
            .status(),
        200
    );

    let row = app
        .pg()
        .await
        .query_one(
            "SELECT state, errors->0->>'error' FROM jobs WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "completed");
    assert_eq!(row.get::<_, String>(1), "lease expired");
}

#[tokio::test]
async fn a_heartbeat_keeps_the_lease_so_the_job_is_not_claimed_again() {
    let app = spawn_app().await;
    let id = app.enqueue("h", json!({}), json!({})).await;
    let job = app.claim("h", json!({"lease_ms": 1000})).await.remove(0);
    let r = app
        .post(
            &format!("/jobs/{id}/heartbeat"),
            json!({"token": job["token"], "lease_ms": 600000}),
        )
        .await;
    assert_eq!(r.status().as_u16(), 200);
    let renewed: bool = app
        .pg()
        .await
        .query_one(
            "SELECT lease_expires_at > now() + interval '500 seconds' FROM jobs",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(renewed);
    assert_eq!(app.post("/queues/h/claim", json!({})).await.status(), 204);
}

#[tokio::test]
async fn a_job_failing_max_attempts_times_is_dead_with_its_errors_and_growing_backoff() {
    let app = spawn_app().await;
    let id = app
        .enqueue("r", json!({}), json!({"max_attempts": 3}))
        .await;
    let pg = app.pg().await;
    let mut delays = Vec::new();
    for attempt in 1..=3 {
        let job = app.claim("r", json!({})).await.remove(0);
        assert_eq!(job["attempt"], attempt);
        let r = app
            .post(
                &format!("/jobs/{id}/fail"),
                json!({"token": job["token"], "error": format!("boom {attempt}")}),
            )
            .await;
        assert_eq!(r.status().as_u16(), 200);
        let body: Value = r.json().await.unwrap();
        if attempt < 3 {
            assert_eq!(body["state"], "queued");
            // Seconds between the failure and the retry, as the database scheduled it.
            let delay: f64 = pg
                .query_one(
                    "SELECT extract(epoch FROM run_at - (errors->-1->>'at')::timestamptz)::float8
                       FROM jobs WHERE id = $1",
                    &[&id],
                )
                .await
                .unwrap()
                .get(0);
            delays.push(delay);
            // Not due yet; then make the retry due now instead of waiting for it.
            assert_eq!(app.post("/queues/r/claim", json!({})).await.status(), 204);
            pg.execute("UPDATE jobs SET run_at = now() WHERE id = $1", &[&id])
                .await
                .unwrap();
        } else {
            assert_eq!(body["state"], "dead");
        }
    }
    assert!((0.5..=1.0).contains(&delays[0]), "{delays:?}");
    assert!((1.0..=2.0).contains(&delays[1]), "{delays:?}");
    assert!(delays[1] > delays[0], "backoff grows: {delays:?}");

    let row = pg
        .query_one(
            "SELECT state, attempt, errors FROM jobs WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap();
    assert_eq!(
        (row.get::<_, String>(0), row.get::<_, i32>(1)),
        ("dead".into(), 3)
    );
    let errors: Value = row.get(2);
    let messages: Vec<&str> = errors
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["error"].as_str().unwrap())
        .collect();
    assert_eq!(messages, ["boom 1", "boom 2", "boom 3"]);
    assert_eq!(app.post("/queues/r/claim", json!({})).await.status(), 204);

    // Retry brings it back with fresh attempts; its history stays.
    let r = app.post(&format!("/jobs/{id}/retry"), json!({})).await;
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(app.claim("r", json!({})).await[0]["attempt"], 1);
    assert_eq!(app.job_state(id).await, ("running".into(), 1));
}

#[tokio::test]
async fn a_long_poll_claim_gets_a_job_enqueued_while_it_waits_long_before_its_deadline() {
    let app = spawn_app().await;
    let started = Instant::now();
    let waiting = app.post("/queues/lp/claim", json!({"wait_ms": 5000}));
    let enqueue_later = async {
        // Part of the scenario, not synchronisation: the job arrives while the claim waits.
        tokio::time::sleep(Duration::from_millis(200)).await;
        app.enqueue("lp", json!("late"), json!({})).await
    };
    let (r, id) = tokio::join!(waiting, enqueue_later);
    let waited = started.elapsed();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()[0]["id"], id);
    assert!(
        waited < Duration::from_secs(4),
        "woken only after {waited:?}"
    );
}

#[tokio::test]
async fn a_long_poll_claim_with_nothing_to_claim_is_204_after_its_wait() {
    let app = spawn_app().await;
    let started = Instant::now();
    let r = app
        .post("/queues/empty/claim", json!({"wait_ms": 700}))
        .await;
    let waited = started.elapsed();
    assert_eq!(r.status().as_u16(), 204);
    assert!(
        waited >= Duration::from_millis(700),
        "gave up after {waited:?}"
    );
    assert!(waited < Duration::from_secs(5), "gave up after {waited:?}");
}

#[tokio::test]
async fn waiting_claims_are_still_woken_after_the_listening_connection_is_killed() {
    let app = spawn_app().await;
    let listener = "SELECT count(*) FROM pg_stat_activity
                     WHERE datname = current_database() AND application_name = 'rowlock_listener'";
    app.wait_until(listener, 1).await;
    let pg = app.pg().await;
    let old: i32 = pg
        .query_one(&listener.replace("count(*)", "pid"), &[])
        .await
        .unwrap()
        .get(0);
    pg.execute("SELECT pg_terminate_backend($1::int)", &[&old])
        .await
        .unwrap();
    app.wait_until(&format!("{listener} AND pid <> {old}"), 1)
        .await;

    let started = Instant::now();
    let waiting = app.post("/queues/rc/claim", json!({"wait_ms": 10000}));
    let enqueue_later = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        app.enqueue("rc", json!({}), json!({})).await
    };
    let (r, id) = tokio::join!(waiting, enqueue_later);
    assert_eq!(r.json::<Value>().await.unwrap()[0]["id"], id);
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn sixteen_workers_over_5000_jobs_complete_every_job_exactly_once() {
    const JOBS: i64 = 5000;
    let app = spawn_app().await;
    stream::iter(0..JOBS)
        .for_each_concurrent(32, |i| {
            let app = &app;
            async move {
                app.enqueue("many", json!({ "n": i }), json!({})).await;
            }
        })
        .await;

    let worker = |w: usize| {
        let app = &app;
        async move {
            let mut done = Vec::new();
            loop {
                let limit = 1 + w % 4;
                let r = app
                    .post(
                        "/queues/many/claim",
                        json!({"limit": limit, "lease_ms": 120000}),
                    )
                    .await;
                if r.status().as_u16() == 204 {
                    return done;
                }
                assert_eq!(r.status().as_u16(), 200);
                let jobs: Vec<Value> = r.json().await.unwrap();
                assert!(!jobs.is_empty() && jobs.len() <= limit);
                for job in jobs {
                    let id = job["id"].as_i64().unwrap();
                    let r = app
                        .post(
                            &format!("/jobs/{id}/complete"),
                            json!({"token": job["token"]}),
                        )
                        .await;
                    assert_eq!(
                        r.status().as_u16(),
                        200,
                        "job {id} completed by its claimer"
                    );
                    done.push(id);
                }
            }
        }
    };
    let per_worker = futures_util::future::join_all((0..16).map(worker)).await;
    let all: Vec<i64> = per_worker.into_iter().flatten().collect();
    let distinct: HashSet<i64> = all.iter().copied().collect();
    assert_eq!(all.len() as i64, JOBS, "every job handed out exactly once");
    assert_eq!(distinct.len() as i64, JOBS);

    let row = app
        .pg()
        .await
        .query_one(
            "SELECT count(*) FILTER (WHERE state = 'completed'), count(*), max(attempt), min(attempt)
               FROM jobs",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), JOBS);
    assert_eq!(row.get::<_, i64>(1), JOBS);
    // Nobody's lease ran out, so no job was ever claimed a second time.
    assert_eq!((row.get::<_, i32>(2), row.get::<_, i32>(3)), (1, 1));
}
