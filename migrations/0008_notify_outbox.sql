-- Webhook notifications: every ledger event gets one outbox row in the transaction that
-- appended it, carrying that transaction's id. Senders deliver rows in (txid, event_id)
-- order and only below the oldest transaction still running, so a row can never appear
-- behind a position a sender has already passed (see src/notify/mod.rs).

CREATE TABLE notify_outbox (
    event_id bigint PRIMARY KEY,
    txid     xid8   NOT NULL DEFAULT pg_current_xact_id()
);

CREATE INDEX notify_outbox_order ON notify_outbox (txid, event_id);

CREATE FUNCTION notify_outbox_enqueue() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO notify_outbox (event_id) VALUES (NEW.id);
    RETURN NULL;
END
$$;

CREATE TRIGGER tag_events_notify_outbox
    AFTER INSERT ON tag_events
    FOR EACH ROW EXECUTE FUNCTION notify_outbox_enqueue();
-- Like the append-only triggers (0002): no session setting may skip it.
ALTER TABLE tag_events ENABLE ALWAYS TRIGGER tag_events_notify_outbox;

-- Events recorded before this migration, in id order, so that `from = "start"` replays
-- the whole history.
INSERT INTO notify_outbox (event_id) SELECT id FROM tag_events ORDER BY id;

-- How far each webhook has been acknowledged: the last delivered (or skipped) position.
CREATE TABLE notify_cursor (
    webhook       text        PRIMARY KEY,
    last_txid     xid8        NOT NULL,
    last_event_id bigint      NOT NULL,
    updated_at    timestamptz NOT NULL DEFAULT now()
);
