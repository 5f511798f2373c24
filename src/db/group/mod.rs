//! Group commit: many clients' changes in one locked transaction.
//!
//! The executor here is shared by two kinds of work ([`Kind`]): counter changes (below, [`run`])
//! and job acknowledgements with claims ([`crate::db::jobs::group`]). Each kind says which rows
//! a request needs and how one group's transaction runs; forming groups, the per-row order, the
//! lock timeouts in the queue and the number of groups in the database are the executor's.
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
//! - a request joins the queue; if no group is in the database, a group is formed at once, so a
//!   lone request is a group of one and waits for nobody. While groups are in the database,
//!   another starts if fewer than `--group-concurrency` are, and (jobs only, [`Kind::COMPANY`])
//!   once enough requests wait to be worth a transaction of their own;
//! - a row belongs to at most one group in the database at a time. A request whose rows are
//!   taken waits in the queue, and so does every later request on those rows (per-row arrival
//!   order): when the group holding the row commits, the next group takes all of them. This is
//!   also what keeps a hot row from tying up the pool, and a row held from `psql` from stalling
//!   requests on other rows;
//! - a request waits in the queue at most its lock timeout (then 423, nothing applied), and a
//!   group's `lock_timeout` is what is left of its members' shortest one.

mod apply;
mod args;
mod member;
mod run;
mod work;

pub(crate) use args::parse_switch;
pub use args::GroupArgs;
pub use member::{expire, remaining_lock_timeout, Alone, Lane, Member, Request};
use member::{timed_out, ABANDONED, QUEUED, TAKEN};
pub use run::Counters;
pub use work::{Change, Work};

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::error::ApiError;

/// What one request of a kind asks of the shared executor: the rows it needs and how much of a
/// group it takes.
pub trait Grouped: Send + 'static {
    /// A row a request needs; a row is in at most one group in the database at a time.
    type Row: Hash + Eq + Ord + Clone + Send + 'static;
    /// Whether two requests of one group may share a row (`false`: the group applies them one
    /// after another itself) or not (`true`: the later one waits for the next group).
    const EXCLUSIVE_ROWS: bool;

    /// The rows the request needs (with repeats).
    fn rows(&self) -> Vec<&Self::Row>;
    /// How much of a group's `max_ops` the request takes.
    fn ops(&self) -> usize;
    /// How a lock timeout names the request's rows.
    fn describe(&self) -> String;
}

/// A row of kind `K`'s work.
pub type RowOf<K> = <<K as Kind>::Work as Grouped>::Row;

/// What one kind of grouped work (counter changes, job acknowledgements and claims) tells the
/// shared executor: what a request asks ([`Grouped`]) and how a group of them runs.
pub trait Kind: Send + Sync + Sized + 'static {
    /// What one request asks.
    type Work: Grouped;
    /// A request's answer, sent once its group committed.
    type Answer: Send + 'static;
    /// While a group of this kind is in the database, another one starts only once this many
    /// requests wait (and a slot is free); with none in the database, a request starts at once.
    const COMPANY: usize;

    /// Runs one group to its end, answering every member; dropping `lane` lets the next start.
    fn start(lane: Lane<Self>, members: Vec<Member<Self>>);
    /// How many requests wait in the queue now (a gauge).
    fn queued(&self, n: usize);
}

/// The group-commit executor of one kind of work.
pub struct GroupCommit<K: Kind> {
    /// The kind's own settings and handles.
    pub kind: K,
    state: Mutex<State<K>>,
    max_ops: usize,
    concurrency: usize,
    default_lock_timeout: Duration,
    next_group: AtomicU64,
}

struct State<K: Kind> {
    queue: VecDeque<Member<K>>,
    /// Rows of the groups in the database.
    busy: HashSet<RowOf<K>>,
    /// Groups in the database.
    running: usize,
    /// Request ids of each group in the database, by group id (for `GET /debug/locks`).
    sessions: HashMap<u64, Vec<String>>,
}

/// Settings of [`GroupCommit::new`].
pub struct Settings {
    /// At most this many ops in one group (at least 1).
    pub max_ops: usize,
    /// At most this many groups in the database at once (at least 1).
    pub concurrency: usize,
    /// The lock timeout of a request that gave none.
    pub default_lock_timeout: Duration,
}

