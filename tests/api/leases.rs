//! Leases with fencing tokens: grants, renewals, releases, waiting, fairness, and the storage
//! refusing writes with a token that is no longer current.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use serde_json::{json, Value};
use tokio::sync::Mutex;

use crate::helpers::{assert_problem, spawn_app, spawn_app_with, DEADLOCKS};

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
async fn a_waiting_acquisition_is_woken_by_a_release_well_before_its_deadline() {
    let app = Arc::new(spawn_app().await);
    let held = app.granted_lock("k", "a", 60_000).await;
    let waiter = {
        let app = app.clone();
        tokio::spawn(async move { app.acquire_lock("k", "b", 60_000, 20_000).await })
    };
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
    let app = Arc::new(spawn_app().await);
    let held = app.granted_lock("k", "a", 60_000).await;
    let waiter = {
        let app = app.clone();
        tokio::spawn(async move { app.acquire_lock("k", "b", 60_000, 20_000).await })
    };
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
