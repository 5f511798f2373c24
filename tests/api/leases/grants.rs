//! Leases granted, renewed and released: tokens, expiries from the database clock, stale tokens
//! refused, and an idempotent acquire replayed.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::{assert_problem, spawn_app, spawn_app_with};

#[tokio::test]
async fn acquiring_a_free_lock_is_201_with_a_token_and_an_expiry_from_the_database() {
    let app = spawn_app().await;
    let r = app.acquire_lock("deploy", "w1", 10_000, 0).await;
    assert_eq!(r.status().as_u16(), 201);
    assert_eq!(r.headers()["location"], "/locks/deploy");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["key"], "deploy");
    assert_eq!(body["owner"], "w1");
    let token = body["token"].as_i64().unwrap();
    assert!(token >= 1);
    let expires_at = body["expires_at"].as_str().unwrap();
    assert!(
        expires_at.ends_with('Z') && expires_at.contains('T'),
        "{expires_at}"
    );

    assert_eq!(
        app.lock_row("deploy").await,
        (Some("w1".into()), token, true)
    );
    let state = app.lock_state("deploy").await;
    assert_eq!(state["owner"], "w1");
    assert_eq!(state["token"], token);
    assert_eq!(state["held"], true);
    assert_eq!(state["expires_at"], expires_at);
    // The expiry is the database's now() plus the TTL, to the microsecond.
    let ttl_ms: f64 = app
        .pg()
        .await
        .query_one(
            "SELECT extract(epoch FROM expires_at - acquired_at)::float8 * 1000 FROM locks",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(ttl_ms, 10_000.0);
}

#[tokio::test]
async fn a_lock_held_by_someone_else_is_423_at_once_and_unchanged() {
    let app = spawn_app().await;
    let token = app.granted_lock("deploy", "w1", 60_000).await;
    let started = Instant::now();
    let problem = assert_problem(
        app.acquire_lock("deploy", "w2", 60_000, 0).await,
        423,
        "lock_not_available",
    )
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "wait_ms 0 must not wait"
    );
    assert!(
        problem["detail"].as_str().unwrap().contains("'w1'"),
        "{problem}"
    );
    assert_eq!(
        app.lock_row("deploy").await,
        (Some("w1".into()), token, true)
    );
}

#[tokio::test]
async fn the_same_owner_acquiring_again_is_granted_a_new_token_that_fences_the_old_one() {
    let app = spawn_app().await;
    app.create_counter("c", 0).await;
    let first = app.granted_lock("deploy", "w1", 60_000).await;
    let second = app.granted_lock("deploy", "w1", 60_000).await;
    assert!(second > first);
    assert_problem(
        app.fenced_increment("c", "deploy", first).await,
        409,
        "stale_token",
    )
    .await;
    assert_eq!(
        app.fenced_increment("c", "deploy", second).await.status(),
        200
    );
    assert_eq!(app.db_value("c").await, Some(1));
}

#[tokio::test]
async fn tokens_strictly_increase_across_releases_expiries_and_restarts() {
    let app = spawn_app().await;
    let t1 = app.granted_lock("k", "a", 60_000).await;
    assert_eq!(app.release_lock("k", t1).await.status(), 204);
    let (owner, token, live) = app.lock_row("k").await;
    assert_eq!((owner, token, live), (None, t1, false));

    // Release then re-acquire: a new, higher token.
    let t2 = app.granted_lock("k", "b", 50).await;
    assert!(t2 > t1);
    app.wait_for_lock_expiry("k").await;
    // Expired: free for anyone, with a higher token again.
    let t3 = app.granted_lock("k", "c", 60_000).await;
    assert!(t3 > t2);
    assert_eq!(app.release_lock("k", t3).await.status(), 204);

    // Another rowlock process on the same database (a restart, or a second instance).
    let url = app.db_url.clone();
    let restarted = spawn_app_with(|args| args.database.database_url = Some(url)).await;
    let t4 = restarted.granted_lock("k", "d", 60_000).await;
    assert!(t4 > t3);
    assert_eq!(app.lock_row("k").await, (Some("d".into()), t4, true));
}

#[tokio::test]
async fn renewing_or_releasing_with_a_stale_token_is_409_and_changes_nothing() {
    let app = spawn_app().await;
    let old = app.granted_lock("k", "a", 50).await;
    app.wait_for_lock_expiry("k").await;
    // Expired, nobody else took it yet: a renewal still cannot bring it back.
    assert_problem(app.renew_lock("k", old, 60_000).await, 409, "stale_token").await;
    let current = app.granted_lock("k", "b", 60_000).await;
    let before = app.lock_state("k").await;

    assert_problem(app.renew_lock("k", old, 60_000).await, 409, "stale_token").await;
    assert_problem(app.release_lock("k", old).await, 409, "stale_token").await;
    assert_eq!(app.lock_row("k").await, (Some("b".into()), current, true));
    assert_eq!(
        app.lock_state("k").await["expires_at"],
        before["expires_at"]
    );

    let r = app.renew_lock("k", current, 120_000).await;
    assert_eq!(r.status().as_u16(), 200);
    let renewed: Value = r.json().await.unwrap();
    assert_eq!(renewed["token"], current);
    assert!(renewed["expires_at"].as_str() > before["expires_at"].as_str());
    assert_eq!(app.release_lock("k", current).await.status(), 204);
    // Releasing again with the latest token is harmless: nobody was granted it since.
    assert_eq!(app.release_lock("k", current).await.status(), 204);
    assert_problem(
        app.renew_lock("k", current, 1_000).await,
        409,
        "stale_token",
    )
    .await;
    assert_problem(app.renew_lock("nope", 1, 1_000).await, 404, "not_found").await;
    assert_problem(app.release_lock("nope", 1).await, 404, "not_found").await;
}

#[tokio::test]
async fn an_idempotent_acquire_replays_its_grant_without_a_new_token() {
    let app = spawn_app().await;
    let send = || {
        app.http
            .post(app.url("/locks/k"))
            .header("idempotency-key", "acquire-1")
            .json(&json!({"owner": "a", "ttl_ms": 60_000}))
            .send()
    };
    let first = send().await.unwrap();
    assert_eq!(first.status().as_u16(), 201);
    let first: Value = first.json().await.unwrap();
    let replay = send().await.unwrap();
    assert_eq!(replay.status().as_u16(), 201);
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    assert_eq!(replay.json::<Value>().await.unwrap(), first);
    let token = first["token"].as_i64().unwrap();
    assert_eq!(app.lock_row("k").await, (Some("a".into()), token, true));
}
