-- pgbench script: rowlock's transaction for `POST /counters/spread-N/increment`
-- (lock=wait) on a random one of spread-0 … spread-9999, built from its own statements
-- (src/bench/scripts.rs); do not edit by hand.
\set id random(0, 9999)
BEGIN ISOLATION LEVEL READ COMMITTED;
SELECT txid_current() AS txid, coalesce((SELECT stats_reset::text FROM pg_stat_wal), '') AS crash_mark, set_config('application_name', 'pgbench', true);
SELECT name, value, min, max, version FROM counters WHERE name = 'spread-' || CAST(:id AS text) FOR UPDATE;
UPDATE counters SET value = value + 1, version = nextval('counter_versions'), updated_at = now() WHERE name = 'spread-' || CAST(:id AS text) AND value + 1 BETWEEN coalesce(min, -9223372036854775808) AND coalesce(max, 9223372036854775807) RETURNING value, version;
COMMIT;
