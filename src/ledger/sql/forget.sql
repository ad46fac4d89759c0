DELETE FROM pending_writes WHERE id = ANY($1)
