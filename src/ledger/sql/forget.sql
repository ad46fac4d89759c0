DELETE FROM pending_writes p
USING unnest($1::bigint[], $2::timestamptz[]) AS f(id, at)
WHERE p.id = f.id AND p.at = f.at
