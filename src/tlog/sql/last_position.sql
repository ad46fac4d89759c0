SELECT txid::text::bigint AS txid, event_id FROM log_leaves ORDER BY leaf_index DESC LIMIT 1
