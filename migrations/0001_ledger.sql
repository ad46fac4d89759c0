-- The tag ledger: current bindings and an append-only history of every decision.

CREATE TABLE tag_bindings (
    repository      text        NOT NULL,
    tag             text        NOT NULL,
    digest          text        NOT NULL,
    class           text        NOT NULL CHECK (class IN ('immutable', 'moving', 'exempt')),
    rule            text        NOT NULL,
    bound_by        text,
    first_bound_at  timestamptz NOT NULL DEFAULT now(),
    last_changed_at timestamptz NOT NULL DEFAULT now(),
    -- Set when the tag was removed from the registry. The row stays: an immutable tag
    -- remains reserved for its digest, and audits can still see what it named.
    deleted_at      timestamptz,
    PRIMARY KEY (repository, tag)
);

CREATE INDEX tag_bindings_by_digest ON tag_bindings (repository, digest);

CREATE TABLE tag_events (
    id                bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at                timestamptz NOT NULL DEFAULT clock_timestamp(),
    action            text        NOT NULL CHECK (action IN ('create', 'move', 'repush', 'delete', 'refuse', 'adopt', 'warn')),
    repository        text        NOT NULL,
    tag               text,
    digest            text,
    previous_digest   text,
    class             text,
    rule              text,
    -- Why a write was refused or warned about, e.g. 'immutable-tag-rebind'.
    reason            text,
    identity          text,
    -- Whether the upstream accepted the credentials the identity was read from.
    identity_verified boolean     NOT NULL DEFAULT false,
    remote_addr       text,
    user_agent        text,
    request_id        text,
    detail            jsonb
);

CREATE INDEX tag_events_by_tag ON tag_events (repository, tag, id);
CREATE INDEX tag_events_by_time ON tag_events (at);
CREATE INDEX tag_events_by_digest ON tag_events (digest);

-- History is append-only, whoever connects: updates, deletes and truncates fail.
CREATE FUNCTION tag_events_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'tag_events is append-only: % is not allowed', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TRIGGER tag_events_no_update_or_delete
    BEFORE UPDATE OR DELETE ON tag_events
    FOR EACH ROW EXECUTE FUNCTION tag_events_append_only();

CREATE TRIGGER tag_events_no_truncate
    BEFORE TRUNCATE ON tag_events
    FOR EACH STATEMENT EXECUTE FUNCTION tag_events_append_only();
