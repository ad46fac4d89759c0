INSERT INTO tag_events (at, action, repository, tag, digest, previous_digest, class, rule,
                        reason, identity, identity_verified, remote_addr, user_agent,
                        request_id, detail, policy_hash)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
RETURNING id
