-- The two statements a manifest write runs while it opens its transaction, as
-- functions: the announcement of its pending writes and the read of each tag's binding
-- and pending writes. The write sends them with its locks in one simple query (one
-- round trip, see `Ledger::begin_write`), which takes no parameters and would have
-- Postgres plan a bare statement on every write (about 0.1 ms for the read, five times
-- its execution). PL/pgSQL keeps the plan of a function's statement for the session,
-- as a prepared statement would; the simple query plans only the call.

-- `announce.sql` as it was: one committed row per tag, its id for the write's own.
CREATE FUNCTION pending_writes_announce(p_repository text, p_tags text[])
RETURNS TABLE (announced_id bigint, announced_tag text)
LANGUAGE plpgsql AS $$
BEGIN
    RETURN QUERY
    INSERT INTO pending_writes (repository, tag)
    SELECT p_repository, t FROM unnest(p_tags) AS u(t)
    RETURNING id, tag;
END
$$;

-- `binding_unseen.sql` as it was: the tag's binding (all NULL when it has none), the
-- ids of its pending writes, and whether the repository ever drifted. Called in a
-- statement after the one that takes the tag's lock, so that it reads a snapshot taken
-- once the lock was granted.
CREATE FUNCTION binding_unseen(p_repository text, p_tag text)
RETURNS TABLE (repository text, tag text, digest text, class text, rule text,
               bound_by text, first_bound_at timestamptz, last_changed_at timestamptz,
               deleted_at timestamptz, retired_at timestamptz, retired_reason text,
               retired_by text, pending bigint[], drifted boolean)
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN QUERY
    SELECT b.repository, b.tag, b.digest, b.class, b.rule, b.bound_by, b.first_bound_at,
           b.last_changed_at, b.deleted_at, b.retired_at, b.retired_reason, b.retired_by,
           ARRAY(SELECT p.id FROM pending_writes p
                 WHERE p.repository = p_repository AND p.tag = p_tag) AS pending,
           EXISTS (SELECT 1 FROM tag_events e
                   WHERE e.repository = p_repository AND e.action = 'drift') AS drifted
    FROM (SELECT 1) AS one
    LEFT JOIN tag_bindings b ON b.repository = p_repository AND b.tag = p_tag;
END
$$;
