WITH cleared AS (DELETE FROM pending_writes WHERE repository = $1 AND tag = $2)
