-- pgbench script: the transaction rowlock runs for a transfer (src/db/transactions.rs,
-- `run_atomic`), `POST /transactions` with {"ops": [{"counter": "account-A", "by": -amount},
-- {"counter": "account-B", "by": amount}]}, between a random pair of distinct accounts among
-- account-0 … account-999 (min 0; what `rowlock hammer --workload transfer --accounts 1000` uses).
-- Both rows are locked by one SELECT in ascending name order, the bound is checked, then both rows
-- are written and the transaction recorded — or, when the payer is short, rolled back (rowlock's
-- 409 bound_violation).
\set a random(0, 999)
\set b (:a + random(1, 999)) % 1000
\set amount random(1, 100)
BEGIN ISOLATION LEVEL READ COMMITTED;
SELECT count(*) = 2 AND bool_and(
         (min IS NULL OR value + CASE WHEN name = 'account-' || CAST(:a AS text)
                                      THEN -CAST(:amount AS bigint) ELSE CAST(:amount AS bigint) END >= min)
     AND (max IS NULL OR value + CAST(:amount AS bigint) <= max)) AS ok
  FROM (SELECT name, value, min, max, version FROM counters
         WHERE name = ANY(ARRAY['account-' || CAST(:a AS text), 'account-' || CAST(:b AS text)])
         ORDER BY name FOR UPDATE) AS locked \gset
\if :ok
UPDATE counters c SET value = c.value + v.by, version = c.version + 1, updated_at = now()
  FROM unnest(ARRAY['account-' || CAST(:a AS text), 'account-' || CAST(:b AS text)],
              ARRAY[-CAST(:amount AS bigint), CAST(:amount AS bigint)]) AS v(name, by)
 WHERE c.name = v.name;
INSERT INTO transactions (atomic, ops, results)
  VALUES (true,
          jsonb_build_array(
            jsonb_build_object('counter', 'account-' || CAST(:a AS text), 'by', -CAST(:amount AS bigint)),
            jsonb_build_object('counter', 'account-' || CAST(:b AS text), 'by', CAST(:amount AS bigint))),
          jsonb_build_array(
            jsonb_build_object('counter', 'account-' || CAST(:a AS text), 'applied', true),
            jsonb_build_object('counter', 'account-' || CAST(:b AS text), 'applied', true)))
  RETURNING id;
COMMIT;
\else
ROLLBACK;
\endif
