-- pgbench script: rowlock's transaction for `POST /counters/hot/increment` (lock=wait),
-- built from its own statements (src/bench/scripts.rs); do not edit by hand.
BEGIN ISOLATION LEVEL READ COMMITTED;
SELECT txid_current() AS txid, coalesce((SELECT stats_reset::text FROM pg_stat_wal), '') AS crash_mark, set_config('application_name', 'pgbench', true);
SELECT name, value, min, max, version FROM counters WHERE name = 'hot' FOR UPDATE;
UPDATE counters SET value = value + 1, version = nextval('counter_versions'), updated_at = now() WHERE name = 'hot' AND value + 1 BETWEEN coalesce(min, -9223372036854775808) AND coalesce(max, 9223372036854775807) RETURNING value, version;
COMMIT;
