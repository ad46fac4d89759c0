SELECT repository, last_id, hash FROM chain_heads
