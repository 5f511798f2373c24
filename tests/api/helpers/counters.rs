//! Counters: create, read, increment (plain, guarded by `If-Match` or a fencing token), and the
//! database-side tools the counter tests use — a row held from `psql`, injected failures.

use std::future::Future;

use serde_json::{json, Value};
use tokio::task::JoinHandle;

use super::{allow_triggers, skipped_on_citus, spawn_app, TestApp};

impl TestApp {
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

    /// `DELETE /counters/{name}`.
    pub async fn delete_counter(&self, name: &str) -> reqwest::Response {
        let r = self.http.delete(self.url(&format!("/counters/{name}")));
        r.send().await.expect("DELETE counter")
    }

    /// `POST /counters/{name}/increment?{query}` with `{"by": by}`. The request is sent at once
    /// and the answer awaited apart from `self`, so it can be spawned to wait in the background.
    pub fn increment(
        &self,
        name: &str,
        query: &str,
        by: i64,
    ) -> impl Future<Output = reqwest::Response> + Send + 'static {
        let sent = self
            .http
            .post(self.url(&format!("/counters/{name}/increment?{query}")))
            .json(&json!({ "by": by }))
            .send();
        async move { sent.await.expect("POST increment") }
    }

    /// `POST /counters/{name}/increment?{query}` with no body (so by 1), in the background;
    /// answers its status.
    pub fn spawn_bare_increment(&self, name: &str, query: &str) -> JoinHandle<u16> {
        let sent = self
            .http
            .post(self.url(&format!("/counters/{name}/increment?{query}")))
            .send();
        tokio::spawn(async move { sent.await.expect("POST increment").status().as_u16() })
    }

    /// A `POST /counters/{name}/increment` with `{"by": by}`, to send later.
    pub fn increment_request(&self, name: &str, by: i64) -> reqwest::RequestBuilder {
        self.http
            .post(self.url(&format!("/counters/{name}/increment")))
            .json(&json!({ "by": by }))
    }

    /// `POST /counters/{name}/increment` with `{"by": by}` and `If-Match: "{version}"`.
    pub async fn increment_if_match(&self, name: &str, version: i64, by: i64) -> reqwest::Response {
        self.http
            .post(self.url(&format!("/counters/{name}/increment")))
            .header("If-Match", format!("\"{version}\""))
            .json(&json!({ "by": by }))
            .send()
            .await
            .expect("POST increment with If-Match")
    }

    /// `POST /counters/{name}/increment` with `{"by": 1}` and `Fencing-Token: key=token`.
    pub async fn fenced_increment(&self, name: &str, key: &str, token: i64) -> reqwest::Response {
        self.http
            .post(self.url(&format!("/counters/{name}/increment")))
            .header("fencing-token", format!("{key}={token}"))
            .json(&json!({"by": 1}))
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

    /// A plain connection holding `name`'s row in an open transaction (`BEGIN; SELECT … FOR
    /// UPDATE`, as an operator in `psql` would); `COMMIT` or `ROLLBACK` on it lets go.
    pub async fn hold_row(&self, name: &str) -> tokio_postgres::Client {
        let holder = self.pg().await;
        holder.batch_execute("BEGIN").await.expect("BEGIN");
        holder
            .execute(
                "SELECT * FROM counters WHERE name = $1 FOR UPDATE",
                &[&name],
            )
            .await
            .expect("hold the row");
        holder
    }

    /// Makes every write of counter `name` sleep `seconds` in PostgreSQL (a trigger).
    pub async fn slow_writes_of(&self, name: &str, seconds: f64) {
        let pg = self.pg().await;
        allow_triggers(&pg).await;
        // One statement per message: Citus passes each on to the workers on its own.
        pg.batch_execute(&format!(
            "CREATE FUNCTION slow_write() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN PERFORM pg_sleep({seconds}); RETURN NEW; END $$"
        ))
        .await
        .expect("create the sleeping function");
        pg.batch_execute(&format!(
            "CREATE TRIGGER slow_write BEFORE UPDATE ON counters FOR EACH ROW
             WHEN (NEW.name = '{name}') EXECUTE FUNCTION slow_write()"
        ))
        .await
        .expect("create the sleeping trigger");
    }

    /// Installs a trigger on `counters` that raises `sqlstate` on the first `failures` updates.
    pub async fn fail_updates(&self, sqlstate: &str, failures: i64) {
        let pg = self.pg().await;
        pg.batch_execute(&format!(
            "CREATE SEQUENCE injected_failures;
             CREATE FUNCTION inject_failure() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN
               -- nextval is not rolled back with the failed transaction: it counts attempts.
               IF nextval('injected_failures') <= {failures} THEN
                 RAISE EXCEPTION 'injected' USING ERRCODE = '{sqlstate}';
               END IF;
               RETURN NEW;
             END $$;
             CREATE TRIGGER inject_failure BEFORE UPDATE ON counters
               FOR EACH ROW EXECUTE FUNCTION inject_failure();"
        ))
        .await
        .expect("install the failing trigger");
    }
}

/// rowlock with the counter `c` at 0 whose first `failures` updates raise `sqlstate` (see
/// [`TestApp::fail_updates`]); `None`, the test skipped, on Citus, where the trigger's sequence
/// would live on one node only.
pub async fn spawn_app_failing_updates(sqlstate: &str, failures: i64) -> Option<TestApp> {
    if skipped_on_citus("failures are injected by a trigger on one node") {
        return None;
    }
    let app = spawn_app().await;
    app.create_counter("c", 0).await;
    app.fail_updates(sqlstate, failures).await;
    Some(app)
}
