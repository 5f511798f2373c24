//! `idempotency_keys` (its statements are [`sql`]'s): the first completed response of a POST
//! with an `Idempotency-Key` is stored in the same transaction as its mutation, and replayed for
//! retries.
//!
//! Inside the request's transaction rowlock first takes a transaction-scoped advisory lock on the
//! key with `pg_try_advisory_xact_lock`: if another request holds it, that request is still
//! running and this one is answered 409 `idempotency_in_flight` at once (nobody waits). Holding
//! the lock, it reads the stored response: same request → replay without touching anything;
//! another request → 422. Otherwise the mutation runs and its response is inserted before
//! `COMMIT`, so the response exists if and only if the mutation committed. Failed requests roll
//! back and store nothing: a retry runs them again, which is safe because nothing was applied.

use std::time::Duration;

use sha2::{Digest, Sha256};

use super::tx::Tx;
use crate::error::ApiError;

pub(crate) mod sql;

use sql::{RECORD, STORED, TRY_LOCK};

/// A response as stored and replayed: status, the headers that matter, and the exact body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The HTTP status.
    pub status: u16,
    /// The headers replayed with it (such as `etag`), as name and value.
    pub headers: Vec<(String, String)>,
    /// The body, byte for byte.
    pub body: Vec<u8>,
    /// True when this reply is a replay of a stored one.
    pub replayed: bool,
}

impl Reply {
    /// A JSON reply.
    pub fn json(status: u16, value: &impl serde::Serialize) -> Result<Self, ApiError> {
        Ok(Self {
            status,
            headers: Vec::new(),
            body: serde_json::to_vec(value).map_err(anyhow::Error::from)?,
            replayed: false,
        })
    }

    /// A reply without a body (204).
    pub fn empty(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: Vec::new(),
            replayed: false,
        }
    }

    /// Adds a header to the reply.
    pub fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_owned(), value.into()));
        self
    }
}

/// An `Idempotency-Key` with the fingerprint of the request that carried it.
#[derive(Debug, Clone)]
pub struct Idempotency {
    /// The key as the client sent it.
    pub key: String,
    /// SHA-256 of method, path with query, and body: a retry with another request is refused.
    pub request_hash: Vec<u8>,
    /// How long the answer stored under the key is kept.
    pub retention: Duration,
}

impl Idempotency {
    /// Fingerprints method, path with query, and body.
    pub fn new(
        key: String,
        method: &str,
        path_and_query: &str,
        body: &[u8],
        retention: Duration,
    ) -> Self {
        let mut hash = Sha256::new();
        for part in [method.as_bytes(), path_and_query.as_bytes(), body] {
            hash.update((part.len() as u64).to_be_bytes());
            hash.update(part);
        }
        Self {
            key,
            request_hash: hash.finalize().to_vec(),
            retention,
        }
    }
}

/// Claims the key for this transaction; returns the stored reply to replay, if there is one.
pub async fn claim(tx: &Tx, idem: &Idempotency) -> Result<Option<Reply>, ApiError> {
    let (lock, stored) = (tx.prepare(TRY_LOCK).await?, tx.prepare(STORED).await?);
    let locked: bool = tx
        .client()
        .query_one(&lock, &[&idem.key])
        .await?
        .get("locked");
    if !locked {
        return Err(ApiError::IdempotencyInFlight);
    }
    let Some(row) = tx.client().query_opt(&stored, &[&idem.key]).await? else {
        return Ok(None);
    };
    let (hash, reply) = stored_reply(&row)?;
    replay(idem, &hash, &reply).map(Some)
}

/// A stored answer as read by a statement selecting `request_hash, status, headers, body`:
/// the fingerprint of the request that stored it, and the answer to replay.
pub(crate) fn stored_reply(row: &tokio_postgres::Row) -> Result<(Vec<u8>, Reply), ApiError> {
    let status: i16 = row.get("status");
    let headers: serde_json::Value = row.get("headers");
    let reply = Reply {
        status: status as u16,
        headers: serde_json::from_value(headers).map_err(anyhow::Error::from)?,
        body: row.get("body"),
        replayed: true,
    };
    Ok((row.get("request_hash"), reply))
}

/// The stored answer for a retry of the request that stored it (by `hash`); 422 for another.
pub(crate) fn replay(idem: &Idempotency, hash: &[u8], stored: &Reply) -> Result<Reply, ApiError> {
    if hash != idem.request_hash.as_slice() {
        return Err(ApiError::Invalid(format!(
            "Idempotency-Key '{}' was used for a different request",
            idem.key
        )));
    }
    Ok(stored.clone())
}

/// Largest reply stored under an idempotency key.
pub const MAX_STORED_REPLY_BYTES: usize = 256 * 1024;
/// The header that says a reply was too large to be stored under its key.
pub const NOT_STORED_HEADER: &str = "idempotency-not-stored";

/// Stores `reply` under the key, inside the transaction of the mutation it answers.
///
/// A reply over [`MAX_STORED_REPLY_BYTES`] is not stored (a job claim of many large payloads
/// would otherwise sit in the table for the whole retention): the reply says so in an
/// `idempotency-not-stored` header, and a retry with the key runs again.
pub async fn record(tx: &Tx, idem: &Idempotency, reply: &mut Reply) -> Result<(), ApiError> {
    if reply.body.len() > MAX_STORED_REPLY_BYTES {
        reply.headers.push((
            NOT_STORED_HEADER.to_owned(),
            format!("the reply is over {MAX_STORED_REPLY_BYTES} bytes"),
        ));
        return Ok(());
    }
    let stmt = tx.prepare(RECORD).await?;
    let headers = serde_json::to_value(&reply.headers).map_err(anyhow::Error::from)?;
    let status = reply.status as i16;
    let retention = idem.retention.as_secs_f64();
    let _ = tx
        .client()
        .execute(
            &stmt,
            &[
                &idem.key,
                &idem.request_hash,
                &status,
                &headers,
                &reply.body,
                &retention,
            ],
        )
        .await?;
    Ok(())
}
