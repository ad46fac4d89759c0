SELECT tag, digest FROM tag_bindings
WHERE repository = $1 AND class = 'immutable' AND deleted_at IS NULL
