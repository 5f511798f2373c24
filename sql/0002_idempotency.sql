-- Idempotency keys: the first completed response of a POST, stored in the same transaction as
-- its mutation and replayed for a retry with the same key and request.
CREATE TABLE idempotency_keys (
    key          text PRIMARY KEY,
    -- SHA-256 of method, path with query, and body: the same key with another request is refused.
    request_hash bytea NOT NULL,
    status       smallint NOT NULL,
    headers      jsonb NOT NULL DEFAULT '[]',
    body         bytea NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL
);
CREATE INDEX idempotency_keys_expires_at ON idempotency_keys (expires_at);
