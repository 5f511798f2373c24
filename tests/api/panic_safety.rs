//! A bug that panics between `BEGIN` and `COMMIT` must not hand the next request a connection
//! in the middle of that transaction (still holding its row locks).

use std::sync::Arc;
use std::time::Duration;

use rowlock::cli::PoolArgs;
use rowlock::db::admission::Admission;
use rowlock::db::{build_pool, Db, Reply, Tx, TxOptions};
use rowlock::error::ApiError;
use rowlock::metrics::Metrics;

use crate::helpers::spawn_app;

const IDLE_IN_TRANSACTION: &str = "SELECT count(*) FROM pg_stat_activity \
     WHERE datname = current_database() AND state LIKE 'idle in transaction%'";

#[tokio::test]
async fn a_panic_inside_a_transaction_closes_its_connection_instead_of_pooling_it() {
    let app = spawn_app().await;
    app.create_counter("p", 0).await;
    // A pool of one: without the guard, the panicked transaction's connection is the next one
    // handed out.
    let pool = build_pool(
        &app.db_url,
        &PoolArgs {
            pool_size: 1,
            ..crate::helpers::pool_args()
        },
    )
    .expect("pool");
    let db = Db {
        pool: pool.clone(),
        max_retries: 0,
        idempotency_retention: Duration::from_secs(60),
        metrics: Arc::new(Metrics::new()),
        admission: Admission::new(1),
        lock_timeout: Duration::from_secs(5),
        group: None,
        jobs: None,
    };
    let outcome = tokio::task::LocalSet::new()
        .run_until(db.transact(TxOptions::default(), |tx| Box::pin(update_then_panic(tx))))
        .await;
    assert!(
        outcome.is_err(),
        "the panicked transaction answered {outcome:?}"
    );

    // The session is closed and PostgreSQL rolled it back: no transaction left open, the row
    // is free, and nothing was applied.
    app.wait_until(IDLE_IN_TRANSACTION, 0).await;
    let reused = pool.get().await.expect("a pooled connection");
    let open: bool = reused
        .query_one("SELECT txid_current_if_assigned() IS NOT NULL", &[])
        .await
        .expect("query")
        .get(0);
    assert!(
        !open,
        "the pool handed out a connection inside a transaction"
    );
    let response = app.increment("p", "lock=nowait", 1).await;
    assert_eq!(response.status(), 200);
    assert_eq!(app.db_value("p").await, Some(1));
}

/// A transaction body with a bug: it changes a row, then panics before it can commit.
async fn update_then_panic(tx: &Tx) -> Result<Reply, ApiError> {
    let stmt = tx
        .prepare("UPDATE counters SET value = value + 1 WHERE name = 'p'")
        .await?;
    tx.client().execute(&stmt, &[]).await?;
    panic!("a bug between BEGIN and COMMIT");
}
