//! The `locks` table (its statements are [`sql`]'s): leases (a distributed lock per key) with
//! fencing tokens.
//!
//! A key has one row, kept after release and expiry so that its token only ever grows. Every
//! change of a lease first locks that row `FOR UPDATE` (`NOWAIT` when the caller will not wait),
//! so grants, renewals, releases and fenced writes (which hold it `FOR SHARE`, see
//! [`super::fencing`]) of one key are serialised by PostgreSQL itself. A grant takes
//! `nextval('lock_tokens')`: taken under the row lock, after the previous grant committed, it is
//! greater than every earlier token of the key, whatever happened in between (expiry, release,
//! restart). Expiry is compared with the database's `now()`, never a client's clock.
//!
//! A release sends `pg_notify('rowlock_locks', key)` in its own transaction (delivered at commit)
//! so waiting acquisitions retry at once; see [`waiters`] for the waiting side and [`acquire`]
//! for the retry loop.

pub mod acquire;
pub(crate) mod sql;
pub mod waiters;

use serde::Serialize;
use tokio_postgres::Row;

use super::tx::Tx;
use crate::db::statements::Conn;
use crate::error::ApiError;

use sql::{CREATE, GRANT, LOCK, LOCK_NOWAIT, NOTIFY, RELEASE, RENEW, SELECT};
pub use waiters::{Leases, CHANNEL};

/// A lease as granted or renewed.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Lease {
    /// The lease's key.
    pub key: String,
    /// The owner it is granted to, as the acquisition named it.
    pub owner: String,
    /// The fencing token of this grant: greater than every earlier grant's of the key.
    pub token: i64,
    /// RFC 3339, UTC, from the database clock.
    pub acquired_at: String,
    /// When the lease runs out unless renewed: RFC 3339, UTC, from the database clock.
    pub expires_at: String,
}

/// A lock as `GET /locks/{key}` shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct LockState {
    /// The lock's key.
    pub key: String,
    /// `null` once released; still shown after expiry (see `held`).
    pub owner: Option<String>,
    /// The token of the latest grant.
    pub token: i64,
    /// When the latest grant was made (RFC 3339); `None` before the first grant.
    pub acquired_at: Option<String>,
    /// When the latest grant runs out, or ran out or was released (RFC 3339); `None` before
    /// the first grant.
    pub expires_at: Option<String>,
    /// Whether the latest grant is live now (not released, not expired).
    pub held: bool,
    /// Acquisitions waiting for this key in the rowlock instance that answered.
    pub waiting: usize,
}

/// Why an acquisition was not granted: someone else holds a live lease.
#[derive(Debug, Clone)]
pub struct Held {
    /// The owner of the live lease.
    pub owner: String,
    /// When it runs out unless renewed (RFC 3339).
    pub expires_at: String,
    /// Milliseconds until the lease expires, by the database clock.
    pub remaining_ms: i64,
}

/// The current state of a locked row.
struct Current {
    owner: Option<String>,
    token: i64,
    live: bool,
    expires_at: Option<String>,
    remaining_ms: i64,
}

fn current(row: &Row) -> Current {
    Current {
        owner: row.get("owner"),
        token: row.get("token"),
        live: row.get::<_, Option<bool>>("live").unwrap_or(false),
        expires_at: row.get("expires_at"),
        remaining_ms: row.get("remaining_ms"),
    }
}

/// Locks the row of `key` (creating it for a first acquisition when `create`); `None` if there
/// is none. `wait = false` is `NOWAIT`: a row another transaction is changing is 423 at once.
async fn lock_row(
    tx: &Tx,
    key: &str,
    wait: bool,
    create: bool,
) -> Result<Option<Current>, ApiError> {
    let stmt = tx.prepare(if wait { LOCK } else { LOCK_NOWAIT }).await?;
    let locked = |e| busy(e, key);
    if let Some(row) = tx
        .client()
        .query_opt(&stmt, &[&key])
        .await
        .map_err(locked)?
    {
        return Ok(Some(current(&row)));
    }
    if !create {
        return Ok(None);
    }
    let insert = tx.prepare(CREATE).await?;
    // Racing another first acquisition, this waits for it to commit and then inserts nothing.
    let _ = tx
        .client()
        .execute(&insert, &[&key])
        .await
        .map_err(locked)?;
    let row = tx
        .client()
        .query_one(&stmt, &[&key])
        .await
        .map_err(locked)?;
    Ok(Some(current(&row)))
}

