SELECT DISTINCT ON (b.tag) b.tag, b.rule, r.manifest_digest, r.kind
FROM manifest_references r
JOIN tag_bindings b ON b.repository = r.repository AND b.digest = r.manifest_digest
WHERE r.repository = $1 AND r.referenced_digest = $2
  AND b.class = 'immutable' AND b.deleted_at IS NULL
ORDER BY b.tag, r.kind
LIMIT $3
