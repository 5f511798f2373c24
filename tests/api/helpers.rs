//! The black-box test harness: one throwaway PostgreSQL cluster per test run (started with the
//! same module `rowlock serve` uses, or `DATABASE_URL` when set), a migrated template database,
//! and per test a fresh database cloned from it plus a real rowlock server on port 0.
//!
//! With `ROWLOCK_TEST_CITUS_URL` (a Citus coordinator's database, whose workers it knows), every
//! test runs on Citus instead: its database is created on the coordinator and on each worker,
//! with the extension and the workers registered, and rowlock distributes its tables when it
//! migrates it at startup.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use rowlock::cli::{DatabaseArgs, PoolArgs, ServeArgs};
use rowlock::db::quote_ident;
use rowlock::local_cluster::{Durability, LocalCluster};
use rowlock::startup::{self, Application};
use serde_json::Value;
use tokio_postgres::NoTls;

const TEMPLATE: &str = "rowlock_test_template";

/// Deadlocks PostgreSQL has detected in the test's database (for [`TestApp::scalar`]).
pub const DEADLOCKS: &str =
    "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()";

struct TestCluster {
    admin_url: String,
    /// With `ROWLOCK_TEST_CITUS_URL`: the Citus workers, as `(host, port)`. Every test database
    /// exists on each of them too, with the Citus extension, and rowlock distributes its tables.
    citus_workers: Vec<(String, u16)>,
    /// Kept alive for the whole run; its server dies with the test process.
    _cluster: Option<LocalCluster>,
}

impl TestCluster {
    fn url(&self, database: &str) -> String {
        let (host, port) = host_port(&self.admin_url);
        self.url_at(&host, port, database)
    }

    /// `database` on another server of the same cluster, with the same credentials.
    fn url_at(&self, host: &str, port: u16, database: &str) -> String {
        // tokio-postgres has no Config -> URL; rebuild the parts the harness uses.
        let cfg: tokio_postgres::Config = self.admin_url.parse().expect("admin URL parses");
        let user = cfg.get_user().unwrap_or("postgres");
        match cfg.get_password() {
            Some(pw) => format!(
                "postgres://{user}:{}@{host}:{port}/{database}",
                String::from_utf8_lossy(pw)
            ),
            None => format!("postgres://{user}@{host}:{port}/{database}"),
        }
    }

    /// The admin URLs of the servers a test database exists on: the Citus workers first, then
    /// the server rowlock connects to.
    fn servers(&self) -> Vec<String> {
        let mut urls: Vec<String> = self
            .citus_workers
            .iter()
            .map(|(host, port)| self.url_at(host, *port, "postgres"))
            .collect();
        urls.push(self.admin_url.clone());
        urls
    }

    /// Creates the template database and migrates it (not on Citus: see [`Self::create_database`]).
    async fn create_template(&self) {
        if !self.citus_workers.is_empty() {
            return;
        }
        let admin = connect(&self.admin_url).await;
        let t = quote_ident(TEMPLATE);
        for sql in [
            format!("DROP DATABASE IF EXISTS {t} WITH (FORCE)"),
            format!("CREATE DATABASE {t}"),
        ] {
            admin
                .batch_execute(&sql)
                .await
                .expect("create the template");
        }
        startup::migrate(&self.url(TEMPLATE))
            .await
            .expect("migrate the template database");
    }

