SELECT repository, tag, digest, deleted_at IS NOT NULL AS deleted FROM tag_bindings ORDER BY repository, tag
