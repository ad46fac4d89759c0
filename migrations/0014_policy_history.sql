-- Policy history: every policy tagwarden put in force, keyed by its hash, so that the
-- rule in force at a past instant can be shown (`tagwarden explain --at`).

-- The effective rules of each policy ever loaded (built-in rules included, in order).
CREATE TABLE policy_versions (
    hash            text        PRIMARY KEY CHECK (hash ~ '^[0-9a-f]{64}$'),
    rules           jsonb       NOT NULL,
    first_loaded_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    last_loaded_at  timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- Each time a tagwarden process put a policy in force (startup or reload): the policy
-- in force at an instant is the last one loaded before it.
CREATE TABLE policy_loads (
    id        bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    hash      text        NOT NULL REFERENCES policy_versions (hash),
    loaded_at timestamptz NOT NULL DEFAULT clock_timestamp()
);

CREATE INDEX policy_loads_by_time ON policy_loads (loaded_at DESC, id DESC);
