//! A non-atomic transaction: each op under its own `SAVEPOINT`; the table's CHECK constraints
//! enforce the bounds, and a refused op is undone with `ROLLBACK TO SAVEPOINT` and reported,
//! while the others commit (Django's nested `atomic()`).

use tokio_postgres::error::SqlState;
use tokio_postgres::types::Json;

use super::sql::RECORD;
use super::{applied, lock_all, missing, name_op, refused, Committed, Op};
use crate::db::counters::sql::ADD_ONE;
use crate::db::locking::RowLock;
use crate::db::tx::Tx;
use crate::error::ApiError;

/// Applies each op under its own savepoint; refused ops are reported, the rest commit.
pub async fn run_each(tx: &Tx, ops: &[Op], lock: RowLock) -> Result<Committed, ApiError> {
    let mut current = lock_all(tx, ops, lock).await?;
    let add = tx.prepare(ADD_ONE).await?;
    let client = tx.client();
    let mut results = Vec::with_capacity(ops.len());
    for (i, op) in ops.iter().enumerate() {
        let Some(counter) = current.get_mut(&op.counter) else {
            results.push(refused(
                op,
                name_op(i, missing(tx, &op.counter, lock).await),
            ));
            continue;
        };
        let params = [&op.counter as _, &op.by as _];
        let (saved, row, released) = futures_util::join!(
            client.batch_execute("SAVEPOINT rowlock_op"),
            client.query_one(&add, &params),
            client.batch_execute("RELEASE SAVEPOINT rowlock_op"),
        );
        saved?;
        match row {
            Ok(row) => {
                released?;
                let next: i64 = row.get("value");
                results.push(applied(op, counter.value, next));
                counter.value = next;
            }
            Err(e) if is_refusal(&e) => {
                client
                    .batch_execute("ROLLBACK TO SAVEPOINT rowlock_op; RELEASE SAVEPOINT rowlock_op")
                    .await?;
                let why = counter.plus(op.by).err().unwrap_or_else(|| e.into());
                results.push(refused(op, name_op(i, why)));
            }
            Err(e) => return Err(e.into()),
        }
    }
    let record = tx.prepare(RECORD).await?;
    let (ops_json, results_json) = (Json(ops), Json(&results));
    let row = tx
        .commit_with(client.query_one(&record, &[&false, &ops_json, &results_json]))
        .await?;
    Ok(Committed {
        id: row.get("id"),
        atomic: false,
        results,
    })
}

/// Errors an op can cause by itself: a bound (CHECK constraint) or an overflow.
fn is_refusal(e: &tokio_postgres::Error) -> bool {
    matches!(
        e.code(),
        Some(&SqlState::CHECK_VIOLATION) | Some(&SqlState::NUMERIC_VALUE_OUT_OF_RANGE)
    )
}
