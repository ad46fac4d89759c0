INSERT INTO repush_tally (repository, tag, digest, identity, hour)
VALUES ($1, $2, $3, $4, date_trunc('hour', now()))
ON CONFLICT (repository, tag, digest, identity, hour)
DO UPDATE SET count = repush_tally.count + 1, last_at = now()
RETURNING count
