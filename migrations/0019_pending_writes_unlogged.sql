-- Pending writes without the write-ahead log. A push with `[enforce] ledger_complete`
-- announces its tags in a transaction of its own, committed before anything reaches the
-- registry; as a logged table, that commit waited for a WAL flush on every push. An
-- unlogged table's rows are visible to every session as soon as they commit, and its
-- commit does not wait for the disk, which is all an announcement needs for what it
-- guards against: a tagwarden that crashes, or loses its connection, between the
-- registry's answer and the write's own commit.
--
-- What an unlogged table gives up: Postgres empties it after a crash or an immediate
-- shutdown, it is empty on a promoted standby, and a physical backup restores it empty.
-- Each of those loses announcements whose writes may have reached the registry. The
-- row with an empty repository (no repository name is empty) marks the table as intact:
-- it is lost with the rest, and while it is missing no write skips the existence probe
-- (`binding_unseen` below). `tagwarden import` puts it back once it has recorded the
-- registry after the loss (src/import.rs).
ALTER TABLE pending_writes SET UNLOGGED;
-- SET UNLOGGED takes the id sequence along, and an unlogged sequence starts over after
-- a crash: a write still holding an id from before could then withdraw (`forget.sql`)
-- another write's new announcement. A logged sequence never hands out an id twice.
ALTER SEQUENCE pending_writes_id_seq SET LOGGED;

INSERT INTO pending_writes (repository, tag) VALUES ('', '');

-- `binding_unseen` (0018) and whether the pending writes are intact (`tracked`).
DROP FUNCTION binding_unseen(text, text);
CREATE FUNCTION binding_unseen(p_repository text, p_tag text)
RETURNS TABLE (repository text, tag text, digest text, class text, rule text,
               bound_by text, first_bound_at timestamptz, last_changed_at timestamptz,
               deleted_at timestamptz, retired_at timestamptz, retired_reason text,
               retired_by text, pending bigint[], drifted boolean, tracked boolean)
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN QUERY
    SELECT b.repository, b.tag, b.digest, b.class, b.rule, b.bound_by, b.first_bound_at,
           b.last_changed_at, b.deleted_at, b.retired_at, b.retired_reason, b.retired_by,
           ARRAY(SELECT p.id FROM pending_writes p
                 WHERE p.repository = p_repository AND p.tag = p_tag) AS pending,
           EXISTS (SELECT 1 FROM tag_events e
                   WHERE e.repository = p_repository AND e.action = 'drift') AS drifted,
           EXISTS (SELECT 1 FROM pending_writes p
                   WHERE p.repository = '' AND p.tag = '') AS tracked
    FROM (SELECT 1) AS one
    LEFT JOIN tag_bindings b ON b.repository = p_repository AND b.tag = p_tag;
END
$$;
