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
-- SET UNLOGGED takes the id sequence along, and an unlogged sequence starts over at 1
-- after a crash. A logged one goes on from where its WAL says (see the end of this file
-- for the ids it may still hand out twice).
ALTER SEQUENCE pending_writes_id_seq SET LOGGED;

INSERT INTO pending_writes (repository, tag) VALUES ('', '');

-- Whether the marker is there: the one place that spells it, for the read below and
-- for tagwarden's own statements (src/ledger/sql/pending_*.sql). A single SELECT in SQL,
-- so Postgres inlines it into the statements that call it.
CREATE FUNCTION pending_writes_tracked() RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT EXISTS (SELECT 1 FROM pending_writes WHERE repository = '' AND tag = '')
$$;

-- `binding_unseen` (0018) with whether the pending writes are intact (`tracked`), and
-- what only a write that announced the tag needs (its pending writes, drift, the
-- marker) read only when it did (`p_announced`): a write of a tag it did not announce
-- cannot skip the probe, and reads `'{}'`, false, false.
DROP FUNCTION binding_unseen(text, text);
CREATE FUNCTION binding_unseen(p_repository text, p_tag text, p_announced boolean)
RETURNS TABLE (repository text, tag text, digest text, class text, rule text,
               bound_by text, first_bound_at timestamptz, last_changed_at timestamptz,
               deleted_at timestamptz, retired_at timestamptz, retired_reason text,
               retired_by text, pending bigint[], drifted boolean, tracked boolean)
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN QUERY
    SELECT b.repository, b.tag, b.digest, b.class, b.rule, b.bound_by, b.first_bound_at,
           b.last_changed_at, b.deleted_at, b.retired_at, b.retired_reason, b.retired_by,
           CASE WHEN p_announced THEN
               ARRAY(SELECT p.id FROM pending_writes p
                     WHERE p.repository = p_repository AND p.tag = p_tag)
           ELSE '{}' END AS pending,
           CASE WHEN p_announced THEN
               EXISTS (SELECT 1 FROM tag_events e
                       WHERE e.repository = p_repository AND e.action = 'drift')
           ELSE false END AS drifted,
           CASE WHEN p_announced THEN pending_writes_tracked() ELSE false END AS tracked
    FROM (SELECT 1) AS one
    LEFT JOIN tag_bindings b ON b.repository = p_repository AND b.tag = p_tag;
END
$$;

-- `pending_writes_announce` (0018) with each row's time. A sequence's value is written
-- to the WAL ahead of use, but a crash before that record reached the disk hands the
-- same ids out again; an announcement is withdrawn by its id and its time together
-- (`forget.sql`), so that a write from before a crash cannot withdraw a new one.
DROP FUNCTION pending_writes_announce(text, text[]);
CREATE FUNCTION pending_writes_announce(p_repository text, p_tags text[])
RETURNS TABLE (announced_id bigint, announced_tag text, announced_at timestamptz)
LANGUAGE plpgsql AS $$
BEGIN
    RETURN QUERY
    INSERT INTO pending_writes (repository, tag)
    SELECT p_repository, t FROM unnest(p_tags) AS u(t)
    RETURNING id, tag, at;
END
$$;
