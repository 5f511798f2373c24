//! rowlock on Citus, the distributed PostgreSQL, with its hot tables distributed by key.
//!
//! `rowlock migrate` (and every start) distributes `counters` by `name`, `locks` by `key` and
//! `idempotency_keys` by `key` when the Citus extension is installed and has nodes for shards;
//! `transactions`, `jobs` and `queues` stay on the coordinator (a claim scans a whole queue with
//! `SKIP LOCKED`, which only one node can answer). Three things change once tables are
//! distributed, process-wide and for good (each is also correct on plain PostgreSQL):
//!
//! - **One row per locking statement.** Citus runs `SELECT … FOR UPDATE` only when it names one
//!   shard, so the rows of a transaction, a group or a set of fences are locked by one
//!   single-row statement each, still in ascending key order (so still deadlock-free), sent in
//!   one pipeline ([`lock_each`]).
//! - **Versions and fencing tokens are taken by a sub-`SELECT`.** Citus refuses a volatile
//!   function such as `nextval` in a distributed `UPDATE`; `(SELECT nextval(…))` is evaluated
//!   once on the coordinator and sent as a constant ([`adapt`]). Every such `UPDATE` runs after
//!   its row is locked, so the value is taken after the previous writer committed: versions
//!   still increase, and stay unique across delete and re-create (one sequence). `lock=none`
//!   increments therefore lock their row first on Citus.
//! - **Lock timeouts are `SET LOCAL` and passed on.** A row-lock wait happens on a worker, which
//!   sees neither the coordinator's startup options nor its `set_config`: every transaction
//!   sets its lock timeout with a `SET LOCAL` that Citus forwards ([`with_lock_timeout`]).
//! - **A lost `COMMIT` that the coordinator says aborted is unknown, not rolled back.** A
//!   transaction writing one worker commits there before the coordinator commits its own, so a
//!   coordinator that died in between reports "aborted" for a change the worker kept: rowlock
//!   answers 504 `outcome_unknown` rather than a 503 that would claim nothing was applied.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tokio_postgres::{Client, Error, Row};

use super::locking::{RowLock, Strength, WaitPolicy};
use super::statements::{Conn, Stmt};

/// The tables rowlock distributes, their distribution columns and colocation. No statement joins
/// two of them; `counters` and `locks` (keys in the "C" collation) share shard placement, which
/// keeps a fenced counter write on one worker when key and name hash alike. The idempotency
/// keys' collation differs, so they are placed on their own.
pub const DISTRIBUTED: [(&str, &str, &str); 3] = [
    ("counters", "name", "default"),
    ("locks", "key", "default"),
    ("idempotency_keys", "key", "none"),
];
/// The tables that stay on the coordinator.
const LOCAL: [&str; 3] = ["transactions", "jobs", "queues"];

static ON: AtomicBool = AtomicBool::new(false);

/// Statements already adapted, by their original text.
static ADAPTED: LazyLock<Mutex<HashMap<&'static str, &'static str>>> =
    LazyLock::new(Mutex::default);

/// Switches this process to Citus's ways, for good (they are correct on PostgreSQL too, so
/// another database in the same process is not harmed by them).
pub fn enable() {
    ON.store(true, Ordering::Relaxed);
}

/// Whether rowlock's tables are distributed by Citus.
pub fn on() -> bool {
    ON.load(Ordering::Relaxed)
}

