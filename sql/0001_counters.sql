-- Counters: named signed 64-bit values with optional bounds.
-- A balance is a counter with min 0; a flash-sale stock level is one too.
CREATE TABLE counters (
    name       text COLLATE "C" PRIMARY KEY
               CHECK (name ~ '^[A-Za-z0-9._-]{1,128}$'),
    value      bigint NOT NULL,
    min        bigint,
    max        bigint,
    -- Bumped by every change: the ETag, and the version If-Match compares against.
    version    bigint NOT NULL DEFAULT 1,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT counters_bounds_ordered CHECK (min IS NULL OR max IS NULL OR min <= max),
    CONSTRAINT counters_value_above_min CHECK (min IS NULL OR value >= min),
    CONSTRAINT counters_value_below_max CHECK (max IS NULL OR value <= max)
);
