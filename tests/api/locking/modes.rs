//! The lock modes (`nowait`, `skip_locked`, `wait` with and without a timeout, lock strength)
//! against a row held elsewhere, and a client that gives up while it waits.

use std::time::{Duration, Instant};

use crate::helpers::{assert_problem, spawn_app};

#[tokio::test]
async fn nowait_increment_on_a_row_locked_elsewhere_is_423_at_once() {
    let app = spawn_app().await;
    app.create_counter("hot", 0).await;
    let holder = app.hold_row("hot").await;

    let started = Instant::now();
    let problem = assert_problem(
        app.increment("hot", "lock=nowait", 1).await,
        423,
        "lock_not_available",
    )
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "NOWAIT must not wait"
    );
    assert!(problem["detail"].as_str().unwrap().contains("'hot'"));
    holder.batch_execute("COMMIT").await.unwrap();
    assert_eq!(app.db_value("hot").await, Some(0));
}

#[tokio::test]
async fn skip_locked_increment_on_a_row_locked_elsewhere_is_423_row_skipped() {
    let app = spawn_app().await;
    app.create_counter("hot", 0).await;
    let holder = app.hold_row("hot").await;
    assert_problem(
        app.increment("hot", "lock=skip_locked", 1).await,
        423,
        "row_skipped",
    )
    .await;
    holder.batch_execute("COMMIT").await.unwrap();
    assert_eq!(
        app.increment("hot", "lock=skip_locked", 1).await.status(),
        200
    );
    assert_eq!(app.db_value("hot").await, Some(1));
}

#[tokio::test]
async fn wait_with_a_lock_timeout_is_423_once_the_timeout_runs_out() {
    let app = spawn_app().await;
    app.create_counter("hot", 0).await;
    let holder = app.hold_row("hot").await;

    let started = Instant::now();
    let r = app
        .increment("hot", "lock=wait&lock_timeout_ms=200", 1)
        .await;
    let waited = started.elapsed();
    assert_problem(r, 423, "lock_not_available").await;
    assert!(
        waited >= Duration::from_millis(200),
        "gave up after {waited:?}"
    );
    assert!(waited < Duration::from_secs(5), "gave up after {waited:?}");
    holder.batch_execute("COMMIT").await.unwrap();
    assert_eq!(app.db_value("hot").await, Some(0));
}

#[tokio::test]
async fn plain_wait_blocks_until_the_holder_commits_then_applies_on_the_new_value() {
    let app = spawn_app().await;
    app.create_counter("hot", 0).await;
    let holder = app.hold_row("hot").await;

    let waiting = tokio::spawn(app.increment("hot", "lock=wait", 1));
    app.wait_for_lock_waiters(1).await;
    assert!(!waiting.is_finished(), "the request must wait for the lock");
    // The holder changes the row before it lets go: the waiter must build on that value.
    holder
        .execute("UPDATE counters SET value = 100 WHERE name = 'hot'", &[])
        .await
        .unwrap();
    holder.batch_execute("COMMIT").await.unwrap();

    let r = waiting.await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["previous"], 100);
    assert_eq!(body["value"], 101);
    assert_eq!(app.db_value("hot").await, Some(101));
}

#[tokio::test]
async fn a_key_share_holder_blocks_strength_update_but_not_no_key_update() {
    let app = spawn_app().await;
    app.create_counter("hot", 0).await;
    let holder = app.pg().await;
    // What inserting a row that references this one takes.
    holder
        .batch_execute("BEGIN; SELECT 1 FROM counters WHERE name = 'hot' FOR KEY SHARE")
        .await
        .unwrap();

    assert_problem(
        app.increment("hot", "lock=nowait&strength=update", 1).await,
        423,
        "lock_not_available",
    )
    .await;
    let r = app
        .increment("hot", "lock=nowait&strength=no_key_update", 1)
        .await;
    assert_eq!(r.status().as_u16(), 200);
    holder.batch_execute("COMMIT").await.unwrap();
    assert_eq!(app.db_value("hot").await, Some(1));
}

#[tokio::test]
async fn a_client_that_gives_up_while_waiting_leaves_nothing_behind() {
    let app = spawn_app().await;
    app.create_counter("hot", 0).await;
    let holder = app.hold_row("hot").await;

    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let request = impatient
        .post(app.url("/counters/hot/increment"))
        .json(&serde_json::json!({"by": 1}))
        .send();
    let (gave_up, ()) = tokio::join!(request, app.wait_for_lock_waiters(1));
    assert!(gave_up.unwrap_err().is_timeout());
    drop(impatient);
    holder.batch_execute("COMMIT").await.unwrap();

    // The abandoned transaction still ends as one unit (here: it commits) ...
    app.wait_until("SELECT value FROM counters WHERE name = 'hot'", 1)
        .await;
    // ... and leaves no session in a transaction and no waiter behind.
    app.wait_for_no_session_left_open().await;
    // Nobody holds the row lock any more.
    let pg = app.pg().await;
    pg.batch_execute(
        "BEGIN; SELECT * FROM counters WHERE name = 'hot' FOR UPDATE NOWAIT; ROLLBACK",
    )
    .await
    .expect("the row is free");
    let r = app.increment("hot", "lock=nowait", 1).await;
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(app.db_value("hot").await, Some(2));
}
