SELECT repository, count(*) AS tags,
       count(*) FILTER (WHERE deleted_at IS NULL) AS live_tags,
       max(last_changed_at) AS last_changed_at
FROM tag_bindings WHERE repository > $1
GROUP BY repository ORDER BY repository LIMIT $2
