SELECT idx, hash FROM log_hashes ORDER BY idx
