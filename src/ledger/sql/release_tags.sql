SELECT tag FROM tag_bindings
WHERE repository = $1 AND digest = $2 AND class = 'immutable' AND deleted_at IS NULL
