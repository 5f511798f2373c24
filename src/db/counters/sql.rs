//! Every statement on the `counters` table, and the fragments the statements of other tables
//! build from it ([`counter_write!`], [`within_bounds!`]).

use crate::db::locking::LockStatements;
use crate::lock_statements;

/// The `SET` of every counter write besides its value: the new version (`$version`, by default
/// the next of the sequence `counter_versions`) and the time of the change. Versions come from
/// one sequence (sql/0007): never given twice, so an `If-Match` kept from a deleted counter
/// cannot match one created again under its name. On Citus an assigned `= nextval(…)` is taken
/// by a sub-`SELECT` ([`crate::db::citus::adapt`]).
macro_rules! counter_write {
    () => {
        $crate::db::counters::sql::counter_write!("nextval('counter_versions')")
    };
    ($version:literal) => {
        concat!("version = ", $version, ", updated_at = now()")
    };
}
pub(crate) use counter_write;

/// An `UPDATE` of the counter `$1`: `SET $set` and the [`counter_write!`] (of version `$version`,
/// by default the next), `WHERE name = $1` and `$rest`.
macro_rules! update_counter {
    ($set:literal, $version:literal, $rest:expr) => {
        concat!(
            "UPDATE counters SET ",
            $set,
            ", ",
            counter_write!($version),
            " WHERE name = $1",
            $rest
        )
    };
    ($set:literal, $rest:expr) => {
        update_counter!($set, "nextval('counter_versions')", $rest)
    };
}

/// Whether `$value` (an expression) is within the bounds of the counter whose `min` and `max`
/// are in scope; missing bounds are the `bigint` range, so a `numeric` running sum that would
/// overflow is out of bounds too. The same check as [`super::Counter::plus`].
macro_rules! within_bounds {
    ($value:literal) => {
        concat!(
            $value,
            " BETWEEN coalesce(min, -9223372036854775808) AND coalesce(max, 9223372036854775807)"
        )
    };
}
pub(crate) use within_bounds;

/// The columns of a [`super::Counter`], as [`super::counter`] reads them.
macro_rules! counter_columns {
    () => {
        "name, value, min, max, version"
    };
}
pub(crate) use counter_columns;

pub(crate) const LOCK: LockStatements = lock_statements!(concat!(
    "SELECT ",
    counter_columns!(),
    " FROM counters WHERE name = $1"
));
pub(crate) const SELECT: &str = concat!(
    "SELECT ",
    counter_columns!(),
    " FROM counters WHERE name = $1"
);
/// Locks the counters `$1` in ascending name order (see [`crate::db::transactions`]).
pub(crate) const LOCK_ALL: LockStatements = lock_statements!(concat!(
    "SELECT ",
    counter_columns!(),
    " FROM counters WHERE name = ANY($1) ORDER BY name"
));
/// [`LOCK_ALL`] with the array read through a sub-`SELECT`, so no plan depends on its length
/// (a group's first round).
pub(crate) const LOCK_ALL_GENERIC: LockStatements = lock_statements!(concat!(
    "SELECT ",
    counter_columns!(),
    " FROM counters WHERE name = ANY((SELECT $1::text[])::text[]) ORDER BY name"
));
pub(crate) const INSERT: &str =
    "INSERT INTO counters (name, value, min, max) VALUES ($1, $2, $3, $4)
     ON CONFLICT (name) DO NOTHING RETURNING version";
pub(crate) const REPLACE: &str =
    update_counter!("value = $2, min = $3, max = $4", " RETURNING version");
pub(crate) const REPLACE_IF_VERSION: &str = update_counter!(
    "value = $2, min = $3, max = $4",
    " AND version = $5 RETURNING version"
);
pub(crate) const DELETE: &str = "DELETE FROM counters WHERE name = $1";
pub(crate) const DELETE_IF_VERSION: &str = "DELETE FROM counters WHERE name = $1 AND version = $2";

/// An increment; the bound check is part of the `UPDATE`, so a violating change touches nothing.
pub(crate) const ADD: &str = update_counter!(
    "value = value + $2",
    concat!(
        " AND ",
        within_bounds!("value + $2"),
        " RETURNING value, version"
    )
);
pub(crate) const ADD_IF_VERSION: &str = update_counter!(
    "value = value + $2",
    concat!(
        " AND version = $3 AND ",
        within_bounds!("value + $2"),
        " RETURNING value, version"
    )
);
/// One op of a non-atomic transaction: the table's CHECK constraints enforce the bounds.
pub(crate) const ADD_ONE: &str = update_counter!("value = value + $2", " RETURNING value");
/// The locked counters' new values (`$1` names, `$2` values), after every op was checked.
pub(crate) const WRITE_ALL: &str = concat!(
    "UPDATE counters c SET value = w.value, ",
    counter_write!(),
    "
       FROM unnest($1::text[], $2::bigint[]) AS w(name, value)
      WHERE c.name = w.name"
);
/// A group's changed row with its version reserved beforehand (on Citus, one shard per
/// statement).
pub(crate) const WRITE_ONE: &str = update_counter!("value = $2", "$3", "");
/// A group's changed rows (`$10` names, `$11` values, `$12` versions) as a CTE named `written`.
macro_rules! written {
    () => {
        concat!(
            "written AS (
        UPDATE counters c SET value = w.value, ",
            $crate::db::counters::sql::counter_write!("w.version"),
            "
          FROM unnest((SELECT $10::text[]), (SELECT $11::bigint[]), (SELECT $12::bigint[]))
               AS w(name, value, version)
         WHERE c.name = w.name
    )"
        )
    };
}
pub(crate) use written;
/// Versions (`$1` of them) and transaction ids (`$2`) a group may hand out.
pub(crate) const RESERVE: &str = "SELECT
       ARRAY(SELECT nextval('counter_versions') FROM generate_series(1, $1::int)) AS versions,
       ARRAY(SELECT nextval('transactions_id_seq') FROM generate_series(1, $2::int))
         AS transaction_ids";

/// The dashboard's counters: those changed most in the last seconds (`$1`, busiest first), then
/// the most recently changed ones; with a search text (`$2`, empty: none), only names
/// containing it.
pub(crate) const BUSIEST: &str = concat!(
    "SELECT ",
    counter_columns!(),
    ", to_jsonb(updated_at) AS updated_at
      FROM counters
     WHERE strpos(name, $2) > 0
     ORDER BY array_position($1::text[], name) NULLS LAST, updated_at DESC
     LIMIT 20"
);
