-- The transparency log (src/tlog): one RFC 6962 Merkle tree over every event, in the
-- C2SP tlog-tiles layout, with checkpoints signed outside the database.
--
-- Writers only insert their event; the integrator (one tagwarden at a time, elected
-- with an advisory lock) assigns leaf indices in `notify_outbox` order, (txid,
-- event_id), reading only below the oldest running transaction, so an index is never
-- handed out before an event that commits later but sorts earlier. Events recorded
-- before this migration share one txid in their outbox rows and so become the first
-- leaves in id order.

-- One row per leaf: which event it is and the hash of its canonical encoding.
CREATE TABLE log_leaves (
    leaf_index bigint PRIMARY KEY CHECK (leaf_index >= 0),
    event_id   bigint NOT NULL UNIQUE,
    txid       xid8   NOT NULL,
    hash       bytea  NOT NULL CHECK (length(hash) = 32)
);

-- Every stored hash of the tree, by its tlog stored-hash index (the Go sumdb layout):
-- what proofs and tiles are read from.
CREATE TABLE log_hashes (
    idx  bigint PRIMARY KEY CHECK (idx >= 0),
    hash bytea  NOT NULL CHECK (length(hash) = 32)
);

-- Hash tiles (height 8) as served under /log/tile/: the widest version of each.
CREATE TABLE log_tiles (
    level smallint NOT NULL,
    n     bigint   NOT NULL,
    width integer  NOT NULL CHECK (width BETWEEN 1 AND 256),
    data  bytea    NOT NULL,
    PRIMARY KEY (level, n)
);

-- Signed checkpoints (C2SP tlog-checkpoint notes), newest last.
CREATE TABLE log_checkpoints (
    size      bigint      PRIMARY KEY,
    root      bytea       NOT NULL,
    note      text        NOT NULL,
    signed_at timestamptz NOT NULL DEFAULT now()
);

-- The per-repository chain is no longer extended: new events leave prev_hash and hash
-- empty and are covered by the log instead. chain_heads stays as it was, so
-- `verify-ledger` still checks the chains recorded before this migration.
COMMENT ON TABLE chain_heads IS 'frozen at migration 0011: heads of the chains recorded before the transparency log';

-- Where the chains end: events after this id carry no chain hash (see verify-ledger).
CREATE TABLE chain_end (last_chained_id bigint NOT NULL);
INSERT INTO chain_end SELECT coalesce(max(id), 0) FROM tag_events;
