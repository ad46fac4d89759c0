SELECT e.policy_hash, e.at FROM tag_events e
JOIN policy_versions v ON v.hash = e.policy_hash
WHERE e.at <= $1 AND ($2::timestamptz IS NULL OR e.at >= $2)
ORDER BY e.at DESC, e.id DESC LIMIT 1
