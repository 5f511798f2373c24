//! Acquisitions that wait: woken by a release, an expiry or a shortening renewal, given up at
//! their deadline, and granted in arrival order.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use serde_json::Value;

use crate::helpers::{assert_problem, spawn_app};

#[tokio::test]
async fn a_waiting_acquisition_is_woken_by_a_release_well_before_its_deadline() {
    let app = spawn_app().await;
    let held = app.granted_lock("k", "a", 60_000).await;
    let waiter = tokio::spawn(app.acquire_lock("k", "b", 60_000, 20_000));
    app.wait_for_lock_waiting("k", 1).await;
    let released = Instant::now();
    assert_eq!(app.release_lock("k", held).await.status(), 204);
    let r = waiter.await.unwrap();
    // The deadline is 20 s and the lease 60 s away: only the notification explains this.
    assert!(
        released.elapsed() < Duration::from_secs(5),
        "{:?}",
        released.elapsed()
    );
    assert_eq!(r.status().as_u16(), 201);
    let token = r.json::<Value>().await.unwrap()["token"].as_i64().unwrap();
    assert!(token > held);
    assert_eq!(app.lock_row("k").await, (Some("b".into()), token, true));
    assert_eq!(app.lock_state("k").await["waiting"], 0);
}

#[tokio::test]
async fn a_waiting_acquisition_is_granted_once_the_holder_expires() {
    let app = spawn_app().await;
    let held = app.granted_lock("k", "a", 300).await;
    let r = app.acquire_lock("k", "b", 60_000, 10_000).await;
    assert_eq!(r.status().as_u16(), 201);
    let body: Value = r.json().await.unwrap();
    assert!(body["token"].as_i64().unwrap() > held);
    // Granted by the database clock only after the old lease ended.
    let after: bool = app
        .pg()
        .await
        .query_one(
            "SELECT acquired_at >= $1::text::timestamptz FROM locks WHERE key = 'k'",
            &[&body["acquired_at"].as_str().unwrap().to_owned()],
        )
        .await
        .unwrap()
        .get(0);
    assert!(after);
}

#[tokio::test]
async fn a_renewal_that_shortens_the_lease_wakes_waiters_to_its_new_expiry() {
    let app = spawn_app().await;
    let held = app.granted_lock("k", "a", 60_000).await;
    let waiter = tokio::spawn(app.acquire_lock("k", "b", 60_000, 20_000));
    app.wait_for_lock_waiting("k", 1).await;
    let renewed = Instant::now();
    assert_eq!(app.renew_lock("k", held, 200).await.status(), 200);
    let r = waiter.await.unwrap();
    // The waiter had a timer to the old expiry, 60 s away: the renewal told it to look again.
    assert!(
        renewed.elapsed() < Duration::from_secs(5),
        "{:?}",
        renewed.elapsed()
    );
    assert_eq!(r.status().as_u16(), 201);
    let token = r.json::<Value>().await.unwrap()["token"].as_i64().unwrap();
    assert_eq!(app.lock_row("k").await, (Some("b".into()), token, true));
}

#[tokio::test]
async fn a_waiting_acquisition_gives_up_with_423_at_its_deadline() {
    let app = spawn_app().await;
    let held = app.granted_lock("k", "a", 60_000).await;
    let started = Instant::now();
    assert_problem(
        app.acquire_lock("k", "b", 60_000, 300).await,
        423,
        "lock_not_available",
    )
    .await;
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(app.lock_row("k").await, (Some("a".into()), held, true));
    assert_eq!(app.lock_state("k").await["waiting"], 0);
}

#[tokio::test]
async fn waiters_on_one_key_are_granted_in_arrival_order() {
    let app = Arc::new(spawn_app().await);
    let held = app.granted_lock("k", "holder", 60_000).await;
    let mut waiters = Vec::new();
    for i in 0..5u64 {
        let app2 = app.clone();
        waiters.push(tokio::spawn(async move {
            let r = app2
                .acquire_lock("k", &format!("w{i}"), 60_000, 20_000)
                .await;
            assert_eq!(r.status().as_u16(), 201, "waiter {i}");
            let token = r.json::<Value>().await.unwrap()["token"].as_i64().unwrap();
            assert_eq!(app2.release_lock("k", token).await.status(), 204);
            token
        }));
        // The next one arrives only once this one is queued.
        app.wait_for_lock_waiting("k", i + 1).await;
    }
    assert_eq!(app.release_lock("k", held).await.status(), 204);
    let tokens: Vec<i64> = join_all(waiters)
        .await
        .into_iter()
        .map(|t| t.unwrap())
        .collect();
    assert!(
        tokens.windows(2).all(|w| w[0] < w[1]),
        "grant order {tokens:?}"
    );
    assert!(tokens[0] > held);
}
