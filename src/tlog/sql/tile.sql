SELECT width, data FROM log_tiles WHERE level = $1 AND n = $2
