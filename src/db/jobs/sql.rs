//! Every statement on the `jobs` table (the per-queue settings are [`crate::db::queues`]'s), and
//! the fragments they share: a job's JSON ([`job_json!`]), a completion ([`completed!`]), the
//! retry backoff ([`backoff!`]), the kept errors ([`recent_errors!`]) and the wake-up of a
//! queue's waiting claims ([`notify_claims!`]).

use crate::db::locking::LockStatements;
use crate::lock_statements;

/// Wakes the waiting claims of queue `$queue` (an expression), in every rowlock instance: a
/// notification on [`CHANNEL`](crate::db::notify::CHANNEL), sent at `COMMIT`.
macro_rules! notify_claims {
    ($queue:literal) => {
        concat!(
            "pg_notify('",
            $crate::db::notify::channel!(),
            "', ",
            $queue,
            ")"
        )
    };
}
pub(crate) use notify_claims;

/// The `SET` of a completed job: its token is stale from then on.
macro_rules! completed {
    () => {
        "state = 'completed', token = NULL, lease_expires_at = NULL, finished_at = now()"
    };
}

/// When a failed job runs again, after its attempt number `$attempt`: backoff with "equal
/// jitter", half of an exponential ceiling (1 s, 2 s, 4 s … capped at 1 h) plus a random part of
/// the other half, so delays spread out yet always grow with the attempt.
macro_rules! backoff {
    ($attempt:literal) => {
        concat!(
            "now() + make_interval(secs => least(3600, 2 ^ least(",
            $attempt,
            " - 1, 20)) * (0.5 + random() / 2))"
        )
    };
}

/// The job's `$errors` with the error `$error` of attempt `$attempt` added, the latest 20 kept.
macro_rules! recent_errors {
    ($errors:literal, $attempt:literal, $error:literal) => {
        concat!(
            "rowlock_recent_errors(",
            $errors,
            ", jsonb_build_object('attempt', ",
            $attempt,
            ", 'error', ",
            $error,
            ", 'at', now()), 20)"
        )
    };
}

mod workers;

pub(crate) use workers::{ACK, CLAIM, NEXT_DUE, RESCUE};

/// `jsonb_build_object` renders timestamps as ISO 8601 (RFC 3339) text, so Rust never parses one.
macro_rules! job_json {
    () => {
        "jsonb_build_object('id', id, 'queue', queue, 'state', state, 'payload', payload,
            'priority', priority, 'attempt', attempt, 'max_attempts', max_attempts,
            'run_at', run_at, 'lease_expires_at', lease_expires_at, 'errors', errors,
            'created_at', created_at, 'attempted_at', attempted_at, 'finished_at', finished_at)"
    };
}

/// Inserts a batch of jobs in one statement. Ids are drawn first, in the batch's order, so each
/// input row knows its id whether it was inserted or skipped as the duplicate of a queued or
/// running job with its `unique_key` (the partial unique index decides, under any concurrency).
/// The notification ([`notify_claims!`]) goes out at `COMMIT`, so a woken
/// claim finds the jobs.
pub(crate) const INSERT: &str = concat!(
    "WITH input AS MATERIALIZED (
        SELECT nextval('jobs_id_seq') AS id, t.*
          FROM unnest($2::jsonb[], $3::int[], $4::int[], $5::text[], $6::text[])
               WITH ORDINALITY AS t(payload, priority, max_attempts, run_at, unique_key, ord)
    ), inserted AS (
        INSERT INTO jobs (id, queue, payload, priority, max_attempts, run_at, unique_key)
        OVERRIDING SYSTEM VALUE
        SELECT id, $1, payload, priority, max_attempts,
               coalesce(run_at::timestamptz, now()), unique_key
          FROM input ORDER BY ord
        ON CONFLICT (queue, unique_key)
           WHERE unique_key IS NOT NULL AND state IN ('queued', 'running') DO NOTHING
        RETURNING id
    )
    SELECT i.id, i.unique_key, ins.id IS NOT NULL AS inserted, ",
    notify_claims!("$1"),
    "
      FROM input i LEFT JOIN inserted ins USING (id) ORDER BY i.ord"
);
/// The queued or running jobs holding these unique keys (those an insert was skipped for).
pub(crate) const ACTIVE_KEYS: &str = "SELECT unique_key, id FROM jobs
      WHERE queue = $1 AND unique_key = ANY($2) AND state IN ('queued', 'running')";
pub(crate) const SELECT: &str = concat!("SELECT ", job_json!(), " AS job FROM jobs WHERE id = $1");
pub(crate) const LOCK: LockStatements = lock_statements!("SELECT state FROM jobs WHERE id = $1");
pub(crate) const STATE: &str = "SELECT state FROM jobs WHERE id = $1";

