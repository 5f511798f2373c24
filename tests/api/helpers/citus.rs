//! Citus: whether the suite runs on it (`ROWLOCK_TEST_CITUS_URL`), and what the tests do
//! differently there.

use super::cluster::{cluster, connect};

/// Whether the suite runs on Citus (`ROWLOCK_TEST_CITUS_URL`).
pub fn on_citus() -> bool {
    !cluster().citus_workers.is_empty()
}

/// Lets `pg` create triggers on rowlock's tables, which Citus refuses on distributed tables
/// unless told they are safe (they are: the tests' triggers touch only their own row).
pub async fn allow_triggers(pg: &tokio_postgres::Client) {
    if on_citus() {
        pg.batch_execute("SET citus.enable_unsafe_triggers = on")
            .await
            .expect("allow triggers on distributed tables");
    }
}

/// On Citus, says that a test is skipped and why; true then. For tests whose fault injection
/// (a trigger with a sequence on the coordinator) cannot run on a worker.
pub fn skipped_on_citus(why: &str) -> bool {
    if on_citus() {
        eprintln!("skipped on Citus: {why}");
    }
    on_citus()
}

/// The condition, on a row of `pg_stat_activity`, that its session waits for a lock. On Citus a
/// coordinator session waiting for a row lock on a worker shows no lock wait itself; Citus's
/// `citus_lock_waits` names it by its global pid (node id × 10¹⁰ + pid).
pub fn waiting_on_a_lock() -> &'static str {
    match !on_citus() {
        true => "wait_event_type = 'Lock'",
        false => {
            "(wait_event_type = 'Lock'
              OR pid IN (SELECT (waiting_gpid % 10000000000)::int FROM citus_lock_waits))"
        }
    }
}

/// The primary workers of the Citus coordinator at `url`.
pub(super) async fn workers(url: &str) -> Vec<(String, u16)> {
    let coordinator = connect(url).await;
    let rows = coordinator
        .query(
            "SELECT nodename, nodeport FROM pg_dist_node
              WHERE groupid <> 0 AND noderole = 'primary' ORDER BY nodeid",
            &[],
        )
        .await
        .expect("ROWLOCK_TEST_CITUS_URL must name a Citus coordinator's database with workers");
    assert!(!rows.is_empty(), "the Citus coordinator has no workers");
    rows.iter()
        .map(|r| (r.get(0), u16::try_from(r.get::<_, i32>(1)).expect("a port")))
        .collect()
}
