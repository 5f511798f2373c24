//! What is waiting on what in rowlock's database right now, from `pg_stat_activity`,
//! `pg_locks` and `pg_blocking_pids` (for `GET /debug/locks`), and on Citus from
//! `citus_lock_waits`.

use serde::Serialize;

use crate::db::citus;
use crate::db::jobs::sql::DEPTHS;
use crate::db::statements::Conn;
use crate::error::ApiError;

/// A backend waiting for a lock.
#[derive(Debug, Serialize)]
pub struct Waiter {
    /// The waiting backend's process id.
    pub pid: i32,
    /// The rowlock request the backend is serving, when it is one of rowlock's (the first one
    /// when it serves a group).
    pub request_id: Option<String>,
    /// Every rowlock request the backend is serving: several when it runs a group commit.
    pub request_ids: Vec<String>,
    /// The backend's `application_name` (`rowlock/<request id>` for one of rowlock's).
    pub application_name: String,
    /// Milliseconds it has waited so far.
    pub waiting_ms: f64,
    /// The lock it waits for.
    pub lock: WaitedLock,
    /// The backends it waits for (`pg_blocking_pids`).
    pub blocked_by: Vec<Blocker>,
}

/// The lock a backend waits for. `row` is known while it waits for a tuple lock (`page,tuple`
/// of the row in `relation`); a backend queued behind the holder's transaction id shows the
/// relation of the lock it holds on its way there, when there is one.
#[derive(Debug, Serialize)]
pub struct WaitedLock {
    /// `pg_locks.locktype` (`tuple`, `transactionid`, …; `distributed` on Citus).
    pub locktype: String,
    /// The lock mode asked for (`ShareLock`, `ExclusiveLock`, …).
    pub mode: String,
    /// The table, when known.
    pub relation: Option<String>,
    /// The row as `(page,tuple)`, while the backend waits for a tuple lock.
    pub row: Option<String>,
}

/// A backend holding what a waiter needs.
#[derive(Debug, Serialize)]
pub struct Blocker {
    /// The blocking backend's process id.
    pub pid: i32,
    /// The rowlock request it is serving, as for [`Waiter::request_id`].
    pub request_id: Option<String>,
    /// Every rowlock request it is serving, as for [`Waiter::request_ids`].
    pub request_ids: Vec<String>,
    /// Its `application_name`.
    pub application_name: String,
    /// Its `pg_stat_activity.state` (`idle in transaction` is a transaction waiting on its
    /// client); `None` when the backend is gone.
    pub state: Option<String>,
    /// Milliseconds since its transaction began; `None` outside a transaction or when gone.
    pub transaction_age_ms: Option<f64>,
}

const WAITERS: &str = "
    SELECT a.pid, a.application_name,
           (extract(epoch FROM now() - coalesce(l.waitstart, a.state_change)) * 1000)::float8
             AS waiting_ms,
           l.locktype, l.mode,
           coalesce(l.relation, held.relation)::regclass::text AS relation,
           CASE WHEN l.page IS NOT NULL THEN format('(%s,%s)', l.page, l.tuple) END AS row,
           pg_blocking_pids(a.pid) AS blocked_by
      FROM pg_stat_activity a
      JOIN pg_locks l ON l.pid = a.pid AND NOT l.granted
      LEFT JOIN LATERAL (
           SELECT h.relation FROM pg_locks h
            WHERE h.pid = a.pid AND h.granted AND h.locktype = 'tuple' LIMIT 1
      ) held ON true
     WHERE a.datname = current_database()
     ORDER BY 3 DESC";

/// On Citus, a coordinator session waiting for a row lock on a worker shows no lock wait of its
/// own: `citus_lock_waits` names both sides by global pid (node id × 10¹⁰ + pid). The waits of
/// this database's coordinator sessions come first, then the coordinator's own lock waits.
const CITUS_WAITERS: &str = "
    SELECT a.pid, a.application_name,
           (extract(epoch FROM now() - coalesce(a.query_start, a.state_change)) * 1000)::float8
             AS waiting_ms,
           'distributed'::text AS locktype, 'row lock on a worker'::text AS mode,
           NULL::text AS relation, NULL::text AS row,
           array_agg(DISTINCT (w.blocking_gpid % 10000000000)::int) AS blocked_by
      FROM citus_lock_waits w
      JOIN pg_stat_activity a ON a.pid = (w.waiting_gpid % 10000000000)::int
     WHERE a.datname = current_database()
       AND w.waiting_nodeid = (SELECT nodeid FROM pg_dist_node WHERE groupid = 0 LIMIT 1)
     GROUP BY a.pid, a.application_name, a.query_start, a.state_change
     ORDER BY 3 DESC";

