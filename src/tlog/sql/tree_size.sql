SELECT coalesce(max(leaf_index) + 1, 0) FROM log_leaves
