//! Per-row admission: how many transactions on one row rowlock lets into PostgreSQL at once.
//!
//! Sixty-four requests on one hot counter gain nothing from sixty-four connections: only one can
//! hold the row lock, the others queue inside PostgreSQL, and every hand-over of a contended row
//! lock wakes and reschedules backends. So requests for the same row queue here instead, in
//! arrival order (tokio's semaphore is fair), and only a few reach PostgreSQL — which leaves the
//! rest of the pool to requests on other rows. A request waits here at most as long as it would
//! have waited for the row lock (its lock timeout), and is then answered 423 like one that waited
//! in PostgreSQL.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The queues of the rows that have requests in flight.
pub struct Admission {
    per_row: usize,
    rows: Mutex<HashMap<String, Arc<Semaphore>>>,
}

/// A place among the transactions running on one row; leaving frees it for the next in line.
pub struct Permit {
    permit: Option<OwnedSemaphorePermit>,
    row: String,
    admission: Arc<Admission>,
}

impl Admission {
    /// At most `per_row` transactions per row at once (0 turns admission off).
    pub fn new(per_row: usize) -> Arc<Self> {
        Arc::new(Self {
            per_row,
            rows: Mutex::new(HashMap::new()),
        })
    }

    /// Waits for a place on `row` for at most `timeout`; `None` when the wait ran out.
    pub async fn enter(self: &Arc<Self>, row: &str, timeout: Duration) -> Option<Permit> {
        if self.per_row == 0 {
            return Some(Permit {
                permit: None,
                row: String::new(),
                admission: self.clone(),
            });
        }
        let semaphore = self
            .lock()
            .entry(row.to_owned())
            .or_insert_with(|| Arc::new(Semaphore::new(self.per_row)))
            .clone();
        let acquired = tokio::time::timeout(timeout, semaphore.acquire_owned()).await;
        // Even when the wait timed out, dropping this cleans up the row's entry: no other
        // reference to the semaphore is left here (the wait's own is gone with the wait).
        let mut permit = Permit {
            permit: None,
            row: row.to_owned(),
            admission: self.clone(),
        };
        match acquired {
            Ok(Ok(p)) => {
                permit.permit = Some(p);
                Some(permit)
            }
            _ => None,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Semaphore>>> {
        // Never held across an await; every update leaves the map consistent.
        self.rows.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if self.admission.per_row == 0 {
            return;
        }
        drop(self.permit.take());
        let mut rows = self.admission.lock();
        // Only the map still refers to it: nobody holds or waits for this row any more.
        if rows
            .get(&self.row)
            .is_some_and(|s| Arc::strong_count(s) == 1)
        {
            let _ = rows.remove(&self.row);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn at_most_per_row_enter_and_the_next_one_waits_its_turn() {
        let admission = Admission::new(2);
        let a = admission.enter("hot", Duration::from_secs(1)).await;
        let b = admission.enter("hot", Duration::from_secs(1)).await;
        assert!(a.is_some() && b.is_some(), "two enter at once");
        let c = admission.enter("hot", Duration::from_millis(20)).await;
        assert!(
            c.is_none(),
            "a third transaction on the row waits and times out"
        );
        assert!(admission
            .enter("cold", Duration::from_millis(20))
            .await
            .is_some());
        drop(a);
        assert!(admission
            .enter("hot", Duration::from_millis(20))
            .await
            .is_some());
    }

    #[tokio::test]
    async fn rows_nobody_uses_are_forgotten() {
        let admission = Admission::new(1);
        let permit = admission.enter("x", Duration::from_secs(1)).await;
        assert_eq!(admission.lock().len(), 1);
        drop(permit);
        assert!(admission
            .enter("y", Duration::from_millis(1))
            .await
            .is_some());
        assert_eq!(admission.lock().len(), 0);
    }
}
