INSERT INTO pending_writes (repository, tag) VALUES ('', 'import') RETURNING id
