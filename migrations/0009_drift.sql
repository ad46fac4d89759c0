-- Reconciliation: 'drift' records what the registry serves that the ledger did not
-- bind (a write or delete made around tagwarden); 'repair' records tagwarden putting
-- an immutable tag back on its bound digest.

ALTER TABLE tag_events DROP CONSTRAINT tag_events_action_check;
ALTER TABLE tag_events ADD CONSTRAINT tag_events_action_check
    CHECK (action IN ('create', 'move', 'repush', 'delete', 'refuse', 'adopt', 'warn', 'drift', 'repair'));

