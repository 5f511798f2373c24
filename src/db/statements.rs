//! Statements as rowlock sends them, in one of two ways:
//!
//! - **Prepared and cached per connection** (the default): each statement is parsed once per
//!   connection and afterwards costs only its `Bind`/`Execute`.
//! - **Unnamed, with their parameter types** (`--statement-cache off`, for a transaction-mode
//!   pooler such as pgbouncer): a pooler hands each transaction whichever server connection is
//!   free, so a statement prepared by one transaction does not exist for the next, and names
//!   prepared by different clients collide on one server connection. Every statement is then
//!   sent as the unnamed statement with its parameter types (`Parse`/`Bind`/`Execute`/`Sync` in
//!   one message), which lives exactly as long as the message; nothing outlives a transaction.
//!
//! The parameter types of an unnamed statement are learned once per process: the statement is
//! prepared under a name and closed again inside one transaction (the caller's, or a short one of
//! its own), so a pooler keeps both on one server connection and nothing is left behind.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Mutex};

use futures_util::TryStreamExt;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, Error, Row, Statement};

/// Whether statements are prepared and cached per connection (see the module documentation).
static CACHE: AtomicBool = AtomicBool::new(true);

/// Behind a pooler: what every transaction begins with (`BEGIN` and the settings a direct
/// connection gets as startup options). `None` on direct connections.
static BEGIN_SETTINGS: std::sync::RwLock<Option<String>> = std::sync::RwLock::new(None);

/// Parameter types of the statements sent unnamed, by SQL text.
static TYPES: LazyLock<Mutex<TypesBySql>> = LazyLock::new(Mutex::default);

type TypesBySql = HashMap<&'static str, Arc<[Type]>>;

/// Sets how this process sends statements: prepared and cached (`true`) or unnamed (`false`).
pub fn set_statement_cache(on: bool) {
    CACHE.store(on, Ordering::Relaxed);
}

/// Whether statements are prepared and cached per connection.
pub fn statement_cache() -> bool {
    CACHE.load(Ordering::Relaxed)
}

/// Behind a pooler, the settings every transaction applies with `SET LOCAL` (a pooler does not
/// forward startup options, and a session setting would leak to other clients): rowlock's
/// timeouts and `enable_seqscan = off`. The values are rowlock's own settings, never input.
pub fn set_per_transaction(timeouts: Option<(u64, u64, u64)>) {
    let settings = timeouts.map(|(statement_ms, lock_ms, idle_ms)| {
        format!(
            "SET LOCAL statement_timeout = {statement_ms}; SET LOCAL lock_timeout = {lock_ms}; \
             SET LOCAL idle_in_transaction_session_timeout = {idle_ms}; \
             SET LOCAL enable_seqscan = off"
        )
    });
    *BEGIN_SETTINGS.write().unwrap_or_else(|p| p.into_inner()) = settings;
}

/// `begin` (a `BEGIN …` statement), followed behind a pooler by the per-transaction settings.
pub fn begin(begin: &'static str) -> std::borrow::Cow<'static, str> {
    match &*BEGIN_SETTINGS.read().unwrap_or_else(|p| p.into_inner()) {
        Some(settings) => format!("{begin}; {settings}").into(),
        None => begin.into(),
    }
}

/// A statement ready to run on a [`Conn`].
#[derive(Clone)]
pub enum Stmt {
    /// Prepared on the connection (and cached there).
    Prepared(Statement),
    /// Sent as the unnamed statement, with these parameter types.
    Unnamed {
        /// The statement's text, sent with every execution.
        sql: &'static str,
        /// Its parameters' types, learned once per process and cached by text.
        types: Arc<[Type]>,
    },
}

impl Stmt {
    /// How many parameters the statement takes.
    pub fn param_count(&self) -> usize {
        match self {
            Self::Prepared(s) => s.params().len(),
            Self::Unnamed { types, .. } => types.len(),
        }
    }
}

/// A connection as rowlock's SQL uses it: statements from [`Conn::prepare`], run with the same
/// calls as on a `tokio_postgres::Client`.
#[derive(Clone, Copy)]
pub struct Conn<'a> {
    client: &'a deadpool_postgres::ClientWrapper,
    /// Inside a transaction (learning a statement's types needs none of its own).
    in_transaction: bool,
}

impl<'a> Conn<'a> {
    /// A pooled connection outside any transaction.
    pub fn outside(client: &'a deadpool_postgres::ClientWrapper) -> Self {
        Self {
            client,
            in_transaction: false,
        }
    }

    /// A pooled connection inside a transaction.
    pub fn inside(client: &'a deadpool_postgres::ClientWrapper) -> Self {
        Self {
            client,
            in_transaction: true,
        }
    }