/// Grants `key` to `owner` for `ttl_ms` unless someone else holds a live lease on it. The same
/// owner acquiring again is a re-grant with a new token (its old token is fenced from then on).
pub async fn acquire(
    tx: &Tx,
    key: &str,
    owner: &str,
    ttl_ms: u64,
    wait: bool,
) -> Result<Result<Lease, Held>, ApiError> {
    let Some(now) = lock_row(tx, key, wait, true).await? else {
        return Err(ApiError::Internal(anyhow::anyhow!("lock row vanished")));
    };
    if let (true, Some(holder)) = (now.live, &now.owner) {
        if holder != owner {
            return Ok(Err(Held {
                owner: holder.clone(),
                expires_at: now.expires_at.unwrap_or_default(),
                remaining_ms: now.remaining_ms,
            }));
        }
    }
    let grant = tx.prepare(GRANT).await?;
    let secs = ttl_ms as f64 / 1000.0;
    let row = tx
        .commit_with(tx.client().query_one(&grant, &[&key, &owner, &secs]))
        .await?;
    Ok(Ok(Lease {
        key: key.to_owned(),
        owner: owner.to_owned(),
        token: row.get("token"),
        acquired_at: row.get("acquired_at"),
        expires_at: row.get("expires_at"),
    }))
}

/// Extends the live lease of `key` held with `token` to `ttl_ms` from now.
pub async fn renew(tx: &Tx, key: &str, token: i64, ttl_ms: u64) -> Result<Lease, ApiError> {
    let now = lock_row(tx, key, true, false).await?;
    let now = check_token(key, token, now)?;
    if !now.live {
        return Err(ApiError::StaleToken(format!(
            "the lease of lock '{key}' with token {token} has expired or been released; acquire it again"
        )));
    }
    let renew = tx.prepare(RENEW).await?;
    let secs = ttl_ms as f64 / 1000.0;
    let row = tx.client().query_one(&renew, &[&key, &secs]).await?;
    // Waiters sleep until the expiry they saw: tell them when it moved earlier.
    if (ttl_ms as i64) < now.remaining_ms {
        notify(tx, key).await?;
    }
    Ok(Lease {
        key: key.to_owned(),
        owner: row.get("owner"),
        token: row.get("token"),
        acquired_at: row.get("acquired_at"),
        expires_at: row.get("expires_at"),
    })
}

/// Releases the lease of `key` granted with `token`. Releasing it again, or after it expired,
/// succeeds as long as nobody was granted the lock since: the caller does not hold it either way.
pub async fn release(tx: &Tx, key: &str, token: i64) -> Result<(), ApiError> {
    let now = lock_row(tx, key, true, false).await?;
    let now = check_token(key, token, now)?;
    if now.owner.is_none() {
        return Ok(());
    }
    let release = tx.prepare(RELEASE).await?;
    let _ = tx.client().execute(&release, &[&key]).await?;
    notify(tx, key).await
}

/// The lock of `key` as it is now, without locking it.
pub async fn get(client: Conn<'_>, key: &str, waiting: usize) -> Result<LockState, ApiError> {
    let stmt = client.prepare(SELECT).await?;
    let row = client
        .query_opt(&stmt, &[&key])
        .await?
        .ok_or_else(|| not_found(key))?;
    Ok(LockState {
        key: row.get("key"),
        owner: row.get("owner"),
        token: row.get("token"),
        held: row.get::<_, Option<bool>>("live").unwrap_or(false),
        acquired_at: row.get("acquired_at"),
        expires_at: row.get("expires_at"),
        waiting,
    })
}

async fn notify(tx: &Tx, key: &str) -> Result<(), ApiError> {
    let stmt = tx.prepare(NOTIFY).await?;
    let _ = tx.client().execute(&stmt, &[&key]).await?;
    Ok(())
}

/// The row must exist and carry `token` as its latest grant.
fn check_token(key: &str, token: i64, now: Option<Current>) -> Result<Current, ApiError> {
    let now = now.ok_or_else(|| not_found(key))?;
    if now.token != token {
        return Err(ApiError::StaleToken(format!(
            "token {token} for lock '{key}' is stale: the current token is {}",
            now.token
        )));
    }
    Ok(now)
}

fn not_found(key: &str) -> ApiError {
    ApiError::NotFound(format!("lock '{key}' has never been granted"))
}

/// Names the lock in "row is locked" errors (`NOWAIT`, or a lock timeout that ran out).
fn busy(e: tokio_postgres::Error, key: &str) -> ApiError {
    ApiError::from(e)
        .on_lock(|| format!("lock '{key}' is being changed by another request right now"))
}
