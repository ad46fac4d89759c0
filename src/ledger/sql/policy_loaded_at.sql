SELECT v.hash, v.rules, v.first_loaded_at, v.last_loaded_at, l.loaded_at
FROM policy_loads l JOIN policy_versions v ON v.hash = l.hash
WHERE l.loaded_at <= $1
ORDER BY l.loaded_at DESC, l.id DESC LIMIT 1
