WITH token AS (
    DELETE FROM pending_writes WHERE id = $1 AND repository = '' AND tag = 'import'
    RETURNING id
), marked AS (
    INSERT INTO pending_writes (repository, tag)
    SELECT '', '' FROM token WHERE NOT pending_writes_tracked()
)
SELECT EXISTS (SELECT 1 FROM token)
