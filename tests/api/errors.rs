//! Bad input: always a 4xx application/problem+json with its stable code, and nothing changed.

use serde_json::json;

use crate::helpers::{assert_problem, spawn_app, TestApp};

async fn post_raw(app: &TestApp, path: &str, body: impl Into<reqwest::Body>) -> reqwest::Response {
    app.http
        .post(app.url(path))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn malformed_json_is_400_and_changes_nothing() {
    let app = spawn_app().await;
    app.create_counter("c", 5).await;
    for body in [
        "{\"by\": ",
        "[1]",
        "{\"by\": \"one\"}",
        "{\"bye\": 1}",
        "{\"by\": 1.5}",
    ] {
        let r = post_raw(&app, "/counters/c/increment", body).await;
        assert_problem(r, 400, "bad_request").await;
    }
    let r = app
        .http
        .put(app.url("/counters/d"))
        .body("{\"value\": true}")
        .send()
        .await
        .unwrap();
    assert_problem(r, 400, "bad_request").await;
    assert_eq!(app.db_value("c").await, Some(5));
    assert_eq!(app.db_value("d").await, None);
}

#[tokio::test]
async fn unknown_parameter_values_and_names_are_400() {
    let app = spawn_app().await;
    app.create_counter("c", 5).await;
    for query in [
        "lock=sometimes",
        "strength=weak",
        "isolation=snapshot",
        "lock_timeout_ms=0",
        "lock_timeout_ms=60001",
        "lock_timeout_ms=-5",
        "lock_timeout_ms=soon",
        "lock=nowait&lock_timeout_ms=100",
        "lokc=nowait",
    ] {
        let problem = assert_problem(app.increment("c", query, 1).await, 400, "bad_request").await;
        assert!(!problem["detail"].as_str().unwrap().is_empty(), "{query}");
    }
    assert_eq!(app.db_value("c").await, Some(5));
}

#[tokio::test]
async fn names_outside_the_allowed_alphabet_or_length_are_400_and_touch_nothing() {
    let app = spawn_app().await;
    app.create_counter("c", 5).await;
    let long = "a".repeat(200);
    let bad = [
        "%27%3B%20DROP%20TABLE%20counters%3B%20--",
        long.as_str(),
        "z%C3%A4hler",
        "with%20space",
        "semi%3Bcolon",
    ];
    for name in bad {
        assert_problem(
            app.put_counter(name, json!({"value": 1})).await,
            400,
            "bad_request",
        )
        .await;
        assert_problem(app.increment(name, "", 1).await, 400, "bad_request").await;
        assert_problem(app.get_counter(name).await, 400, "bad_request").await;
    }
    // 128 characters is the longest allowed name.
    let longest = "b".repeat(128);
    assert_eq!(app.put_counter(&longest, json!({})).await.status(), 201);
    let count = app.scalar("SELECT count(*) FROM counters").await;
    assert_eq!(
        count, 2,
        "the table is intact and holds only c and the 128-char one"
    );
    assert_eq!(app.db_value("c").await, Some(5));
}

#[tokio::test]
async fn a_by_that_overflows_i64_is_422_and_changes_nothing() {
    let app = spawn_app().await;
    app.create_counter("big", i64::MAX - 1).await;
    // Not representable at all.
    let r = post_raw(
        &app,
        "/counters/big/increment",
        "{\"by\": 9223372036854775808}",
    )
    .await;
    assert_problem(r, 422, "invalid").await;
    let r = post_raw(
        &app,
        "/counters/big/increment",
        "{\"by\": -99999999999999999999999}",
    )
    .await;
    assert_problem(r, 422, "invalid").await;
    // Representable, but value + by overflows, in every mode.
    for query in ["lock=wait", "lock=nowait", "lock=skip_locked", "lock=none"] {
        assert_problem(app.increment("big", query, 5).await, 422, "invalid").await;
    }
    assert_eq!(app.db_value("big").await, Some(i64::MAX - 1));
}

#[tokio::test]
async fn by_zero_and_inconsistent_bounds_are_422() {
    let app = spawn_app().await;
    app.create_counter("c", 5).await;
    assert_problem(app.increment("c", "", 0).await, 422, "invalid").await;
    assert_problem(
        app.put_counter("c", json!({"value": 1, "min": 5, "max": 2}))
            .await,
        422,
        "invalid",
    )
    .await;
    assert_problem(
        app.put_counter("c", json!({"value": 10, "max": 2})).await,
        422,
        "invalid",
    )
    .await;
    assert_eq!(app.db_value("c").await, Some(5));
}

#[tokio::test]
async fn a_body_over_64_kib_is_413() {
    let app = spawn_app().await;
    app.create_counter("c", 5).await;
    let padding = " ".repeat(64 * 1024);
    let body = format!("{{\"by\": 1{padding}}}");
    let r = post_raw(&app, "/counters/c/increment", body.clone()).await;
    assert_problem(r, 413, "payload_too_large").await;
    // Without a Content-Length (chunked), the limit holds as well.
    let stream = futures_util::stream::iter(
        body.into_bytes()
            .chunks(8192)
            .map(|c| Ok::<_, std::io::Error>(c.to_vec()))
            .collect::<Vec<_>>(),
    );
    let r = post_raw(
        &app,
        "/counters/c/increment",
        reqwest::Body::wrap_stream(stream),
    )
    .await;
    assert_problem(r, 413, "payload_too_large").await;
    assert_eq!(app.db_value("c").await, Some(5));
}

#[tokio::test]
async fn a_malformed_if_match_is_400() {
    let app = spawn_app().await;
    app.create_counter("c", 5).await;
    for value in ["3", "\"three\"", "*"] {
        let r = app
            .http
            .post(app.url("/counters/c/increment"))
            .header("If-Match", value)
            .send()
            .await
            .unwrap();
        assert_problem(r, 400, "bad_request").await;
    }
    assert_eq!(app.db_value("c").await, Some(5));
}

#[tokio::test]
async fn unknown_routes_are_404_and_wrong_methods_405_as_problems() {
    let app = spawn_app().await;
    let r = app.http.get(app.url("/nothing/here")).send().await.unwrap();
    assert_problem(r, 404, "not_found").await;
    let r = app.http.patch(app.url("/counters/c")).send().await.unwrap();
    assert_problem(r, 405, "method_not_allowed").await;
    let r = app
        .http
        .get(app.url("/counters/c/increment"))
        .send()
        .await
        .unwrap();
    assert_problem(r, 405, "method_not_allowed").await;
}

#[tokio::test]
async fn a_statement_past_the_statement_timeout_is_503_with_retry_after() {
    let app = crate::helpers::spawn_app_with(|args| args.pool.statement_timeout_ms = 300).await;
    app.create_counter("slow", 0).await;
    let pg = app.pg().await;
    crate::helpers::allow_triggers(&pg).await;
    pg.batch_execute(
        "CREATE FUNCTION slow() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN PERFORM pg_sleep(5); RETURN NEW; END $$",
    )
    .await
    .unwrap();
    pg.batch_execute(
        "CREATE TRIGGER slow BEFORE UPDATE ON counters FOR EACH ROW EXECUTE FUNCTION slow()",
    )
    .await
    .unwrap();
    let r = app.increment("slow", "", 1).await;
    assert_eq!(r.headers()["retry-after"], "1");
    assert_problem(r, 503, "unavailable").await;
    assert_eq!(app.db_value("slow").await, Some(0));
}

#[tokio::test]
async fn an_internal_error_is_a_generic_500_that_leaks_no_sql() {
    let app = spawn_app().await;
    app.create_counter("c", 0).await;
    // Break the schema under rowlock's feet: its statements now fail in ways no client caused.
    app.pg()
        .await
        .batch_execute("ALTER TABLE counters RENAME COLUMN version TO v")
        .await
        .unwrap();
    let r = app.get_counter("c").await;
    let problem = assert_problem(r, 500, "internal").await;
    let detail = problem["detail"].as_str().unwrap();
    assert!(
        !detail.contains("version") && !detail.contains("SELECT"),
        "{detail}"
    );
    assert!(!problem.to_string().contains("counters"), "{problem}");
}

#[tokio::test]
async fn a_nul_character_in_any_text_is_422_before_any_sql_and_changes_nothing() {
    let app = spawn_app().await;
    let nul = "a\u{0}b";
    // Enqueue: a NUL in the payload.
    assert_problem(
        app.post("/queues/q/jobs", json!({"payload": {"a": nul}}))
            .await,
        422,
        "invalid",
    )
    .await;
    assert_eq!(app.scalar("SELECT count(*) FROM jobs").await, 0);
    // The text `\u0000` (an escaped backslash, then `u0000`) is not a NUL and is stored.
    let id = app.enqueue("q", json!({"a": "\\u0000"}), json!({})).await;
    let claimed = app.claim("q", json!({})).await;
    assert_eq!(claimed[0]["payload"]["a"], "\\u0000");
    let token = claimed[0]["token"].as_str().unwrap().to_owned();
    // Complete with a NUL token, fail with a NUL message: refused, the job still runs.
    for (path, body) in [
        (format!("/jobs/{id}/complete"), json!({"token": nul})),
        (
            format!("/jobs/{id}/fail"),
            json!({"token": token, "error": nul}),
        ),
    ] {
        assert_problem(app.post(&path, body).await, 422, "invalid").await;
    }
    assert_eq!(app.job_state(id).await.0, "running");
    // A lease owner with a NUL.
    assert_problem(
        app.post("/locks/k", json!({"owner": nul, "ttl_ms": 1000}))
            .await,
        422,
        "invalid",
    )
    .await;
    assert_eq!(app.scalar("SELECT count(*) FROM locks").await, 0);
}

#[tokio::test]
async fn methods_of_the_clients_making_share_one_metrics_label() {
    let app = spawn_app().await;
    for i in 0..20 {
        let method = reqwest::Method::from_bytes(format!("BREW{i:0>200}").as_bytes()).unwrap();
        let r = app
            .http
            .request(method, app.url("/counters/x"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 405);
    }
    let metrics = app.metrics_text().await;
    assert!(
        !metrics.contains("BREW"),
        "a client's method became a label"
    );
    assert!(
        metrics.contains(r#"method="other",status="405"} 20"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn more_than_16_fencing_tokens_are_422_and_change_nothing() {
    let app = spawn_app().await;
    app.create_counter("x", 0).await;
    let fences: Vec<String> = (0..17).map(|i| format!("lock-{i}=1")).collect();
    let r = app
        .http
        .post(app.url("/counters/x/increment"))
        .header("fencing-token", fences.join(","))
        .json(&json!({"by": 1}))
        .send()
        .await
        .unwrap();
    assert_problem(r, 422, "invalid").await;
    assert_eq!(app.db_value("x").await, Some(0));
}

#[tokio::test]
async fn a_body_that_trickles_in_past_the_deadline_is_408_and_changes_nothing() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = crate::helpers::spawn_app_with(|args| args.body_timeout_ms = 300).await;
    app.create_counter("x", 0).await;
    let address = app.address.trim_start_matches("http://").to_owned();
    let mut socket = tokio::net::TcpStream::connect(&address).await.unwrap();
    let head = format!(
        "POST /counters/x/increment HTTP/1.1\r\nHost: {address}\r\n\
         Content-Type: application/json\r\nContent-Length: 11\r\n\r\n{{\"by\""
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    // The rest of the body never comes; the answer must, by itself.
    let mut answer = vec![0u8; 4096];
    let n = tokio::time::timeout(std::time::Duration::from_secs(5), socket.read(&mut answer))
        .await
        .expect("answered within 5 s")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request_timeout"), "{answer}");
    assert_eq!(app.db_value("x").await, Some(0));
}

#[tokio::test]
async fn check_constraints_are_told_apart_by_name() {
    use rowlock::error::ApiError;
    let app = crate::helpers::spawn_app().await;
    let pg = app.pg().await;
    let refused = |sql: &'static str| {
        let pg = &pg;
        async move { ApiError::from(pg.batch_execute(sql).await.expect_err(sql)) }
    };
    app.create_counter("bounded", 0).await;
    let bound = refused("UPDATE counters SET min = 0, value = -1 WHERE name = 'bounded'").await;
    assert_eq!(bound.code(), "bound_violation", "{bound}");
    let attempts =
        refused("INSERT INTO jobs (queue, payload, max_attempts) VALUES ('q', '{}', 0)").await;
    assert_eq!(attempts.code(), "invalid", "{attempts}");
    assert!(attempts.to_string().contains("max_attempts"), "{attempts}");
    let limit = refused("INSERT INTO queues (name, max_running) VALUES ('q', -1)").await;
    assert_eq!(limit.code(), "invalid", "{limit}");
    // rowlock's own invariant: violating it is a bug, never blamed on the client.
    let lease =
        refused("INSERT INTO jobs (queue, payload, state) VALUES ('q', '{}', 'running')").await;
    assert_eq!(lease.code(), "internal", "{lease}");
}
