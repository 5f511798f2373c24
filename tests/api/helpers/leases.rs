//! Leases (`/locks/{key}`): acquire, renew, release, read, and the lock's row and waiters.

use std::future::Future;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::TestApp;

impl TestApp {
    /// `POST /locks/{key}` with `{"owner", "ttl_ms", "wait_ms"}`. Sent apart from `self`, so
    /// it can be spawned to wait in the background.
    pub fn acquire_lock(
        &self,
        key: &str,
        owner: &str,
        ttl_ms: u64,
        wait_ms: u64,
    ) -> impl Future<Output = reqwest::Response> + Send + 'static {
        let body = json!({"owner": owner, "ttl_ms": ttl_ms, "wait_ms": wait_ms});
        let sent = self
            .http
            .post(self.url(&format!("/locks/{key}")))
            .json(&body)
            .send();
        async move { sent.await.expect("POST lock") }
    }

    /// Acquires a free lock and returns its token.
    pub async fn granted_lock(&self, key: &str, owner: &str, ttl_ms: u64) -> i64 {
        let r = self.acquire_lock(key, owner, ttl_ms, 0).await;
        assert_eq!(r.status().as_u16(), 201, "acquire {key} for {owner}");
        r.json::<Value>().await.unwrap()["token"].as_i64().unwrap()
    }

    /// `PUT /locks/{key}` with `{"token", "ttl_ms"}`.
    pub async fn renew_lock(&self, key: &str, token: i64, ttl_ms: u64) -> reqwest::Response {
        self.http
            .put(self.url(&format!("/locks/{key}")))
            .json(&json!({"token": token, "ttl_ms": ttl_ms}))
            .send()
            .await
            .expect("PUT lock")
    }

    /// `DELETE /locks/{key}` with `{"token"}`.
    pub async fn release_lock(&self, key: &str, token: i64) -> reqwest::Response {
        self.http
            .delete(self.url(&format!("/locks/{key}")))
            .json(&json!({"token": token}))
            .send()
            .await
            .expect("DELETE lock")
    }

    /// `GET /locks/{key}`, expected 200; its body.
    pub async fn lock_state(&self, key: &str) -> Value {
        let r = self
            .http
            .get(self.url(&format!("/locks/{key}")))
            .send()
            .await
            .expect("GET lock");
        assert_eq!(r.status().as_u16(), 200);
        r.json().await.unwrap()
    }

    /// `(owner, token, live)` of the lock's row, straight from the database.
    pub async fn lock_row(&self, key: &str) -> (Option<String>, i64, bool) {
        let row = self
            .pg()
            .await
            .query_one(
                "SELECT owner, token, owner IS NOT NULL AND expires_at > now()
                   FROM locks WHERE key = $1",
                &[&key],
            )
            .await
            .expect("read lock");
        (
            row.get(0),
            row.get(1),
            row.get::<_, Option<bool>>(2) == Some(true),
        )
    }

    /// Waits (bounded) until the lock's lease has expired by the database clock.
    pub async fn wait_for_lock_expiry(&self, key: &str) {
        let sql = format!("SELECT count(*) FROM locks WHERE key = '{key}' AND expires_at <= now()");
        self.wait_until(&sql, 1).await;
    }

    /// Waits (bounded) until `n` acquisitions of `key` wait in this rowlock.
    pub async fn wait_for_lock_waiting(&self, key: &str, n: u64) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let waiting = self.lock_state(key).await["waiting"].as_u64().unwrap();
            if waiting == n {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{waiting} waiting on {key}, not {n}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}