    /// A test's database: cloned from the template; on Citus created on every node with the
    /// extension and the workers registered (Citus's daemons keep a template busy, so it cannot
    /// be cloned), and migrated — its tables distributed — by the rowlock that starts on it.
    async fn create_database(&self, name: &str) {
        if self.citus_workers.is_empty() {
            return create_database_from_template(&self.admin_url, name).await;
        }
        for (host, port) in &self.citus_workers {
            connect(&self.url_at(host, *port, "postgres"))
                .await
                .batch_execute(&format!("CREATE DATABASE {}", quote_ident(name)))
                .await
                .expect("create the test database on a worker");
            connect(&self.url_at(host, *port, name))
                .await
                .batch_execute("CREATE EXTENSION citus")
                .await
                .expect("create the Citus extension on a worker");
        }
        connect(&self.admin_url)
            .await
            .batch_execute(&format!("CREATE DATABASE {}", quote_ident(name)))
            .await
            .expect("create the test database");
        let coordinator = connect(&self.url(name)).await;
        let (host, port) = host_port(&self.admin_url);
        coordinator
            .batch_execute("CREATE EXTENSION citus")
            .await
            .expect("create the Citus extension");
        coordinator
            .execute(
                "SELECT citus_set_coordinator_host($1, $2)",
                &[&host, &i32::from(port)],
            )
            .await
            .expect("register the coordinator");
        for (host, port) in &self.citus_workers {
            coordinator
                .execute("SELECT citus_add_node($1, $2)", &[host, &i32::from(*port)])
                .await
                .expect("register a Citus worker");
        }
    }
}

/// Whether the suite runs on Citus (`ROWLOCK_TEST_CITUS_URL`).
pub fn on_citus() -> bool {
    !cluster().citus_workers.is_empty()
}

/// Lets `pg` create triggers on rowlock's tables, which Citus refuses on distributed tables
/// unless told they are safe (they are: the tests' triggers touch only their own row).
pub async fn allow_triggers(pg: &tokio_postgres::Client) {
    if on_citus() {
        pg.batch_execute("SET citus.enable_unsafe_triggers = on")
            .await
            .expect("allow triggers on distributed tables");
    }
}

/// On Citus, says that a test is skipped and why; true then. For tests whose fault injection
/// (a trigger with a sequence on the coordinator) cannot run on a worker.
pub fn skipped_on_citus(why: &str) -> bool {
    if on_citus() {
        eprintln!("skipped on Citus: {why}");
    }
    on_citus()
}

/// The condition, on a row of `pg_stat_activity`, that its session waits for a lock. On Citus a
/// coordinator session waiting for a row lock on a worker shows no lock wait itself; Citus's
/// `citus_lock_waits` names it by its global pid (node id × 10¹⁰ + pid).
pub fn waiting_on_a_lock() -> &'static str {
    match !on_citus() {
        true => "wait_event_type = 'Lock'",
        false => {
            "(wait_event_type = 'Lock'
              OR pid IN (SELECT (waiting_gpid % 10000000000)::int FROM citus_lock_waits))"
        }
    }
}

fn host_port(url: &str) -> (String, u16) {
    let cfg: tokio_postgres::Config = url.parse().expect("admin URL parses");
    let host = match cfg.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        _ => "127.0.0.1".into(),
    };
    (host, cfg.get_ports().first().copied().unwrap_or(5432))
}

/// The primary workers of the Citus coordinator at `url`.
async fn citus_workers(url: &str) -> Vec<(String, u16)> {
    let coordinator = connect(url).await;
    let rows = coordinator
        .query(
            "SELECT nodename, nodeport FROM pg_dist_node
              WHERE groupid <> 0 AND noderole = 'primary' ORDER BY nodeid",
            &[],
        )
        .await
        .expect("ROWLOCK_TEST_CITUS_URL must name a Citus coordinator's database with workers");
    assert!(!rows.is_empty(), "the Citus coordinator has no workers");
    rows.iter()
        .map(|r| (r.get(0), u16::try_from(r.get::<_, i32>(1)).expect("a port")))
        .collect()
}

static CLUSTER: OnceLock<TestCluster> = OnceLock::new();

