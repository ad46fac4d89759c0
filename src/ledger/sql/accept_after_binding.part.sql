), referenced AS (
    INSERT INTO manifest_references (repository, manifest_digest, referenced_digest, kind)
    SELECT $1, $3, d, k FROM unnest($23::text[], $24::text[]) AS u(d, k)
    ON CONFLICT DO NOTHING
), cleared AS (
    DELETE FROM pending_writes WHERE repository = $1 AND tag = $2
)
INSERT INTO tag_events (at, action, repository, tag, digest, previous_digest, class, rule,
                        reason, identity, identity_verified, remote_addr, user_agent,
                        request_id, detail, policy_hash)
VALUES ($7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22)
RETURNING id
