-- Unique jobs, cancellation and per-queue concurrency limits.
--
-- A job may be `cancelled` (from `queued` or `running`: its token is stale from then on).
ALTER TABLE jobs DROP CONSTRAINT jobs_state_check;
ALTER TABLE jobs ADD CONSTRAINT jobs_state_check
    CHECK (state IN ('queued', 'running', 'completed', 'dead', 'cancelled'));

-- While a job of a queue with a `unique_key` is queued or running, no other job of that queue
-- may have the key: the database enforces it, under any concurrency and across instances. Once
-- the job is completed, dead or cancelled, the key is free again.
ALTER TABLE jobs ADD COLUMN unique_key text
    CHECK (unique_key IS NULL OR length(unique_key) BETWEEN 1 AND 255);
CREATE UNIQUE INDEX jobs_unique_active ON jobs (queue, unique_key)
    WHERE unique_key IS NOT NULL AND state IN ('queued', 'running');

-- At most `max_running` jobs of the queue run at once (NULL: no limit). Claims on a limited
-- queue lock its row, so they count and claim one after another.
ALTER TABLE queues ADD COLUMN max_running integer
    CHECK (max_running IS NULL OR max_running BETWEEN 0 AND 1000000);

-- Cancelled jobs are purged like completed ones.
CREATE INDEX jobs_cancelled ON jobs (finished_at) WHERE state = 'cancelled';
