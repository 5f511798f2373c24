//! Bounded waiting and retries: a pool full of waiters answers 503, serialization failures and
//! deadlocks are retried then refused, waiters beyond the row concurrency queue in rowlock, and a
//! row recreated while a request waited.

use std::time::{Duration, Instant};

use crate::helpers::{assert_problem, spawn_app, spawn_app_failing_updates, spawn_app_with};

#[tokio::test]
async fn with_every_pooled_connection_stuck_behind_a_lock_the_next_request_is_503() {
    if crate::helpers::skipped_on_citus("failures are injected by a trigger on one node") {
        return;
    }
    let app = spawn_app_with(|args| {
        args.pool.pool_size = 2;
        args.pool.pool_wait_ms = 300;
    })
    .await;
    app.create_counter("hot", 0).await;
    app.create_counter("other", 0).await;
    let holder = app.hold_row("hot").await;

    let stuck: Vec<_> = (0..2)
        .map(|_| {
            // Alone (not grouped): each holds a connection of its own while it waits.
            app.spawn_bare_increment("hot", "group=off")
        })
        .collect();
    app.wait_for_lock_waiters(2).await;

    let started = Instant::now();
    let r = app.increment("other", "", 1).await;
    let waited = started.elapsed();
    assert_eq!(r.headers()["retry-after"], "1");
    assert_problem(r, 503, "unavailable").await;
    assert!(waited < Duration::from_secs(3), "503 took {waited:?}");

    holder.batch_execute("COMMIT").await.unwrap();
    for handle in stuck {
        assert_eq!(handle.await.unwrap(), 200);
    }
    assert_eq!(app.db_value("hot").await, Some(2));
    assert_eq!(app.db_value("other").await, Some(0));
}

#[tokio::test]
async fn a_serialization_failure_is_retried_by_the_server() {
    let Some(app) = spawn_app_failing_updates("40001", 2).await else {
        return;
    };
    let r = app.increment("c", "isolation=serializable", 1).await;
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(app.db_value("c").await, Some(1));
}

#[tokio::test]
async fn a_transaction_that_keeps_failing_to_serialize_is_409_and_changes_nothing() {
    let Some(app) = spawn_app_failing_updates("40001", 1_000_000).await else {
        return;
    };
    assert_problem(
        app.increment("c", "", 1).await,
        409,
        "serialization_failure",
    )
    .await;
    assert_eq!(app.db_value("c").await, Some(0));
    // 1 try + the default 5 retries, then it gave up.
    let attempts = app.scalar("SELECT last_value FROM injected_failures").await;
    assert_eq!(attempts, 6);
}

#[tokio::test]
async fn a_deadlock_is_retried_and_a_persistent_one_is_409_deadlock() {
    let Some(app) = spawn_app_failing_updates("40P01", 1).await else {
        return;
    };
    assert_eq!(app.increment("c", "lock=none", 1).await.status(), 200);
    assert_eq!(app.db_value("c").await, Some(1));

    let Some(app) = spawn_app_failing_updates("40P01", 1_000_000).await else {
        return;
    };
    assert_problem(app.increment("c", "", 1).await, 409, "deadlock").await;
    assert_eq!(app.db_value("c").await, Some(0));
}

#[tokio::test]
async fn beyond_the_row_concurrency_waiters_queue_in_rowlock_not_in_postgres() {
    let app = spawn_app().await; // row_concurrency 2
    app.create_counter("hot", 0).await;
    let holder = app.hold_row("hot").await;

    let waiting: Vec<_> = (0..4)
        .map(|_| {
            // Alone (not grouped): each holds a connection of its own while it waits.
            app.spawn_bare_increment("hot", "group=off")
        })
        .collect();
    app.wait_for_lock_waiters(2).await;
    // A fifth, impatient request waits its turn inside rowlock and gives up there.
    let problem = assert_problem(
        app.increment("hot", "lock_timeout_ms=300&group=off", 1)
            .await,
        423,
        "lock_not_available",
    )
    .await;
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("stayed locked"),
        "{problem}"
    );
    // Still only two of rowlock's sessions wait on the row in PostgreSQL.
    app.wait_for_lock_waiters(2).await;

    holder.batch_execute("COMMIT").await.unwrap();
    for handle in waiting {
        assert_eq!(handle.await.unwrap(), 200);
    }
    assert_eq!(app.db_value("hot").await, Some(4));
}

/// The lock and the write of a pipelined increment are one decision: when the row it waited for
/// was deleted and created again meanwhile, the `SELECT … FOR UPDATE` finds no row but the
/// `UPDATE` (with a snapshot of its own) finds the new one. The answer is what was written, never
/// a 404 for a change that was made.
#[tokio::test]
async fn an_increment_whose_row_was_recreated_while_it_waited_answers_what_it_wrote() {
    let app = spawn_app().await;
    app.create_counter("r", 0).await;
    let holder = app.pg().await;
    holder
        .batch_execute(
            "BEGIN; DELETE FROM counters WHERE name = 'r';
             INSERT INTO counters (name, value) VALUES ('r', 100);",
        )
        .await
        .unwrap();
    let request = app.increment("r", "lock=wait&group=off", 1);
    let answer = tokio::spawn(async move {
        let r = request.await;
        (
            r.status().as_u16(),
            r.json::<serde_json::Value>().await.unwrap(),
        )
    });
    app.wait_for_lock_waiters(1).await;
    holder.batch_execute("COMMIT").await.unwrap();

    let (status, body) = answer.await.unwrap();
    let value = app.db_value("r").await;
    match status {
        200 => {
            assert_eq!(value, Some(101), "{body}");
            assert_eq!(
                (body["value"].as_i64(), body["previous"].as_i64()),
                (Some(101), Some(100))
            );
        }
        404 => assert_eq!(
            value,
            Some(100),
            "404, but the increment was applied: {body}"
        ),
        other => panic!("{other}: {body}"),
    }
}
