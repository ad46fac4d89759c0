INSERT INTO pending_writes (repository, tag)
SELECT $1, t FROM unnest($2::text[]) AS u(t) RETURNING id, tag
