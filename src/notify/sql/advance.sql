UPDATE notify_cursor SET last_txid = $2::text::xid8, last_event_id = $3, updated_at = now()
WHERE webhook = $1
