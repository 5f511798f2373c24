//! The statements a queue's workers run most: rescuing expired leases, claiming, and a job
//! group's acknowledgements.

/// Puts jobs whose lease expired back to `queued` (or `dead` after their last attempt), before
/// the claim in the same transaction: the claim then sees them as ordinary queued jobs, in their
/// priority and age order, and the index of queued jobs stays the only one a claim scans.
///
/// On a queue with `max_running` it first locks the queue's row, so the claims of that queue
/// (from every rowlock instance) count and claim one at a time: the claim that follows is a new
/// statement, whose snapshot sees the jobs the previous claim marked running. A queue without a
/// limit locks nothing here.
pub(crate) const RESCUE: &str = concat!(
    "WITH limited AS MATERIALIZED (
        SELECT name FROM queues WHERE name = $1 AND max_running IS NOT NULL FOR UPDATE
     )
     UPDATE jobs SET
        state = CASE WHEN attempt >= max_attempts THEN 'dead' ELSE 'queued' END,
        finished_at = CASE WHEN attempt >= max_attempts THEN now() END,
        errors = ",
    recent_errors!("errors", "attempt", "'lease expired'"),
    ",
        run_at = now(), token = NULL, lease_expires_at = NULL
      WHERE id IN (SELECT id FROM jobs
                    WHERE queue = $1 AND state = 'running' AND lease_expires_at <= now()
                    ORDER BY lease_expires_at LIMIT $2
                      FOR UPDATE SKIP LOCKED)
        AND (SELECT count(*) FROM limited) >= 0"
);

/// The claim. `FOR UPDATE OF jobs SKIP LOCKED` inside the `LIMIT`ed scan of `jobs_claimable`:
/// rows another claim is taking are passed over, not waited for. The paused check does not refer
/// to the job, so PostgreSQL evaluates it once per statement.
///
/// One statement serves every claim of a job group ([`crate::db::jobs::group`]): its `$2` slots are dealt
/// out in claim order, slot `n` going to the claim `$6[n]` with that claim's token `$3[n]` and
/// lease `$4[n]` (a claim alone owns every slot). Each claim's answer is bounded in bytes as well
/// as in jobs: its jobs are taken in claim order while the payloads before them add up to less
/// than `$5` bytes of JSON (so its first job is always taken). The picked jobs beyond a budget
/// stay `queued` (their row locks end at `COMMIT`). So do those beyond the queue's room under
/// `max_running` (`room`): the scan's `LIMIT` stays a plain parameter, so its plan remains an
/// ordered index scan that stops after `$2` rows.
pub(crate) const CLAIM: &str = "WITH room AS MATERIALIZED (
     SELECT coalesce((SELECT greatest(0, q.max_running - (
                         SELECT count(*) FROM jobs
                          WHERE queue = $1 AND state = 'running' AND lease_expires_at > now()))
                        FROM queues q WHERE q.name = $1 AND q.max_running IS NOT NULL),
                     $2) AS jobs
   ), picked AS (
     SELECT id, priority, octet_length(payload::text) AS bytes FROM jobs
      WHERE queue = $1 AND state = 'queued' AND run_at <= now()
        AND NOT EXISTS (SELECT 1 FROM queues WHERE name = $1 AND paused)
      ORDER BY priority DESC, id
      LIMIT $2
        FOR UPDATE OF jobs SKIP LOCKED
   ), slots AS (
     SELECT * FROM unnest($3::text[], $4::float8[], $6::int[])
                   WITH ORDINALITY AS s(token, lease_secs, owner, n)
   ), within_budget AS MATERIALIZED (
     SELECT id, token, lease_secs, owner FROM (
       SELECT p.id, p.n, s.token, s.lease_secs, s.owner,
              sum(p.bytes) OVER (PARTITION BY s.owner ORDER BY p.n) - p.bytes AS before
         FROM (SELECT id, bytes, row_number() OVER (ORDER BY priority DESC, id) AS n
                 FROM picked) p
         JOIN slots s ON s.n = p.n
     ) running_total
      WHERE before < $5 AND n <= (SELECT jobs FROM room)
   ), claimed AS (
     UPDATE jobs j
        SET state = 'running', attempt = j.attempt + 1, token = w.token,
            lease_expires_at = now() + make_interval(secs => w.lease_secs), attempted_at = now()
       FROM within_budget w
      -- Found by an array of ids: the plan is then index look-ups of the picked ids whatever
      -- the planner guesses of `LIMIT $2` (a merge join over the whole primary key was its
      -- choice on a table of a million jobs).
      WHERE j.id = ANY (ARRAY(SELECT id FROM within_budget)) AND j.id = w.id
  RETURNING j.id, j.priority, j.payload, j.attempt, j.token, j.lease_expires_at, w.owner)
  SELECT id, payload::text AS payload, attempt, token,
         to_jsonb(lease_expires_at) AS lease_expires_at, owner
    FROM claimed ORDER BY priority DESC, id";

