-- pgbench script: the transaction rowlock runs for `POST /counters/hot/increment?lock=wait`
-- (src/db/counters.rs), statement for statement, on the one hot counter.
BEGIN ISOLATION LEVEL READ COMMITTED;
SELECT name, value, min, max, version FROM counters WHERE name = 'hot' FOR UPDATE;
UPDATE counters SET value = value + 1, version = version + 1, updated_at = now()
  WHERE name = 'hot'
    AND (min IS NULL OR value + 1 >= min) AND (max IS NULL OR value + 1 <= max)
  RETURNING value, version;
COMMIT;
