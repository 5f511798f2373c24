//! Group commit: many clients' counter changes in one locked transaction.
//!
//! One PostgreSQL transaction per request caps a hot row at the rate PostgreSQL hands its row
//! lock over and commits. rowlock sees every client's request at once, so it can do better:
//! concurrent `lock=wait` / `lock=none` increments and atomic `POST /transactions` are gathered
//! while earlier groups are in the database, and each group runs as ONE transaction ([`run`]):
//! lock every row of the group in name order, apply each request's ops in arrival order on the
//! locked values with its own bound checks ([`apply`]), write every changed row once, `COMMIT`,
//! and only then answer each request.
//!
//! How groups form ("natural batching", no timer):
//! - a request joins the queue; if fewer than `--group-concurrency` groups are in the database,
//!   a group is formed at once, so a lone request is a group of one and waits for nobody;
//! - a row belongs to at most one group in the database at a time. A request whose rows are
//!   taken waits in the queue, and so does every later request on those rows (per-row arrival
//!   order): when the group holding the row commits, the next group takes all of them. This is
//!   also what keeps a hot row from tying up the pool, and a row held from `psql` from stalling
//!   requests on other rows;
//! - a request waits in the queue at most its lock timeout (then 423, nothing applied), and a
//!   group's `lock_timeout` is what is left of its members' shortest one.

mod apply;
mod args;
mod run;
mod work;

pub use args::GroupArgs;
pub use work::Work;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use deadpool_postgres::Pool;
use tokio::sync::oneshot;

use super::idempotency::{Idempotency, Reply};
use super::locking::Strength;
use crate::error::ApiError;
use crate::metrics::Metrics;

/// A request as submitted by the planner.
pub struct Request {
    pub work: Work,
    pub strength: Strength,
    /// `lock=` as asked (`wait` or `none`), for the lock-wait metric.
    pub mode: &'static str,
    /// The request's own `lock_timeout_ms`, if it gave one.
    pub lock_timeout: Option<Duration>,
    pub idempotency: Option<Idempotency>,
    pub request_id: Option<String>,
}

const QUEUED: u8 = 0;
const TAKEN: u8 = 1;
const ABANDONED: u8 = 2;

/// A request waiting in the queue or running in a group.
struct Member {
    work: Work,
    strength: Strength,
    mode: &'static str,
    deadline: Instant,
    /// The lock timeout `deadline` came from (for the 423's detail).
    timeout: Duration,
    idempotency: Option<Idempotency>,
    request_id: Option<String>,
    enqueued: Instant,
    /// `QUEUED` → `TAKEN` by the group that runs it, or → `ABANDONED` by its own request once
    /// its lock timeout ran out in the queue: exactly one of the two wins.
    claim: Arc<AtomicU8>,
    answer: oneshot::Sender<Result<Reply, ApiError>>,
}

/// The group-commit executor of one server.
pub struct GroupCommit {
    state: Mutex<State>,
    pool: Pool,
    metrics: Arc<Metrics>,
    max_ops: usize,
    concurrency: usize,
    max_retries: u32,
    default_lock_timeout: Duration,
    idempotency_retention_secs: f64,
    /// How long rowlock tries to learn the fate of a `COMMIT` whose answer was lost.
    resolve_timeout: Duration,
    next_group: AtomicU64,
}

#[derive(Default)]
struct State {
    queue: VecDeque<Member>,
    /// Rows of the groups in the database.
    busy: HashSet<String>,
    /// Groups in the database.
    running: usize,
    /// Request ids of each group in the database, by group id (for `GET /debug/locks`).
    sessions: HashMap<u64, Vec<String>>,
}

/// Settings of [`GroupCommit::new`].
pub struct Settings {
    pub max_ops: usize,
    pub concurrency: usize,
    pub max_retries: u32,
    pub default_lock_timeout: Duration,
    pub idempotency_retention: Duration,
    pub resolve_timeout: Duration,
}