/// Seconds until a job of the queue may become claimable: its earliest `run_at` or lease expiry
/// (NULL: nothing will, or the queue is paused — only a NOTIFY can change that).
pub(crate) const NEXT_DUE: &str =
    "SELECT CASE WHEN EXISTS (SELECT 1 FROM queues WHERE name = $1 AND paused)
     THEN NULL ELSE extract(epoch FROM least(
         (SELECT min(run_at) FROM jobs WHERE queue = $1 AND state = 'queued'),
         (SELECT min(lease_expires_at) FROM jobs WHERE queue = $1 AND state = 'running'))
       - now())::float8 END AS secs";

/// Completes, fails or extends every `(id, token)` of the input whose token is current, in one
/// statement; answers every input in order with the job's new state (as the single routes
/// answer it) or, when refused, the job's state now (none: no such job, or not in `queue`).
/// Failed jobs that are queued again wake their queue's claims at `COMMIT`.
pub(crate) const ACK: &str = concat!(
    "WITH input AS MATERIALIZED (
        SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::jsonb[],
                             $6::float8[])
               WITH ORDINALITY AS t(id, token, queue, action, error, lease_secs, ord)
    ), done AS (
        UPDATE jobs j SET
            state = CASE i.action
                WHEN 'complete' THEN 'completed'
                WHEN 'fail' THEN CASE WHEN j.attempt >= j.max_attempts THEN 'dead' ELSE 'queued' END
                ELSE j.state END,
            -- Backoff as in a single fail: half an exponential ceiling plus a random part.
            run_at = CASE WHEN i.action = 'fail' AND j.attempt < j.max_attempts
                THEN ",
    backoff!("j.attempt"),
    "
                ELSE j.run_at END,
            finished_at = CASE
                WHEN i.action = 'complete' OR (i.action = 'fail' AND j.attempt >= j.max_attempts)
                THEN now() ELSE j.finished_at END,
            errors = CASE WHEN i.action = 'fail' THEN ",
    recent_errors!("j.errors", "j.attempt", "i.error"),
    "
                ELSE j.errors END,
            token = CASE WHEN i.action = 'heartbeat' THEN j.token END,
            lease_expires_at = CASE WHEN i.action = 'heartbeat'
                THEN now() + make_interval(secs => i.lease_secs) END
          FROM input i
         -- Found by id (see COMPLETE_BATCH); only a running job has a token.
         WHERE j.id = ANY ($1::bigint[]) AND j.id = i.id AND j.token = i.token
           AND j.state = 'running' AND (i.queue IS NULL OR j.queue = i.queue) IS TRUE
     RETURNING j.id, i.action, j.queue, j.state, j.attempt, j.run_at, j.finished_at,
               j.lease_expires_at
    )
    SELECT i.id,
           CASE d.action
             WHEN 'complete' THEN jsonb_build_object('id', d.id, 'state', d.state,
                 'attempt', d.attempt, 'finished_at', d.finished_at)
             WHEN 'fail' THEN jsonb_build_object('id', d.id, 'state', d.state,
                 'attempt', d.attempt, 'run_at', CASE WHEN d.state = 'queued' THEN d.run_at END)
             WHEN 'heartbeat' THEN jsonb_build_object('id', d.id, 'state', d.state,
                 'attempt', d.attempt, 'lease_expires_at', d.lease_expires_at)
           END::text AS done,
           (SELECT state FROM jobs
             WHERE jobs.id = i.id AND (i.queue IS NULL OR jobs.queue = i.queue) IS TRUE) AS state,
           CASE WHEN d.action = 'fail' AND d.state = 'queued'
                THEN ",
    notify_claims!("d.queue"),
    " END
      FROM input i LEFT JOIN done d ON d.id = i.id
     ORDER BY i.ord"
);
