INSERT INTO notify_cursor (webhook, last_txid, last_event_id)
SELECT $1, coalesce(max(txid), '0'::xid8), coalesce(max(event_id), 0)
FROM notify_outbox ON CONFLICT (webhook) DO NOTHING
