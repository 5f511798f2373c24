//! Building and running the service: resolve the database (starting a local cluster when
//! `DATABASE_URL` is unset), migrate, build the pool, bind. Tests build an [`Application`] on
//! port 0 and read the port back.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::{Server, ServerHandle};
use actix_web::middleware::from_fn;
use actix_web::web::{self, Data};
use actix_web::{App, HttpServer};
use anyhow::{Context, Result};
use deadpool_postgres::Pool;

use crate::cli::{DatabaseArgs, ServeArgs};
use crate::db::admission::Admission;
use crate::db::group::{self, GroupCommit};
use crate::db::jobs::group::Jobs;
use crate::db::notify::{WaitBudget, Wakeups};
use crate::db::{self, Db};
use crate::local_cluster::{Durability, LocalCluster};
use crate::metrics::Metrics;
use crate::routes;

/// Name of the database rowlock creates in a local cluster it started itself.
pub const LOCAL_DATABASE: &str = "rowlock";

/// How long in-flight requests get to finish after SIGTERM/SIGINT.
const SHUTDOWN_TIMEOUT_SECS: u64 = 30;

/// A bound, not yet running, rowlock server.
pub struct Application {
    server: Server,
    port: u16,
    pool: Pool,
    retention: db::housekeeping::Retention,
    cluster: Option<LocalCluster>,
    /// The LISTEN connection's task (wakes waiting claims and lease acquisitions).
    listener_task: tokio::task::JoinHandle<()>,
}

impl Application {
    /// Resolves and migrates the database, then binds `args.listen`.
    pub async fn build(args: ServeArgs) -> Result<Self> {
        // Refused before anything starts.
        let tokens = routes::auth::Tokens::load(&args.auth)?;
        refuse_open_exposure(&args, &tokens)?;
        let (url, cluster) = resolve_database(&args.database).await?;
        let _applied = migrate(&url).await?;
        let pool = db::build_pool(&url, &args.pool)?;
        let metrics = Arc::new(Metrics::new());
        let group = args.group.group_commit.then(|| {
            GroupCommit::new(
                group::Counters {
                    pool: pool.clone(),
                    metrics: metrics.clone(),
                    max_retries: args.pool.max_retries,
                    idempotency_retention_secs: args.idempotency_retention_secs as f64,
                    resolve_timeout: args.pool.wait_timeout(),
                },
                group::Settings {
                    max_ops: args.group.group_max_ops as usize,
                    concurrency: args.group.group_concurrency as usize,
                    default_lock_timeout: Duration::from_millis(args.pool.lock_timeout_ms),
                },
            )
        });
        let mut db = Db {
            pool: pool.clone(),
            max_retries: args.pool.max_retries,
            idempotency_retention: Duration::from_secs(args.idempotency_retention_secs),
            metrics,
            group,
            jobs: None,
            admission: Admission::new(args.pool.row_concurrency),
            lock_timeout: Duration::from_millis(args.pool.lock_timeout_ms),
        };
        if args.group.group_commit {
            // The job groups' own handle has no executors (they hold it: no cycle).
            let runner = Db {
                group: None,
                ..db.clone()
            };
            db.jobs = Some(GroupCommit::new(
                Jobs { db: runner },
                group::Settings {
                    max_ops: args.group.group_max_ops as usize,
                    concurrency: args.group.group_concurrency as usize,
                    default_lock_timeout: Duration::from_millis(args.pool.lock_timeout_ms),
                },
            ));
        }
        let listener = TcpListener::bind(args.listen)
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        let port = listener.local_addr()?.port();
        // The lock release listener (one connection, wakes waiting acquisitions).
        let budget = WaitBudget::new(usize::try_from(args.max_waiters).unwrap_or(usize::MAX));
        let leases = db::leases::Leases::new(args.lock_max_ttl_ms, budget.clone());
        let tokens = Data::new(tokens);
        let retention = db::housekeeping::Retention {
            idempotency_keys: db.idempotency_retention,
            completed_jobs: Duration::from_secs(args.completed_job_retention_secs),
            transactions: Duration::from_secs(args.transaction_retention_secs),
        };
        let data = Data::new(db);
        let wakeups = Wakeups::default();
        // One LISTEN connection wakes both long-polling claims and waiting lease acquisitions.
        let channels: db::listener::Channels = vec![
            (db::notify::CHANNEL, Arc::new(wakeups.clone())),
            (db::leases::CHANNEL, leases.subscriber()),
        ];
        let listener_task = match (
            &args.database.listen_database_url,
            args.pool.statement_cache,
        ) {
            (Some(listen_url), _) => tokio::spawn(db::listener::run(listen_url.clone(), channels)),
            (None, true) => tokio::spawn(db::listener::run(url.clone(), channels)),
            (None, false) => {
                tracing::warn!(
                    every_ms = db::listener::POLL_INTERVAL.as_millis() as u64,
                    "--statement-cache off without --listen-database-url: a transaction pooler \
                     cannot carry LISTEN, so long-polling claims and waiting lease acquisitions \
                     look again on a timer instead of being woken by NOTIFY"
                );
                tokio::spawn(db::listener::poll(channels))
            }
        };
        let (wakeups, leases, budget) = (Data::new(wakeups), Data::new(leases), Data::new(budget));
        let activity = Data::new(crate::activity::CounterActivity::default());
        let body_deadline =
            routes::extract::BodyDeadline(Duration::from_millis(args.body_timeout_ms));
        let mut server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .app_data(leases.clone())
                .app_data(wakeups.clone())
                .app_data(budget.clone())
                .app_data(activity.clone())
                .app_data(tokens.clone())
                .app_data(body_deadline)
                .wrap(from_fn(routes::auth::authenticate))
                .wrap(from_fn(routes::request_context))
                .configure(routes::configure)
                .default_service(web::to(routes::not_found))
        })
        .shutdown_timeout(SHUTDOWN_TIMEOUT_SECS);
        server = server.workers(http_workers(args.workers));
        let server = server.listen(listener)?.run();
        tracing::info!(address = %format!("{}:{port}", args.listen.ip()), "rowlock listening");
        Ok(Self {
            server,
            port,
            pool,
            retention,
            cluster,
            listener_task,
        })
    }

    /// The port actually bound (useful with port 0).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A handle to stop the server gracefully from elsewhere.
    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// Serves until SIGTERM/SIGINT (or [`ServerHandle::stop`]): in-flight requests finish, then
    /// the pool is closed and a local cluster is stopped.
    pub async fn run_until_stopped(self) -> Result<()> {
        let purger = tokio::spawn(db::housekeeping::run(self.pool.clone(), self.retention));
        let served = self.server.await;
        purger.abort();
        self.listener_task.abort();
        self.pool.close();
        if let Some(cluster) = self.cluster {
            tokio::task::spawn_blocking(move || cluster.stop()).await?;
        }
        tracing::info!("rowlock stopped");
        Ok(served?)
    }
}

