INSERT INTO pending_writes (repository, tag)
SELECT '', 'import' WHERE NOT pending_writes_tracked()
RETURNING id