fn cluster() -> &'static TestCluster {
    CLUSTER.get_or_init(|| {
        // `ROWLOCK_TEST_CITUS_WAYS=1`: the statements rowlock sends once its tables are
        // distributed by Citus (one row per locking statement, `nextval` by sub-SELECT, lock
        // timeouts passed on), on plain PostgreSQL, where they must keep every guarantee too.
        if std::env::var("ROWLOCK_TEST_CITUS_WAYS").is_ok_and(|v| v == "1") {
            rowlock::db::citus::enable();
        }
        // Its own thread and runtime: this may be first called from inside a test's runtime.
        std::thread::spawn(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            let (admin_url, cluster, citus_workers) =
                if let Ok(url) = std::env::var("ROWLOCK_TEST_CITUS_URL") {
                    let workers = rt.block_on(citus_workers(&url));
                    (url, None, workers)
                } else if let Ok(url) = std::env::var("DATABASE_URL") {
                    (url, None, Vec::new())
                } else {
                    let cluster = LocalCluster::start_throwaway(Durability::Throwaway)
                        .expect("start a throwaway PostgreSQL cluster");
                    (cluster.url("postgres"), Some(cluster), Vec::new())
                };
            let tc = TestCluster {
                admin_url,
                citus_workers,
                _cluster: cluster,
            };
            rt.block_on(tc.create_template());
            tc
        })
        .join()
        .expect("test cluster setup")
    })
}

/// A plain connection, as an operator's `psql` would have.
pub async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .expect("connect to PostgreSQL");
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

/// A running rowlock on its own fresh database.
pub struct TestApp {
    pub address: String,
    pub http: reqwest::Client,
    pub db_name: String,
    pub db_url: String,
    handle: actix_web::dev::ServerHandle,
}

/// Pool settings of the tests. `ROWLOCK_TEST_STATEMENT_CACHE=off` runs the suite the way rowlock
/// runs behind a transaction pooler: unnamed statements, settings per transaction (the mode is
/// process-wide, so every pool of the run must agree).
pub fn pool_args() -> PoolArgs {
    PoolArgs {
        statement_cache: !statement_cache_off(),
        ..PoolArgs::default()
    }
}

fn statement_cache_off() -> bool {
    std::env::var("ROWLOCK_TEST_STATEMENT_CACHE").is_ok_and(|v| v == "off")
}

/// `rowlock serve`'s settings for a test server on `database_url`, on a free port.
pub fn serve_args(database_url: String) -> ServeArgs {
    ServeArgs {
        database: DatabaseArgs {
            // Behind a pooler rowlock needs a direct URL to LISTEN: the tests' database is one.
            listen_database_url: statement_cache_off().then(|| database_url.clone()),
            database_url: Some(database_url),
            data_dir: "unused".into(),
        },
        listen: "127.0.0.1:0".parse().expect("address"),
        workers: 2,
        pool: pool_args(),
        ..ServeArgs::default()
    }
}

/// Spawns rowlock with the default pool settings.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Spawns rowlock after `tune` adjusted its settings.
pub async fn spawn_app_with(tune: impl FnOnce(&mut ServeArgs)) -> TestApp {
    spawn_app_via(tune, str::to_owned).await
}

/// The port of the test cluster's PostgreSQL.
pub fn database_port() -> u16 {
    let cfg: tokio_postgres::Config = cluster().admin_url.parse().expect("admin URL parses");
    cfg.get_ports().first().copied().unwrap_or(5432)
}

/// Spawns rowlock with its `DATABASE_URL` rewritten by `route` (to reach PostgreSQL through a
/// proxy); the test's own connections go straight to the database.
pub async fn spawn_app_via(
    tune: impl FnOnce(&mut ServeArgs),
    route: impl FnOnce(&str) -> String,
) -> TestApp {
    if std::env::var("TEST_LOG").is_ok() {
        rowlock::telemetry::init();
    }
    let cluster = cluster();
    let db_name = format!("rowlock_test_{:016x}", rand::random::<u64>());
    cluster.create_database(&db_name).await;
    let db_url = cluster.url(&db_name);
    let mut args = serve_args(route(&db_url));
    tune(&mut args);
    let app = Application::build(args).await.expect("build rowlock");
    let address = format!("http://127.0.0.1:{}", app.port());
    let handle = app.handle();
    tokio::spawn(app.run_until_stopped());
    TestApp {
        address,
        http: reqwest::Client::new(),
        db_name,
        db_url,
        handle,
    }
}

