-- pgbench script: the one-job SKIP LOCKED claim transaction, straight against PostgreSQL — lock
-- the next queued job of queue 'bench' (highest priority, then oldest) skipping rows other
-- clients hold, and mark it done in the same transaction. It is the cheapest way a client can
-- take a job; rowlock claims (one transaction) and completes (another) over HTTP instead, and
-- holds no lock while the work runs.
BEGIN ISOLATION LEVEL READ COMMITTED;
WITH picked AS (
    SELECT id FROM jobs
     WHERE queue = 'bench' AND state = 'queued' AND run_at <= now()
     ORDER BY priority DESC, id
     LIMIT 1
       FOR UPDATE OF jobs SKIP LOCKED)
UPDATE jobs j
   SET state = 'completed', attempt = j.attempt + 1, attempted_at = now(), finished_at = now()
  FROM picked
 WHERE j.id = picked.id;
COMMIT;
