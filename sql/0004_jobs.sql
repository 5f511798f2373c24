-- Jobs: a work queue claimed with FOR UPDATE SKIP LOCKED.
--
-- A job is `queued` (claimable once `run_at` is due), `running` (claimed: it has a token and a
-- lease), `completed`, or `dead` (failed `max_attempts` times; its errors are kept). A running
-- job whose lease expired is put back to `queued` by the next claim on its queue.
CREATE TABLE jobs (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    queue            text COLLATE "C" NOT NULL CHECK (queue ~ '^[A-Za-z0-9._-]{1,128}$'),
    state            text NOT NULL DEFAULT 'queued'
                     CHECK (state IN ('queued', 'running', 'completed', 'dead')),
    payload          jsonb NOT NULL,
    priority         integer NOT NULL DEFAULT 0,
    -- Claims so far; the claim that makes it `max_attempts` is the last one.
    attempt          integer NOT NULL DEFAULT 0,
    max_attempts     integer NOT NULL DEFAULT 5 CHECK (max_attempts BETWEEN 1 AND 1000),
    run_at           timestamptz NOT NULL DEFAULT now(),
    -- The current claim's token; only it may complete, fail or heartbeat the job.
    token            text,
    lease_expires_at timestamptz,
    -- One {"attempt", "error", "at"} per failed attempt.
    errors           jsonb NOT NULL DEFAULT '[]',
    created_at       timestamptz NOT NULL DEFAULT now(),
    attempted_at     timestamptz,
    finished_at      timestamptz,
    CONSTRAINT jobs_running_has_lease
        CHECK ((state = 'running') = (token IS NOT NULL AND lease_expires_at IS NOT NULL))
);

-- The claim scan: the head of this index is the next job to hand out (highest priority, then
-- oldest). Partial, so running and finished jobs never sit in the way of a claim.
CREATE INDEX jobs_claimable ON jobs (queue, priority DESC, id) WHERE state = 'queued';
-- Expired leases, found by every claim on the queue before it claims; small (running jobs only).
CREATE INDEX jobs_leases ON jobs (queue, lease_expires_at) WHERE state = 'running';
-- Counts by state for GET /queues/{queue}, and the next `run_at` a waiting claim sleeps until.
CREATE INDEX jobs_queue_state ON jobs (queue, state, run_at);

-- Queue settings. A queue exists implicitly once it has jobs; a row here only records that it
-- was paused or resumed, so enqueueing never touches (or locks) this table.
CREATE TABLE queues (
    name       text COLLATE "C" PRIMARY KEY CHECK (name ~ '^[A-Za-z0-9._-]{1,128}$'),
    paused     boolean NOT NULL DEFAULT false,
    updated_at timestamptz NOT NULL DEFAULT now()
);
