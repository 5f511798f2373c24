//! Background housekeeping: old completed jobs are deleted after their retention.

use serde_json::json;

use crate::helpers::spawn_app_with;

#[tokio::test]
async fn completed_jobs_are_deleted_after_their_retention_and_others_are_kept() {
    let app = spawn_app_with(|args| args.completed_job_retention_secs = 1).await;
    for _ in 0..2 {
        let r = app
            .http
            .post(app.url("/queues/q/jobs"))
            .json(&json!({"payload": {}}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    let claimed = app.claim("q", json!({"limit": 1})).await;
    let (id, token) = (&claimed[0]["id"], &claimed[0]["token"]);
    let r = app
        .http
        .post(app.url(&format!("/jobs/{id}/complete")))
        .json(&json!({"token": token}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // Housekeeping runs once per retention period here; the completed job goes, the queued stays.
    app.wait_until("SELECT count(*) FROM jobs WHERE state = 'completed'", 0)
        .await;
    app.wait_until("SELECT count(*) FROM jobs WHERE state = 'queued'", 1)
        .await;
}

#[tokio::test]
async fn old_transaction_records_are_deleted_and_a_failing_purge_stops_no_other() {
    let app = spawn_app_with(|args| {
        args.transaction_retention_secs = 1;
        args.completed_job_retention_secs = 1;
        args.pool.lock_timeout_ms = 100;
    })
    .await;
    app.create_counter("a", 10).await;
    app.create_counter("b", 0).await;
    let r = app
        .http
        .post(app.url("/transactions"))
        .json(&json!({"ops": [{"counter": "a", "by": -1}, {"counter": "b", "by": 1}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // The jobs purge (which runs before the transactions purge) fails every round while this
    // session holds the jobs table.
    let holder = app.pg().await;
    holder
        .batch_execute("BEGIN; LOCK TABLE jobs IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    app.wait_until("SELECT count(*) FROM transactions", 0).await;
    holder.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(app.db_value("b").await, Some(1));
}
