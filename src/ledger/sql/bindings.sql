SELECT repository, tag, digest, class, rule, bound_by, first_bound_at, last_changed_at, deleted_at,
       retired_at, retired_reason, retired_by
FROM tag_bindings
WHERE repository = $1 AND tag > $2 AND ($3 OR deleted_at IS NULL)
ORDER BY tag LIMIT $4
