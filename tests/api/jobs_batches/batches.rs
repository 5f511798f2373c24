//! Batch enqueue and completion, and completions piggy-backed on claims.

use serde_json::{json, Value};

use crate::helpers::{assert_problem, json_of, spawn_app};

#[tokio::test]
async fn a_batch_enqueue_inserts_every_job_in_order_and_one_bad_job_inserts_none() {
    let app = spawn_app().await;
    let jobs: Vec<Value> = (0..5).map(|i| json!({"payload": {"n": i}})).collect();
    let (status, body) = json_of(app.post("/queues/b/jobs", json!(jobs)).await).await;
    assert_eq!(status, 201, "{body}");
    let ids: Vec<i64> = body
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids.len(), 5);
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids in order: {ids:?}");
    let claimed = app.claim("b", json!({"limit": 10})).await;
    let order: Vec<i64> = claimed
        .iter()
        .map(|j| j["payload"]["n"].as_i64().unwrap())
        .collect();
    assert_eq!(order, vec![0, 1, 2, 3, 4]);

    // One bad job: refused naming its index, nothing inserted.
    let bad = json!([{"payload": 1}, {"payload": 2, "max_attempts": 0}, {"payload": 3}]);
    let problem = assert_problem(app.post("/queues/c/jobs", bad).await, 422, "invalid").await;
    assert!(
        problem["detail"].as_str().unwrap().starts_with("jobs[1]"),
        "{problem}"
    );
    let unknown = json!([{"payload": 1}, {"payload": 2, "colour": "red"}]);
    let problem = assert_problem(
        app.post("/queues/c/jobs", unknown).await,
        400,
        "bad_request",
    )
    .await;
    assert!(
        problem["detail"].as_str().unwrap().starts_with("jobs[1]"),
        "{problem}"
    );
    let problem = assert_problem(app.post("/queues/c/jobs", json!([])).await, 422, "invalid").await;
    assert!(problem["detail"].as_str().unwrap().contains("1 to 1000"));
    assert_eq!(
        app.scalar("SELECT count(*) FROM jobs WHERE queue = 'c'")
            .await,
        0
    );
}

#[tokio::test]
async fn a_batch_completion_answers_each_job_on_its_own() {
    let app = spawn_app().await;
    let (a, b) = (
        app.enqueue("m", json!(1), json!({})).await,
        app.enqueue("m", json!(2), json!({})).await,
    );
    let jobs = app.claim("m", json!({"limit": 2})).await;
    let token = |id: i64| {
        jobs.iter()
            .find(|j| j["id"] == id)
            .map(|j| j["token"].clone())
            .unwrap()
    };
    let body = json!({"jobs": [
        {"id": a, "token": token(a)},
        {"id": b, "token": "not-the-current-token"},
        {"id": 999_999, "token": "x"},
    ]});
    let (status, answer) = json_of(app.post("/queues/m/complete", body).await).await;
    assert_eq!(status, 200, "{answer}");
    let results = answer["results"].as_array().unwrap();
    let statuses: Vec<(i64, i64)> = results
        .iter()
        .map(|r| (r["id"].as_i64().unwrap(), r["status"].as_i64().unwrap()))
        .collect();
    assert_eq!(statuses, vec![(a, 200), (b, 409), (999_999, 404)]);
    assert_eq!(results[1]["code"], "stale_token");
    assert_eq!(results[2]["code"], "not_found");
    assert_eq!(
        app.scalar("SELECT count(*) FROM jobs WHERE state = 'completed'")
            .await,
        1
    );
    assert_eq!(
        app.scalar(&format!(
            "SELECT count(*) FROM jobs WHERE id = {b} AND state = 'running'"
        ))
        .await,
        1
    );
    // A job named twice is refused as a whole.
    let twice = json!({"jobs": [{"id": b, "token": token(b)}, {"id": b, "token": token(b)}]});
    assert_problem(app.post("/queues/m/complete", twice).await, 422, "invalid").await;
}

#[tokio::test]
async fn a_claim_can_complete_the_previous_jobs_in_the_same_request() {
    let app = spawn_app().await;
    for i in 0..4 {
        app.enqueue("w", json!(i), json!({})).await;
    }
    let first = app.claim("w", json!({"limit": 2})).await;
    let done: Vec<Value> = first
        .iter()
        .map(|j| json!({"id": j["id"], "token": j["token"]}))
        .collect();
    let (status, answer) = json_of(
        app.post("/queues/w/claim", json!({"limit": 2, "complete": done}))
            .await,
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["jobs"].as_array().unwrap().len(), 2);
    let completed: Vec<i64> = answer["completed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_i64().unwrap())
        .collect();
    assert_eq!(completed, vec![200, 200]);
    // Nothing left to claim: the completions are still reported.
    let done: Vec<Value> = answer["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| json!({"id": j["id"], "token": j["token"]}))
        .collect();
    let (status, answer) =
        json_of(app.post("/queues/w/claim", json!({"complete": done})).await).await;
    assert_eq!(status, 200);
    assert_eq!(answer["jobs"], json!([]));
    assert_eq!(answer["completed"].as_array().unwrap().len(), 2);
    assert_eq!(
        app.scalar("SELECT count(*) FROM jobs WHERE state = 'completed'")
            .await,
        4
    );
}
