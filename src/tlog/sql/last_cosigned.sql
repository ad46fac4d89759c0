SELECT max(size) FROM log_cosignatures WHERE witness = $1
