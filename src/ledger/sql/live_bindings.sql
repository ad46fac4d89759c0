SELECT tag, digest, class, first_bound_at FROM tag_bindings
WHERE repository = $1 AND deleted_at IS NULL ORDER BY tag LIMIT $2
