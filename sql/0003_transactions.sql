-- Committed multi-counter transactions, for GET /transactions/{id}.
CREATE TABLE transactions (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    atomic     boolean NOT NULL,
    ops        jsonb NOT NULL,
    results    jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
