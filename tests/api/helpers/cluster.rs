//! The test cluster: one throwaway PostgreSQL cluster per test run (started with the same module
//! `rowlock serve` uses, or `DATABASE_URL` when set), a migrated template database, and per test a
//! fresh database cloned from it, dropped when the test's [`super::TestApp`] is.
//!
//! With `ROWLOCK_TEST_CITUS_URL` (a Citus coordinator's database, whose workers it knows), every
//! test runs on Citus instead: its database is created on the coordinator and on each worker,
//! with the extension and the workers registered, and rowlock distributes its tables when it
//! migrates it at startup.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use rowlock::db::quote_ident;
use rowlock::local_cluster::{Durability, LocalCluster};
use rowlock::startup;
use tokio_postgres::NoTls;

use super::citus;

const TEMPLATE: &str = "rowlock_test_template";

pub(super) struct TestCluster {
    admin_url: String,
    /// With `ROWLOCK_TEST_CITUS_URL`: the Citus workers, as `(host, port)`. Every test database
    /// exists on each of them too, with the Citus extension, and rowlock distributes its tables.
    pub(super) citus_workers: Vec<(String, u16)>,
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

fn host_port(url: &str) -> (String, u16) {
    let cfg: tokio_postgres::Config = url.parse().expect("admin URL parses");
    let host = match cfg.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        _ => "127.0.0.1".into(),
    };
    (host, cfg.get_ports().first().copied().unwrap_or(5432))
}

static CLUSTER: OnceLock<TestCluster> = OnceLock::new();

pub(super) fn cluster() -> &'static TestCluster {
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
                    let workers = rt.block_on(citus::workers(&url));
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

/// The port of the test cluster's PostgreSQL.
pub fn database_port() -> u16 {
    let cfg: tokio_postgres::Config = cluster().admin_url.parse().expect("admin URL parses");
    cfg.get_ports().first().copied().unwrap_or(5432)
}

/// A fresh database for one test, on every server of the cluster; answers its URL.
pub(super) async fn create_database(name: &str) -> String {
    let cluster = cluster();
    cluster.create_database(name).await;
    cluster.url(name)
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

/// Drops a test's database on every server, from a thread of its own (a blocking `Drop` must not
/// wait for the test's runtime): WITH (FORCE) ends the pool's sessions.
pub(super) fn drop_database(db: String) {
    // On Citus the coordinator's copy first (it has sessions to the workers' copies).
    let servers = cluster().servers();
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
