//! Group commit under a real fault: `rowlock serve` (the binary) killed with SIGKILL in the
//! middle of a grouped load, restarted, and every request whose answer never came retried with
//! its `Idempotency-Key`.

use std::process::Child;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::{free_port, serve_process, spawn_app, spawn_one_slot_app, waiting_on_a_lock};

/// `rowlock serve` on `database_url`; returns once `/readyz` answers 200.
async fn serve(database_url: &str, port: u16) -> Child {
    serve_process(
        port,
        &[("DATABASE_URL", database_url)],
        Duration::from_secs(30),
    )
    .await
}

async fn increment(http: &reqwest::Client, base: &str, key: &str) -> reqwest::Result<(u16, Value)> {
    let r = http
        .post(format!("{base}/counters/hot/increment"))
        .header("idempotency-key", key)
        .json(&json!({"by": 1}))
        .send()
        .await?;
    let status = r.status().as_u16();
    Ok((status, r.json().await.unwrap_or(Value::Null)))
}

#[tokio::test]
async fn after_kill_9_during_grouped_load_retrying_unanswered_keys_applies_each_key_once() {
    let app = spawn_app().await;
    app.create_counter("hot", 0).await;
    let port = free_port();
    let mut first = serve(&app.db_url, port).await;
    let base = format!("http://127.0.0.1:{port}");

    let answered = Arc::new(Mutex::new(Vec::<String>::new()));
    let unanswered = Arc::new(Mutex::new(Vec::<String>::new()));
    let acknowledged = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..32)
        .map(|client| {
            let (answered, unanswered, acknowledged) =
                (answered.clone(), unanswered.clone(), acknowledged.clone());
            let base = base.clone();
            tokio::spawn(async move {
                let http = reqwest::Client::new();
                for i in 0.. {
                    let key = format!("c{client}-{i}");
                    match increment(&http, &base, &key).await {
                        Ok((200, _)) => {
                            answered.lock().unwrap().push(key);
                            acknowledged.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(other) => panic!("unexpected answer {other:?}"),
                        // The server died with this request in flight.
                        Err(_) => {
                            unanswered.lock().unwrap().push(key);
                            return;
                        }
                    }
                }
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    while acknowledged.load(Ordering::Relaxed) < 2_000 {
        assert!(Instant::now() < deadline, "the load never got going");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // SAFETY: kill(2) on our own child's pid.
    unsafe {
        libc::kill(first.id() as libc::pid_t, libc::SIGKILL);
    }
    first.wait().expect("reap the killed rowlock");
    for client in clients {
        client.await.unwrap();
    }

    let port = free_port();
    let mut second = serve(&app.db_url, port).await;
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let retries = unanswered.lock().unwrap().clone();
    assert_eq!(retries.len(), 32, "every client lost one request");
    for key in &retries {
        // The killed server's sessions may still hold the key for a moment (409 in flight).
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match increment(&http, &base, key).await.unwrap() {
                (200, _) => break,
                (409, body) if body["code"] == "idempotency_in_flight" => {
                    assert!(Instant::now() < deadline, "key {key} stayed in flight");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                other => panic!("retry of {key}: unexpected answer {other:?}"),
            }
        }
    }
    let _ = second.kill();
    second.wait().expect("reap rowlock");

    let distinct_keys = answered.lock().unwrap().len() + retries.len();
    assert_eq!(app.db_value("hot").await, Some(distinct_keys as i64));
}

#[tokio::test]
async fn when_a_groups_session_is_killed_before_commit_every_request_is_503_and_nothing_applied() {
    let app = spawn_one_slot_app().await;
    let requests = (0..3).map(|_| app.increment_request("x", 1)).collect();
    let (holds_x, grouped) = app.one_group_waiting_for_x(requests).await;
    let killed: i64 = app
        .pg()
        .await
        .query_one(
            &format!(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
                  WHERE datname = current_database() AND application_name LIKE 'rowlock/group-%'
                    AND {}",
                waiting_on_a_lock()
            ),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(killed, 1);
    for r in grouped {
        let (status, body) = r.await.unwrap();
        assert_eq!(
            (status, body["code"].as_str()),
            (503, Some("unavailable")),
            "{body}"
        );
    }
    holds_x.batch_execute("COMMIT").await.unwrap();
    // 503 means nothing was applied.
    assert_eq!(app.db_value("x").await, Some(0));
}

#[tokio::test]
async fn the_outcome_of_a_transaction_is_learned_from_its_id() {
    use rowlock::db::outcome::{resolve, TxIdentity};
    let app = spawn_app().await;
    let pool = rowlock::db::build_pool(&app.db_url, &crate::helpers::pool_args()).unwrap();
    let pg = app.pg().await;
    let identity = |sql: &'static str| {
        let pg = &pg;
        async move {
            pg.batch_execute("BEGIN").await.unwrap();
            let row = pg
                .query_one(
                    "SELECT txid_current(), \
                     coalesce((SELECT stats_reset::text FROM pg_stat_wal), '')",
                    &[],
                )
                .await
                .unwrap();
            pg.batch_execute(sql).await.unwrap();
            TxIdentity {
                txid: row.get(0),
                crash_mark: row.get(1),
            }
        }
    };
    let bound = Duration::from_millis(300);
    // On Citus a worker may have kept what the coordinator reports aborted: unknown.
    let aborted = match rowlock::db::citus::on() {
        true => None,
        false => Some(false),
    };
    let committed = identity("COMMIT").await;
    assert_eq!(resolve(&pool, &committed, bound).await, Some(true));
    let rolled_back = identity("ROLLBACK").await;
    assert_eq!(resolve(&pool, &rolled_back, bound).await, aborted);
    // Still open: not learnable within the bound, so unknown.
    let open = identity("SELECT 1").await;
    assert_eq!(resolve(&pool, &open, bound).await, None);
    pg.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(resolve(&pool, &open, bound).await, aborted);

    // Seen from before a crash (another crash mark), an id may have been handed out again:
    // "committed" is not to be trusted, "aborted" still is.
    let before_a_crash = |id: TxIdentity| TxIdentity {
        crash_mark: format!("before {}", id.crash_mark),
        ..id
    };
    assert_eq!(
        resolve(&pool, &before_a_crash(committed), bound).await,
        None
    );
    assert_eq!(
        resolve(&pool, &before_a_crash(rolled_back), bound).await,
        aborted
    );
}

#[tokio::test]
async fn four_hundred_clients_that_give_up_behind_a_held_row_leave_nothing_behind() {
    let app = spawn_app().await;
    app.create_counter("x", 0).await;
    let holder = app.pg().await;
    holder.batch_execute("BEGIN").await.unwrap();
    holder
        .execute("SELECT * FROM counters WHERE name = 'x' FOR UPDATE", &[])
        .await
        .unwrap();
    let gave_up: Vec<_> = (0..400)
        .map(|_| {
            let request = app
                .http
                .post(app.url("/counters/x/increment"))
                .json(&json!({"by": 1}))
                .timeout(Duration::from_millis(500));
            tokio::spawn(async move { request.send().await.is_err() })
        })
        .collect();
    for client in gave_up {
        assert!(
            client.await.unwrap(),
            "the client gave up (closed its socket)"
        );
    }
    holder.batch_execute("COMMIT").await.unwrap();
    // What was asked is applied after all (a request ends its transaction even when its client
    // left); then nothing is left open or waiting, and the row is free at once.
    app.wait_until("SELECT value FROM counters WHERE name = 'x'", 400)
        .await;
    app.wait_for_no_session_left_open().await;
    app.wait_until_metric("rowlock_group_queued", 0.0).await;
    assert_eq!(app.increment("x", "lock=nowait", 1).await.status(), 200);
    assert_eq!(app.db_value("x").await, Some(401));
}
