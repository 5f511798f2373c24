//! Transactions: `POST /transactions`, and the accounts the transfer tests move value between.

use serde_json::{json, Value};

use super::TestApp;

impl TestApp {
    /// `POST /transactions?{query}` with `body`.
    pub async fn post_transaction(&self, query: &str, body: Value) -> reqwest::Response {
        self.post(&format!("/transactions?{query}"), body).await
    }

    /// Creates each of `names` with `balance` and a lower bound of 0.
    pub async fn create_accounts(&self, names: &[&str], balance: i64) {
        for name in names {
            let r = self
                .put_counter(name, json!({"value": balance, "min": 0}))
                .await;
            assert_eq!(r.status().as_u16(), 201, "create account {name}");
        }
    }
}
