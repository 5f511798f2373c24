//! Every statement on the `locks` table: the leases, the fencing checks and the dashboard's list.

/// The channel releases notify on ([`NOTIFY`]), as a literal.
macro_rules! channel {
    () => {
        "rowlock_locks"
    };
}
pub(crate) use channel;

/// Whether the latest grant is live now: not released, not expired (by the database clock).
macro_rules! live {
    () => {
        "owner IS NOT NULL AND expires_at > now() AS live"
    };
}

/// A timestamp column as RFC 3339 text in UTC: clients never see (or need) rowlock's own clock.
macro_rules! utc {
    ($column:literal) => {
        concat!(
            "to_char(",
            $column,
            " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"
        )
    };
}

/// Locks a key's row and reads what a decision needs. `now()` is the transaction's start: one
/// instant for the whole decision, by the database clock.
macro_rules! lock_sql {
    ($wait:literal) => {
        concat!(
            "SELECT owner, token, ",
            live!(),
            ", ",
            utc!("expires_at"),
            " AS expires_at,
                    COALESCE(GREATEST(ceil(extract(epoch FROM expires_at - now()) * 1000), 0), 0)
                      ::bigint AS remaining_ms
               FROM locks WHERE key = $1 FOR UPDATE",
            $wait
        )
    };
}

pub(crate) const LOCK: &str = lock_sql!("");
pub(crate) const LOCK_NOWAIT: &str = lock_sql!(" NOWAIT");
/// A first-ever acquisition creates the row with token 0 and no owner, in the same transaction
/// as the grant that follows, so it never commits as such. A literal 0, not `nextval`: a lost
/// `ON CONFLICT` race must not burn a token.
pub(crate) const CREATE: &str =
    "INSERT INTO locks (key, token) VALUES ($1, 0) ON CONFLICT (key) DO NOTHING";
/// The times are formatted outside the `UPDATE`: Citus allows no `to_char` (a stable function)
/// in the `RETURNING` of a distributed `UPDATE`.
pub(crate) const GRANT: &str = concat!(
    "WITH granted AS (
       UPDATE locks
          SET owner = $2, token = nextval('lock_tokens'), acquired_at = now(),
              expires_at = now() + make_interval(secs => $3), updated_at = now()
        WHERE key = $1
    RETURNING token, acquired_at, expires_at)
     SELECT token, ",
    utc!("acquired_at"),
    " AS acquired_at, ",
    utc!("expires_at"),
    " AS expires_at FROM granted"
);
pub(crate) const RENEW: &str = concat!(
    "WITH renewed AS (
       UPDATE locks
          SET expires_at = now() + make_interval(secs => $2), updated_at = now()
        WHERE key = $1
    RETURNING owner, token, acquired_at, expires_at)
     SELECT owner, token, ",
    utc!("acquired_at"),
    " AS acquired_at, ",
    utc!("expires_at"),
    " AS expires_at FROM renewed"
);
/// The lease ends now (or when it expired, if earlier): `expires_at` records when it ended.
pub(crate) const RELEASE: &str = "UPDATE locks
    SET owner = NULL, expires_at = LEAST(expires_at, now()), updated_at = now()
  WHERE key = $1";
/// Wakes waiters in every rowlock instance; sent when the transaction commits, never before.
pub(crate) const NOTIFY: &str = concat!("SELECT pg_notify('", channel!(), "', $1)");
pub(crate) const SELECT: &str = concat!(
    "SELECT key, owner, token, ",
    live!(),
    ", ",
    utc!("acquired_at"),
    " AS acquired_at, ",
    utc!("expires_at"),
    " AS expires_at FROM locks WHERE key = $1"
);

/// Fencing ([`crate::db::fencing`]): the lease rows `WHERE $where`, locked by `$lock`, with
/// their latest token and whether it is live.
macro_rules! fences {
    ($where:literal, $lock:literal) => {
        concat!(
            "SELECT key, token, ",
            live!(),
            " FROM locks WHERE ",
            $where,
            " ",
            $lock
        )
    };
}

pub(crate) const CHECK: &str = fences!("key = ANY($1) ORDER BY key", "FOR SHARE");
/// For a lease route that changes lease `$2` itself: its row is locked `FOR UPDATE` with the
/// fenced ones, all in key order. Taking it `FOR SHARE` here and `FOR UPDATE` later would let
/// two such requests on one key each hold the share lock and wait for the other's.
pub(crate) const CHECK_CHANGING: &str =
    fences!("key = ANY($1) OR key = $2 ORDER BY key", "FOR UPDATE");
/// On Citus, one row by one statement.
pub(crate) const CHECK_ONE: &str = fences!("key = $1", "FOR SHARE");
pub(crate) const CHECK_OWN: &str = fences!("key = $1", "FOR UPDATE");

/// The dashboard's held leases: owner, fencing token and time left.
pub(crate) const HELD: &str = "SELECT key, owner, token,
           (extract(epoch FROM expires_at - now()) * 1000)::float8 AS expires_in_ms
      FROM locks WHERE owner IS NOT NULL AND expires_at > now()
     ORDER BY key LIMIT 100";
