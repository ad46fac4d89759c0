-- Identical re-pushes are coalesced: the history gets one `repush` event per tag,
-- digest, identity and hour, and this table counts every re-push of that hour, so a
-- client looping on re-pushes cannot grow the append-only history without bound.

CREATE TABLE repush_tally (
    repository text        NOT NULL,
    tag        text        NOT NULL,
    digest     text        NOT NULL,
    -- '' when the client gave no identity.
    identity   text        NOT NULL,
    hour       timestamptz NOT NULL,
    count      bigint      NOT NULL DEFAULT 1,
    last_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (repository, tag, digest, identity, hour)
);
