SELECT pull_log_drop_before($1)
