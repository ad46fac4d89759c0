SELECT DISTINCT repository FROM tag_bindings
WHERE class = 'immutable' AND deleted_at IS NULL ORDER BY repository
