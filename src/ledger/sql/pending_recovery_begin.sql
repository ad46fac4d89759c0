INSERT INTO pending_writes (repository, tag)
SELECT '', 'import'
WHERE NOT EXISTS (SELECT 1 FROM pending_writes WHERE repository = '' AND tag = '')
RETURNING id
