SELECT last_txid::text::bigint AS txid, last_event_id AS event_id FROM notify_cursor WHERE webhook = $1
