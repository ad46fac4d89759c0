SELECT idx, hash FROM log_hashes WHERE idx = ANY($1)
