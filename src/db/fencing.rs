//! Fencing tokens checked inside a mutation's own transaction.
//!
//! A client that holds a lease sends `Fencing-Token: <key>=<token>` with its writes. Before the
//! write, in the same transaction, rowlock locks the lease rows `FOR SHARE` (in key order, so two
//! writers can never deadlock on them, and a concurrent grant — which takes `FOR UPDATE` — waits
//! for the write to commit or the write waits for the grant) and refuses the write with 409
//! `stale_token` unless each presented token is still the current, unexpired grant of its key.
//! That closes the gap of a client that paused past its lease: its late write is refused by the
//! storage itself, whatever the client believes.

use super::citus;
use super::leases::sql::{CHECK, CHECK_CHANGING, CHECK_ONE, CHECK_OWN};
use super::tx::Tx;
use crate::error::ApiError;

/// One `Fencing-Token: <key>=<token>` a request presented.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    /// The lease's key.
    pub key: String,
    /// The token the client holds; stale unless it is the key's current, unexpired grant.
    pub token: i64,
}

/// Refuses the transaction unless every fence is the live, current grant of its key.
/// `changing`: the lease the transaction itself changes, if any.
pub async fn check(tx: &Tx, fences: &[Fence], changing: Option<&str>) -> Result<(), ApiError> {
    if fences.is_empty() {
        return Ok(());
    }
    let keys: Vec<&str> = fences.iter().map(|f| f.key.as_str()).collect();
    if citus::on() {
        return verify(fences, &lock_each(tx, keys, changing).await?);
    }
    let rows = match changing {
        None => {
            let stmt = tx.prepare(CHECK).await?;
            tx.client().query(&stmt, &[&keys]).await?
        }
        Some(own) => {
            let stmt = tx.prepare(CHECK_CHANGING).await?;
            tx.client().query(&stmt, &[&keys, &own]).await?
        }
    };
    verify(fences, &rows)
}

/// On Citus: each lease row by a single-row statement, in key order — `FOR UPDATE` for the
/// lease the transaction changes, `FOR SHARE` for the others.
async fn lock_each(
    tx: &Tx,
    mut keys: Vec<&str>,
    changing: Option<&str>,
) -> Result<Vec<tokio_postgres::Row>, ApiError> {
    keys.extend(changing);
    keys.sort_unstable();
    keys.dedup();
    let (share, update) = (tx.prepare(CHECK_ONE).await?, tx.prepare(CHECK_OWN).await?);
    let mut rows = Vec::with_capacity(keys.len());
    for run in keys.chunk_by(|a, b| (Some(*a) == changing) == (Some(*b) == changing)) {
        let stmt = match Some(run[0]) == changing {
            true => &update,
            false => &share,
        };
        rows.extend(citus::lock_each(tx.client(), stmt, run).await?);
    }
    Ok(rows)
}

fn verify(fences: &[Fence], rows: &[tokio_postgres::Row]) -> Result<(), ApiError> {
    for fence in fences {
        let row = rows.iter().find(|r| r.get::<_, &str>("key") == fence.key);
        let Some(row) = row else {
            return Err(ApiError::StaleToken(format!(
                "lock '{}' has never been granted",
                fence.key
            )));
        };
        let (current, live): (i64, bool) = (row.get("token"), row.get("live"));
        if current != fence.token {
            return Err(ApiError::StaleToken(format!(
                "fencing token {} for lock '{}' is stale: the current token is {current}",
                fence.token, fence.key
            )));
        }
        if !live {
            return Err(ApiError::StaleToken(format!(
                "the lease of lock '{}' with token {} has expired or been released",
                fence.key, fence.token
            )));
        }
    }
    Ok(())
}
