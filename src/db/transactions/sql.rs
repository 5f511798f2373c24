//! Every statement on the `transactions` table, with the multi-counter statement that records
//! into it ([`APPLY_ALL`]).

use crate::db::counters::sql::{counter_columns, counter_write, within_bounds};
use crate::db::locking::LockStatements;
use crate::lock_statements;

/// The atomic path in one statement. `$1`: the distinct names, sorted; `$2`, `$3`: each op's
/// counter and `by`, in request order; `$4`: the ops as stored. Answers the locked rows as they
/// were before the ops, each with the id of the recorded transaction (`recorded`) — `NULL` when
/// anything was missing (skipped, absent) or out of bounds, and then nothing was written.
///
/// The arrays are read through sub-`SELECT`s, so that no plan depends on their lengths:
/// PostgreSQL then settles on one generic plan per connection instead of planning this statement
/// again for every request (which costs more than running it).
///
/// - `steps`: each op's value after it, a running sum per counter (`sum(bigint)` is `numeric`);
/// - `verdict`: every op found its row, and every intermediate value is within the bounds, which
///   default to the `bigint` range: this is exactly [`Counter::plus`] applied op after op;
/// - `written` and `recorded` run only on a positive verdict, which needs every row locked first.
///
/// [`Counter::plus`]: crate::db::counters::Counter::plus
pub(crate) const APPLY_ALL: LockStatements = lock_statements!(
    concat!(
        "WITH locked AS MATERIALIZED (
        SELECT ",
        counter_columns!(),
        " FROM counters
         WHERE name = ANY((SELECT $1::text[])::text[])
         ORDER BY name"
    ),
    concat!(
        "), steps AS (
        SELECT o.ord, o.name, o.by,
               l.value + sum(o.by) OVER (PARTITION BY o.name ORDER BY o.ord) AS after,
               l.min, l.max
          FROM unnest((SELECT $2::text[]), (SELECT $3::bigint[])) WITH ORDINALITY AS o(name, by, ord)
          JOIN locked l USING (name)
    ), verdict AS (
        SELECT count(*) = cardinality($2::text[]) AND bool_and(",
        within_bounds!("after"),
        ") AS ok
          FROM steps
    ), written AS (
        UPDATE counters c SET value = f.after, ",
        counter_write!(),
        "
          FROM (SELECT DISTINCT ON (name) name, after FROM steps ORDER BY name, ord DESC) AS f
         WHERE c.name = f.name AND (SELECT ok FROM verdict)
    ), recorded AS (
        INSERT INTO transactions (atomic, ops, results)
        SELECT true, $4::jsonb, jsonb_agg(jsonb_build_object(
                   'counter', name, 'applied', true, 'value', after, 'previous', after - by)
                   ORDER BY ord)
          FROM steps
        HAVING (SELECT ok FROM verdict)
        RETURNING id
    )
    SELECT ",
        counter_columns!(),
        ", (SELECT id FROM recorded) AS recorded FROM locked"
    )
);
pub(crate) const RECORD: &str =
    "INSERT INTO transactions (atomic, ops, results) VALUES ($1, $2, $3) RETURNING id";
pub(crate) const GET: &str =
    "SELECT id, atomic, ops, results, created_at::text AS created_at FROM transactions WHERE id = $1";
/// A group's transactions (`$1` ids, `$2` ops, `$3` results) as a CTE named `recorded`.
macro_rules! recorded {
    () => {
        "recorded AS (
        INSERT INTO transactions (id, atomic, ops, results) OVERRIDING SYSTEM VALUE
        SELECT t.id, true, t.ops::jsonb, t.results::jsonb
          FROM unnest((SELECT $1::bigint[]), (SELECT $2::text[]), (SELECT $3::text[]))
               AS t(id, ops, results)
    )"
    };
}
pub(crate) use recorded;

/// Housekeeping: a batch (`$1`) of the records older than `$2` seconds.
pub(crate) const PURGE: &str = "DELETE FROM transactions WHERE id IN (
                SELECT id FROM transactions
                 WHERE created_at < now() - make_interval(secs => $2) LIMIT $1)";
