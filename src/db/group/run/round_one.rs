//! A group's first round: `BEGIN`, the settings, the idempotency keys, the rows locked and the
//! numbers reserved, all in one pipeline; then [`apply`] on the locked values (see [`super`]).

use deadpool_postgres::ClientWrapper;
use tokio_postgres::Row;

use super::Failed;
use crate::db::citus;
use crate::db::counters::counter;
use crate::db::counters::sql::{written, LOCK, LOCK_ALL_GENERIC, RESERVE, WRITE_ONE};
use crate::db::group::apply::{apply, Applied, Keys, Reserved};
use crate::db::group::{remaining_lock_timeout, Counters, Member, Work};
use crate::db::idempotency::sql::{remembered, LOCK_KEYS, STORED_KEYS};
use crate::db::idempotency::stored_reply;
use crate::db::locking::{RowLock, Strength, WaitPolicy};
use crate::db::outcome::TxIdentity;
use crate::db::statements::{self, Conn, Stmt};
use crate::db::transactions::sql::recorded;
use crate::db::tx::SET_APPLICATION_NAME_AND_LOCK_TIMEOUT as SETTINGS;
use crate::error::ApiError;
use crate::metrics::Metrics;

/// On Citus, after [`WRITE_ONE`] for every changed row: the records alone (the first nine
/// parameters of [`WRITE`]).
const RECORD: &str = concat!("WITH ", recorded!(), ", ", remembered!(), " SELECT 1");
/// Every changed row once (`$10`…`$12`), the group's transactions and its idempotency records.
const WRITE: &str = concat!(
    "WITH ",
    recorded!(),
    ", ",
    remembered!(),
    ", ",
    written!(),
    " SELECT 1"
);

/// Round 1 and [`apply`]: the transaction's identity, the prepared write statement and what the
/// group will write and answer.
pub(super) async fn lock_and_apply(
    metrics: &Metrics,
    client: &ClientWrapper,
    application_name: &str,
    members: &[Member<Counters>],
) -> Result<(TxIdentity, (Write, Applied)), Failed> {
    let remaining = remaining_lock_timeout(members);
    let lock_timeout = format!("{}ms", remaining.as_micros().div_ceil(1000).max(1));
    let mut names: Vec<&str> = members
        .iter()
        .flat_map(|m| m.work.work.rows())
        .map(String::as_str)
        .collect();
    names.sort_unstable();
    names.dedup();
    let mut keys: Vec<&str> = members
        .iter()
        .filter_map(|m| m.work.idempotency.as_ref().map(|i| i.key.as_str()))
        .collect();
    keys.sort_unstable();
    keys.dedup();
    // The strongest lock any member asked for.
    let strength = match members.iter().any(|m| m.work.strength == Strength::Update) {
        true => Strength::Update,
        false => Strength::NoKeyUpdate,
    };
    let lock = RowLock {
        wait: WaitPolicy::Wait,
        strength,
    };
    let versions: usize = members.iter().map(|m| m.work.work.ops()).sum();
    let transactions = members
        .iter()
        .filter(|m| matches!(m.work.work, Work::Transaction { .. }))
        .count();
    let (versions, transactions) = (count(versions)?, count(transactions)?);
    let conn = Conn::inside(client);
    let begin = citus::with_lock_timeout(
        statements::begin("BEGIN ISOLATION LEVEL READ COMMITTED"),
        remaining,
    );
    // Prepared before the transaction begins (so the round one pipeline goes out whole).
    let before = Conn::outside(client);
    let settings = before.prepare(SETTINGS).await?;
    // On Citus one single-row statement per counter, in the same (ascending) order.
    let lock_stmt = match citus::on() {
        true => before.prepare(lock.pick(&LOCK)).await?,
        false => before.prepare(lock.pick(&LOCK_ALL_GENERIC)).await?,
    };
    let lock_rows = async {
        match citus::on() {
            true => citus::lock_each(conn, &lock_stmt, &names).await,
            false => conn.query(&lock_stmt, &[&names]).await,
        }
    };
    let reserve = before.prepare(RESERVE).await?;
    let write = match citus::on() {
        true => Write::PerRow {
            row: before.prepare(WRITE_ONE).await?,
            records: before.prepare(RECORD).await?,
        },
        false => Write::Joined(before.prepare(WRITE).await?),
    };
    let (lock_keys, stored_keys) = match keys.is_empty() {
        true => (None, None),
        false => (
            Some(before.prepare(LOCK_KEYS).await?),
            Some(before.prepare(STORED_KEYS).await?),
        ),
    };
    let optional = |stmt: Option<Stmt>| async {
        match stmt {
            Some(stmt) => conn.query(&stmt, &[&keys]).await,
            None => Ok(Vec::new()),
        }
    };
    let set_params = [&application_name as _, &lock_timeout as _];
    let reserve_params = [&versions as _, &transactions as _];
    // Polled in this order, so sent in this order, without waiting for each other.
    let (begun, set, key_locks, stored, locked, reserved) = futures_util::join!(
        client.batch_execute(&begin),
        conn.query_one(&settings, &set_params),
        optional(lock_keys),
        optional(stored_keys),
        lock_rows,
        conn.query_one(&reserve, &reserve_params),
    );
    // The first failure is the cause; the later ones only say "transaction aborted".
    begun?;
    let set = set?;
    let txid = TxIdentity {
        txid: set.get("txid"),
        crash_mark: set.get("crash_mark"),
    };
    let keys = read_keys(key_locks?, stored?)?;
    let rows = locked?.iter().map(counter).collect();
    for m in members {
        metrics.lock_wait(m.work.work.resource(), m.work.mode, m.enqueued.elapsed());
    }
    let reserved = reserved?;
    let applied = apply(
        members,
        rows,
        &keys,
        Reserved::new(reserved.get("versions")),
        Reserved::new(reserved.get("transaction_ids")),
    )?;
    Ok((txid, (write, applied)))
}

fn count(n: usize) -> Result<i32, ApiError> {
    i32::try_from(n).map_err(|_| ApiError::Internal(anyhow::anyhow!("a group of {n} ops")))
}

fn read_keys(locks: Vec<Row>, stored: Vec<Row>) -> Result<Keys, ApiError> {
    let mut keys = Keys::default();
    for row in locks {
        let _ = keys.locked.insert(row.get("key"), row.get("locked"));
    }
    for row in stored {
        let key: String = row.get("key");
        let _ = keys.stored.insert(key, stored_reply(&row)?);
    }
    Ok(keys)
}

/// How a group writes: one statement, or (on Citus) one per row and one for the records.
pub(super) enum Write {
    Joined(Stmt),
    PerRow { row: Stmt, records: Stmt },
}
