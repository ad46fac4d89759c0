INSERT INTO manifest_references (repository, manifest_digest, referenced_digest, kind)
SELECT $1, $2, d, k FROM unnest($3::text[], $4::text[]) AS u(d, k)
ON CONFLICT DO NOTHING
