-- A job's `errors` history keeps its most recent entries only: a job retried without end must
-- not grow one row without bound. Every statement that appends an error goes through this.
CREATE FUNCTION rowlock_recent_errors(history jsonb, entry jsonb, keep integer)
RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
    SELECT coalesce(jsonb_agg(e ORDER BY i), '[]'::jsonb)
      FROM jsonb_array_elements(history || jsonb_build_array(entry)) WITH ORDINALITY AS a(e, i)
     WHERE i > jsonb_array_length(history) + 1 - keep
$$;
