//! Everything that talks to PostgreSQL: the pool, migrations, the transaction helper and the SQL
//! of each table.
//!
//! Each table's statements are written in one file of named `&'static str` constants next to the
//! module that runs them: `counters/sql.rs`, `transactions/sql.rs`, `idempotency/sql.rs`,
//! `jobs/sql.rs` (with `jobs/sql/workers.rs`: rescue, claim and a job group's acknowledgements),
//! `queues/sql.rs` and `leases/sql.rs` (the `locks` table, fencing included). A fragment that
//! several statements share is written once, as a `macro_rules!` that expands to a string
//! literal, so statements stay constants built with `concat!`: the counter write
//! (`counters::sql::counter_write!`), the bound check (`counters::sql::within_bounds!`), a job's
//! wake-up of its queue's claims (`jobs::sql::notify_claims!`), the per-transaction settings
//! (`tx/settings.rs`). A statement that spans tables (the atomic transaction, a group's write)
//! is composed from each table's fragments. Result columns are read by name, so every computed
//! column is named with `AS`. Catalog reads (`introspection`, `citus`, `server`, `outcome`) keep
//! their SQL in their own modules.

pub mod admission;
pub mod citus;
pub(crate) mod conn;
pub mod counters;
pub mod dashboard;
pub mod fencing;
pub mod group;
pub mod housekeeping;
pub mod idempotency;
pub mod introspection;
pub mod jobs;
pub mod leases;
pub mod listener;
pub mod locking;
pub mod migrate;
pub mod notify;
pub mod outcome;
mod plan;
pub mod pool;
pub mod queues;
pub mod server;
pub mod statements;
pub mod transactions;
pub mod tx;

use std::time::Duration;

use anyhow::{Context, Result};
use deadpool_postgres::Hook;
use deadpool_postgres::{HookError, Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::NoTls;

pub use idempotency::Reply;
pub use pool::PoolArgs;
pub use tx::{Db, Tx, TxOptions};

/// Builds the pool. Every connection carries its own timeouts (set as startup options, so they
/// cost no round trip): an actix handler is not reliably cancelled when its client goes away, so
/// the database itself must bound every wait.
pub fn build_pool(database_url: &str, args: &PoolArgs) -> Result<Pool> {
    let mut pg: tokio_postgres::Config = database_url
        .parse()
        .context("DATABASE_URL is not a valid PostgreSQL URL")?;
    // Also pinned:
    // - statements sent without `BEGIN` are read committed, whatever the server's default;
    // - rows are reached through their index. Every statement rowlock runs is keyed by one, but
    //   a generic plan cannot know that `name = ANY($1)` names two rows, and on a small table
    //   would scan every row (and every dead version of it) instead.
    let ours = format!(
        "-c statement_timeout={} -c lock_timeout={} -c idle_in_transaction_session_timeout={} \
         -c default_transaction_isolation=read\\ committed \
         -c enable_seqscan=off",
        args.statement_timeout_ms, args.lock_timeout_ms, args.idle_in_transaction_timeout_ms
    );
    let options = match pg.get_options() {
        Some(theirs) if !theirs.is_empty() => format!("{theirs} {ours}"),
        _ => ours,
    };
    // Behind a transaction pooler no startup option reaches PostgreSQL (pgbouncer refuses
    // them): each transaction sets them instead, and statements go unnamed.
    statements::set_statement_cache(args.statement_cache);
    if args.statement_cache {
        let _ = pg.options(&options);
        statements::set_per_transaction(None);
    } else {
        statements::set_per_transaction(Some((
            args.statement_timeout_ms,
            args.lock_timeout_ms,
            args.idle_in_transaction_timeout_ms,
        )));
    }
    if pg.get_application_name().is_none() {
        let _ = pg.application_name("rowlock");
    }
    let _ = pg.connect_timeout(Duration::from_millis(args.pool_create_ms));
    let manager = Manager::from_config(
        pg,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .post_create(Hook::async_fn(|client, _| {
            Box::pin(async move { tx::warm_up(client).await.map_err(HookError::Backend) })
        }))
        .max_size(args.pool_size.max(1))
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(args.wait_timeout()))
        .create_timeout(Some(Duration::from_millis(args.pool_create_ms)))
        .recycle_timeout(Some(Duration::from_millis(args.pool_recycle_ms)))
        .build()
        .context("cannot build the connection pool")
}

/// Connects once, outside the pool (migrations, creating databases).
pub async fn connect(database_url: &str) -> Result<tokio_postgres::Client> {
    let (client, connection) = tokio_postgres::connect(database_url, NoTls)
        .await
        .with_context(|| format!("cannot connect to {}", redact(database_url)))?;
    // Detached: the driver ends when the client is dropped.
    drop(tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "admin connection closed");
        }
    }));
    Ok(client)
}

/// Creates database `name` through `admin_url` unless it exists. `name` is always one of
/// rowlock's own identifiers, never client input.
pub async fn ensure_database(admin_url: &str, name: &str) -> Result<()> {
    let client = connect(admin_url).await?;
    let exists = client
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .await?
        .is_some();
    if !exists {
        client
            .batch_execute(&format!("CREATE DATABASE {}", quote_ident(name)))
            .await
            .with_context(|| format!("cannot create database {name}"))?;
    }
    Ok(())
}

/// Quotes an identifier of rowlock's own making (database names in the harness and bench).
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Where a URL points, without its password, for logs and errors.
pub fn redact(url: &str) -> String {
    let Ok(cfg) = url.parse::<tokio_postgres::Config>() else {
        return "<unparsable database URL>".into();
    };
    let host = match cfg.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => "localhost".into(),
    };
    let port = cfg.get_ports().first().copied().unwrap_or(5432);
    format!(
        "database '{}' as '{}' on {host}:{port}",
        cfg.get_dbname().unwrap_or("(default)"),
        cfg.get_user().unwrap_or("(default)")
    )
}
