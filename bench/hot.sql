-- pgbench script: rowlock's transaction for `POST /counters/hot/increment` (lock=wait),
-- built from its own statements (src/bench/scripts.rs); do not edit by hand.
BEGIN ISOLATION LEVEL READ COMMITTED;
SELECT txid_current(), coalesce((SELECT stats_reset::text FROM pg_stat_wal), ''), set_config('application_name', 'pgbench', true);
SELECT name, value, min, max, version FROM counters WHERE name = 'hot' FOR UPDATE;
UPDATE counters SET value = value + 1, version = nextval('counter_versions'), updated_at = now()
     WHERE name = 'hot'
       AND (min IS NULL OR value + 1 >= min) AND (max IS NULL OR value + 1 <= max)
     RETURNING value, version;
COMMIT;
