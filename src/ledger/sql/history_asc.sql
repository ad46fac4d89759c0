SELECT id, at, action, repository, tag, digest, previous_digest, class, rule, reason,
       identity, identity_verified, remote_addr, user_agent, request_id, detail, policy_hash
FROM tag_events WHERE repository = $1 AND tag = $2 AND id > $3
ORDER BY id LIMIT $4
