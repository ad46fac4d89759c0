SELECT tag FROM tag_bindings
WHERE repository = $1 AND starts_with(tag, $2) LIMIT $3
