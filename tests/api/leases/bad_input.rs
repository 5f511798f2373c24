//! Bad lease requests: each a 4xx problem that changes nothing.

use serde_json::{json, Value};

use crate::helpers::{assert_problem, spawn_app_with};

#[tokio::test]
async fn bad_lease_input_is_a_4xx_problem() {
    let app = spawn_app_with(|args| args.lock_max_ttl_ms = 60_000).await;
    app.create_counter("c", 0).await;
    let post = |body: Value| app.http.post(app.url("/locks/k")).json(&body).send();
    for (body, status, code) in [
        (json!({"owner": "a", "ttl_ms": 0}), 422, "invalid"),
        (json!({"owner": "a", "ttl_ms": -5}), 422, "invalid"),
        (json!({"owner": "a", "ttl_ms": 60_001}), 422, "invalid"),
        (json!({"owner": "a", "ttl_ms": 1.5}), 400, "bad_request"),
        (json!({"owner": "a"}), 400, "bad_request"),
        (json!({"owner": "", "ttl_ms": 1000}), 422, "invalid"),
        (json!({"owner": "a\nb", "ttl_ms": 1000}), 422, "invalid"),
        (json!({"owner": "a\u{0}b", "ttl_ms": 1000}), 422, "invalid"),
        (
            json!({"owner": "x".repeat(129), "ttl_ms": 1000}),
            422,
            "invalid",
        ),
        (json!({"owner": 7, "ttl_ms": 1000}), 400, "bad_request"),
        (json!({"owner": "a", "ttl_ms": 1e30}), 422, "invalid"),
        (json!({"ttl_ms": 1000}), 400, "bad_request"),
        (
            json!({"owner": "a", "ttl_ms": 1000, "wait_ms": 30_001}),
            422,
            "invalid",
        ),
        (
            json!({"owner": "a", "ttl_ms": 1000, "wait_ms": -1}),
            422,
            "invalid",
        ),
        (
            json!({"owner": "a", "ttl_ms": 1000, "extra": 1}),
            400,
            "bad_request",
        ),
    ] {
        let r = post(body.clone()).await.unwrap();
        assert_eq!(r.status().as_u16(), status, "{body}");
        assert_problem(r, status, code).await;
    }
    let bad_key = app.acquire_lock("no%20spaces", "a", 1000, 0).await;
    assert_problem(bad_key, 400, "bad_request").await;
    assert_problem(app.renew_lock("k", 1, 0).await, 422, "invalid").await;
    let r = app
        .http
        .put(app.url("/locks/k"))
        .json(&json!({"ttl_ms": 1000}))
        .send()
        .await
        .unwrap();
    assert_problem(r, 400, "bad_request").await;
    let r = app
        .http
        .delete(app.url("/locks/k"))
        .json(&json!({"token": "1"}))
        .send()
        .await
        .unwrap();
    assert_problem(r, 400, "bad_request").await;
    assert_problem(app.release_lock("k", 0).await, 422, "invalid").await;
    let r = app.http.get(app.url("/locks/k")).send().await.unwrap();
    assert_problem(r, 404, "not_found").await;
    let r = app.http.patch(app.url("/locks/k")).send().await.unwrap();
    assert_problem(r, 405, "method_not_allowed").await;

    for fence in ["k", "k=", "k=abc", "k=-1", "k=0", "bad key=1", "=5", "k=1;"] {
        let r = app
            .http
            .post(app.url("/counters/c/increment"))
            .header("fencing-token", fence)
            .json(&json!({"by": 1}))
            .send()
            .await
            .unwrap();
        assert_problem(r, 400, "bad_request").await;
    }
    assert_eq!(app.db_value("c").await, Some(0));
    let none = app.scalar("SELECT count(*) FROM locks").await;
    assert_eq!(none, 0);
}