/// `sql` as this process sends it: on Citus, a `nextval(…)` assigned in an `UPDATE`'s `SET`
/// (`= nextval(…)`) is taken by a sub-`SELECT`. Nothing else is rewritten: elsewhere
/// (`ARRAY(SELECT nextval(…) FROM generate_series(…))`) a sub-`SELECT` would be evaluated once
/// for all rows. Only rowlock's own statements (constants) pass through here; each is adapted
/// once.
pub fn adapt(sql: &'static str) -> &'static str {
    if !on() || !sql.contains("nextval(") {
        return sql;
    }
    let mut adapted = ADAPTED.lock().unwrap_or_else(|p| p.into_inner());
    adapted
        .entry(sql)
        // A bounded set: one entry per statement constant that takes a sequence value.
        .or_insert_with(|| Box::leak(rewrite(sql).into_boxed_str()))
}

/// Every assigned `nextval(…)` of `sql` (`= nextval(…)`) wrapped in a sub-`SELECT`.
fn rewrite(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 16);
    let mut rest = sql;
    while let Some(at) = rest.find("nextval(") {
        let Some(close) = rest[at..].find(')') else {
            break;
        };
        out.push_str(&rest[..at]);
        let call = &rest[at..at + close + 1];
        if out.trim_end().ends_with('=') {
            out.push_str("(SELECT ");
            out.push_str(call);
            out.push(')');
        } else {
            out.push_str(call);
        }
        rest = &rest[at + close + 1..];
    }
    out.push_str(rest);
    out
}

