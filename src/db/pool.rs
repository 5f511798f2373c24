//! `rowlock serve`'s database pool settings: its size and the timeouts that bound every wait on
//! the database. They belong to the database layer ([`super::build_pool`]); the command line
//! flattens them into `rowlock serve`.

use std::time::Duration;

use clap::Args;

/// Pool size and the timeouts that bound every wait on the database.
#[derive(Debug, Clone, Args)]
pub struct PoolArgs {
    /// Connections in the pool: how many transactions rowlock runs on PostgreSQL at once.
    #[arg(long, env = "ROWLOCK_POOL_SIZE", default_value_t = 32)]
    pub pool_size: usize,

    /// Prepare statements once per connection and cache them (on), or send every statement
    /// unnamed with its parameter types and apply the timeouts per transaction (off: behind a
    /// transaction-mode pooler such as pgbouncer).
    #[arg(long, env = "ROWLOCK_STATEMENT_CACHE", default_value = "on",
          value_parser = crate::db::group::parse_switch, action = clap::ArgAction::Set,
          value_name = "on|off")]
    pub statement_cache: bool,

    /// How many transactions on one counter rowlock lets into PostgreSQL at once; the rest wait
    /// their turn in rowlock (0: no limit).
    #[arg(long, env = "ROWLOCK_ROW_CONCURRENCY", default_value_t = 2)]
    pub row_concurrency: usize,

    /// How long a request waits for a free connection before it is answered 503.
    #[arg(long, env = "ROWLOCK_POOL_WAIT_MS", default_value_t = 5000, value_parser = clap::value_parser!(u64).range(1..))]
    pub pool_wait_ms: u64,

    /// How long opening a new connection may take.
    #[arg(long, env = "ROWLOCK_POOL_CREATE_MS", default_value_t = 5000, value_parser = clap::value_parser!(u64).range(1..))]
    pub pool_create_ms: u64,

    /// How long checking a returned connection may take.
    #[arg(long, env = "ROWLOCK_POOL_RECYCLE_MS", default_value_t = 2000, value_parser = clap::value_parser!(u64).range(1..))]
    pub pool_recycle_ms: u64,

    /// Per-connection statement_timeout: no statement runs longer.
    #[arg(long, env = "ROWLOCK_STATEMENT_TIMEOUT_MS", default_value_t = 30000, value_parser = clap::value_parser!(u64).range(1..))]
    pub statement_timeout_ms: u64,

    /// Per-connection lock_timeout for `lock=wait` requests that give no `lock_timeout_ms`.
    #[arg(long, env = "ROWLOCK_LOCK_TIMEOUT_MS", default_value_t = 10000, value_parser = clap::value_parser!(u64).range(1..))]
    pub lock_timeout_ms: u64,

    /// Per-connection idle_in_transaction_session_timeout: a transaction left open is ended.
    #[arg(long, env = "ROWLOCK_IDLE_IN_TRANSACTION_TIMEOUT_MS", default_value_t = 60000, value_parser = clap::value_parser!(u64).range(1..))]
    pub idle_in_transaction_timeout_ms: u64,

    /// How many times a transaction failing with 40001/40P01 is run again before answering 409.
    #[arg(long, env = "ROWLOCK_MAX_RETRIES", default_value_t = 5)]
    pub max_retries: u32,
}

impl PoolArgs {
    /// `pool_wait_ms` as a duration: the pool's wait timeout.
    pub fn wait_timeout(&self) -> Duration {
        Duration::from_millis(self.pool_wait_ms)
    }
}

impl Default for PoolArgs {
    /// The command line's defaults (its `default_value`s are the only place they are written).
    fn default() -> Self {
        crate::cli::defaults()
    }
}
