//! The pgbench scripts of the benchmark, built from the very statements rowlock sends — so the
//! baseline runs what rowlock runs, statement for statement, and cannot drift from it.
//!
//! Each script is one transaction as rowlock runs it for one request alone (no group): `BEGIN`,
//! the settings statement that reads the transaction's id (see [`crate::db::tx`]), the request's
//! statements, `COMMIT`. Parameters become pgbench expressions: `$n` is replaced by the text of
//! the n-th argument. The committed files `bench/hot.sql`, `bench/spread.sql` and
//! `bench/transfer.sql` are these scripts, kept for reading; a test fails when they differ.

use crate::db::counters::{increment::ADD, LOCK};
use crate::db::transactions::APPLY_ALL;
use crate::db::tx::SET_APPLICATION_NAME;

/// `POST /counters/hot/increment?lock=wait` on the one hot counter.
pub fn hot() -> String {
    increment(
        "-- pgbench script: rowlock's transaction for `POST /counters/hot/increment` (lock=wait),\n\
         -- built from its own statements (src/bench/scripts.rs); do not edit by hand.\n",
        "'hot'",
    )
}

/// The same on a random one of the 10,000 counters `spread-0` … `spread-9999`.
pub fn spread() -> String {
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
pub fn transfer() -> String {
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

    /// The committed files are the scripts as built: regenerate them when a statement changes
    /// (`ROWLOCK_WRITE_BENCH_SCRIPTS=1 cargo test --lib scripts`).
    #[test]
    fn the_committed_scripts_are_rowlocks_statements() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("bench");
        for (file, script) in [
            ("hot.sql", hot()),
            ("spread.sql", spread()),
            ("transfer.sql", transfer()),
        ] {
            let path = dir.join(file);
            if std::env::var_os("ROWLOCK_WRITE_BENCH_SCRIPTS").is_some() {
                std::fs::write(&path, &script).expect("write the script");
            }
            let committed = std::fs::read_to_string(&path).expect("read the script");
            assert_eq!(
                committed, script,
                "bench/{file} differs from rowlock's statements"
            );
            assert!(script.contains("nextval('counter_versions')"), "{file}");
            assert!(!script.contains("version + 1"), "{file}");
        }
    }
}
