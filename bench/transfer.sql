-- pgbench script: rowlock's transaction for an atomic `POST /transactions` moving
-- 1…100 between two distinct accounts of account-0 … account-999, built from its own
-- statements (src/bench/scripts.rs); do not edit by hand.
\set a random(0, 999)
\set b (:a + random(1, 999)) % 1000
\set amount random(1, 100)
BEGIN ISOLATION LEVEL READ COMMITTED;
SELECT txid_current() AS txid, coalesce((SELECT stats_reset::text FROM pg_stat_wal), '') AS crash_mark, set_config('application_name', 'pgbench', true);
WITH locked AS MATERIALIZED (
        SELECT name, value, min, max, version FROM counters
         WHERE name = ANY((SELECT ARRAY(SELECT unnest(ARRAY['account-' || CAST(:a AS text), 'account-' || CAST(:b AS text)]) ORDER BY 1)::text[])::text[])
         ORDER BY name FOR UPDATE), steps AS (
        SELECT o.ord, o.name, o.by,
               l.value + sum(o.by) OVER (PARTITION BY o.name ORDER BY o.ord) AS after,
               l.min, l.max
          FROM unnest((SELECT ARRAY['account-' || CAST(:a AS text), 'account-' || CAST(:b AS text)]::text[]), (SELECT ARRAY[-CAST(:amount AS bigint), CAST(:amount AS bigint)]::bigint[])) WITH ORDINALITY AS o(name, by, ord)
          JOIN locked l USING (name)
    ), verdict AS (
        SELECT count(*) = cardinality(ARRAY['account-' || CAST(:a AS text), 'account-' || CAST(:b AS text)]::text[]) AND bool_and(after BETWEEN coalesce(min, -9223372036854775808) AND coalesce(max, 9223372036854775807)) AS ok
          FROM steps
    ), written AS (
        UPDATE counters c SET value = f.after, version = nextval('counter_versions'), updated_at = now()
          FROM (SELECT DISTINCT ON (name) name, after FROM steps ORDER BY name, ord DESC) AS f
         WHERE c.name = f.name AND (SELECT ok FROM verdict)
    ), recorded AS (
        INSERT INTO transactions (atomic, ops, results)
        SELECT true, jsonb_build_array(jsonb_build_object('counter', 'account-' || CAST(:a AS text), 'by', -CAST(:amount AS bigint)), jsonb_build_object('counter', 'account-' || CAST(:b AS text), 'by', CAST(:amount AS bigint)))::text::jsonb, jsonb_agg(jsonb_build_object(
                   'counter', name, 'applied', true, 'value', after, 'previous', after - by)
                   ORDER BY ord)
          FROM steps
        HAVING (SELECT ok FROM verdict)
        RETURNING id
    )
    SELECT name, value, min, max, version, (SELECT id FROM recorded) AS recorded FROM locked;
COMMIT;