impl GroupCommit {
    pub fn new(pool: Pool, metrics: Arc<Metrics>, settings: Settings) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State::default()),
            pool,
            metrics,
            max_ops: settings.max_ops.max(1),
            concurrency: settings.concurrency.max(1),
            max_retries: settings.max_retries,
            default_lock_timeout: settings.default_lock_timeout,
            idempotency_retention_secs: settings.idempotency_retention.as_secs_f64(),
            resolve_timeout: settings.resolve_timeout,
            next_group: AtomicU64::new(1),
        })
    }

    /// Runs `request` in a group; answers once the group's `COMMIT` succeeded (or why not).
    pub async fn submit(self: &Arc<Self>, request: Request) -> Result<Reply, ApiError> {
        let enqueued = Instant::now();
        let timeout = request.lock_timeout.unwrap_or(self.default_lock_timeout);
        let deadline = enqueued + timeout;
        let describe = request.work.describe();
        let claim = Arc::new(AtomicU8::new(QUEUED));
        let (answer, mut answered) = oneshot::channel();
        {
            let mut state = self.lock();
            state.queue.push_back(Member {
                work: request.work,
                strength: request.strength,
                mode: request.mode,
                deadline,
                timeout,
                idempotency: request.idempotency,
                request_id: request.request_id,
                enqueued,
                claim: claim.clone(),
                answer,
            });
            self.launch(&mut state);
        }
        let lost = || ApiError::Internal(anyhow::anyhow!("a group ended without an answer"));
        match tokio::time::timeout_at(deadline.into(), &mut answered).await {
            Ok(answer) => answer.unwrap_or_else(|_| Err(lost())),
            Err(_) => {
                let abandoned = claim
                    .compare_exchange(QUEUED, ABANDONED, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok();
                if abandoned {
                    return Err(timed_out(&describe, timeout));
                }
                // A group took it just now: that group's own lock timeout bounds the wait.
                answered.await.unwrap_or_else(|_| Err(lost()))
            }
        }
    }

    /// Takes `work`'s rows for a request that runs alone, as one statement of its own, when it
    /// would otherwise be a group of one: a group slot is free, and no group holds or waits
    /// for its rows. Requests that arrive for those rows meanwhile queue behind it, as behind
    /// a group. `None`: submit it instead.
    pub fn try_alone(self: &Arc<Self>, work: &Work) -> Option<Alone> {
        let rows = work.rows();
        let mut state = self.lock();
        let free = state.running < self.concurrency
            && !rows.iter().any(|r| state.busy.contains(*r))
            && !state
                .queue
                .iter()
                .any(|m| rows.iter().any(|r| m.work.touches(r)));
        if !free {
            return None;
        }
        let mut rows: Vec<String> = rows.into_iter().map(str::to_owned).collect();
        rows.sort_unstable();
        rows.dedup();
        state.busy.extend(rows.iter().cloned());
        state.running += 1;
        let id = self.next_group.fetch_add(1, Ordering::Relaxed);
        Some(Alone(Lane {
            executor: self.clone(),
            id,
            rows,
        }))
    }

    /// The request ids served by the group named `group-<id>` in `application_name`.
    pub fn request_ids(&self, group: u64) -> Option<Vec<String>> {
        self.lock().sessions.get(&group).cloned()
    }

    /// Starts groups while there is room in the database and work whose rows are free.
    fn launch(self: &Arc<Self>, state: &mut State) {
        while state.running < self.concurrency {
            let members = self.form(state);
            if members.is_empty() {
                break;
            }
            let id = self.next_group.fetch_add(1, Ordering::Relaxed);
            let rows: Vec<String> = rows_of(&members);
            state.busy.extend(rows.iter().cloned());
            state.running += 1;
            let ids = members
                .iter()
                .filter_map(|m| m.request_id.clone())
                .collect();
            state.sessions.insert(id, ids);
            let lane = Lane {
                executor: self.clone(),
                id,
                rows,
            };
            tokio::spawn(run::group(lane, members));
        }
        self.metrics.group_queued(state.queue.len());
    }

    /// Takes the next group off the queue: requests in arrival order whose rows are free, up to
    /// `max_ops`. A request left behind keeps its rows from later requests, so each row's
    /// requests run in the order they came.
    fn form(&self, state: &mut State) -> Vec<Member> {
        let mut taken: Vec<Member> = Vec::new();
        let mut ops = 0;
        let mut held: HashSet<String> = HashSet::new();
        let mut kept = VecDeque::with_capacity(state.queue.len());
        while let Some(member) = state.queue.pop_front() {
            if member.claim.load(Ordering::Acquire) == ABANDONED {
                continue;
            }
            let rows = member.work.rows();
            let blocked = rows
                .iter()
                .any(|r| state.busy.contains(*r) || held.contains(*r));
            if blocked {
                held.extend(rows.into_iter().map(str::to_owned));
                kept.push_back(member);
                continue;
            }
            if !taken.is_empty() && ops + member.work.ops() > self.max_ops {
                kept.push_back(member);
                kept.extend(state.queue.drain(..));
                break;
            }
            let claimed = member
                .claim
                .compare_exchange(QUEUED, TAKEN, Ordering::AcqRel, Ordering::Acquire)
                .is_ok();
            if claimed {
                ops += member.work.ops();
                taken.push(member);
            }
        }
        state.queue = kept;
        taken
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Never held across an await; every update leaves the state consistent.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The place of a request that runs alone (see [`GroupCommit::try_alone`]); dropping it lets
/// the requests queued on its rows go.
pub struct Alone(#[allow(dead_code)] Lane);

/// A group's place in the database; leaving it (even by a panic) frees its rows and lets the
/// next groups start.
struct Lane {
    executor: Arc<GroupCommit>,
    id: u64,
    rows: Vec<String>,
}

impl Drop for Lane {
    fn drop(&mut self) {
        let mut state = self.executor.lock();
        for row in &self.rows {
            state.busy.remove(row);
        }
        state.running -= 1;
        state.sessions.remove(&self.id);
        self.executor.launch(&mut state);
    }
}

/// The distinct rows of `members`.
fn rows_of(members: &[Member]) -> Vec<String> {
    let mut rows: Vec<String> = members
        .iter()
        .flat_map(|m| m.work.rows())
        .map(str::to_owned)
        .collect();
    rows.sort_unstable();
    rows.dedup();
    rows
}

fn timed_out(describe: &str, timeout: Duration) -> ApiError {
    ApiError::LockNotAvailable(format!(
        "{describe} stayed locked by other transactions for {} ms",
        timeout.as_millis()
    ))
}