/// [`CITUS_WAITERS`]; none where Citus's ways run on plain PostgreSQL (no `citus_lock_waits`).
async fn citus_waiters(client: Conn<'_>) -> Result<Vec<tokio_postgres::Row>, ApiError> {
    use tokio_postgres::error::SqlState;
    let found = match client.prepare(CITUS_WAITERS).await {
        Ok(stmt) => client.query(&stmt, &[]).await,
        Err(e) => Err(e),
    };
    match found {
        Err(e) if e.code() == Some(&SqlState::UNDEFINED_TABLE) => Ok(Vec::new()),
        other => Ok(other?),
    }
}

const BLOCKERS: &str = "
    SELECT pid, application_name, state,
           (extract(epoch FROM now() - xact_start) * 1000)::float8 AS transaction_age_ms
      FROM pg_stat_activity WHERE pid = ANY($1)";

/// Every backend of this database waiting for a lock, with who blocks it. `group_requests`
/// names the requests of a group-commit session (`rowlock/group-<id>`).
pub async fn waiters(
    client: Conn<'_>,
    group_requests: impl Fn(u64) -> Option<Vec<String>>,
) -> Result<Vec<Waiter>, ApiError> {
    let request_ids = |name: &str| -> Vec<String> {
        let Some(id) = name.strip_prefix("rowlock/") else {
            return Vec::new();
        };
        match id.strip_prefix("group-").and_then(|g| g.parse().ok()) {
            Some(group) => group_requests(group).unwrap_or_default(),
            None => vec![id.to_owned()],
        }
    };
    let (waiters, blockers) = (
        client.prepare(WAITERS).await?,
        client.prepare(BLOCKERS).await?,
    );
    let mut rows = client.query(&waiters, &[]).await?;
    if citus::on() {
        let mut found = citus_waiters(client).await?;
        found.append(&mut rows);
        rows = found;
    }
    let blocking: Vec<i32> = rows
        .iter()
        .flat_map(|r| r.get::<_, Vec<i32>>("blocked_by"))
        .collect();
    let blockers = client.query(&blockers, &[&blocking]).await?;
    let blocker = |pid: i32| {
        let row = blockers.iter().find(|b| b.get::<_, i32>("pid") == pid);
        let name: String = row.map(|r| r.get("application_name")).unwrap_or_default();
        let ids = request_ids(&name);
        Blocker {
            pid,
            request_id: ids.first().cloned(),
            request_ids: ids,
            application_name: name,
            state: row.and_then(|r| r.get("state")),
            transaction_age_ms: row.and_then(|r| r.get("transaction_age_ms")),
        }
    };
    Ok(rows
        .iter()
        .map(|r| {
            let name: String = r.get("application_name");
            let ids = request_ids(&name);
            Waiter {
                pid: r.get("pid"),
                request_id: ids.first().cloned(),
                request_ids: ids,
                application_name: name,
                waiting_ms: r.get("waiting_ms"),
                lock: WaitedLock {
                    locktype: r.get("locktype"),
                    mode: r.get("mode"),
                    relation: r.get("relation"),
                    row: r.get("row"),
                },
                blocked_by: r
                    .get::<_, Vec<i32>>("blocked_by")
                    .into_iter()
                    .map(blocker)
                    .collect(),
            }
        })
        .collect())
}

/// Unfinished jobs by queue and state (`queued`, `running`, `dead`), for the metrics.
/// Completed jobs are left out: they only grow, and their count says nothing about the backlog.
pub async fn queue_depths(client: Conn<'_>) -> Result<Vec<(String, String, i64)>, ApiError> {
    let stmt = client.prepare(DEPTHS).await?;
    let rows = client.query(&stmt, &[]).await?;
    Ok(rows
        .iter()
        .map(|r| (r.get("queue"), r.get("state"), r.get("jobs")))
        .collect())
}