/// Serving beyond loopback without any API token would let anyone on the network change
/// every counter: refused unless asked for explicitly.
fn refuse_open_exposure(args: &ServeArgs, tokens: &routes::auth::Tokens) -> Result<()> {
    if args.listen.ip().is_loopback() || tokens.has_api_tokens() || args.auth.allow_unauthenticated
    {
        return Ok(());
    }
    anyhow::bail!(
        "refusing to listen on {} without an API token: set ROWLOCK_API_TOKEN (or \
         ROWLOCK_API_TOKENS_FILE), listen on loopback, or pass --allow-unauthenticated \
         (ROWLOCK_ALLOW_UNAUTHENTICATED=true)",
        args.listen
    )
}

/// HTTP worker threads: as asked, or by default half the cores (at least one). Each worker is
/// its own single-threaded runtime, and a pooled connection is driven by the worker that opened
/// it, so with several workers most requests hand every database message across threads; on a
/// machine that also runs PostgreSQL, the cores are better left to it (measured on 2 cores:
/// one worker serves 20-25% more requests per second than two, see bench/README.md).
fn http_workers(asked: usize) -> usize {
    if asked > 0 {
        return asked;
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    (cores / 2).max(1)
}

/// `DATABASE_URL` when given; otherwise a local cluster in `data_dir`, started here.
pub async fn resolve_database(args: &DatabaseArgs) -> Result<(String, Option<LocalCluster>)> {
    if let Some(url) = &args.database_url {
        return Ok((url.clone(), None));
    }
    tracing::info!(dir = %args.data_dir.display(), "DATABASE_URL is unset: starting a local PostgreSQL");
    let dir = args.data_dir.clone();
    let cluster =
        tokio::task::spawn_blocking(move || LocalCluster::start(&dir, Durability::Durable))
            .await??;
    db::ensure_database(&cluster.url("postgres"), LOCAL_DATABASE).await?;
    Ok((cluster.url(LOCAL_DATABASE), Some(cluster)))
}

/// Applies pending migrations to the database at `url`.
pub async fn migrate(url: &str) -> Result<usize> {
    let mut client = db::connect(url).await?;
    db::migrate::run(&mut client).await
}