async fn create_database_from_template(admin_url: &str, name: &str) {
    let admin = connect(admin_url).await;
    let sql = format!(
        "CREATE DATABASE {} TEMPLATE {}",
        quote_ident(name),
        quote_ident(TEMPLATE)
    );
    // The template may still show the migration's session for a moment after it closed.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match admin.batch_execute(&sql).await {
            Ok(()) => return,
            Err(e)
                if Instant::now() < deadline && e.code().is_some_and(|c| c.code() == "55006") =>
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("cannot create test database {name}: {e}"),
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        // Stop the server (the command is sent at once; the server task runs on the test's
        // runtime, which this blocking drop must not wait for) and drop the database:
        // WITH (FORCE) ends the pool's sessions.
        drop(self.handle.stop(false));
        // On Citus the coordinator's copy first (it has sessions to the workers' copies).
        let (servers, db) = (cluster().servers(), self.db_name.clone());
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                for server in servers.iter().rev() {
                    let admin = connect(server).await;
                    // A Citus worker may keep two-phase commits whose coordinator is gone.
                    if let Ok(rows) = admin
                        .query(
                            "SELECT gid FROM pg_prepared_xacts WHERE database = $1",
                            &[&db],
                        )
                        .await
                    {
                        if !rows.is_empty() {
                            let mut cfg: tokio_postgres::Config = server.parse().expect("URL");
                            cfg.dbname(&db);
                            if let Ok((inside, connection)) = cfg.connect(NoTls).await {
                                tokio::spawn(connection);
                                for row in rows {
                                    let gid: String = row.get(0);
                                    let gid = gid.replace('\'', "''");
                                    let _ = inside
                                        .batch_execute(&format!("ROLLBACK PREPARED '{gid}'"))
                                        .await;
                                }
                            }
                        }
                    }
                    let _ = admin
                        .batch_execute(&format!(
                            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                            quote_ident(&db)
                        ))
                        .await;
                }
            });
        })
        .join();
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    /// `GET {path}`'s JSON body.
    pub async fn get_json(&self, path: &str) -> Value {
        let r = self.http.get(self.url(path)).send().await.expect("GET");
        r.json().await.expect("a JSON body")
    }

    /// A plain connection to this test's database.
    pub async fn pg(&self) -> tokio_postgres::Client {
        connect(&self.db_url).await
    }

    pub async fn put_counter(&self, name: &str, body: Value) -> reqwest::Response {
        self.http
            .put(self.url(&format!("/counters/{name}")))
            .json(&body)
            .send()
            .await
            .expect("PUT counter")
    }

    pub async fn get_counter(&self, name: &str) -> reqwest::Response {
        self.http
            .get(self.url(&format!("/counters/{name}")))
            .send()
            .await
            .expect("GET counter")
    }

    /// `POST /counters/{name}/increment?{query}` with `{"by": by}`.
    pub async fn increment(&self, name: &str, query: &str, by: i64) -> reqwest::Response {
        self.http
            .post(self.url(&format!("/counters/{name}/increment?{query}")))
            .json(&serde_json::json!({ "by": by }))
            .send()
            .await
            .expect("POST increment")
    }

    /// Creates counter `name` with `value` and no bounds.
    pub async fn create_counter(&self, name: &str, value: i64) {
        let r = self
            .put_counter(name, serde_json::json!({ "value": value }))
            .await;
        assert_eq!(r.status().as_u16(), 201, "create counter {name}");
    }

    /// The counter's value straight from the database (None if missing).
    pub async fn db_value(&self, name: &str) -> Option<i64> {
        self.pg()
            .await
            .query_opt("SELECT value FROM counters WHERE name = $1", &[&name])
            .await
            .expect("read counter")
            .map(|r| r.get(0))
    }

    /// Waits (bounded) until `n` of rowlock's sessions are blocked on a lock.
    pub async fn wait_for_lock_waiters(&self, n: i64) {
        let sql = format!(
            "SELECT count(*) FROM pg_stat_activity
              WHERE datname = current_database() AND application_name LIKE 'rowlock%'
                AND {}",
            waiting_on_a_lock()
        );
        self.wait_until(&sql, n).await;
    }

    /// One bigint read straight from the database (`SELECT count(*) …`).
    pub async fn scalar(&self, sql: &str) -> i64 {
        self.pg()
            .await
            .query_one(sql, &[])
            .await
            .expect("read a scalar")
            .get(0)
    }

    /// The value of one sample of rowlock's `/metrics` (0 when absent).
    pub async fn metric(&self, sample: &str) -> f64 {
        let text = self
            .http
            .get(self.url("/metrics"))
            .send()
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("metrics text");
        text.lines()
            .find_map(|l| l.strip_prefix(sample)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(0.0)
    }

    /// Polls the metric `sample` until it equals `expected`, for at most 10 s.
    pub async fn wait_until_metric(&self, sample: &str, expected: f64) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let got = self.metric(sample).await;
            if got == expected {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "waited 10 s for {sample} to be {expected}, it is {got}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Polls `sql` (returning one bigint) until it equals `expected`, for at most 10 s.
    pub async fn wait_until(&self, sql: &str, expected: i64) {
        let pg = self.pg().await;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let got: i64 = pg.query_one(sql, &[]).await.expect("poll").get(0);
            if got == expected {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "waited 10 s for `{sql}` to be {expected}, it is {got}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// Asserts a problem+json response with `status` and `code`; returns the problem.
pub async fn assert_problem(response: reqwest::Response, status: u16, code: &str) -> Value {
    assert_eq!(response.status().as_u16(), status, "status");
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    assert_eq!(content_type, "application/problem+json");
    let problem: Value = response.json().await.expect("problem body");
    assert_eq!(problem["code"], code, "problem: {problem}");
    assert_eq!(problem["status"], status);
    problem
}

/// A test-only HTTP server on port 0 (a deliberately broken service the hammer must catch).
pub struct TestServer {
    pub address: String,
    handle: actix_web::dev::ServerHandle,
}

impl TestServer {
    /// Serves the routes `configure` registers, on two workers, until [`TestServer::stop`].
    pub fn start(
        configure: impl Fn(&mut actix_web::web::ServiceConfig) + Clone + Send + 'static,
    ) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("address").port();
        let server =
            actix_web::HttpServer::new(move || actix_web::App::new().configure(configure.clone()))
                .workers(2)
                .listen(listener)
                .expect("listen")
                .run();
        let handle = server.handle();
        tokio::spawn(server);
        Self {
            address: format!("http://127.0.0.1:{port}"),
            handle,
        }
    }

    pub async fn stop(self) {
        self.handle.stop(false).await;
    }
}

/// A free loopback port (for a `rowlock serve` process).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("address")
        .port()
}

/// `rowlock serve` (the binary) on `port` with the environment `env` (`DATABASE_URL` removed
/// unless `env` sets it); returns once `/readyz` answers 200 (within `ready_within`). The caller
/// stops it and waits for it.
#[allow(clippy::zombie_processes)] // every caller kills and waits for it
pub async fn serve_process(
    port: u16,
    env: &[(&str, &str)],
    ready_within: Duration,
) -> std::process::Child {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_rowlock"));
    command
        .arg("serve")
        .env_remove("DATABASE_URL")
        .env("ROWLOCK_LISTEN", format!("127.0.0.1:{port}"))
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null());
    // With TEST_LOG set, the server's log shows with the test's output.
    if std::env::var("TEST_LOG").is_err() {
        command.stderr(std::process::Stdio::null());
    }
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = command.spawn().expect("start rowlock serve");
    let http = reqwest::Client::new();
    let deadline = Instant::now() + ready_within;
    loop {
        let ready = http
            .get(format!("http://127.0.0.1:{port}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200);
        if ready {
            return child;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("rowlock serve never became ready");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
