SELECT coalesce(max(last_chained_id), 0) FROM chain_end
