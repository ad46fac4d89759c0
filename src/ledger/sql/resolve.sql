SELECT id, at, action, digest, reason, identity, class
FROM tag_events
WHERE repository = $1 AND tag = $2 AND at <= $3
  AND action IN ('create', 'move', 'repush', 'adopt', 'warn', 'delete')
ORDER BY at DESC, id DESC LIMIT 1
