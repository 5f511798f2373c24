-- Leases: a distributed lock per key, with a fencing token.
-- A key's row is kept after release and expiry so that its token only ever grows.
CREATE SEQUENCE lock_tokens AS bigint;

CREATE TABLE locks (
    key         text COLLATE "C" PRIMARY KEY
                CHECK (key ~ '^[A-Za-z0-9._-]{1,128}$'),
    -- NULL when released; a lease whose expires_at has passed is free as well.
    owner       text,
    -- The fencing token of the latest grant: nextval('lock_tokens'), so it strictly increases
    -- per key (and across keys) through grants, expiries, releases and restarts.
    token       bigint NOT NULL,
    acquired_at timestamptz,
    expires_at  timestamptz,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
