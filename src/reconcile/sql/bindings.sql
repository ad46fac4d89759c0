SELECT tag, digest, class, deleted_at IS NULL FROM tag_bindings WHERE repository = $1
