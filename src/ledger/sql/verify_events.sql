SELECT id, at, action, repository, tag, digest, previous_digest, class, rule, reason,
       identity, identity_verified, remote_addr, user_agent, request_id, detail, policy_hash, prev_hash, hash
FROM tag_events ORDER BY repository, id
