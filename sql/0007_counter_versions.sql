-- Counter versions (the ETag) come from one sequence: every change of any counter takes the next
-- value. A version is never given twice, not even to a counter deleted and created again under the
-- same name, so an If-Match kept from an earlier incarnation can never match a later one.
CREATE SEQUENCE counter_versions;
-- Above every version handed out so far (on a fresh database: the first version is 1).
SELECT setval('counter_versions', max(version), true) FROM counters HAVING max(version) IS NOT NULL;
ALTER TABLE counters ALTER COLUMN version SET DEFAULT nextval('counter_versions');
