SELECT id FROM tag_events WHERE repository = $1 AND tag = $2 AND at <= $3
  AND action IN ('create', 'move', 'warn', 'adopt', 'repush', 'repair', 'delete')
ORDER BY id DESC LIMIT 1
