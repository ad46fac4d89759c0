INSERT INTO notify_cursor (webhook, last_txid, last_event_id)
VALUES ($1, '0'::xid8, 0) ON CONFLICT (webhook) DO NOTHING
