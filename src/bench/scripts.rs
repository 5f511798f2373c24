//! The pgbench scripts of the benchmark, built from the very statements rowlock sends — so the
//! baseline runs what rowlock runs, statement for statement, and cannot drift from it.
//!
//! Each script is one transaction as rowlock runs it for one request alone (no group): `BEGIN`,
//! the settings statement that reads the transaction's id (see [`crate::db::tx`]), the request's
//! statements, `COMMIT`. Parameters become pgbench expressions: `$n` is replaced by the text of
//! the n-th argument. `rowlock bench scripts` prints them; nothing is kept in a file that could
//! drift from the statements.

use crate::db::counters::{increment::ADD, LOCK};
use crate::db::transactions::APPLY_ALL;
use crate::db::tx::SET_APPLICATION_NAME;

/// `POST /counters/hot/increment?lock=wait` on the one hot counter.
pub(crate) fn hot() -> String {
    increment(
        "-- pgbench script: rowlock's transaction for `POST /counters/hot/increment` (lock=wait),\n\
         -- built from its own statements (src/bench/scripts.rs); do not edit by hand.\n",
        "'hot'",
    )
}

/// The same on a random one of the 10,000 counters `spread-0` … `spread-9999`.
pub(crate) fn spread() -> String {
    increment(
        "-- pgbench script: rowlock's transaction for `POST /counters/spread-N/increment`\n\
         -- (lock=wait) on a random one of spread-0 … spread-9999, built from its own statements\n\
         -- (src/bench/scripts.rs); do not edit by hand.\n\
         \\set id random(0, 9999)\n",
        "'spread-' || CAST(:id AS text)",
    )
}

/// An atomic `POST /transactions` moving 1…100 between a random pair of distinct accounts among
/// `account-0` … `account-999` (min 0): locked in name order, checked, written and recorded by
/// one statement, or — when the payer is short — nothing written (rowlock's 409).
pub(crate) fn transfer() -> String {
    let (a, b) = (
        "'account-' || CAST(:a AS text)",
        "'account-' || CAST(:b AS text)",
    );
    let names = format!("ARRAY[{a}, {b}]");
    let locked = format!("ARRAY(SELECT unnest({names}) ORDER BY 1)");
    let bys = "ARRAY[-CAST(:amount AS bigint), CAST(:amount AS bigint)]";
    let ops = format!(
        "jsonb_build_array(jsonb_build_object('counter', {a}, 'by', -CAST(:amount AS bigint)), \
         jsonb_build_object('counter', {b}, 'by', CAST(:amount AS bigint)))::text"
    );
    format!(
        "-- pgbench script: rowlock's transaction for an atomic `POST /transactions` moving\n\
         -- 1…100 between two distinct accounts of account-0 … account-999, built from its own\n\
         -- statements (src/bench/scripts.rs); do not edit by hand.\n\
         \\set a random(0, 999)\n\
         \\set b (:a + random(1, 999)) % 1000\n\
         \\set amount random(1, 100)\n\
         BEGIN ISOLATION LEVEL READ COMMITTED;\n{};\n{};\nCOMMIT;\n",
        bind(SET_APPLICATION_NAME, &["'pgbench'"]),
        bind(APPLY_ALL.for_update[0], &[&locked, &names, bys, &ops]),
    )
}

/// Every script, each under a `-- <name>.sql` line: what `rowlock bench scripts` prints.
pub(crate) fn all() -> String {
    [
        ("hot", hot()),
        ("spread", spread()),
        ("transfer", transfer()),
    ]
    .iter()
    .map(|(name, script)| format!("-- {name}.sql\n{script}\n"))
    .collect()
}

fn increment(header: &str, name: &str) -> String {
    format!(
        "{header}BEGIN ISOLATION LEVEL READ COMMITTED;\n{};\n{};\n{};\nCOMMIT;\n",
        bind(SET_APPLICATION_NAME, &["'pgbench'"]),
        bind(LOCK.for_update[0], &[name]),
        bind(ADD, &[name, "1"]),
    )
}

/// `sql` with `$1`, `$2` … replaced by `args` (from the highest, so `$1` never eats `$10`).
fn bind(sql: &str, args: &[&str]) -> String {
    let mut text = sql.to_owned();
    for (i, arg) in args.iter().enumerate().rev() {
        text = text.replace(&format!("${}", i + 1), arg);
    }
    assert!(
        !text.contains('$'),
        "a parameter was left unbound in {text}"
    );
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scripts_write_versions_the_way_rowlock_does() {
        for (name, script) in [
            ("hot", hot()),
            ("spread", spread()),
            ("transfer", transfer()),
        ] {
            assert!(script.contains("nextval('counter_versions')"), "{name}");
            assert!(!script.contains("version + 1"), "{name}");
            assert!(script.starts_with("-- pgbench script"), "{name}");
            assert!(script.ends_with("COMMIT;\n"), "{name}");
        }
        assert!(all().contains("-- transfer.sql\n-- pgbench script"));
    }
}
