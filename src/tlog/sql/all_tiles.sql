SELECT level, n, width, data FROM log_tiles ORDER BY level, n
