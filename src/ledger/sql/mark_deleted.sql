UPDATE tag_bindings SET deleted_at = now(), last_changed_at = now()
WHERE repository = $1 AND tag = $2 AND deleted_at IS NULL
