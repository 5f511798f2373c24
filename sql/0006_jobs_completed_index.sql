-- Completed jobs are deleted once they are older than the retention (rowlock's housekeeping);
-- this index finds them without scanning the whole table.
CREATE INDEX jobs_completed ON jobs (finished_at) WHERE state = 'completed';
