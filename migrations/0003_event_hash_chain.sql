-- Tamper evidence: every history event carries the hash of its canonical encoding
-- chained to the previous event of the same repository (see src/ledger/chain.rs).
-- `tagwarden verify-ledger` recomputes the chains. Events written before this
-- migration have no hash; each chain starts at its repository's first hashed event.

ALTER TABLE tag_events
    ADD COLUMN prev_hash bytea,
    ADD COLUMN hash      bytea;

-- The head of each repository's chain. Appending an event locks this row, which also
-- orders concurrent appends to one repository; a chain whose last event does not
-- match its head has lost its tail.
CREATE TABLE chain_heads (
    repository text   PRIMARY KEY,
    last_id    bigint NOT NULL,
    hash       bytea  NOT NULL
);

CREATE INDEX tag_events_by_repository ON tag_events (repository, id);
