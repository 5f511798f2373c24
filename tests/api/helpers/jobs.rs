//! Jobs and queues: enqueue, claim, and a job's row straight from the database.

use serde_json::{json, Value};

use super::TestApp;

impl TestApp {
    /// Enqueues `payload` with `extra` fields on `queue`; returns the new id.
    pub async fn enqueue(&self, queue: &str, payload: Value, extra: Value) -> i64 {
        let mut body = json!({ "payload": payload });
        if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
            body.extend(extra.clone());
        }
        let r = self.post(&format!("/queues/{queue}/jobs"), body).await;
        assert_eq!(r.status().as_u16(), 201, "enqueue");
        let body: Value = r.json().await.expect("enqueue body");
        body["id"].as_i64().expect("id")
    }

    /// Claims on `queue` and expects 200; returns the claimed jobs.
    pub async fn claim(&self, queue: &str, body: Value) -> Vec<Value> {
        let r = self.post(&format!("/queues/{queue}/claim"), body).await;
        assert_eq!(r.status().as_u16(), 200, "claim");
        r.json().await.expect("claimed jobs")
    }

    /// `(state, attempt)` of job `id`, straight from the database.
    pub async fn job_state(&self, id: i64) -> (String, i32) {
        let row = self
            .pg()
            .await
            .query_one("SELECT state, attempt FROM jobs WHERE id = $1", &[&id])
            .await
            .expect("job row");
        (row.get(0), row.get(1))
    }

    /// A plain connection holding job `id`'s row in an open transaction.
    pub async fn hold_job(&self, id: i64) -> tokio_postgres::Client {
        let holder = self.pg().await;
        holder.batch_execute("BEGIN").await.expect("BEGIN");
        holder
            .execute("SELECT * FROM jobs WHERE id = $1 FOR UPDATE", &[&id])
            .await
            .expect("hold the job");
        holder
    }
}
