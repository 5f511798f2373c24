-- pgbench script: the same transaction as hot.sql, on a random one of the 10,000 counters
-- spread-0 … spread-9999 (what `rowlock hammer --counter spread --spread 10000` targets).
\set id random(0, 9999)
BEGIN ISOLATION LEVEL READ COMMITTED;
SELECT name, value, min, max, version FROM counters WHERE name = 'spread-' || CAST(:id AS text) FOR UPDATE;
UPDATE counters SET value = value + 1, version = version + 1, updated_at = now()
  WHERE name = 'spread-' || CAST(:id AS text)
    AND (min IS NULL OR value + 1 >= min) AND (max IS NULL OR value + 1 <= max)
  RETURNING value, version;
COMMIT;