pub(crate) const COMPLETE: &str = concat!(
    "UPDATE jobs
        SET ",
    completed!(),
    "
      WHERE id = $1 AND state = 'running' AND token = $2
  RETURNING jsonb_build_object('id', id, 'state', state, 'attempt', attempt,
                               'finished_at', finished_at) AS job"
);
/// A failed job runs again after a [`backoff!`]; the last allowed attempt makes the job `dead`.
/// Waiting claims are told at `COMMIT`: they then sleep until the new `run_at`.
pub(crate) const FAIL: &str = concat!(
    "WITH f AS (
     UPDATE jobs SET
        state = CASE WHEN attempt >= max_attempts THEN 'dead' ELSE 'queued' END,
        run_at = CASE WHEN attempt >= max_attempts THEN run_at ELSE ",
    backoff!("attempt"),
    " END,
        finished_at = CASE WHEN attempt >= max_attempts THEN now() END,
        errors = ",
    recent_errors!("errors", "attempt", "$3::jsonb"),
    ",
        token = NULL, lease_expires_at = NULL
      WHERE id = $1 AND state = 'running' AND token = $2
  RETURNING id, queue, state, attempt, run_at)
  SELECT jsonb_build_object('id', id, 'state', state, 'attempt', attempt,
             'run_at', CASE WHEN state = 'queued' THEN run_at END) AS job,
         ",
    notify_claims!("queue"),
    "
    FROM f"
);
pub(crate) const HEARTBEAT: &str =
    "UPDATE jobs SET lease_expires_at = now() + make_interval(secs => $3)
      WHERE id = $1 AND state = 'running' AND token = $2
  RETURNING jsonb_build_object('id', id, 'state', state, 'attempt', attempt,
                               'lease_expires_at', lease_expires_at) AS job";
/// A dead job gets `max_attempts` fresh attempts; its past errors are kept.
pub(crate) const RETRY: &str = concat!(
    "WITH r AS (
     UPDATE jobs SET state = 'queued', attempt = 0, run_at = now(), finished_at = NULL
      WHERE id = $1 AND state = 'dead'
  RETURNING id, queue, state, attempt, run_at)
  SELECT jsonb_build_object('id', id, 'state', state, 'attempt', attempt, 'run_at', run_at)
           AS job,
         ",
    notify_claims!("queue"),
    "
    FROM r"
);
pub(crate) const DELETE: &str = "DELETE FROM jobs WHERE id = $1 AND state = 'queued'
  RETURNING jsonb_build_object('id', id) AS job";
/// A cancelled job's token is stale from then on; its queue's claims are told (a running job
/// that stops counting may make room under `max_running`).
pub(crate) const CANCEL: &str = concat!(
    "WITH c AS (
     UPDATE jobs SET state = 'cancelled', token = NULL, lease_expires_at = NULL,
                     finished_at = now()
      WHERE id = $1 AND state IN ('queued', 'running')
  RETURNING id, queue, state, attempt, finished_at)
  SELECT jsonb_build_object('id', id, 'state', state, 'attempt', attempt,
                            'finished_at', finished_at) AS job,
         ",
    notify_claims!("queue"),
    "
    FROM c"
);
/// Completes every `(id, token)` of `queue` whose token is current, in one statement; answers
/// every input in order with whether it was completed and, if not, the job's state (none: no
/// such job in this queue).
pub(crate) const COMPLETE_BATCH: &str = concat!(
    "WITH input AS MATERIALIZED (
        SELECT * FROM unnest($2::bigint[], $3::text[]) WITH ORDINALITY AS t(id, token, ord)
    ), done AS (
        UPDATE jobs j
           SET ",
    completed!(),
    "
          FROM input i
         -- Jobs are found by id only: the token alone says the job is running (only a running
         -- job has one, `jobs_running_has_lease`), and the queue is compared in a form no index
         -- serves. Otherwise a plan for a queue the statistics do not know yet (a new queue
         -- looks tiny) scans the queue's index, which holds every job and dead entry of the queue.
         WHERE j.id = ANY ($2::bigint[]) AND j.id = i.id AND (j.queue = $1) IS TRUE
           AND j.token = i.token
     RETURNING j.id
    )
    SELECT i.id, d.id IS NOT NULL AS completed,
           (SELECT CASE WHEN queue = $1 THEN state END FROM jobs WHERE jobs.id = i.id) AS state
      FROM input i LEFT JOIN done d USING (id) ORDER BY i.ord"
);

/// Housekeeping: a batch (`$1`) of the jobs in `$state` finished more than `$2` seconds ago.
macro_rules! purge {
    ($state:literal) => {
        concat!(
            "DELETE FROM jobs WHERE id IN (
                SELECT id FROM jobs
                 WHERE state = '",
            $state,
            "' AND finished_at < now() - make_interval(secs => $2)
                 LIMIT $1)"
        )
    };
}
pub(crate) const PURGE_COMPLETED: &str = purge!("completed");
pub(crate) const PURGE_CANCELLED: &str = purge!("cancelled");

/// Unfinished jobs by queue and state, for the metrics.
pub(crate) const DEPTHS: &str = "SELECT queue, state, count(*) AS jobs FROM jobs
     WHERE state <> 'completed' GROUP BY 1, 2";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::notify::CHANNEL;
    use crate::db::queues::sql::{SET_MAX_RUNNING, SET_PAUSED};

    #[test]
    fn every_notifying_statement_uses_the_listened_channel() {
        for sql in [
            INSERT,
            FAIL,
            RETRY,
            CANCEL,
            ACK,
            SET_PAUSED,
            SET_MAX_RUNNING,
        ] {
            assert!(sql.contains(&format!("pg_notify('{CHANNEL}'")), "{sql}");
        }
    }
}
