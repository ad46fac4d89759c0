UPDATE tag_bindings SET deleted_at = now(), last_changed_at = now(),
       retired_at = now(), retired_reason = $3, retired_by = $4
WHERE repository = $1 AND tag = $2 AND deleted_at IS NULL
