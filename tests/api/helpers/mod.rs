//! The black-box test harness (after zero-to-production's `TestApp`): per test a fresh database
//! cloned from a migrated template (see [`cluster`]) and a real rowlock server on port 0, and one
//! [`TestApp`] with a method per endpoint the tests call, grouped by resource in this folder's
//! files.

mod citus;
mod cluster;
mod counters;
mod group_commit;
mod instances;
mod jobs;
mod leases;
mod observability;
mod process;
mod transactions;

use std::time::{Duration, Instant};

use rowlock::cli::{DatabaseArgs, PoolArgs, ServeArgs};
use rowlock::startup::Application;
use serde_json::Value;

pub use citus::{allow_triggers, on_citus, skipped_on_citus, waiting_on_a_lock};
pub use cluster::{connect, database_port};
pub use counters::spawn_app_failing_updates;
pub use group_commit::spawn_one_slot_app;
pub use instances::Instances;
pub use process::{free_port, serve_process, TestServer};

/// Deadlocks PostgreSQL has detected in the test's database (for [`TestApp::scalar`]).
pub const DEADLOCKS: &str =
    "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()";

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

/// Whether this run sends statements as behind a transaction pooler (`ROWLOCK_TEST_STATEMENT_CACHE=off`).
pub fn statement_cache_off() -> bool {
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

/// Spawns rowlock with its `DATABASE_URL` rewritten by `route` (to reach PostgreSQL through a
/// proxy); the test's own connections go straight to the database.
pub async fn spawn_app_via(
    tune: impl FnOnce(&mut ServeArgs),
    route: impl FnOnce(&str) -> String,
) -> TestApp {
    if std::env::var("TEST_LOG").is_ok() {
        rowlock::telemetry::init();
    }
    let db_name = format!("rowlock_test_{:016x}", rand::random::<u64>());
    let db_url = cluster::create_database(&db_name).await;
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

impl Drop for TestApp {
    fn drop(&mut self) {
        // Stop the server (the command is sent at once; the server task runs on the test's
        // runtime, which this blocking drop must not wait for), then drop its database.
        drop(self.handle.stop(false));
        cluster::drop_database(self.db_name.clone());
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

    /// `POST {path}` with a JSON body.
    pub async fn post(&self, path: &str, body: Value) -> reqwest::Response {
        self.http
            .post(self.url(path))
            .json(&body)
            .send()
            .await
            .expect("POST")
    }

    /// `POST {path}` with `body` sent as is, labelled JSON (for bodies that are not).
    pub async fn post_raw(&self, path: &str, body: impl Into<reqwest::Body>) -> reqwest::Response {
        self.http
            .post(self.url(path))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("POST")
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

/// A response's status and JSON body (null when it has none).
pub async fn json_of(r: reqwest::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
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