impl<K: Kind> GroupCommit<K> {
    /// An executor of `kind`'s work with an empty queue and no group running.
    pub fn new(kind: K, settings: Settings) -> Arc<Self> {
        Arc::new(Self {
            kind,
            state: Mutex::new(State {
                queue: VecDeque::new(),
                busy: HashSet::new(),
                running: 0,
                sessions: HashMap::new(),
            }),
            max_ops: settings.max_ops.max(1),
            concurrency: settings.concurrency.max(1),
            default_lock_timeout: settings.default_lock_timeout,
            next_group: AtomicU64::new(1),
        })
    }

    /// Runs `request` in a group; answers once the group's `COMMIT` succeeded (or why not).
    pub async fn submit(self: &Arc<Self>, request: Request<K>) -> Result<K::Answer, ApiError> {
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
                deadline,
                timeout,
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

    /// Takes `rows` for a request that runs alone, as one statement of its own, when it
    /// would otherwise be a group of one: a group slot is free, and no group holds or waits
    /// for its rows. Requests that arrive for those rows meanwhile queue behind it, as behind
    /// a group. `None`: submit it instead.
    pub fn try_alone(self: &Arc<Self>, rows: Vec<&RowOf<K>>) -> Option<Alone<K>> {
        let mut state = self.lock();
        let free = state.running < self.concurrency
            && !rows.iter().any(|r| state.busy.contains(*r))
            && !state
                .queue
                .iter()
                .any(|m| m.work.rows().iter().any(|r| rows.contains(r)));
        if !free {
            return None;
        }
        let mut rows: Vec<RowOf<K>> = rows.into_iter().cloned().collect();
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
    fn launch(self: &Arc<Self>, state: &mut State<K>) {
        while state.running < self.concurrency {
            // Under load, another group in the database is worth its transaction only with
            // company; alone (nothing in the database), a request never waits.
            if state.running > 0 && state.queue.len() < K::COMPANY {
                break;
            }
            let members = self.form(state);
            if members.is_empty() {
                break;
            }
            let id = self.next_group.fetch_add(1, Ordering::Relaxed);
            let rows = rows_of(&members);
            state.busy.extend(rows.iter().cloned());
            state.running += 1;
            let ids = members
                .iter()
                .filter_map(|m| m.request_id.clone())
                .collect();
            let _ = state.sessions.insert(id, ids);
            let lane = Lane {
                executor: self.clone(),
                id,
                rows,
            };
            K::start(lane, members);
        }
        self.kind.queued(state.queue.len());
    }

    /// Takes the next group off the queue: requests in arrival order whose rows are free, up to
    /// `max_ops`. A request left behind keeps its rows from later requests, so each row's
    /// requests run in the order they came.
    fn form(&self, state: &mut State<K>) -> Vec<Member<K>> {
        let mut taken: Vec<Member<K>> = Vec::new();
        let mut ops = 0;
        let mut held: HashSet<RowOf<K>> = HashSet::new();
        // With exclusive rows, the rows of the members taken so far.
        let mut in_group: HashSet<RowOf<K>> = HashSet::new();
        let mut kept = VecDeque::with_capacity(state.queue.len());
        while let Some(member) = state.queue.pop_front() {
            if member.claim.load(Ordering::Acquire) == ABANDONED {
                continue;
            }
            let rows = member.work.rows();
            let blocked = rows
                .iter()
                .any(|r| state.busy.contains(*r) || held.contains(*r) || in_group.contains(*r));
            if blocked {
                held.extend(rows.into_iter().cloned());
                kept.push_back(member);
                continue;
            }
            let member_ops = member.work.ops();
            if !taken.is_empty() && ops + member_ops > self.max_ops {
                kept.push_back(member);
                kept.extend(state.queue.drain(..));
                break;
            }
            let claimed = member
                .claim
                .compare_exchange(QUEUED, TAKEN, Ordering::AcqRel, Ordering::Acquire)
                .is_ok();
            if claimed {
                if <K::Work as Grouped>::EXCLUSIVE_ROWS {
                    in_group.extend(rows.into_iter().cloned());
                }
                ops += member_ops;
                taken.push(member);
            }
        }
        state.queue = kept;
        taken
    }

    fn lock(&self) -> MutexGuard<'_, State<K>> {
        // Never held across an await; every update leaves the state consistent.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The distinct rows of `members`.
fn rows_of<K: Kind>(members: &[Member<K>]) -> Vec<RowOf<K>> {
    let mut rows: Vec<RowOf<K>> = members
        .iter()
        .flat_map(|m| m.work.rows())
        .cloned()
        .collect();
    rows.sort_unstable();
    rows.dedup();
    rows
}