    /// The underlying client (for `batch_execute` and the like).
    pub fn client(self) -> &'a Client {
        self.client
    }

    /// `sql`, ready to run. Prepare every statement of a pipeline *before* issuing it: a
    /// statement that still needs a round trip of its own would be sent late.
    pub async fn prepare(self, sql: &'static str) -> Result<Stmt, Error> {
        let sql = super::citus::adapt(sql);
        if statement_cache() {
            return Ok(Stmt::Prepared(self.client.prepare_cached(sql).await?));
        }
        let known = lock_types().get(sql).cloned();
        let types = match known {
            Some(types) => types,
            None => {
                let types = self.learn_types(sql).await?;
                let _ = lock_types().insert(sql, types.clone());
                types
            }
        };
        Ok(Stmt::Unnamed { sql, types })
    }

    /// Prepares `sql` under a name and closes it again, in one transaction.
    async fn learn_types(self, sql: &'static str) -> Result<Arc<[Type]>, Error> {
        if !self.in_transaction {
            self.client.batch_execute(&begin("BEGIN")).await?;
        }
        // Dropping the statement sends its `Close` at once, still inside the transaction.
        let learned = self
            .client
            .prepare(sql)
            .await
            .map(|stmt| Arc::<[Type]>::from(stmt.params()));
        if !self.in_transaction {
            let end = if learned.is_ok() {
                "COMMIT"
            } else {
                "ROLLBACK"
            };
            self.client.batch_execute(end).await?;
        }
        learned
    }

    /// Runs `run` (one statement on this connection); outside a transaction behind a pooler,
    /// inside one of its own with the per-transaction settings, in the same round trip.
    async fn guarded<T>(
        self,
        run: impl std::future::Future<Output = Result<T, Error>>,
    ) -> Result<T, Error> {
        if self.in_transaction || statement_cache() {
            return run.await;
        }
        let begin = begin("BEGIN ISOLATION LEVEL READ COMMITTED");
        // Polled in this order, so sent in this order; a failed statement makes COMMIT a
        // rollback.
        let (begun, result, ended) = futures_util::join!(
            self.client.batch_execute(&begin),
            run,
            self.client.batch_execute("COMMIT"),
        );
        begun?;
        let value = result?;
        ended?;
        Ok(value)
    }

    /// Runs `stmt`; answers its rows.
    pub async fn query(
        self,
        stmt: &Stmt,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, Error> {
        match stmt {
            Stmt::Prepared(s) => self.client.query(s, params).await,
            Stmt::Unnamed { sql, types } => {
                let params = typed(params, types);
                self.guarded(self.client.query_typed(sql, &params)).await
            }
        }
    }

    /// Runs `stmt`, which answers exactly one row.
    pub async fn query_one(
        self,
        stmt: &Stmt,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Row, Error> {
        match stmt {
            Stmt::Prepared(s) => self.client.query_one(s, params).await,
            Stmt::Unnamed { sql, types } => {
                let params = typed(params, types);
                self.guarded(self.client.query_typed_one(sql, &params))
                    .await
            }
        }
    }

    /// Runs `stmt`, which answers at most one row.
    pub async fn query_opt(
        self,
        stmt: &Stmt,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, Error> {
        match stmt {
            Stmt::Prepared(s) => self.client.query_opt(s, params).await,
            Stmt::Unnamed { sql, types } => {
                let params = typed(params, types);
                self.guarded(self.client.query_typed_opt(sql, &params))
                    .await
            }
        }
    }

    /// Runs `stmt`; answers how many rows it changed.
    pub async fn execute(self, stmt: &Stmt, params: &[&(dyn ToSql + Sync)]) -> Result<u64, Error> {
        match stmt {
            Stmt::Prepared(s) => self.client.execute(s, params).await,
            Stmt::Unnamed { sql, types } => {
                let params = params
                    .iter()
                    .zip(types.iter())
                    .map(|(p, t)| (*p, t.clone()));
                let run = async {
                    let rows = self.client.query_typed_raw(sql, params).await?;
                    let mut rows = std::pin::pin!(rows);
                    while rows.try_next().await?.is_some() {}
                    Ok(rows.rows_affected().unwrap_or(0))
                };
                self.guarded(run).await
            }
        }
    }

    /// Runs `sql` with the simple query protocol (no parameters).
    pub async fn batch_execute(self, sql: &str) -> Result<(), Error> {
        self.client.batch_execute(sql).await
    }
}

fn typed<'p>(
    params: &[&'p (dyn ToSql + Sync)],
    types: &[Type],
) -> Vec<(&'p (dyn ToSql + Sync), Type)> {
    params
        .iter()
        .zip(types)
        .map(|(p, t)| (*p, t.clone()))
        .collect()
}

fn lock_types() -> std::sync::MutexGuard<'static, TypesBySql> {
    // Never held across an await; an insert leaves the map consistent.
    TYPES.lock().unwrap_or_else(|p| p.into_inner())
}
