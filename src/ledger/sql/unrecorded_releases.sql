SELECT DISTINCT b.digest FROM tag_bindings b
WHERE b.repository = $1 AND b.class = 'immutable' AND b.deleted_at IS NULL
  AND NOT EXISTS (SELECT 1 FROM manifest_references r
                  WHERE r.repository = b.repository AND r.manifest_digest = b.digest
                    AND r.referenced_digest = b.digest AND r.kind = 'manifest')
ORDER BY b.digest LIMIT $2
