//! Every statement on the `queues` table (a queue's pause state and limit), with the per-queue
//! views of `jobs` that read it.

use crate::db::jobs::sql::notify_claims;

/// Pausing or resuming wakes the queue's waiting claims (resume lets them claim again; pause
/// just sends them back to sleep until their deadline).
pub(crate) const SET_PAUSED: &str = concat!(
    "WITH q AS (
     INSERT INTO queues (name, paused) VALUES ($1, $2)
     ON CONFLICT (name) DO UPDATE SET paused = EXCLUDED.paused, updated_at = now()
     RETURNING name, paused)
  SELECT jsonb_build_object('queue', name, 'paused', paused) AS settings, ",
    notify_claims!("name"),
    "
    FROM q"
);

/// Sets (or, with NULL, lifts) the queue's limit on running jobs. Waiting claims are told: a
/// higher limit may let them claim.
pub(crate) const SET_MAX_RUNNING: &str = concat!(
    "WITH q AS (
     INSERT INTO queues (name, max_running) VALUES ($1, $2)
     ON CONFLICT (name) DO UPDATE SET max_running = EXCLUDED.max_running, updated_at = now()
     RETURNING name, paused, max_running)
  SELECT jsonb_build_object('queue', name, 'paused', paused, 'max_running', max_running)
           AS settings,
         ",
    notify_claims!("name"),
    "
    FROM q"
);

/// Counts come from `jobs_queue_state`; the age is of the oldest job still waiting to run.
pub(crate) const STATS: &str = "SELECT jsonb_build_object(
     'queue', $1::text,
     'paused', COALESCE((SELECT paused FROM queues WHERE name = $1), false),
     'max_running', (SELECT max_running FROM queues WHERE name = $1),
     'counts', jsonb_build_object(
         'queued', count(*) FILTER (WHERE state = 'queued'),
         'running', count(*) FILTER (WHERE state = 'running'),
         'completed', count(*) FILTER (WHERE state = 'completed'),
         'dead', count(*) FILTER (WHERE state = 'dead'),
         'cancelled', count(*) FILTER (WHERE state = 'cancelled')),
     'available', count(*) FILTER (WHERE state = 'queued' AND run_at <= now()),
     'oldest_queued_age_ms', (extract(epoch FROM now() - min(created_at)
                              FILTER (WHERE state = 'queued')) * 1000)::bigint)
     AS stats
   FROM jobs WHERE queue = $1";

/// The dashboard's queues: every queue (that has jobs or settings): counts by state, how long its oldest queued job has
/// waited, jobs completed in the last minute, and its newest dead jobs.
pub(crate) const LIST: &str = "WITH counts AS (
        SELECT queue, state, count(*) AS n FROM jobs GROUP BY queue, state
    ), names AS (
        SELECT queue FROM counts UNION SELECT name FROM queues
    )
    SELECT n.queue, coalesce(q.paused, false) AS paused, q.max_running,
           coalesce((SELECT jsonb_object_agg(state, c.n) FROM counts c WHERE c.queue = n.queue),
                    '{}'::jsonb) AS counts,
           (SELECT extract(epoch FROM now() - min(created_at))::float8 FROM jobs
             WHERE queue = n.queue AND state = 'queued') AS oldest_queued_secs,
           (SELECT count(*) FROM jobs WHERE queue = n.queue AND state = 'completed'
               AND finished_at > now() - interval '1 minute') AS completed_last_minute,
           ARRAY(SELECT id FROM jobs WHERE queue = n.queue AND state = 'dead'
                  ORDER BY id DESC LIMIT 5) AS dead_jobs
      FROM names n LEFT JOIN queues q ON q.name = n.queue
     ORDER BY n.queue
     LIMIT 100";
