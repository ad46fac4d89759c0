SELECT id, at, action, repository, tag, digest, previous_digest, class, rule, reason,
       identity, identity_verified, remote_addr, user_agent, request_id, detail, policy_hash
FROM tag_events
WHERE ($1::timestamptz IS NULL OR at >= $1)
  AND ($2::timestamptz IS NULL OR at < $2)
  AND ($3::text IS NULL OR repository = $3)
  AND ($4::text IS NULL OR tag = $4)
  AND ($5::text[] IS NULL
       OR CASE WHEN cardinality($5) = 1 THEN action = $5[1] ELSE action = ANY($5) END)
  AND ($6::text IS NULL OR identity = $6)
  AND ($7::bigint IS NULL OR id < $7) AND ($8::bigint IS NULL OR id <= $8)
ORDER BY id DESC LIMIT $9
