//! Several `rowlock serve` processes on one database, as they run behind pgbouncer in
//! transaction pooling mode, and the pgbouncer in front of a test's database.

use std::future::Future;
use std::process::Child;
use std::time::Duration;

use rowlock::local_cluster::Pgbouncer;
use serde_json::Value;

use super::{free_port, json_of, serve_process, TestApp};

/// Running rowlock processes, addressed round-robin; killed when dropped.
pub struct Instances {
    bases: Vec<String>,
    children: Vec<Child>,
    pub http: reqwest::Client,
}

impl Instances {
    /// `n` rowlock processes on `url` with the statement cache off; the first listens for
    /// notifications on the direct `listen_url`, the others poll.
    pub async fn start(n: usize, url: &str, listen_url: &str) -> Self {
        let (mut bases, mut children) = (Vec::new(), Vec::new());
        for i in 0..n {
            let port = free_port();
            let mut env = vec![
                ("DATABASE_URL", url),
                ("ROWLOCK_STATEMENT_CACHE", "off"),
                ("ROWLOCK_POOL_SIZE", "8"),
            ];
            if i == 0 {
                env.push(("ROWLOCK_LISTEN_DATABASE_URL", listen_url));
            }
            children.push(serve_process(port, &env, Duration::from_secs(30)).await);
            bases.push(format!("http://127.0.0.1:{port}"));
        }
        Self {
            bases,
            children,
            http: reqwest::Client::new(),
        }
    }

    /// The base URLs of the instances.
    pub fn urls(&self) -> Vec<String> {
        self.bases.clone()
    }

    /// `path` on instance `i` (round-robin: any `i` names one).
    pub fn at(&self, i: usize, path: &str) -> String {
        format!("{}{path}", self.bases[i % self.bases.len()])
    }

    /// `POST path` with `body` to instance `i`; answers status and JSON body. Sent apart from
    /// `self`, so it can be spawned.
    pub fn post(
        &self,
        i: usize,
        path: &str,
        body: Value,
    ) -> impl Future<Output = (u16, Value)> + Send + 'static {
        let sent = self.http.post(self.at(i, path)).json(&body).send();
        async move { json_of(sent.await.expect("POST")).await }
    }

    /// `PUT path` with `body` to instance `i`; answers its status.
    pub async fn put(&self, i: usize, path: &str, body: Value) -> u16 {
        let r = self.http.put(self.at(i, path)).json(&body).send().await;
        r.expect("PUT").status().as_u16()
    }
}

impl Drop for Instances {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl TestApp {
    /// pgbouncer in transaction mode in front of the test database, with six server
    /// connections: far fewer than the instances' pools.
    pub async fn start_pgbouncer(&self) -> Pgbouncer {
        Pgbouncer::start(&self.db_url, 6)
            .await
            .expect("start pgbouncer (apt-get install pgbouncer)")
    }
}
