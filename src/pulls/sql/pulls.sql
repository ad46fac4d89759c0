SELECT id, at, repository, reference, digest, media_type, method, status, identity,
       verified, remote_addr, user_agent, request_id
FROM pull_log
WHERE ($1::text IS NULL OR repository = $1)
  AND ($2::text IS NULL OR reference = $2)
  AND ($3::timestamptz IS NULL OR at >= $3)
  AND ($4::timestamptz IS NULL OR at < $4)
  AND ($5::text IS NULL OR identity = $5)
  AND ($6::text IS NULL OR digest = $6)
  AND ($7::timestamptz IS NULL OR (at, id) < ($7, $8))
ORDER BY at DESC, id DESC LIMIT $9
