SELECT pull_log_ensure_partition($1)
