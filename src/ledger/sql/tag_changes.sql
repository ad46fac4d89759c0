SELECT at, action, digest, previous_digest FROM (
    (SELECT id, at, action, digest, previous_digest FROM tag_events
     WHERE repository = $1 AND tag = $2 AND at >= $3
       AND action IN ('create', 'move', 'delete', 'adopt', 'warn', 'repair')
     ORDER BY id DESC LIMIT $4)
    UNION ALL
    (SELECT id, at, action, digest, previous_digest FROM tag_events
     WHERE repository = $1 AND tag = $2 AND at < $3
       AND action IN ('create', 'move', 'delete', 'adopt', 'warn', 'repair')
     ORDER BY id DESC LIMIT 1)
) e ORDER BY id
