//! Metrics, lock introspection and bearer-token auth.

use serde_json::Value;

use crate::helpers::{
    assert_problem, spawn_app, spawn_app_failing_updates, spawn_app_with, TestApp,
};

#[tokio::test]
async fn metrics_count_requests_and_problems_by_label_and_observe_lock_waits() {
    let app = spawn_app().await;
    app.create_counter("hot", 0).await;
    let holder = app.hold_row("hot").await;
    assert_problem(
        app.increment("hot", "lock=nowait", 1).await,
        423,
        "lock_not_available",
    )
    .await;
    holder.batch_execute("COMMIT").await.unwrap();
    assert_eq!(app.increment("hot", "", 1).await.status(), 200);

    let text = app.metrics_text().await;
    let has = |needle: &str| text.lines().any(|l| l.starts_with(needle));
    assert!(
        has(
            r#"rowlock_http_requests_total{route="/counters/{name}/increment",method="POST",status="423"} 1"#
        ),
        "{text}"
    );
    assert!(
        has(
            r#"rowlock_http_requests_total{route="/counters/{name}/increment",method="POST",status="200"} 1"#
        ),
        "{text}"
    );
    assert!(
        has(r#"rowlock_problems_total{status="423",code="lock_not_available"} 1"#),
        "{text}"
    );
    // Observed once the lock is held: the increment (and the PUT that created the counter).
    assert!(
        has(r#"rowlock_lock_wait_seconds_count{resource="counter",mode="wait"} 2"#),
        "{text}"
    );
    // The refused NOWAIT never got the lock.
    assert!(
        !has(r#"rowlock_lock_wait_seconds_count{resource="counter",mode="nowait"}"#),
        "{text}"
    );
    assert!(has(
        r#"rowlock_http_request_duration_seconds_count{route="/counters/{name}/increment"}"#
    ));
    assert!(has("rowlock_pool_connections "), "{text}");
}

#[tokio::test]
async fn metrics_count_retries_after_serialization_failures() {
    let Some(app) = spawn_app_failing_updates("40001", 2).await else {
        return;
    };
    assert_eq!(app.increment("c", "", 1).await.status(), 200);
    let text = app.metrics_text().await;
    assert!(
        text.contains(r#"rowlock_transaction_retries_total{reason="serialization_failure"} 2"#),
        "{text}"
    );
}

#[tokio::test]
async fn debug_locks_lists_a_blocked_request_with_its_blocker() {
    let app = spawn_app().await;
    app.create_counter("hot", 0).await;
    let request = app.http.post(app.url("/counters/hot/increment"));
    blocked_request_is_listed(&app, request).await;
}

/// A transaction runs as one statement that sets its own `application_name` (without `BEGIN`,
/// see src/db/transactions.rs): it must still be listed under its request id while it waits.
#[tokio::test]
async fn debug_locks_lists_a_blocked_transaction_by_its_request_id() {
    let app = spawn_app().await;
    app.create_counter("cold", 0).await;
    app.create_counter("hot", 0).await;
    let ops =
        serde_json::json!({"ops": [{"counter": "cold", "by": 1}, {"counter": "hot", "by": 1}]});
    let request = app.http.post(app.url("/transactions")).json(&ops);
    blocked_request_is_listed(&app, request).await;
    assert_eq!(app.db_value("cold").await, Some(1));
}

/// Holds `hot` locked, sends `request` (which must wait for it) as `blocked-42`, and checks that
/// `/debug/locks` names the request and its blocker; then lets it through.
async fn blocked_request_is_listed(app: &TestApp, request: reqwest::RequestBuilder) {
    let holder = app.hold_row("hot").await;
    let holder_pid: i32 = holder
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    let request = request.header("x-request-id", "blocked-42");
    let waiting = tokio::spawn(async move { request.send().await.unwrap().status() });
    app.wait_for_lock_waiters(1).await;

    let body: Value = app.get_json("/debug/locks").await;
    let waiters = body["waiting"].as_array().unwrap();
    let ours = waiters
        .iter()
        .find(|w| w["request_id"] == "blocked-42")
        .unwrap_or_else(|| panic!("no waiter for our request in {body}"));
    let blockers: Vec<i64> = ours["blocked_by"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["pid"].as_i64().unwrap())
        .collect();
    assert_eq!(blockers, vec![i64::from(holder_pid)], "{body}");
    assert!(ours["waiting_ms"].as_f64().unwrap() >= 0.0);
    assert!(ours["lock"]["mode"].as_str().is_some());

    holder.batch_execute("COMMIT").await.unwrap();
    assert_eq!(waiting.await.unwrap(), 200);
}

#[tokio::test]
async fn with_an_api_token_requests_need_it_and_health_checks_stay_open() {
    let app = spawn_app_with(|args| {
        args.auth.api_token = Some("s3cret".into());
        args.auth.ops_token = Some("ops-only".into());
    })
    .await;
    let get = |path: &str, token: Option<&str>| {
        let mut req = app.http.get(app.url(path));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        req.send()
    };
    let r = get("/counters/x", None).await.unwrap();
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    assert_problem(r, 401, "unauthorized").await;
    assert_problem(
        get("/counters/x", Some("wrong")).await.unwrap(),
        401,
        "unauthorized",
    )
    .await;
    assert_problem(
        get("/counters/x", Some("s3cret")).await.unwrap(),
        404,
        "not_found",
    )
    .await;
    let r = app
        .http
        .put(app.url("/counters/x"))
        .bearer_auth("s3cret")
        .json(&serde_json::json!({"value": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);

    for open in ["/healthz", "/readyz"] {
        assert_eq!(get(open, None).await.unwrap().status(), 200, "{open}");
    }
    // The operator routes take their own token.
    assert_problem(
        get("/metrics", Some("s3cret")).await.unwrap(),
        401,
        "unauthorized",
    )
    .await;
    assert_eq!(
        get("/metrics", Some("ops-only")).await.unwrap().status(),
        200
    );
    assert_eq!(
        get("/debug/locks", Some("ops-only"))
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn metrics_show_queue_depths_by_state() {
    let app = spawn_app().await;
    for _ in 0..3 {
        let r = app
            .http
            .post(app.url("/queues/mail/jobs"))
            .json(&serde_json::json!({"payload": {}}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    let r = app
        .http
        .post(app.url("/queues/mail/claim"))
        .json(&serde_json::json!({"limit": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let text = app.metrics_text().await;
    assert!(
        text.contains(r#"rowlock_queue_jobs{queue="mail",state="queued"} 2"#),
        "{text}"
    );
    assert!(
        text.contains(r#"rowlock_queue_jobs{queue="mail",state="running"} 1"#),
        "{text}"
    );
}

#[tokio::test]
async fn an_encoded_operator_path_still_needs_the_ops_token() {
    let app = spawn_app_with(|args| {
        args.auth.api_token = Some("api-secret".into());
        args.auth.ops_token = Some("ops-only".into());
    })
    .await;
    for path in ["/%6Detrics", "/%64ebug/locks", "/metrics"] {
        let get = |token: &'static str| app.http.get(app.url(path)).bearer_auth(token).send();
        let r = get("api-secret").await.unwrap();
        assert_eq!(r.status(), 401, "{path} with the API token");
        assert_eq!(get("ops-only").await.unwrap().status(), 200, "{path}");
    }
}

#[tokio::test]
async fn a_browsers_cross_site_request_is_403_and_changes_nothing() {
    let app = spawn_app_with(|args| {
        args.auth.allowed_origins = vec!["https://ops.example.com".into()];
    })
    .await;
    app.create_counter("x", 0).await;
    let increment = || app.increment_request("x", 1);
    let refused = [
        increment().header("origin", "https://evil.example"),
        increment().header("sec-fetch-site", "cross-site"),
        increment()
            .header("origin", "https://evil.example")
            .header("sec-fetch-site", "same-site"),
    ];
    for request in refused {
        assert_problem(request.send().await.unwrap(), 403, "cross_site").await;
    }
    assert_eq!(app.db_value("x").await, Some(0));
    // An allowed origin, rowlock's own origin, and clients that are not browsers go through.
    let own = app.address.clone();
    let allowed = [
        increment().header("origin", "https://ops.example.com"),
        increment().header("origin", own.as_str()),
        increment().header("sec-fetch-site", "same-origin"),
        increment(),
    ];
    for request in allowed {
        assert_eq!(request.send().await.unwrap().status(), 200);
    }
    assert_eq!(app.db_value("x").await, Some(4));
}

#[tokio::test]
async fn serving_beyond_loopback_without_a_token_is_refused_at_startup() {
    let mut args = crate::helpers::serve_args("postgres://unused@127.0.0.1:1/unused".into());
    args.listen = "0.0.0.0:0".parse().unwrap();
    let refused = rowlock::startup::Application::build(args.clone()).await;
    let message = refused.err().expect("refused").to_string();
    assert!(message.contains("--allow-unauthenticated"), "{message}");
    // A blank token is no token.
    args.auth.api_token = Some(" ".into());
    let message = rowlock::startup::Application::build(args)
        .await
        .err()
        .expect("refused")
        .to_string();
    assert!(message.contains("blank"), "{message}");
}
