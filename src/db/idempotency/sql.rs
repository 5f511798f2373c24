//! Every statement on the `idempotency_keys` table.

/// Key `$1`'s transaction-scoped advisory lock, if nobody holds it.
pub(crate) const TRY_LOCK: &str =
    "SELECT pg_try_advisory_xact_lock(hashtextextended($1, 0)) AS locked";
/// The columns [`super::stored_reply`] reads.
macro_rules! stored_columns {
    () => {
        "request_hash, status, headers, body"
    };
}
pub(crate) const STORED: &str = concat!(
    "SELECT ",
    stored_columns!(),
    " FROM idempotency_keys
     WHERE key = $1 AND expires_at > now()"
);
/// A key stored again replaces what it held (an expired record not purged yet).
macro_rules! replace_on_conflict {
    () => {
        "ON CONFLICT (key) DO UPDATE
        SET request_hash = EXCLUDED.request_hash, status = EXCLUDED.status,
            headers = EXCLUDED.headers, body = EXCLUDED.body,
            created_at = EXCLUDED.created_at, expires_at = EXCLUDED.expires_at"
    };
}
pub(crate) const RECORD: &str = concat!(
    "INSERT INTO idempotency_keys (key, request_hash, status, headers, body, expires_at)
     VALUES ($1, $2, $3, $4, $5, now() + make_interval(secs => $6))
     ",
    replace_on_conflict!()
);

/// A group's keys `$1`: each key's advisory lock, if nobody holds it.
pub(crate) const LOCK_KEYS: &str =
    "SELECT k AS key, pg_try_advisory_xact_lock(hashtextextended(k, 0)) AS locked
       FROM unnest((SELECT $1::text[])) AS t(k)";
/// A group's keys' stored answers. Read after the advisory locks are held (a statement of its
/// own, so with a snapshot taken after them): an answer committed by the key's previous holder
/// is seen.
pub(crate) const STORED_KEYS: &str = concat!(
    "SELECT key, ",
    stored_columns!(),
    " FROM idempotency_keys
      WHERE key = ANY((SELECT $1::text[])::text[]) AND expires_at > now()"
);
/// A group's idempotency records (`$4`…`$8`, kept for `$9` seconds) as a CTE named `remembered`.
macro_rules! remembered {
    () => {
        concat!(
            "remembered AS (
        INSERT INTO idempotency_keys (key, request_hash, status, headers, body, expires_at)
        SELECT i.key, i.hash, i.status, i.headers::jsonb, i.body,
               now() + make_interval(secs => $9)
          FROM unnest((SELECT $4::text[]), (SELECT $5::bytea[]), (SELECT $6::smallint[]),
                      (SELECT $7::text[]), (SELECT $8::bytea[]))
               AS i(key, hash, status, headers, body)
        ",
            $crate::db::idempotency::sql::replace_on_conflict!(),
            "
    )"
        )
    };
}
pub(crate) use {remembered, replace_on_conflict};

/// Housekeeping: a batch (`$1`) of the expired keys (keys carry their own expiry).
pub(crate) const PURGE: &str = "DELETE FROM idempotency_keys WHERE key IN (
                SELECT key FROM idempotency_keys WHERE expires_at <= now() LIMIT $1)";
