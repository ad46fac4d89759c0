SELECT leaf_index, event_id, hash FROM log_leaves WHERE event_id = $1
