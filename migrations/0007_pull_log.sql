-- The pull log: every manifest GET and HEAD tagwarden answered, with the digest it
-- served. Partitioned by day so that retention drops whole partitions instead of
-- deleting rows; tagwarden creates today's and tomorrow's partitions ahead.

CREATE TABLE pull_log (
    id          bigserial   NOT NULL,
    at          timestamptz NOT NULL,
    repository  text        NOT NULL,
    -- The tag or digest the client asked for.
    reference   text        NOT NULL,
    -- The response's Docker-Content-Digest; none on most errors.
    digest      text,
    media_type  text,
    method      text        NOT NULL CHECK (method IN ('GET', 'HEAD')),
    status      smallint    NOT NULL,
    identity    text,
    -- The upstream authenticates and answered 2xx to a request carrying the identity.
    verified    boolean     NOT NULL,
    remote_addr text,
    user_agent  text,
    request_id  text
) PARTITION BY RANGE (at);

-- Who pulled REPO:TAG in a window; the last pulls of a tag.
CREATE INDEX pull_log_reference ON pull_log (repository, reference, at DESC, id DESC);
-- What an identity pulled in a window.
CREATE INDEX pull_log_identity ON pull_log (identity, at DESC, id DESC);
-- The last time a digest was pulled.
CREATE INDEX pull_log_digest ON pull_log (digest, at DESC, id DESC);
-- The unfiltered feed, newest first.
CREATE INDEX pull_log_at ON pull_log (at DESC, id DESC);

-- Partition names are built here, not in the application: DDL cannot take bind
-- parameters. One partition per UTC day, named pull_log_YYYYMMDD.
CREATE FUNCTION pull_log_ensure_partition(day date) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    name text := 'pull_log_' || to_char(day, 'YYYYMMDD');
BEGIN
    -- Checked first so that the hourly call does not log a notice each time; IF NOT
    -- EXISTS still settles a race between two tagwarden processes.
    IF to_regclass(name) IS NULL THEN
        EXECUTE format(
            'CREATE TABLE IF NOT EXISTS %I PARTITION OF pull_log FOR VALUES FROM (%L) TO (%L)',
            name,
            (day::timestamp AT TIME ZONE 'UTC'),
            ((day + 1)::timestamp AT TIME ZONE 'UTC')
        );
    END IF;
END
$$;

-- Drop every day partition that ends on or before `day` begins; returns how many.
CREATE FUNCTION pull_log_drop_before(day date) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    part record;
    dropped integer := 0;
BEGIN
    FOR part IN
        SELECT c.relname
        FROM pg_inherits i
        JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'pull_log'::regclass
          AND c.relname ~ '^pull_log_[0-9]{8}$'
          AND to_date(substr(c.relname, 10), 'YYYYMMDD') < day
    LOOP
        EXECUTE format('DROP TABLE %I', part.relname);
        dropped := dropped + 1;
    END LOOP;
    RETURN dropped;
END
$$;