/// `begin` (a `BEGIN …` and the settings that follow it) and, on Citus, the transaction's lock
/// timeout as a `SET LOCAL` that Citus passes on to the workers, where the row-lock waits
/// happen (a `set_config` or a startup option stays on the coordinator). `lock_timeout` is
/// rowlock's own number, rendered here, never text from a request.
pub fn with_lock_timeout(begin: Cow<'static, str>, lock_timeout: Duration) -> Cow<'static, str> {
    if !on() {
        return begin;
    }
    let ms = lock_timeout.as_micros().div_ceil(1000).max(1);
    format!(
        "{begin}; SET LOCAL citus.propagate_set_commands = 'local'; \
         SET LOCAL lock_timeout = '{ms}ms'"
    )
    .into()
}

/// The row lock of a write that would otherwise take none (`lock=none`): on Citus its version
/// must be taken after the row is locked (see the module documentation).
pub fn lock_first(lock: Option<RowLock>) -> Option<RowLock> {
    match (lock, on()) {
        (None, true) => Some(RowLock {
            wait: WaitPolicy::Wait,
            strength: Strength::NoKeyUpdate,
        }),
        (lock, _) => lock,
    }
}

/// Locks the rows of `keys` (sorted, distinct) with `stmt`, a single-row locking `SELECT` whose
/// first parameter is the key: one statement per key, in order, in one pipeline. Answers the
/// rows found (a skipped or missing key has none), in key order.
pub async fn lock_each(conn: Conn<'_>, stmt: &Stmt, keys: &[&str]) -> Result<Vec<Row>, Error> {
    let params: Vec<[&(dyn tokio_postgres::types::ToSql + Sync); 1]> =
        keys.iter().map(|k| [k as _]).collect();
    // `join_all` polls in order, so the statements are sent in key order.
    let rows = futures_util::future::join_all(params.iter().map(|p| conn.query_opt(stmt, p))).await;
    let mut found = Vec::with_capacity(rows.len());
    for row in rows {
        found.extend(row?);
    }
    Ok(found)
}

/// After the migrations: distributes rowlock's tables when Citus is installed with nodes for
/// shards, checks how they are distributed, and switches the process to Citus's ways. Answers
/// whether the tables are distributed.
pub async fn distribute(client: &mut Client) -> Result<bool> {
    let installed = client
        .query_opt("SELECT 1 FROM pg_extension WHERE extname = 'citus'", &[])
        .await?
        .is_some();
    if !installed {
        return Ok(false);
    }
    let tx = client.transaction().await?;
    // The migrations' lock: one instance distributes, the others find it done.
    let _ = tx
        .execute(
            "SELECT pg_advisory_xact_lock($1)",
            &[&super::migrate::MIGRATION_LOCK_KEY],
        )
        .await?;
    let nodes: i64 = tx
        .query_one(
            "SELECT count(*) AS nodes FROM pg_dist_node
              WHERE isactive AND noderole = 'primary' AND shouldhaveshards",
            &[],
        )
        .await?
        .get("nodes");
    let current = distribution(&tx).await?;
    if current.is_empty() && nodes == 0 {
        tracing::warn!("Citus has no node for shards: rowlock's tables stay on the coordinator");
        return Ok(false);
    }
    for (table, column, colocate_with) in DISTRIBUTED {
        if !current.iter().any(|(t, _, _)| t == table) {
            let _ = tx
                .execute(
                    "SELECT create_distributed_table($1::text::regclass, $2, colocate_with => $3)",
                    &[&table, &column, &colocate_with],
                )
                .await
                .with_context(|| format!("cannot distribute {table} by {column}"))?;
            tracing::info!(table, column, "distributed by Citus");
        }
    }
    check(&distribution(&tx).await?)?;
    tx.commit().await?;
    enable();
    Ok(true)
}

/// rowlock's tables known to Citus: `(table, distribution column, method)`.
async fn distribution(
    tx: &tokio_postgres::Transaction<'_>,
) -> Result<Vec<(String, String, String)>> {
    let rows = tx
        .query(
            "SELECT logicalrelid::regclass::text AS table_name,
                    coalesce(column_to_column_name(logicalrelid, partkey), '') AS column_name,
                    partmethod::text AS method
               FROM pg_dist_partition
              WHERE logicalrelid = ANY (ARRAY[to_regclass('counters'), to_regclass('locks'),
                    to_regclass('idempotency_keys'), to_regclass('transactions'),
                    to_regclass('jobs'), to_regclass('queues')])",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| (r.get("table_name"), r.get("column_name"), r.get("method")))
        .collect())
}

/// Refuses a distribution rowlock's statements were not written for.
fn check(current: &[(String, String, String)]) -> Result<()> {
    for (table, column, method) in current {
        let expected = DISTRIBUTED.iter().find(|(t, _, _)| t == table);
        match expected {
            Some((_, key, _)) if column == key && method == "h" => {}
            Some((_, key, _)) => bail!(
                "Citus distributes {table} by {column:?} (method {method}); rowlock needs it \
                 hash-distributed by {key}: undistribute it (SELECT undistribute_table('{table}')) \
                 and rowlock distributes it at its next start"
            ),
            None => bail!(
                "Citus distributes {table}, which rowlock keeps on the coordinator ({}): a claim \
                 scans a whole queue with SKIP LOCKED, which one node must answer. Undistribute \
                 it: SELECT undistribute_table('{table}')",
                LOCAL.join(", ")
            ),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nextval_is_taken_by_a_sub_select() {
        let sql =
            "UPDATE counters SET value = $2, version = nextval('counter_versions') WHERE name = $1";
        assert_eq!(
            rewrite(sql),
            "UPDATE counters SET value = $2, version = (SELECT nextval('counter_versions')) WHERE name = $1"
        );
        assert_eq!(
            rewrite("WITH g AS (UPDATE l SET t = nextval('t'), u = 1) SELECT * FROM g"),
            "WITH g AS (UPDATE l SET t = (SELECT nextval('t')), u = 1) SELECT * FROM g"
        );
        // A value per row stays one per row.
        let per_row = "SELECT ARRAY(SELECT nextval('s') FROM generate_series(1, $1::int))";
        assert_eq!(rewrite(per_row), per_row);
        assert_eq!(rewrite("SELECT 1"), "SELECT 1");
    }

    #[test]
    fn a_table_distributed_otherwise_is_refused() {
        let row = |t: &str, c: &str, m: &str| (t.to_owned(), c.to_owned(), m.to_owned());
        assert!(check(&[row("counters", "name", "h"), row("locks", "key", "h")]).is_ok());
        let e = check(&[row("counters", "value", "h")]).unwrap_err();
        assert!(e.to_string().contains("hash-distributed by name"), "{e}");
        let e = check(&[row("jobs", "id", "h")]).unwrap_err();
        assert!(e.to_string().contains("keeps on the coordinator"), "{e}");
    }
}
