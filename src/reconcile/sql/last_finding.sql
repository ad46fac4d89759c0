SELECT action, reason, detail->>'registry_digest' FROM tag_events
WHERE repository = $1 AND tag = $2 AND action <> 'refuse'
ORDER BY id DESC LIMIT 1
