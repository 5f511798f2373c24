//! Fencing tokens: the storage refuses a write with a token that is no longer current, so
//! clients taking turns keep a counter exact and a paused client cannot write late.

use std::sync::Arc;
use std::time::Instant;

use futures_util::future::join_all;
use serde_json::{json, Value};
use tokio::sync::Mutex;

use crate::helpers::{assert_problem, spawn_app, DEADLOCKS};

/// One critical section as a client saw it.
struct Section {
    token: i64,
    entered: Instant,
    left: Instant,
}

#[tokio::test]
async fn thirty_two_clients_take_turns_and_fencing_keeps_the_counter_exact() {
    const CLIENTS: usize = 32;
    const ROUNDS: usize = 3;
    let app = Arc::new(spawn_app().await);
    app.create_counter("c", 0).await;
    let sections = Arc::new(Mutex::new(Vec::new()));
    let clients = (0..CLIENTS).map(|i| {
        let (app, sections) = (app.clone(), sections.clone());
        async move {
            for _ in 0..ROUNDS {
                let r = app
                    .acquire_lock("k", &format!("client-{i}"), 10_000, 30_000)
                    .await;
                assert_eq!(r.status().as_u16(), 201, "client {i}");
                let token = r.json::<Value>().await.unwrap()["token"].as_i64().unwrap();
                let entered = Instant::now();
                let w = app.fenced_increment("c", "k", token).await;
                assert_eq!(
                    w.status().as_u16(),
                    200,
                    "client {i} wrote with token {token}"
                );
                let left = Instant::now();
                assert_eq!(app.release_lock("k", token).await.status(), 204);
                sections.lock().await.push(Section {
                    token,
                    entered,
                    left,
                });
            }
        }
    });
    join_all(clients).await;

    let mut sections = std::mem::take(&mut *sections.lock().await);
    assert_eq!(sections.len(), CLIENTS * ROUNDS);
    assert_eq!(app.db_value("c").await, Some((CLIENTS * ROUNDS) as i64));
    sections.sort_by_key(|s| s.entered);
    for pair in sections.windows(2) {
        assert!(pair[0].left <= pair[1].entered, "two holders overlapped");
        assert!(
            pair[0].token < pair[1].token,
            "tokens must increase with every grant"
        );
    }
    assert_eq!(app.lock_state("k").await["waiting"], 0);
}

#[tokio::test]
async fn a_paused_client_cannot_write_after_its_lease_expired_and_another_took_it() {
    let app = spawn_app().await;
    app.create_counter("balance", 0).await;
    let a = app.granted_lock("k", "a", 200).await;
    assert_eq!(app.fenced_increment("balance", "k", a).await.status(), 200);

    // A pauses (GC, network) past its lease.
    app.wait_for_lock_expiry("k").await;
    assert_problem(
        app.fenced_increment("balance", "k", a).await,
        409,
        "stale_token",
    )
    .await;
    let b = app.granted_lock("k", "b", 60_000).await;
    assert!(b > a);
    assert_eq!(app.fenced_increment("balance", "k", b).await.status(), 200);
    let version_before = app.get_counter("balance").await.headers()["etag"].clone();

    // A wakes up and writes with its old token: refused by the storage, nothing changes.
    let problem = assert_problem(
        app.fenced_increment("balance", "k", a).await,
        409,
        "stale_token",
    )
    .await;
    assert!(
        problem["detail"].as_str().unwrap().contains(&b.to_string()),
        "{problem}"
    );
    assert_eq!(app.db_value("balance").await, Some(2));
    assert_eq!(
        app.get_counter("balance").await.headers()["etag"],
        version_before
    );
}

#[tokio::test]
async fn every_fencing_token_of_a_transaction_must_be_current() {
    let app = spawn_app().await;
    for name in ["alice", "bob"] {
        app.put_counter(name, json!({"value": 100, "min": 0})).await;
    }
    let (k1, k2) = (
        app.granted_lock("k1", "a", 60_000).await,
        app.granted_lock("k2", "a", 60_000).await,
    );
    let transfer = |fences: Vec<String>| {
        let mut request = app
            .http
            .post(app.url("/transactions"))
            .json(&json!({"ops": [{"counter": "alice", "by": -10}, {"counter": "bob", "by": 10}]}));
        for fence in fences {
            request = request.header("fencing-token", fence);
        }
        request.send()
    };
    let r = transfer(vec![format!("k1={k1}"), format!("k2={k2}")])
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);

    // k2 changes hands: the same pair of headers is now refused, and nothing moves.
    assert_eq!(app.release_lock("k2", k2).await.status(), 204);
    let k2_new = app.granted_lock("k2", "b", 60_000).await;
    let r = transfer(vec![format!("k1={k1}"), format!("k2={k2}")])
        .await
        .unwrap();
    assert_problem(r, 409, "stale_token").await;
    // Comma-separated in one header works the same.
    let r = transfer(vec![format!("k1={k1}, k2={k2_new}")])
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let r = transfer(vec![format!("never-granted=1")]).await.unwrap();
    assert_problem(r, 409, "stale_token").await;
    assert_eq!(app.db_value("alice").await, Some(80));
    assert_eq!(app.db_value("bob").await, Some(120));
}

#[tokio::test]
async fn lease_routes_fenced_with_their_own_key_never_deadlock() {
    let app = spawn_app().await;
    let token = app.granted_lock("k", "w1", 60_000).await;
    let renewals = (0..20).map(|_| {
        app.http
            .put(app.url("/locks/k"))
            .header("fencing-token", format!("k={token}"))
            .json(&json!({"token": token, "ttl_ms": 60_000}))
            .send()
    });
    for r in join_all(renewals).await {
        assert_eq!(r.unwrap().status(), 200);
    }
    assert_eq!(app.scalar(DEADLOCKS).await, 0);
    // Released under its own fence, too.
    let r = app
        .http
        .delete(app.url("/locks/k"))
        .header("fencing-token", format!("k={token}"))
        .json(&json!({ "token": token }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
}
