//! Observability: `/metrics` samples, and waiting for what rowlock's sessions do in PostgreSQL.

use std::time::{Duration, Instant};

use super::{waiting_on_a_lock, TestApp};

impl TestApp {
    /// `GET /metrics`'s text.
    pub async fn metrics_text(&self) -> String {
        let r = self.http.get(self.url("/metrics")).send().await;
        r.expect("GET /metrics").text().await.expect("metrics text")
    }

    /// The value of one sample of rowlock's `/metrics` (0 when absent).
    pub async fn metric(&self, sample: &str) -> f64 {
        let text = self.metrics_text().await;
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

    /// Waits (bounded) until none of rowlock's sessions is left in a transaction or waiting on
    /// a lock.
    pub async fn wait_for_no_session_left_open(&self) {
        let left = format!(
            "SELECT count(*) FROM pg_stat_activity
              WHERE datname = current_database() AND application_name LIKE 'rowlock%'
                AND (state LIKE 'idle in transaction%' OR {})",
            waiting_on_a_lock()
        );
        self.wait_until(&left, 0).await;
    }
}
