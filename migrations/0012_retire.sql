-- Retirement: an operator (or a retention rule) removes an immutable release from the
-- registry without giving its name back. The binding row stays, marked deleted (so it
-- no longer protects what it references) and retired, with when, why and by whom: the
-- name stays reserved for its digest, and pushing that digest again restores it.

ALTER TABLE tag_bindings
    ADD COLUMN retired_at     timestamptz,
    ADD COLUMN retired_reason text,
    ADD COLUMN retired_by     text,
    ADD CONSTRAINT tag_bindings_retired_is_deleted
        CHECK (retired_at IS NULL OR deleted_at IS NOT NULL);

ALTER TABLE tag_events DROP CONSTRAINT tag_events_action_check;
ALTER TABLE tag_events ADD CONSTRAINT tag_events_action_check
    CHECK (action IN ('create', 'move', 'repush', 'delete', 'refuse', 'adopt', 'warn', 'drift', 'repair',
                      'retire', 'restore'));
