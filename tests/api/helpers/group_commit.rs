//! Group commit: a server with one group slot, requests sent in the background, and a chosen set
//! of requests put into ONE group by holding the rows they wait for.
//!
//! To put chosen requests into one group, a test holds a counter's row from a plain connection
//! (as an operator in `psql` would), sends one request that waits for it in PostgreSQL, then the
//! requests it wants grouped: they queue in rowlock behind that one (their row is in a group in
//! the database), and `rowlock_group_queued` says when they all have. Releasing the row lets the
//! first group commit and the queued requests go as the next group.

use rowlock::hammer::{HammerArgs, LockArg};
use serde_json::{json, Value};
use tokio::task::JoinHandle;

use super::{json_of, spawn_app_with, TestApp};

/// A server with one group slot and the counters `x` and `y` at 0.
pub async fn spawn_one_slot_app() -> TestApp {
    let app = spawn_app_with(|args| args.group.group_concurrency = 1).await;
    app.create_counter("x", 0).await;
    app.create_counter("y", 0).await;
    app
}

/// Sends `request` in the background; answers its status and JSON body (null if none).
pub fn spawn_request(request: reqwest::RequestBuilder) -> JoinHandle<(u16, Value)> {
    tokio::spawn(async move { json_of(request.send().await.expect("send a request")).await })
}

impl TestApp {
    /// `POST` `path` with `body` (and an `Idempotency-Key`) in the background; answers status and
    /// JSON body.
    pub fn spawn_post(
        &self,
        path: &str,
        body: Value,
        key: Option<&str>,
    ) -> JoinHandle<(u16, Value)> {
        let mut request = self.http.post(self.url(path)).json(&body);
        if let Some(key) = key {
            request = request.header("idempotency-key", key);
        }
        spawn_request(request)
    }

    /// The hammer's settings for 64 clients × 200 requests on the counter `hot` with `lock`,
    /// checked for linearizability.
    pub fn hot_hammer_args(&self, lock: LockArg) -> HammerArgs {
        let mut args = HammerArgs::new(&self.address);
        args.counter = "hot".into();
        args.concurrency = 64;
        args.requests = Some(64 * 200);
        args.lock = lock;
        args.check_linearizable = true;
        args
    }

    /// Waits (bounded) until `n` requests wait in rowlock for a group.
    pub async fn wait_for_queued(&self, n: usize) {
        self.wait_until_metric("rowlock_group_queued", n as f64)
            .await;
    }

    /// Groups that carried more than one request.
    pub async fn shared_groups(&self) -> f64 {
        let all = self.metric("rowlock_group_size_count").await;
        let alone = self.metric(r#"rowlock_group_size_bucket{le="1.0"}"#).await;
        all - alone
    }

    /// On a [`spawn_one_slot_app`] with `x` and `y`: `x` held from a plain connection, and
    /// `requests` (sent in order) waiting for `x` in PostgreSQL as ONE group: they queue behind
    /// a request waiting for `y` (held too), and go together once `y` is released. Returns the
    /// connection holding `x` and the requests' answers to come.
    pub async fn one_group_waiting_for_x(
        &self,
        requests: Vec<reqwest::RequestBuilder>,
    ) -> (tokio_postgres::Client, Vec<JoinHandle<(u16, Value)>>) {
        let holds_x = self.hold_row("x").await;
        let holds_y = self.hold_row("y").await;
        let on_y = self.spawn_post("/counters/y/increment", json!({"by": 1}), None);
        self.wait_for_lock_waiters(1).await;
        let n = requests.len();
        let answers = requests.into_iter().map(spawn_request).collect();
        self.wait_for_queued(n).await;
        holds_y.batch_execute("COMMIT").await.expect("COMMIT");
        assert_eq!(on_y.await.expect("the request on y").0, 200);
        self.wait_for_lock_waiters(1).await;
        (holds_x, answers)
    }
}
