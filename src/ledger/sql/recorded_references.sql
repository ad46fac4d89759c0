SELECT referenced_digest, kind FROM manifest_references
WHERE repository = $1 AND manifest_digest = $2
