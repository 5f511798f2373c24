//! The command line: `rowlock serve`, `rowlock migrate`, `rowlock hammer`.
//!
//! Every option is also an environment variable, so the same binary is configured the same way
//! from a shell, a systemd unit or a compose file.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, FromArgMatches, Parser, Subcommand};

pub use crate::db::pool::PoolArgs;

/// The whole command line: one subcommand and its options.
#[derive(Debug, Parser)]
#[command(
    name = "rowlock",
    version,
    about = "Concurrent row updates done right on PostgreSQL"
)]
pub struct Cli {
    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands of `rowlock`, each with its options.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the HTTP API.
    Serve(ServeArgs),
    /// Apply the embedded migrations and exit.
    Migrate(DatabaseArgs),
    /// Load-test a running rowlock and verify that no update was lost.
    Hammer(crate::hammer::HammerArgs),
    /// Benchmark rowlock against pgbench on a throwaway PostgreSQL (see bench/README.md).
    #[command(hide = true)]
    Bench(crate::bench::BenchArgs),
}

/// Where the database is, or where rowlock keeps the one it starts itself.
#[derive(Debug, Clone, Args)]
pub struct DatabaseArgs {
    /// PostgreSQL URL. When unset, rowlock starts a local PostgreSQL cluster itself.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<String>,

    /// A direct PostgreSQL URL for the one long-lived `LISTEN` connection, when DATABASE_URL
    /// points at a transaction pooler (which cannot carry `LISTEN`). Default: DATABASE_URL.
    #[arg(long, env = "ROWLOCK_LISTEN_DATABASE_URL")]
    pub listen_database_url: Option<String>,

    /// Data directory of the local cluster started when DATABASE_URL is unset.
    #[arg(long, env = "ROWLOCK_DATA_DIR", default_value = ".rowlock/pg")]
    pub data_dir: PathBuf,
}

/// Everything `rowlock serve` can be told.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Where the database is.
    #[command(flatten)]
    pub database: DatabaseArgs,

    /// Address to listen on (port 0 picks a free port).
    #[arg(long, env = "ROWLOCK_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// HTTP worker threads (0 = half the cores, at least one: PostgreSQL needs the rest).
    #[arg(long, env = "ROWLOCK_WORKERS", default_value_t = 0)]
    pub workers: usize,

    /// How long an Idempotency-Key and its stored response are kept (seconds).
    #[arg(long, env = "ROWLOCK_IDEMPOTENCY_RETENTION_SECS", default_value_t = 86_400, value_parser = clap::value_parser!(u64).range(1..))]
    pub idempotency_retention_secs: u64,

    /// How long completed jobs are kept before housekeeping deletes them (seconds).
    #[arg(long, env = "ROWLOCK_COMPLETED_JOB_RETENTION_SECS", default_value_t = 604_800, value_parser = clap::value_parser!(u64).range(1..))]
    pub completed_job_retention_secs: u64,

    /// How long the records of committed transactions (`GET /transactions/{id}`) are kept
    /// before housekeeping deletes them (seconds).
    #[arg(long, env = "ROWLOCK_TRANSACTION_RETENTION_SECS", default_value_t = 604_800, value_parser = clap::value_parser!(u64).range(1..))]
    pub transaction_retention_secs: u64,

    /// Longest lease (`ttl_ms`) a lock may be granted or renewed for, in milliseconds.
    // At most a year: far beyond any sensible lease, and safely inside timestamp arithmetic.
    #[arg(long, env = "ROWLOCK_LOCK_MAX_TTL_MS", default_value_t = 3_600_000, value_parser = clap::value_parser!(u64).range(1..=31_536_000_000))]
    pub lock_max_ttl_ms: u64,

    /// How long a request body may take to arrive, whole (milliseconds); then 408.
    #[arg(long, env = "ROWLOCK_BODY_TIMEOUT_MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub body_timeout_ms: u64,

    /// Most requests waiting at once (long-polling claims, lease acquisitions with wait_ms);
    /// the next one is answered 503 at once.
    #[arg(long, env = "ROWLOCK_MAX_WAITERS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_waiters: u64,

    /// The connection pool: its size, statement caching and the timeouts of every wait on it.
    #[command(flatten)]
    pub pool: PoolArgs,

    /// Group commit: whether concurrent requests share transactions, and how large and how many
    /// the groups may be.
    #[command(flatten)]
    pub group: crate::db::group::GroupArgs,

    /// Who may call the API: the bearer tokens, the allowed browser origins.
    #[command(flatten)]
    pub auth: crate::routes::auth::AuthArgs,
}

impl Default for ServeArgs {
    /// `rowlock serve` with no option given and no environment variable read: the defaults are
    /// written once, as the command line's `default_value`s.
    fn default() -> Self {
        defaults()
    }
}

/// Options `T` as the command line would parse them from no arguments, ignoring the environment.
/// Every `Default` of an options struct comes from here, so a default is written only once.
pub fn defaults<T: Args + FromArgMatches>() -> T {
    let command = T::augment_args(clap::Command::new("defaults")).mut_args(|arg| arg.env(None));
    let parsed = command
        .try_get_matches_from(["defaults"])
        .and_then(|matches| T::from_arg_matches(&matches));
    match parsed {
        Ok(options) => options,
        // Only a default that does not parse gets here: a bug the unit test below catches.
        Err(e) => panic!("the command line's defaults do not parse: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_command_lines_and_ignore_the_environment() {
        // Set in this test process only: the default must not read it.
        std::env::set_var("ROWLOCK_POOL_SIZE", "7");
        let serve = ServeArgs::default();
        std::env::remove_var("ROWLOCK_POOL_SIZE");
        assert_eq!(serve.pool.pool_size, 32);
        assert_eq!(serve.listen, "127.0.0.1:8080".parse().expect("address"));
        assert_eq!(serve.database.database_url, None);
        assert!(serve.group.group_commit);
        assert_eq!(serve.group.group_max_ops, 1000);
        assert_eq!(serve.pool.lock_timeout_ms, 10_000);
        assert_eq!(serve.idempotency_retention_secs, 86_400);
        assert!(serve.auth.api_token.is_none());
        let parsed = Cli::try_parse_from(["rowlock", "serve"]).expect("parses");
        let Command::Serve(from_cli) = parsed.command else {
            panic!("not serve")
        };
        assert_eq!(format!("{serve:?}"), format!("{from_cli:?}"));
    }
}
