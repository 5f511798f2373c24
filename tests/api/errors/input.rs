//! Malformed requests: bad JSON, parameters, names, numbers, bodies and headers, each a 4xx
//! problem that changes nothing.

use serde_json::json;

use crate::helpers::{assert_problem, spawn_app};

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
        let r = app.post_raw("/counters/c/increment", body).await;
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
    let r = app
        .post_raw("/counters/big/increment", "{\"by\": 9223372036854775808}")
        .await;
    assert_problem(r, 422, "invalid").await;
    let r = app
        .post_raw(
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
    let r = app.post_raw("/counters/c/increment", body.clone()).await;
    assert_problem(r, 413, "payload_too_large").await;
    // Without a Content-Length (chunked), the limit holds as well.
    let stream = futures_util::stream::iter(
        body.into_bytes()
            .chunks(8192)
            .map(|c| Ok::<_, std::io::Error>(c.to_vec()))
            .collect::<Vec<_>>(),
    );
    let r = app
        .post_raw("/counters/c/increment", reqwest::Body::wrap_stream(stream))
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
