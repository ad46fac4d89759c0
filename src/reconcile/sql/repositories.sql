SELECT DISTINCT repository FROM tag_bindings WHERE deleted_at IS NULL
