-- Tags a manifest write sent (or was about to send) to the registry before its ledger
-- transaction committed. A row outlives its write only if the commit did not happen
-- (a crash, a lost connection): the registry may then hold the tag unrecorded, and a
-- later write of the tag must ask the registry (the existence probe) rather than
-- trust that the ledger has never seen it. See `[enforce] ledger_complete`.
CREATE TABLE pending_writes (
    id         bigserial   PRIMARY KEY,
    repository text        NOT NULL,
    tag        text        NOT NULL,
    at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX pending_writes_by_tag ON pending_writes (repository, tag);

-- Whether reconciliation ever found a repository drifted, in one index probe.
CREATE INDEX tag_events_drift_by_repository ON tag_events (repository) WHERE action = 'drift';
