//! A request's place in the executor: waiting in the queue ([`Member`]), running alone
//! ([`Alone`]) or in a group in the database ([`Lane`]).

use std::sync::atomic::AtomicU8;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::{GroupCommit, Grouped, Kind, RowOf};
use crate::error::ApiError;

/// A request as submitted by the planner.
pub struct Request<K: Kind> {
    /// What the request asks the group to do.
    pub work: K::Work,
    /// The request's own `lock_timeout_ms`, if it gave one.
    pub lock_timeout: Option<Duration>,
    /// The request's `x-request-id`, shown by `GET /debug/locks` while its group runs.
    pub request_id: Option<String>,
}

pub(super) const QUEUED: u8 = 0;
pub(super) const TAKEN: u8 = 1;
pub(super) const ABANDONED: u8 = 2;

/// A request waiting in the queue or running in a group.
pub struct Member<K: Kind> {
    /// What the request asks the group to do.
    pub work: K::Work,
    /// When its lock timeout runs out (counted from `enqueued`): a member still queued then is
    /// answered 423.
    pub deadline: Instant,
    /// The lock timeout `deadline` came from (for the 423's detail).
    pub timeout: Duration,
    /// The request's `x-request-id`, shown by `GET /debug/locks` while its group runs.
    pub request_id: Option<String>,
    /// When the request joined the queue (its lock wait is measured from here).
    pub enqueued: Instant,
    /// `QUEUED` → `TAKEN` by the group that runs it, or → `ABANDONED` by its own request once
    /// its lock timeout ran out in the queue: exactly one of the two wins.
    pub(super) claim: Arc<AtomicU8>,
    pub(super) answer: oneshot::Sender<Result<K::Answer, ApiError>>,
}

impl<K: Kind> Member<K> {
    /// Sends the member its answer (nobody may be listening any more).
    pub fn answer(self, answer: Result<K::Answer, ApiError>) {
        let _ = self.answer.send(answer);
    }

    /// Answers 423: the member's lock timeout ran out.
    pub fn time_out(self) {
        let error = timed_out(&self.work.describe(), self.timeout);
        self.answer(Err(error));
    }
}

/// The place of a request that runs alone (see [`GroupCommit::try_alone`]); dropping it lets
/// the requests queued on its rows go.
pub struct Alone<K: Kind>(#[allow(dead_code)] pub(super) Lane<K>);

/// A group's place in the database; leaving it (even by a panic) frees its rows and lets the
/// next groups start.
pub struct Lane<K: Kind> {
    pub(super) executor: Arc<GroupCommit<K>>,
    pub(super) id: u64,
    pub(super) rows: Vec<RowOf<K>>,
}

impl<K: Kind> Lane<K> {
    /// The executor the group runs in.
    pub fn executor(&self) -> &Arc<GroupCommit<K>> {
        &self.executor
    }

    /// The group's number, unique in this process (it names the database session).
    pub fn id(&self) -> u64 {
        self.id
    }
}

impl<K: Kind> Drop for Lane<K> {
    fn drop(&mut self) {
        let mut state = self.executor.lock();
        for row in &self.rows {
            let _ = state.busy.remove(row);
        }
        state.running -= 1;
        let _ = state.sessions.remove(&self.id);
        self.executor.launch(&mut state);
    }
}

/// Answers 423 to the members whose lock timeout has run out; returns the others.
pub fn expire<K: Kind>(members: Vec<Member<K>>) -> Vec<Member<K>> {
    let now = Instant::now();
    let (expired, alive): (Vec<_>, Vec<_>) = members.into_iter().partition(|m| m.deadline <= now);
    for member in expired {
        member.time_out();
    }
    alive
}

/// What is left of the shortest lock timeout of `members`, as a `lock_timeout` setting.
pub fn remaining_lock_timeout<K: Kind>(members: &[Member<K>]) -> Duration {
    let now = Instant::now();
    members
        .iter()
        .map(|m| m.deadline.saturating_duration_since(now))
        .min()
        .unwrap_or_default()
}

pub(super) fn timed_out(describe: &str, timeout: Duration) -> ApiError {
    ApiError::LockNotAvailable(format!(
        "{describe} stayed locked by other transactions for {} ms",
        timeout.as_millis()
    ))
}
