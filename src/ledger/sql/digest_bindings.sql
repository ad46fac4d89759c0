WITH keys AS (
    SELECT DISTINCT repository, tag FROM tag_events
    WHERE digest = $1 AND action IN ('create', 'move', 'repush', 'adopt', 'warn')
      AND (repository, tag) > ($2, $3)
    ORDER BY repository, tag LIMIT $4
)
SELECT e.repository, e.tag,
       e.id, e.at, e.action, e.digest, e.reason, e.identity, e.class,
       n.id AS next_id, n.at AS next_at, n.action AS next_action,
       n.digest AS next_digest, n.reason AS next_reason,
       n.identity AS next_identity, n.class AS next_class
FROM keys
JOIN tag_events e
  ON e.digest = $1 AND e.repository = keys.repository AND e.tag = keys.tag
 AND e.action IN ('create', 'move', 'repush', 'adopt', 'warn')
LEFT JOIN LATERAL (
    SELECT id, at, action, digest, reason, identity, class FROM tag_events n
    WHERE n.repository = e.repository AND n.tag = e.tag
      AND n.action IN ('create', 'move', 'repush', 'adopt', 'warn', 'delete')
      AND (n.at, n.id) > (e.at, e.id)
    ORDER BY n.at, n.id LIMIT 1
) n ON true
ORDER BY e.repository, e.tag, e.at, e.id
